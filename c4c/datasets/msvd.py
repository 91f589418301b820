"""MSVD annotations.

Files read from the dataset folder:

* ``train_list.txt``, ``val_list.txt``, ``test_list.txt``: one video id per line (whichever exist);
* ``raw-captions.pkl``: a pickled dict ``video_id -> [caption, ...]``, each caption a list of word
  tokens (joined with single spaces here) or already a string.

The pickle is loaded with an unpickler for data only, so a tampered file cannot run code. Plain
dicts, lists and strings need no class at all; the one mapping may also be a
``collections.defaultdict(list)`` or a ``collections.OrderedDict`` (both are found in the wild), which
are rebuilt as plain dicts without calling anything from the file. Every other class or function is
refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from c4c.datasets.records import VideoRecord, check_video_id
from c4c.datasets.files import dataset_dir, iter_split_lines, require_file, split_files
from c4c.errors import C4CError

LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
CAPTIONS_PKL = "raw-captions.pkl"


class _ListFactory:
    """Stands for ``list`` as a defaultdict's factory; not callable, so it cannot be used for anything else."""

    __slots__ = ()


_LIST_FACTORY = _ListFactory()


def _defaultdict_as_dict(factory: Any = None) -> dict:
    """``collections.defaultdict(list)`` (its items follow in the pickle) rebuilt as a plain dict."""
    if factory is not None and factory is not _LIST_FACTORY:
        raise pickle.UnpicklingError("refusing a defaultdict whose factory is not list")
    return {}


def _ordered_dict_as_dict(items: Any = ()) -> dict:
    """``collections.OrderedDict`` as a plain dict (insertion order is kept). Python 3 pickles pass no
    arguments and add the items afterwards; Python 2 ones pass ``[[key, value], ...]``."""
    if not isinstance(items, (list, tuple)) or not all(
            isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in items):
        raise pickle.UnpicklingError("refusing an OrderedDict built from something other than pairs")
    return dict((key, value) for key, value in items)


# (module, name) -> what the unpickler hands back; "__builtin__" is Python 2's name of builtins
_DATA_GLOBALS = {
    ("collections", "defaultdict"): _defaultdict_as_dict,
    ("collections", "OrderedDict"): _ordered_dict_as_dict,
    ("builtins", "list"): _LIST_FACTORY,
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickler for plain data: the two dict types of :data:`_DATA_GLOBALS` become plain dicts,
    any other class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        key = ("builtins" if module == "__builtin__" else module, name)
        if key not in _DATA_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return _DATA_GLOBALS[key]


def read_msvd(path: str | Path) -> list[VideoRecord]:
    """Read MSVD: one record per listed video with all its captions, in list order."""
    folder = dataset_dir(path)
    lists = split_files(folder, LIST_FILES, "MSVD")
    pickle_path = require_file(folder, CAPTIONS_PKL)
    captions = _load_captions(pickle_path)

    records = []
    for split, list_path, line, video_id in iter_split_lines(lists):
        check_video_id(video_id, path=str(list_path), line=line)
        if video_id not in captions:
            raise C4CError(f"video {video_id!r} has no captions in {CAPTIONS_PKL}", path=list_path, line=line)
        video_captions = _caption_texts(captions[video_id], video_id, pickle_path)
        records.append(VideoRecord(video_id=video_id, captions=video_captions, split=split))
    return records


def _load_captions(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            data = _DataOnlyUnpickler(handle, encoding="utf-8").load()
    except OSError as error:
        raise C4CError(f"cannot read the file: {error.strerror}", path=path) from None
    except Exception as error:  # any failure to decode the data is a bad file, not a bug here
        raise C4CError(f"not a plain captions pickle ({error})", path=path,
                       hint="expected a dict of video id -> list of captions") from None
    if not isinstance(data, dict):
        raise C4CError(f"expected a dict of video id -> captions, found {type(data).__name__}", path=path)
    return data


def _caption_texts(raw: Any, video_id: str, path: Path) -> list[str]:
    """Captions of one video as strings: token lists are joined with single spaces."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise C4CError(f"captions of {video_id!r} must be a non-empty list", path=path)
    texts = []
    for caption in raw:
        if isinstance(caption, str):
            texts.append(caption)
        elif isinstance(caption, (list, tuple)) and all(isinstance(token, str) for token in caption):
            texts.append(" ".join(caption))
        else:
            raise C4CError(f"a caption of {video_id!r} is neither a string nor a list of words", path=path)
    return texts
