"""The `c4c` command line: a typer app with one command per pipeline stage.

Heavy libraries (torch, open_clip, h5py, faiss) are imported inside the commands, so `c4c --help`
answers at once. Nothing outside this package imports it.
"""

from c4c.cli.app import app, main

__all__ = ["app", "main"]
