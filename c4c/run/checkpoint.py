"""Run checkpoints: weights in safetensors, training state in a weights-only torch file.

Layout of one checkpoint folder (``RUN/checkpoints/step-000123/``, ``RUN/best/``)::

    model.safetensors     the model's state dict
    train_state.pt        optimiser, scheduler, grad scaler, RNG states, sampler position, counters
                          (tensors and plain Python values only: loaded with weights_only=True)
    meta.json             step, epoch, metrics, c4c version

Folders are written under a temporary name and renamed into place; ``RUN/latest.json`` names the
newest complete checkpoint and is replaced atomically, so a kill at any moment leaves a usable one.
A full disk is :class:`c4c.atomic.DiskFull` naming the folder (checked before writing, caught while
writing): the temp folder is removed and the checkpoints saved before are untouched.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from c4c import __version__
from c4c.atomic import DiskFull, disk_full_errno, ensure_space, free_bytes, write_json
from c4c.errors import C4CError, first_line
from c4c.jsonfile import read_json_object

FORMAT = "c4c-checkpoint"
FORMAT_VERSION = 1


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (and PYTHONHASHSEED for child processes)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def rng_state() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain values."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])



def save(folder: Path, model_state: dict, train_state: dict | None, meta: dict) -> Path:
    """Write a checkpoint folder atomically (temp folder, then rename over ``folder``)."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    need = _tensor_bytes(model_state) + _tensor_bytes(train_state) + (1 << 20)
    try:
        ensure_space(folder.parent, need, path=folder, largest_file=need, hint=_kept(folder))
        tmp.mkdir(parents=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
        if train_state is not None:
            torch.save(train_state, tmp / "train_state.pt")
        (tmp / "meta.json").write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                   "c4c_version": __version__, **meta}, indent=2) + "\n")
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        code = disk_full_errno(exc)
        if code is None and isinstance(exc, Exception) and free_bytes(folder.parent) < need:
            code = errno.ENOSPC  # torch.save says only "file write failed"
        if code is None or isinstance(exc, DiskFull):
            raise
        raise DiskFull(folder, code, hint=_kept(folder)) from exc
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _tensor_bytes(state: Any) -> int:
    """Bytes of the tensors in a (nested) state, about the size they take on disk."""
    if hasattr(state, "element_size") and hasattr(state, "numel"):
        return int(state.element_size() * state.numel())
    if isinstance(state, dict):
        return sum(_tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_tensor_bytes(v) for v in state)
    return 0


def _kept(folder: Path) -> str:
    """What a save cut short by a full disk leaves: the checkpoints before it, untouched."""
    if folder.name == "best":
        kept = "the previous best/ is intact" if (folder / "model.safetensors").is_file() else "no best/ yet"
    else:
        try:
            newest = latest(folder.parent.parent) if folder.parent.name == "checkpoints" else None
        except C4CError:
            newest = None
        kept = (f"the previous checkpoint {newest.name} (named by latest.json) is intact" if newest is not None
                else "no earlier checkpoint of this run")
    return f"nothing was replaced: {kept}; free space and resume with --resume"


def resolve(folder: Path) -> Path:
    """The checkpoint folder to read: ``folder``, or its ``.old`` twin left by a save that was cut short."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return folder
    old = folder.with_name(folder.name + ".old")
    if (old / "model.safetensors").is_file():
        return old
    raise C4CError("no checkpoint here (model.safetensors missing)", path=folder)


def load_meta(folder: Path) -> dict:
    folder = resolve(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise C4CError(f"unreadable checkpoint metadata: {exc}", path=folder / "meta.json") from None
    if meta.get("format") != FORMAT:
        raise C4CError("not a c4c checkpoint", path=folder)
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise C4CError("checkpoint written by a newer c4c", path=folder, hint="upgrade c4c")
    return meta


def load_model_state(folder: Path) -> dict:
    """The model weights of a checkpoint (safetensors: no code is ever unpickled)."""
    from safetensors.torch import load_file

    path = resolve(folder) / "model.safetensors"
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type (truncated, garbage header, ...)
        raise C4CError(f"unreadable weights ({type(exc).__name__}: {first_line(exc)})", path=path,
                       hint="the file is damaged; resume from another checkpoint or retrain") from None


def load_train_state(folder: Path) -> dict:
    """Optimiser/scheduler/RNG/sampler state, loaded with ``weights_only=True``."""
    import torch

    path = resolve(folder) / "train_state.pt"
    if not path.is_file():
        raise C4CError("checkpoint has no training state (it cannot be resumed)", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # garbage, truncation, or a pickle that wants to run code (refused)
        raise C4CError(f"unreadable training state ({type(exc).__name__}: {first_line(exc)})",
                       path=path, hint="only files written by c4c load; resume from another checkpoint") from None
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "loop"} <= set(state):
        raise C4CError("not a c4c training state", path=path)
    return state


def write_latest(run_dir: Path, folder: Path, meta: dict) -> None:
    write_json(Path(run_dir) / "latest.json", {"checkpoint": Path(folder).name, **meta})


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = Path(run_dir) / "latest.json"
    if not pointer.exists():
        return None
    name = read_json_object(pointer, "checkpoint pointer").get("checkpoint")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise C4CError("unreadable checkpoint pointer: no checkpoint name", path=pointer)
    return Path(run_dir) / "checkpoints" / name


def prune(run_dir: Path, keep: int) -> None:
    """Keep the ``keep`` newest step checkpoints (and never the one latest.json names)."""
    ckpts = sorted((Path(run_dir) / "checkpoints").glob("step-*"))
    current = latest(run_dir)
    for old in ckpts[:-keep] if keep > 0 else []:
        if current is None or old.resolve() != current.resolve():
            shutil.rmtree(old, ignore_errors=True)
