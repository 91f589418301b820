"""`python -m c4c.mini`: the command line is :mod:`c4c.mini.cli`."""

from c4c.mini.cli import main

main()
