"""c4c.atomic: a target is its old content or its new one, and a failed write leaves no temp file."""

from __future__ import annotations

import json

import pytest

from c4c.atomic import TEMP_MARK, atomic_path, write_bytes, write_json, write_text


def test_a_write_replaces_the_old_content_and_leaves_only_the_target(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "old\n")
    write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_an_exception_inside_atomic_path_keeps_the_old_content_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "a.bin"
    write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, durable=True) as tmp:
            assert TEMP_MARK in tmp.name and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_json_is_utf8_with_paths_as_strings_and_one_line_without_indent(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"name": "café", "path": tmp_path}, indent=None)
    text = target.read_text(encoding="utf-8")
    assert text.count("\n") == 1 and "café" in text
    assert json.loads(text) == {"name": "café", "path": str(tmp_path)}
