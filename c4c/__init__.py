"""c4c: CLIP4Clip as a command-line toolkit."""

__version__ = "0.1.0"
