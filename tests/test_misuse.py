"""The misuse matrix: every command that writes x every way its output can be the wrong place.

Columns (each a class of careless use or unlucky machine, not one example):

- **read-only**: the output is on a read-only file system (a tmpfs remounted ``ro``): exit 1, one line
  naming the output and saying why, nothing written, before any work.
- **an input**: the output is one of the command's own inputs (the same path, or a hard link to it):
  exit 2, one line, the input byte for byte as it was.
- **not c4c's**: the output exists and c4c did not write it (a file, a folder of other files, or a file
  beside the output with a name c4c uses): exit 2, one line, nothing replaced, ``--overwrite`` included.
- **two writers**: another process holds the output's writer lock: exit 2, one line naming the holder.
- **disk full**: the output's file system has no space left: exit 1, one line naming the output, no
  temporary file left behind.

Each case runs c4c in a child process and is judged as tests/test_faults.py judges (:func:`judge`), and
registered in ``CASES`` so that ``bench/fault_tally.py`` counts it. Ctrl-C half-way then the same command
again is tests/test_interrupt.py's column.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import pytest

from helpers import Skip, Verdict, Workspace, _env, check_case, judge, registry, run_c4c, tmpfs  # noqa: E402

# --- the material ----------------------------------------------------------------------------------


class MisuseWorkspace(Workspace):
    """test_faults' inputs, plus an embedding file, a caption run, captions and a read-only folder."""

    @cached_property
    def emb(self) -> Path:
        """EMB.h5 of the retrieval dataset's test split, encoded with :attr:`finetuned`."""
        from c4c.stages.encode import EncodeConfig, run

        ann, frames = self.retrieval
        return self.in_process(run, EncodeConfig(run=self.finetuned, frames=frames, dataset="jsonl", ann=ann, workers=0,
                                                 out=self.root / "emb" / "test.emb.h5"))

    @cached_property
    def caption_run(self) -> Path:
        from c4c.stages.caption import CaptionTrainConfig, run

        ann, frames = self.retrieval
        return self.in_process(run, CaptionTrainConfig(
            dataset="jsonl", ann=ann, frames=frames, out=self.root / "caption-run", clip="tiny", pretrained="none",
            sim="meanP", decoder_layers=1, epochs=1, batch_size=4, lr=1e-3, max_words=16, max_frames=4, workers=0))

    @cached_property
    def mounts(self) -> contextlib.ExitStack:
        return contextlib.ExitStack()

    def mount(self, path: Path, size: str) -> Path:
        """A fresh tmpfs of ``size`` at ``path`` (:func:`tmpfs`, kept until :meth:`unmount_all`)."""
        return self.mounts.enter_context(tmpfs(path, size))

    @cached_property
    def read_only(self) -> Path:
        """An empty folder on a read-only file system (a tmpfs remounted ro)."""
        path = self.mount(self.root / "read-only", "1m")
        if subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True).returncode != 0:
            raise Skip("cannot remount the tmpfs read-only")
        return path

    def full_disk(self, name: str) -> Path:
        """A fresh tiny tmpfs filled to the last byte."""
        path = self.mount(self.root / f"full-{name}", "256k")
        fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        return path

    def unmount_all(self) -> None:
        self.mounts.close()


# --- the commands that write ------------------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """One command that writes: its argv for an output path, whether the output is a folder, the inputs an
    output could be mistaken for (``collide``: the argv whose output is one of them, and that input), and
    files it writes beside the output (``beside``)."""

    name: str
    argv: Callable[[MisuseWorkspace, Path], list]
    folder: bool = False
    suffix: str = ""
    collide: Callable[[MisuseWorkspace], tuple[list, Path]] | None = None
    beside: Callable[[Path], Path] | None = None
    overwrite: bool = False  # has --overwrite
    foreign_says: str = "is not a c4c"  # what the refusal of a file it did not write says


def _synth(ws, out):
    return ["synth", out, "--count", 2, "--duration", 1, "--width", 32, "--height", 32, "-q"]


def _extract(ws, out):
    return ["extract", ws.clips, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw", "-q"]


def _finetune(ws, out):
    return [*ws.finetune_args(out)[:-1], "--epochs", 1, "--save-every", 0, "-q"]


def _caption_train(ws, out):
    ann, frames = ws.retrieval
    return ["caption", "train", "--dataset", "jsonl", "--ann", ann, "--frames", frames, "--out", out, "--clip", "tiny",
            "--pretrained", "none", "--sim", "meanP", "--decoder-layers", 1, "--epochs", 1, "--batch-size", 4,
            "--lr", "1e-3", "--max-words", 16, "--max-frames", 4, "--workers", 0, "-q"]


def _encode(ws, out):
    ann, frames = ws.retrieval
    return ["encode", "--run", ws.finetuned, "--frames", frames, "--dataset", "jsonl", "--ann", ann, "--out", out,
            "--workers", 0, "-q"]


def _generate(ws, out):
    return ["caption", "generate", "--run", ws.caption_run, "--frames", ws.retrieval[1], "--out", out,
            "--max-len", 4, "--workers", 0, "-q"]


WRITERS = [
    Writer("synth", _synth, folder=True),
    Writer("extract", _extract, suffix=".h5", foreign_says="not a readable HDF5 file",
           collide=lambda ws: (["extract", ws.clips, "--out", ws.clips, "--shards", 2, "-q"], ws.clips)),
    Writer("finetune", _finetune, folder=True,
           collide=lambda ws: (_finetune(ws, ws.retrieval[1]), ws.retrieval[1])),
    Writer("pretrain", lambda ws, out: ws.pretrain_args(out), folder=True,
           collide=lambda ws: (ws.pretrain_args(ws.howto[1]), ws.howto[1])),
    Writer("caption train", _caption_train, folder=True,
           collide=lambda ws: (_caption_train(ws, ws.finetuned).__add__(["--init", ws.finetuned]), ws.finetuned)),
    Writer("encode", _encode, suffix=".h5", overwrite=True,
           collide=lambda ws: ([*_encode(ws, ws.retrieval[1]), "--overwrite"], ws.retrieval[1]),
           beside=lambda out: out.with_name(out.stem + ".encode.json")),
    Writer("evaluate", lambda ws, out: ["evaluate", ws.emb, "--out", out, "-q"], suffix=".json",
           collide=lambda ws: (["evaluate", ws.emb, "--out", ws.emb, "-q"], ws.emb)),
    Writer("index", lambda ws, out: ["index", ws.emb, "--out", out, "-q"], folder=True, overwrite=True,
           collide=lambda ws: (["index", ws.emb, "--out", ws.emb, "--overwrite", "-q"], ws.emb)),
    Writer("index (a folder of videos)", lambda ws, out: ["index", ws.clips, "--out", out, "--clip", "tiny",
                                                          "--pretrained", "none", "--size", 32, "--workers", 0, "-q"],
           folder=True, collide=lambda ws: (["index", ws.clips, "--out", ws.clips, "--clip", "tiny", "--pretrained",
                                             "none", "-q"], ws.clips)),
    Writer("caption generate", _generate, suffix=".json",
           collide=lambda ws: ([*_generate(ws, ws.retrieval[0]), "--dataset", "jsonl", "--ann", ws.retrieval[0]],
                               ws.retrieval[0]),
           beside=lambda out: out.with_name(out.stem + ".meta.json")),
    Writer("plot", lambda ws, out: ["plot", ws.finetuned, "--out", out, "-q"], suffix=".png",
           beside=lambda out: out.with_suffix(".json")),
    Writer("export", lambda ws, out: ["export", ws.finetuned, "--out", out, "-q"], folder=True, overwrite=True,
           collide=lambda ws: (["export", ws.finetuned, "--out", ws.finetuned, "--overwrite", "-q"], ws.finetuned)),
]


# --- how a case looks at what it left --------------------------------------------------------------


def digest(path: Path) -> str:
    """A digest of a file, or of every file (names and bytes) under a folder."""
    h = hashlib.sha1()
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode())
            if p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temp files, partial files and locks a command left in ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or p.name.endswith((".partial", ".lock")))


_HOLD = textwrap.dedent("""
    import sys, time
    from c4c.lock import writer_lock
    with writer_lock([sys.argv[1]], command=sys.argv[2]):
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
""")


@contextlib.contextmanager
def another_writer(out: Path, command: str):
    """Another process holding the writer lock of ``out`` for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out), command, "120"], env=_env(), text=True,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


# --- the cases -----------------------------------------------------------------------------------------

CASES, case = registry()


def _register(name: str, fn: Callable[[MisuseWorkspace], Verdict]) -> None:
    case(name)(fn)


def _out(ws: MisuseWorkspace, w: Writer, folder: Path) -> Path:
    return folder / ("out" + w.suffix)


def _read_only(w: Writer) -> Callable[[MisuseWorkspace], Verdict]:
    def case(ws: MisuseWorkspace) -> Verdict:
        out = _out(ws, w, ws.read_only / w.name.replace(" ", "-"))
        argv = w.argv(ws, out)
        ran = run_c4c(*argv)
        return judge(ran, rc=1, says=(str(out), "read-only file system"), lost=os.path.exists(out))
    return case


def _an_input(w: Writer) -> Callable[[MisuseWorkspace], Verdict]:
    def case(ws: MisuseWorkspace) -> Verdict:
        argv, given = w.collide(ws)
        before = digest(given)
        ran = run_c4c(*argv)
        return judge(ran, rc=2, says=(str(given), "input"), lost=digest(given) != before)
    return case


def _hard_link_of_an_input(w: Writer) -> Callable[[MisuseWorkspace], Verdict]:
    def case(ws: MisuseWorkspace) -> Verdict:
        argv, given = w.collide(ws)
        link = ws.fresh(f"link-{w.name.replace(' ', '-')}") / ("alias" + given.suffix)
        os.link(given, link)
        before = digest(given)
        ran = run_c4c(*[link if a == given else a for a in argv])
        return judge(ran, rc=2, says=(str(link), "input"), lost=digest(given) != before)
    return case


def _not_ours(w: Writer, *, overwrite: bool) -> Callable[[MisuseWorkspace], Verdict]:
    def case(ws: MisuseWorkspace) -> Verdict:
        out = _out(ws, w, ws.fresh(f"foreign-{w.name.replace(' ', '-')}"))
        if w.folder:
            out.mkdir()
            (out / "notes.txt").write_text("mine\n")
        else:
            out.write_text("mine\n")
        before = digest(out)
        ran = run_c4c(*w.argv(ws, out), *(["--overwrite"] if overwrite else []))
        return judge(ran, rc=2, says=(str(out), w.foreign_says), lost=digest(out) != before)
    return case


def _beside(w: Writer) -> Callable[[MisuseWorkspace], Verdict]:
    def case(ws: MisuseWorkspace) -> Verdict:
        out = _out(ws, w, ws.fresh(f"beside-{w.name.replace(' ', '-')}"))
        other = w.beside(out)
        other.write_text('{"mine": [1, 2, 3]}\n')
        before = digest(other)
        ran = run_c4c(*w.argv(ws, out))
        return judge(ran, rc=2, says=(str(other), "is not a c4c"),
                     lost=digest(other) != before or (out.exists() and not w.folder))
    return case


def _two_writers(w: Writer) -> Callable[[MisuseWorkspace], Verdict]:
    def case(ws: MisuseWorkspace) -> Verdict:
        out = _out(ws, w, ws.fresh(f"second-{w.name.replace(' ', '-')}"))
        command = "c4c " + w.name.split(" (")[0]
        with another_writer(out, command):
            ran = run_c4c(*w.argv(ws, out))
        return judge(ran, rc=2, says=(str(out), f"another {command} is writing it"), lost=out.exists())
    return case


def _disk_full(w: Writer) -> Callable[[MisuseWorkspace], Verdict]:
    def case(ws: MisuseWorkspace) -> Verdict:
        disk = ws.full_disk(w.name.replace(" ", "-"))
        out = _out(ws, w, disk)
        ran = run_c4c(*w.argv(ws, out))
        left = leftovers(disk)
        verdict = judge(ran, rc=1, says=(str(disk),), lost=bool(left))
        if left:
            verdict.detail += f"; left behind: {left}"
        return verdict
    return case


for _w in WRITERS:
    _register(f"{_w.name}: output on a read-only file system", _read_only(_w))
    if _w.collide is not None:
        _register(f"{_w.name}: output is one of its inputs", _an_input(_w))
        if not _w.folder and _w.name not in ("extract",):
            _register(f"{_w.name}: output is a hard link of one of its inputs", _hard_link_of_an_input(_w))
    _register(f"{_w.name}: output exists and is not c4c's", _not_ours(_w, overwrite=False))
    if _w.overwrite:
        _register(f"{_w.name}: output is not c4c's, with --overwrite", _not_ours(_w, overwrite=True))
    if _w.beside is not None:
        _register(f"{_w.name}: a file c4c did not write beside the output", _beside(_w))
    _register(f"{_w.name}: a second writer at the same time", _two_writers(_w))
    _register(f"{_w.name}: disk full", _disk_full(_w))


# --- the suite -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    workspace = MisuseWorkspace(tmp_path_factory.mktemp("misuse"))
    yield workspace
    workspace.unmount_all()


@pytest.mark.parametrize("name", list(CASES))
def test_misuse_ends_clearly_and_loses_nothing(ws, name):
    check_case(CASES, ws, name)


# --- the guard itself, one behaviour each ------------------------------------------------------------


def test_an_output_that_is_an_input_is_refused_by_path_link_and_hard_link(tmp_path):
    from c4c.errors import C4CError
    from c4c.outputs import Output, check_outputs

    given = tmp_path / "in.h5"
    given.write_bytes(b"data")
    (tmp_path / "sym.h5").symlink_to(given)
    os.link(given, tmp_path / "hard.h5")
    for out in (given, tmp_path / "sym.h5", tmp_path / "hard.h5", tmp_path / "." / "in.h5"):
        with pytest.raises(C4CError, match="also an input"):
            check_outputs([Output(out, "embedding file", lambda p: True)], [given])
    check_outputs([Output(tmp_path / "other.h5", "embedding file", lambda p: True)], [given])


def test_only_files_of_the_outputs_own_format_are_replaced(tmp_path):
    from c4c.errors import C4CError
    from c4c.outputs import Output, check_outputs, json_with_format

    mine = tmp_path / "metrics.json"
    ours = json_with_format("c4c-x")
    for content in ("not json", "[1, 2]", '{"format": "other"}'):
        mine.write_text(content)
        with pytest.raises(C4CError, match="is not a c4c metrics file"):
            check_outputs([Output(mine, "metrics file", ours)])
    mine.write_text('{"format": "c4c-x"}')
    check_outputs([Output(mine, "metrics file", ours)])
    (tmp_path / "run").mkdir()
    check_outputs([Output(tmp_path / "run", "run folder", lambda p: False, folder=True)])  # empty: always fine


def test_the_guard_holds_the_writer_lock_and_leaves_no_folder_behind(tmp_path):
    from c4c.errors import C4CError
    from c4c.outputs import Output, guard

    out = tmp_path / "new" / "deeper" / "emb.h5"
    with guard([Output(out, "embedding file", lambda p: True)], command="c4c encode"):
        assert (out.parent / "emb.h5.lock").exists()
        with pytest.raises(C4CError, match="another c4c encode is writing it"):
            with guard([Output(out, "embedding file", lambda p: True)], command="c4c encode"):
                pytest.fail("a second writer was let in")
    assert not (tmp_path / "new").exists()  # made for the lock, removed with it: nothing was written


def test_a_write_refused_during_the_work_is_one_line_naming_the_target(tmp_path):
    from c4c.atomic import CannotWrite, atomic_path

    target = tmp_path / "a.json"
    with pytest.raises(CannotWrite) as info:
        with atomic_path(target):
            raise PermissionError(13, "Permission denied", str(target) + ".tmp-x")
    assert info.value.render().startswith(f"{target}: cannot write: permission denied")
    assert info.value.exit_code == 1 and list(tmp_path.iterdir()) == []
