"""Which model made a set of embeddings: a trained run or a zero-shot CLIP, and its fingerprint.

EMB.h5 (`c4c encode`) and INDEX_DIR (`c4c index`) record a :class:`ModelSource` as JSON, so that
`c4c search` rebuilds the very text tower that matches the stored video vectors, and so that files
made by different models are never mixed silently (`c4c search --run`, `c4c evaluate --bank`).

* ``kind="run"``: a run folder of `c4c finetune` / `c4c pretrain` / `c4c caption train`, the checkpoint
  folder its weights came from, and a digest of those weights (sha256 of ``model.safetensors``).
* ``kind="zero-shot"``: CLIP4Clip's meanP at initialisation, i.e. CLIP over the video's frames,
  mean-pooled. The model block (:class:`c4c.run.folder.ModelSpec`) says which open_clip model and
  weights (a tag, a local file whose digest is kept, or ``none``: random weights drawn from a fixed
  seed, so that the same text tower can be rebuilt).

The fingerprint is a digest of the model block and the weights digest: two sources with the same
fingerprint compute the same embeddings, wherever their files live.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c4c.run.export_format import sha256_file
from c4c.errors import C4CError

log = logging.getLogger(__name__)

RUN = "run"
ZERO_SHOT = "zero-shot"
ZERO_SHOT_SEED = 0        # torch seed of the random parts of a zero-shot model (all of it with pretrained none)
WEIGHTS_FILE = "model.safetensors"   # the weights of a checkpoint folder (c4c.run.checkpoint)
# model block keys that change what the embeddings are (decoder: captioning only)
_SPEC_KEYS = ("clip", "pretrained", "activation", "clip_fp16", "sim", "patch", "temporal_layers")


def file_digest(path: str | Path, known: dict | None = None) -> dict:
    """``{"file", "size", "mtime_ns", "sha256"}`` of ``path``; the sha256 of ``known`` is reused when its
    size and modification time still match (hashing a ViT-B/32 checkpoint takes about a second)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise C4CError("weights file not found", path=path) from None
    if known and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns and known.get("sha256"):
        return {"file": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": known["sha256"]}
    return {"file": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}


@dataclass(frozen=True)
class ModelSource:
    """A model that encodes texts and videos, as recorded in EMB.h5 and INDEX_DIR."""

    kind: str                                   # "run" | "zero-shot"
    spec: dict = field(default_factory=dict)    # ModelSpec.as_dict(), activation resolved
    run: str | None = None                      # run folder (absolute), kind "run"
    checkpoint: str | None = None               # checkpoint folder (absolute), kind "run"
    weights: dict | None = None                 # file_digest of the weights (run checkpoint or zero-shot file)

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming what the model computes (model block + weights digest)."""
        if self.kind == RUN and self.weights is None:  # recorded before fingerprints: the paths are all we know
            key: Any = ["legacy", self.run, self.checkpoint]
        else:
            key = [self.kind, {k: self.spec.get(k) for k in _SPEC_KEYS},
                   (self.weights or {}).get("sha256")]
            if self.kind == ZERO_SHOT:
                key.append(ZERO_SHOT_SEED)
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line for messages: ``run runs/x (checkpoint best, weights 1a2b3c4d)`` or ``zero-shot ...``."""
        sha = (self.weights or {}).get("sha256")
        if self.kind == RUN:
            ckpt = Path(self.checkpoint).name if self.checkpoint else "?"
            return f"run {self.run} (checkpoint {ckpt}" + (f", weights {sha[:8]}" if sha else "") + ")"
        s = self.spec
        extra = f", weights {sha[:8]}" if sha else ""
        return f"zero-shot {s.get('clip')} / {s.get('pretrained')} ({s.get('activation')}{extra})"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "spec": dict(self.spec), "run": self.run, "checkpoint": self.checkpoint,
                "weights": dict(self.weights) if self.weights else None, "fingerprint": self.fingerprint}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSource":
        if not isinstance(data, dict) or data.get("kind") not in (RUN, ZERO_SHOT):
            raise ValueError(f"not a model source: {data!r}")
        return cls(kind=data["kind"], spec=dict(data.get("spec") or {}), run=data.get("run"),
                   checkpoint=data.get("checkpoint"), weights=data.get("weights"))


def from_record(model_json: str | dict | None, *, run: str | None = None, checkpoint: str | None = None
                ) -> ModelSource | None:
    """The source recorded in a file: its ``model`` JSON, or for files written before it (EMB.h5 v1,
    INDEX_DIR v1) the ``run``/``checkpoint`` they name; None when neither is there."""
    if model_json:
        try:
            data = json.loads(model_json) if isinstance(model_json, str) else model_json
            return ModelSource.from_dict(data)
        except (ValueError, TypeError):
            return None
    if run:
        return ModelSource(kind=RUN, run=str(run), checkpoint=str(checkpoint) if checkpoint else None)
    return None


def same_model(a: ModelSource, b: ModelSource) -> bool:
    """Whether ``a`` and ``b`` compute the same embeddings (by paths when either was recorded without a
    weights digest)."""
    if a.weights is None or b.weights is None:
        if a.kind != b.kind:
            return False
        if a.kind == RUN:
            return (_norm(a.run), _norm(a.checkpoint)) == (_norm(b.run), _norm(b.checkpoint))
    return a.fingerprint == b.fingerprint


def _norm(path: str | None) -> str | None:
    return None if not path else os.path.normpath(os.path.abspath(path))


def check_same_model(have: ModelSource, want: ModelSource, *, have_what: str, want_what: str,
                     force: bool = False, hint: str | None = None) -> None:
    """C4CError naming both models when they differ (a warning with ``force``)."""
    if same_model(have, want):
        return
    message = (f"{have_what} comes from {have.describe()} [{have.fingerprint}], but {want_what} from "
               f"{want.describe()} [{want.fingerprint}]")
    if force:
        log.warning("%s; going on (--force)", message)
        return
    raise C4CError(message, hint=hint or "use files made by the same model, or pass --force")
