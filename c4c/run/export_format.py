"""Reading an exported run (`c4c export`, format ``c4c-export`` version 1; the folder is laid out in
:mod:`c4c.export`), resolving ``--run`` references (a folder, or ``hf-hub:ORG/NAME``), and the sha256
helper every format that records a weights digest uses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from c4c.errors import C4CError
from c4c.jsonfile import read_json_object
from c4c.run.folder import ModelSpec

FORMAT = "c4c-export"
FORMAT_VERSION = 1
CONFIG_FILE = "open_clip_config.json"
CLIP_FILE = "open_clip_model.safetensors"
EXTRA_FILE = "c4c_extra.safetensors"
RUN_FILE = "c4c_run.json"
HUB_PREFIX = "hf-hub:"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`export_run`."""
    return (Path(path) / RUN_FILE).is_file()


def resolve_source(ref: str | Path) -> Path:
    """A run or export folder for ``--run``: a local path, or ``hf-hub:ORG/NAME`` fetched through
    huggingface_hub's cache (offline, a missing one fails at once)."""
    text = str(ref)
    if not text.startswith(HUB_PREFIX):
        return Path(ref)
    repo = text[len(HUB_PREFIX):].strip("/")
    if not repo:
        raise C4CError("hf-hub: needs ORG/NAME, e.g. hf-hub:someone/clip4clip-msrvtt")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise C4CError("hf-hub: runs need the huggingface_hub package", hint="pip install huggingface_hub") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        return Path(snapshot_download(repo_id=repo, local_files_only=offline, etag_timeout=5))
    except Exception as exc:  # not cached offline, no network, no such repo: all say the same to the user
        raise C4CError(f"cannot get {text}: {type(exc).__name__}" + (" (offline, and not in the local cache)" if offline else ""),
                       hint="download the folder on a machine with internet (or run `c4c export`) and pass its path "
                            "as --run") from None


def load_export(folder: Path) -> tuple[dict, ModelSpec, dict, Path]:
    """``(run config, model spec, state dict with c4c's key names, weights file)`` of an export folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    info = read_json_object(folder / RUN_FILE, "export description")
    if info.get("format") != FORMAT:
        raise C4CError(f"not a c4c export (format {info.get('format')!r})", path=folder / RUN_FILE)
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise C4CError("export written by a newer c4c", path=folder / RUN_FILE, hint="upgrade c4c")
    block = info.get("model")
    if not isinstance(block, dict):
        raise C4CError("export description has no model block", path=folder / RUN_FILE)
    spec = ModelSpec(**{k: block[k] for k in ModelSpec.__dataclass_fields__ if k in block})
    state = {}
    for name, prefix in ((CLIP_FILE, "clip."), (EXTRA_FILE, "")):
        path = folder / name
        try:
            tensors = load_file(str(path))
        except Exception as exc:
            raise C4CError(f"unreadable weights ({type(exc).__name__})", path=path) from None
        state.update({prefix + k: v for k, v in tensors.items()})
    config = dict(info.get("config") or {})
    config.setdefault("task", info.get("task"))
    return config, spec, state, folder / CLIP_FILE
