"""`python -m c4c.cli ...` (and `torchrun -m c4c.cli ...`) runs the command line."""

from c4c.cli.app import main

main()
