"""Usage errors through the installed `c4c` entry point: click's one-line usage message, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli_commands

ENTRY_POINT = Path(sys.executable).parent / "c4c"

USAGE_ERRORS = {
    "unknown command": (["foo"], "No such command 'foo'"),
    "missing required option": (["finetune", "--dataset", "jsonl"], "Missing option '--ann'"),
    "missing argument": (["search", "my_index"], "Missing argument"),
    "unknown option": (["extract", "DIR", "--out", "x.h5", "--bogus"], "No such option: --bogus"),
    "not a number": (["extract", "DIR", "--out", "x.h5", "--fps", "abc"], "'--fps'"),
    "bad choice": (["finetune", "--dataset", "jsonl", "--ann", "a", "--frames", "f", "--out", "r", "--amp", "bogus"],
                   "'--amp'"),
    "bad dataset": (["finetune", "--dataset", "webvid", "--ann", "a", "--frames", "f", "--out", "r"], "'--dataset'"),
    "bad index kind": (["index", "e.h5", "--out", "i", "--kind", "ivf"], "'--kind'"),
    "bad reranker": (["evaluate", "e.h5", "--rerank", "bogus"], "'--rerank'"),
    "bad caption subcommand": (["caption", "trian"], "No such command 'trian'"),
    "bad integer": (["caption", "generate", "--run", "r", "--frames", "f", "--out", "o", "--beam", "five"], "'--beam'"),
}


def _c4c(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENTRY_POINT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="the c4c entry point is not installed next to this python")
@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_a_usage_error_is_one_usage_message_and_exit_2(case, tmp_path):
    args, expected = USAGE_ERRORS[case]
    done = _c4c(args, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith("Usage: c4c") and "Error:" in done.stderr and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 5
    assert list(tmp_path.iterdir()) == []  # nothing was written


@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="the c4c entry point is not installed next to this python")
def test_a_group_without_its_subcommand_shows_its_help_and_exits_2(tmp_path):
    done = _c4c(["caption"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert "train" in done.stdout + done.stderr and "generate" in done.stdout + done.stderr


@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="the c4c entry point is not installed next to this python")
def test_a_user_error_is_one_line_naming_the_file_and_exit_2(tmp_path):
    done = _c4c(["index", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "idx")], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error:") and "missing.h5" in done.stderr


def test_every_option_of_every_command_has_help_text():
    missing = []
    for path, command in cli_commands():
        assert command.help and "Examples" in command.help, path
        for param in command.params:
            if getattr(param, "hidden", False) or param.name == "help":
                continue
            if not getattr(param, "help", None) and param.param_type_name == "option":
                missing.append(f"{' '.join(path)} --{param.name}")
    assert missing == []


def test_shared_options_mean_the_same_in_every_command():
    """One name, one help text: --quiet, --device, --workers, --checkpoint, --msrvtt-train, --amp."""
    import typer.main

    from c4c.cli.app import app

    root = typer.main.get_command(app)
    seen: dict[str, set[str]] = {}
    commands = [c for n, c in root.commands.items() if n != "caption"] + list(root.commands["caption"].commands.values())
    for command in commands:
        for param in command.params:
            if param.name in ("quiet", "device", "checkpoint", "msrvtt_train", "amp", "max_frames", "max_words"):
                seen.setdefault(param.name, set()).add(param.help)
            if param.name == "workers":
                assert "-j" in param.opts, command.name
    assert seen and all(len(helps) == 1 for name, helps in seen.items() if name not in ("max_frames", "max_words")), seen


def test_the_command_line_imports_no_heavy_library():
    code = ("import sys, c4c.cli.app; heavy = [m for m in ('torch', 'open_clip', 'h5py', 'faiss') if m in sys.modules];"
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
