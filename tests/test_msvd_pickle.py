"""MSVD's raw-captions.pkl may be a dict, a defaultdict(list) or an OrderedDict: all three load as
data; every other class or function in the file is still refused and never runs."""

from __future__ import annotations

import collections
import os
import pickle

import pytest

from c4c.datasets.registry import read_annotations
from c4c.errors import C4CError

CAPTIONS = {"vidA": [["a", "man", "runs"], ["someone", "is", "running"]], "vidB": ["a cat sleeps"]}
EXPECTED = [("vidB", "train", ["a cat sleeps"]), ("vidA", "test", ["a man runs", "someone is running"])]


def make_msvd(folder, pickled: bytes) -> None:
    (folder / "raw-captions.pkl").write_bytes(pickled)
    (folder / "train_list.txt").write_text("vidB\n", encoding="utf-8")
    (folder / "test_list.txt").write_text("\nvidA\n", encoding="utf-8")


def summary(records):
    return [(r.video_id, r.split, r.captions) for r in records]


def as_defaultdict():
    data = collections.defaultdict(list)
    for key, value in CAPTIONS.items():
        data[key].extend(value)
    return data


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("make", [as_defaultdict, lambda: collections.OrderedDict(CAPTIONS)],
                         ids=["defaultdict", "OrderedDict"])
def test_defaultdict_and_ordereddict_pickles_load_as_data(tmp_path, make, protocol):
    make_msvd(tmp_path, pickle.dumps(make(), protocol=protocol))
    assert summary(read_annotations("msvd", tmp_path)) == EXPECTED


def test_a_python2_ordereddict_pickle_with_its_items_as_arguments_loads(tmp_path):
    # Python 2's OrderedDict.__reduce__ passed [[key, value], ...] to the constructor (protocol 2 bytes)
    items = [[key, value] for key, value in CAPTIONS.items()]
    body = pickle.dumps(items, protocol=2)[2:-1]  # strip PROTO 2 and STOP
    make_msvd(tmp_path, b"\x80\x02ccollections\nOrderedDict\n" + body + b"\x85R.")
    assert summary(read_annotations("msvd", tmp_path)) == EXPECTED


def test_the_loaded_mapping_is_a_plain_dict_that_invents_no_keys(tmp_path):
    from c4c.datasets.msvd import _load_captions

    make_msvd(tmp_path, pickle.dumps(as_defaultdict()))
    data = _load_captions(tmp_path / "raw-captions.pkl")
    assert type(data) is dict and list(data) == ["vidA", "vidB"]


class _RunsCode:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def _defaultdict_with_factory(factory_module: str, factory_name: str) -> bytes:
    return (b"\x80\x02ccollections\ndefaultdict\nc" + factory_module.encode() + b"\n"
            + factory_name.encode() + b"\n\x85R.")


@pytest.mark.parametrize("payload", [
    lambda target: pickle.dumps({"vidA": [_RunsCode(target)]}),
    lambda target: pickle.dumps(collections.defaultdict(list, {"vidA": [_RunsCode(target)]})),
    lambda target: pickle.dumps(collections.OrderedDict(vidA=[_RunsCode(target)])),
    lambda target: _defaultdict_with_factory("os", "getcwd"),           # a factory that is code
    lambda target: _defaultdict_with_factory("builtins", "dict"),       # any factory but list
    lambda target: b"\x80\x02c__builtin__\nlist\nX\x03\x00\x00\x00abc\x85\x85R.",  # list called directly
    lambda target: pickle.dumps(collections.Counter(a=1)),              # another collections class
], ids=["code-in-dict", "code-in-defaultdict", "code-in-ordereddict", "factory-code", "factory-dict",
        "list-called", "counter"])
def test_anything_but_data_is_still_refused_and_never_runs(tmp_path, payload):
    target = tmp_path / "pwned"
    make_msvd(tmp_path, payload(target))
    with pytest.raises(C4CError, match=r"raw-captions\.pkl: not a plain captions pickle"):
        read_annotations("msvd", tmp_path)
    assert not target.exists()
