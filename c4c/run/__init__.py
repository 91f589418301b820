"""The run layer: the formats that say what a model is and where its weights are, below everything
that builds, trains or uses models.

- :mod:`c4c.run.folder`: the run folder (format ``c4c-run``) and :class:`~c4c.run.folder.ModelSpec`;
- :mod:`c4c.run.checkpoint`: checkpoint folders (save, resolve, latest, prune) and RNG states;
- :mod:`c4c.run.export_format`: reading an exported run (format ``c4c-export``), and the sha256 helper;
- :mod:`c4c.run.source`: which model made a file (EMB.h5, INDEX_DIR) and its fingerprint.

Nothing here imports torch at import time, nor any part of c4c above it.
"""
