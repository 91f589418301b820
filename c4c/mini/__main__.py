"""`python -m c4c.mini`: the command line is :mod:`c4c.cli.mini_cmd`."""

from c4c.cli.mini_cmd import main

main()
