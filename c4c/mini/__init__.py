"""`python -m c4c.mini`: the CLIP4Clip paper's empirical questions, answered on synthetic data on a CPU.

Six experiments over one cached synthetic data set (:mod:`c4c.mini.experiments`), a markdown report
with tables (:mod:`c4c.mini.report`) and PNG charts drawn with matplotlib (:mod:`c4c.mini.plot`).
"""
