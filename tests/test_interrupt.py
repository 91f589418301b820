"""Ctrl-C: the first stops at the next safe point and says what was kept, the second stops at once.

Unit tests of :mod:`c4c.interrupt`, then cases in the form of ``tests/test_faults.py`` (a ``CASES`` table
of ``Workspace -> Verdict``, judged the same way, counted by ``bench/fault_tally.py``): a long command is
started in a process group of its own and SIGINT goes to the whole group, as a terminal sends it (to
DataLoader workers and ffmpeg too). Every stop must end with exit status 130 within a few seconds, the
notice of the first Ctrl-C, ONE ``interrupted: PATH: what was kept (how to go on)`` line and no
traceback; running the same command again (``--resume`` for training) must give the answer of an
uninterrupted run, with nothing finished lost.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from helpers import (HANDLED, TRACEBACK, UNCLEAR, Ran, Verdict, Workspace, check_case, judge_ok,  # noqa: E402
                         latest_weights, read_store, registry, run_c4c, same_weights, start_c4c,
                         stored_ids)

from c4c import interrupt  # noqa: E402

HANG = "hang"            # did not stop after Ctrl-C
STOP_LIMIT = 10.0        # seconds from SIGINT to exit (a step, a batch or a video, on a loaded machine)
NOTICE = interrupt.FIRST_NOTICE


# --- the handler ----------------------------------------------------------------------------------


def test_first_sigint_sets_the_flag_and_says_so(capfd):
    with interrupt.graceful():
        assert not interrupt.requested()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs at the next bytecode boundary of the main thread
        assert interrupt.requested()
    assert capfd.readouterr().err == NOTICE + "\n"
    assert not interrupt.requested()  # cleared when the block ends


def test_second_sigint_raises_at_once():
    with pytest.raises(KeyboardInterrupt) as stopped:
        with interrupt.graceful():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # not reached: the second raises here
    assert not isinstance(stopped.value, interrupt.Interrupted)


def test_the_previous_handler_is_back_after_the_block():
    before = signal.getsignal(signal.SIGINT)
    with interrupt.graceful():
        assert signal.getsignal(signal.SIGINT) is not before
        with interrupt.graceful():  # nested (a library update runs extract and encode): one handler
            inner = signal.getsignal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is inner
    assert signal.getsignal(signal.SIGINT) is before


def test_a_safe_point_passes_until_a_stop_is_requested_then_says_what_was_kept(capfd):
    with interrupt.graceful():
        interrupt.stop_here("kept nothing", path="out.h5")  # no Ctrl-C yet: returns
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        with pytest.raises(interrupt.Interrupted) as stopped:
            interrupt.stop_here(lambda: "kept 3 of 5 videos", path="out.h5")
    assert str(stopped.value) == "out.h5: kept 3 of 5 videos (run the same command again to continue)"
    assert interrupt.last_stop() is stopped.value
    assert isinstance(stopped.value, KeyboardInterrupt)  # cleanup written for Ctrl-C runs for it


def test_workers_ignore_sigint():
    code = "import os, signal, time; from c4c.interrupt import ignore_in_child; ignore_in_child(); " \
           "os.kill(os.getpid(), signal.SIGINT); time.sleep(0.05); print('alive')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "alive"


def test_the_cli_says_what_a_stop_kept_and_exits_130(capsys):
    import typer

    from c4c.cli.app import run_app

    app = typer.Typer()

    @app.command()
    def work() -> None:
        raise interrupt.Interrupted("kept the checkpoint of step 12", path="runs/x", again=interrupt.RESUME)

    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as ended:
            run_app(app, [], prog_name="c4c")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # exiting: a later Ctrl-C cannot break it
    finally:
        signal.signal(signal.SIGINT, before)
    assert ended.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "interrupted: runs/x: kept the checkpoint of step 12 (run the same command with --resume to continue)"]


# --- sending Ctrl-C to a running command -----------------------------------------------------------


def sigint_at(args: list, ready: Callable[[], bool], delay: float, *, twice: float | None = None,
              wait_s: float = 180) -> tuple[Ran, float | None]:
    """Start ``c4c ARGS`` in its own process group, wait for ``ready()``, then ``delay`` s, then SIGINT the group
    (again ``twice`` s later). Returns what it printed and the seconds from the (first) SIGINT to its exit, or
    None when it ended before the signal. A command still running ``STOP_LIMIT`` x 6 s after the signal is
    killed (exit status -9)."""
    proc = start_c4c(*args)
    started = time.monotonic()
    while proc.poll() is None and not ready() and time.monotonic() - started < wait_s:
        time.sleep(0.01)
    time.sleep(delay)
    sent = None
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        if twice is not None:
            time.sleep(twice)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=STOP_LIMIT * 6)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return Ran(proc.returncode, out), (None if sent is None else time.monotonic() - sent)


def judge_stop(ran: Ran, seconds: float | None, *, path: Path, says: tuple[str, ...], at_once: bool = False) -> Verdict:
    """A Ctrl-C'd command: exit 130 within STOP_LIMIT s, the first Ctrl-C's notice, ONE ``interrupted:`` line
    naming ``path`` with every piece of ``says``, no traceback. None of it when it finished first (HANDLED)."""
    detail = f"exit {ran.rc} after {seconds if seconds is None else round(seconds, 1)} s: {ran.out.strip()[-600:]}"
    if seconds is None:
        return Verdict(HANDLED, False, "ended before the signal")
    if ran.rc == -signal.SIGKILL:
        return Verdict(HANG, False, f"still running {STOP_LIMIT * 6:.0f} s after SIGINT; {detail}")
    if "Traceback" in ran.out:
        return Verdict(TRACEBACK, False, detail)
    lines = [line for line in ran.out.splitlines() if line.startswith("interrupted:")]
    if ran.rc != 130 or len(lines) != 1 or NOTICE not in ran.out:
        return Verdict(UNCLEAR, False, f"expected exit 130, the notice and one interrupted: line; {detail}")
    if seconds > STOP_LIMIT:
        return Verdict(HANG, False, f"took {seconds:.1f} s to stop; {detail}")
    if not at_once and not (str(path) in lines[0] and all(s in lines[0] for s in says)):
        return Verdict(UNCLEAR, False, f"the line should name {path} and say {says}; {detail}")
    return Verdict(HANDLED, False, lines[0])


def first_bad(verdicts: list[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.kind != HANDLED), None)


# --- the cases ----------------------------------------------------------------------------------

CASES, case = registry()


def _cached(ws: Workspace, name: str, make: Callable[[], object]):
    """A material of these cases, made once per workspace (the workspace of test_faults knows nothing of it)."""
    key = f"_interrupt_{name}"
    if key not in ws.__dict__:
        ws.__dict__[key] = make()
    return ws.__dict__[key]


EPOCHS = 10  # 40 steps: long enough to Ctrl-C seconds after the first checkpoint


def long_finetune_args(ws: Workspace, out: Path, epochs: int = EPOCHS) -> list:
    args = ws.finetune_args(out)
    args[args.index("--epochs") + 1] = epochs
    return args


def long_finetuned(ws: Workspace, epochs: int = EPOCHS) -> Path:
    """An uninterrupted run of :func:`long_finetune_args`, made in this process (as ``Workspace.finetuned``)."""
    def make() -> Path:
        from c4c.stages.finetune import FinetuneConfig, run

        ann, frames = ws.retrieval
        return ws.in_process(run, FinetuneConfig(
            dataset="jsonl", ann=ann, frames=frames, out=ws.root / f"finetune-{epochs}-epochs", clip="tiny",
            pretrained="none", epochs=epochs, batch_size=4, lr=1e-3, save_every=1, workers=0, temporal_layers=1,
            sim="seqTransf", train_order="shuffle"))
    return _cached(ws, f"finetuned_{epochs}", make)


def latest_step(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "latest.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def _training_stops(ws: Workspace, name: str, args_of: Callable[[Path], list], reference: Path,
                    offsets: list[tuple[float, float | None]], fresh: bool) -> Verdict:
    """Ctrl-C a training run once per ``(delay after a new checkpoint, second Ctrl-C after)`` of ``offsets``:
    resumed each time (or, ``fresh``, a new run each time, the last one resumed); every stop judged, the
    named checkpoint the newest, then ``--resume`` to the end must give ``reference``'s weights."""
    d = ws.fresh(name)
    verdicts: list[Verdict] = []
    steps: list[int] = []
    run_dir = d / "run"
    for k, (delay, twice) in enumerate(offsets):
        if fresh:
            run_dir = d / f"run{k}"
        before = latest_step(run_dir)
        resume = ["--resume"] if before else []
        ran, seconds = sigint_at([*args_of(run_dir), *resume], lambda: latest_step(run_dir) > before, delay,
                                 twice=twice)
        verdict = judge_stop(ran, seconds, path=run_dir, says=("kept the checkpoint of step", "--resume"),
                             at_once=twice is not None)
        if latest_step(run_dir) == latest_step(reference) and (ran.rc == 0 or "stopped at once" in ran.out) \
                and "Traceback" not in ran.out:
            verdict = Verdict(HANDLED, False, "ended before the signal")  # the Ctrl-C came after the last step
        said = re.search(r"kept the checkpoint of step (\d+)", ran.out)
        if verdict.kind == HANDLED and said and int(said.group(1)) != latest_step(run_dir):
            verdict = Verdict(UNCLEAR, True, f"said step {said.group(1)}, latest.json names {latest_step(run_dir)}")
        if latest_step(run_dir) < before:
            verdict = Verdict(verdict.kind, True, f"the newest checkpoint went back from {before}; {verdict.detail}")
        verdicts.append(verdict)
        steps.append(latest_step(run_dir))
    final = run_c4c(*args_of(run_dir), "--resume")
    right = final.rc == 0 and same_weights(latest_weights(run_dir), latest_weights(reference))
    bad = first_bad(verdicts)
    if bad is not None:
        return Verdict(bad.kind, bad.lost, f"stops at steps {steps}: {bad.detail}")
    return judge_ok(final, right=right, lost=any(v.lost for v in verdicts),
                    why=f"{sum(v.detail != 'ended before the signal' for v in verdicts)} stops at steps {steps}, "
                        "each with its checkpoint; resumed to the weights of an uninterrupted run")


@case("SIGINT finetune after its first checkpoint, at a random moment and twice; resume")
def _(ws):
    rng = random.Random(22)
    return _training_stops(ws, "sigint-finetune", lambda out: long_finetune_args(ws, out), long_finetuned(ws),
                           [(0.0, None), (rng.uniform(0.0, 0.8), None), (rng.uniform(0.0, 0.5), 0.05)], fresh=False)


TEN = "SIGINT 10 finetune runs 0-2 s after their first checkpoint; resume the last"
SLOW = {TEN}  # about 2 minutes on 2 CPU cores: marked slow


@case(TEN)
def _(ws):
    rng = random.Random(14)
    return _training_stops(ws, "sigint-finetune-10", lambda out: long_finetune_args(ws, out, 30),
                           long_finetuned(ws, 30), [(rng.uniform(0.0, 2.0), None) for _ in range(10)], fresh=True)


def caption_args(ws: Workspace, out: Path) -> list:
    ann, frames = ws.retrieval
    return ["caption", "train", "--dataset", "jsonl", "--ann", ann, "--frames", frames, "--out", out, "--clip", "tiny",
            "--pretrained", "none", "--sim", "meanP", "--decoder-layers", 1, "--epochs", 5, "--batch-size", 4,
            "--lr", "1e-3", "--coef-lr", 1, "--max-words", 16, "--max-frames", 4, "--save-every", 1, "--workers", 0,
            "-q"]


def _reference_run(ws: Workspace, name: str, args_of: Callable[[Path], list]) -> Path:
    """The run ``args_of(out)`` makes without interruption (a child process, made once per workspace)."""
    def make() -> Path:
        out = ws.root / name
        ran = run_c4c(*args_of(out))
        assert ran.rc == 0, ran.out
        return out
    return _cached(ws, name, make)


@case("SIGINT caption train after its first checkpoint; resume")
def _(ws):
    reference = _reference_run(ws, "caption-full", lambda out: caption_args(ws, out))
    return _training_stops(ws, "sigint-caption", lambda out: caption_args(ws, out), reference,
                           [(random.Random(3).uniform(0.0, 1.0), None)], fresh=False)


def long_pretrain_args(ws: Workspace, out: Path) -> list:
    """``Workspace.pretrain_args`` with 12 steps: time to stop it in the middle."""
    args = ws.pretrain_args(out)
    args[args.index("--steps") + 1] = 12
    return args


@case("SIGINT pretrain after its first checkpoint; resume")
def _(ws):
    reference = _reference_run(ws, "pretrain-long", lambda out: long_pretrain_args(ws, out))
    return _training_stops(ws, "sigint-pretrain", lambda out: long_pretrain_args(ws, out), reference,
                           [(random.Random(5).uniform(0.0, 0.5), None)], fresh=False)


def _synth_args(out: Path) -> list:
    return ["synth", out, "--count", 240, "--duration", 1, "--width", 32, "--height", 32, "--seed", 9, "-q"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@case("SIGINT synth half-way, then the same command again")
def _(ws):
    def make() -> dict[str, bytes]:
        out = ws.root / "synth-full"
        ran = run_c4c(*_synth_args(out))
        assert ran.rc == 0, ran.out
        return _files(out)
    reference = _cached(ws, "synth_full", make)
    out = ws.fresh("sigint-synth") / "data"
    videos = out / "videos"
    ran, seconds = sigint_at(_synth_args(out), lambda: videos.is_dir() and len(list(videos.iterdir())) >= 10, 0.0)
    verdict = judge_stop(ran, seconds, path=out, says=("kept the", "videos made by this run", "run the same command"))
    if verdict.kind != HANDLED:
        return verdict
    again = run_c4c(*_synth_args(out))
    return judge_ok(again, right=_files(out) == reference,
                    why=f"stopped with {verdict.detail!r}; the second run made the same files as an uninterrupted one")


def _many_links(ws: Workspace, n: int = 60) -> Path:
    """``n`` videos (hard links to the 20 of ``ws.many``: s07 is m07): enough work to stop half-way."""
    def make() -> Path:
        src = ws.root / "many-links"
        src.mkdir()
        for i in range(n):
            os.link(ws.many / f"m{i % 20:02d}.mp4", src / f"s{i:02d}.mp4")
        return src
    return _cached(ws, "many_links", make)


@case("SIGINT extract half-way (ffmpeg gets it too), then the same command again")
def _(ws):
    src = _many_links(ws)
    expected = {f"s{i:02d}": ws.reference("many")[1][f"m{i % 20:02d}"] for i in range(60)}
    d = ws.fresh("sigint-extract")
    out = d / "frames.h5"
    failed_tsv = d / "frames.failed.tsv"
    args = ["extract", src, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw", "--commit-every", 1,
            "--workers", 2, "--batch", 2, "-q"]
    verdicts, seen, lost = [], set(), False
    for delay in (0.0, 0.3):
        ran, seconds = sigint_at(args, (d / "frames.h5.parts").exists, delay)
        verdicts.append(judge_stop(ran, seconds, path=out, says=("not extracted yet", "again to continue")))
        now = stored_ids(out) if out.exists() else set()
        lost |= not seen <= now
        if failed_tsv.exists() or "failed" in ran.out:  # a video whose ffmpeg got the Ctrl-C is not damaged
            verdicts.append(Verdict(UNCLEAR, False, f"videos reported as failed after Ctrl-C: {ran.out[-400:]}"))
        seen = now
    final = run_c4c(*args)
    _, frames = read_store(out)
    bad = first_bad(verdicts)
    if bad is not None:
        return Verdict(bad.kind, lost, bad.detail)
    return judge_ok(final, right=frames == expected and not failed_tsv.exists(), lost=lost,
                    why=f"stopped with {len(seen)} of 60 videos kept; the next run did the rest")


def _read_emb(path: Path) -> dict:
    import h5py
    import numpy as np

    found: dict = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, np.asarray(obj[()])) if isinstance(obj, h5py.Dataset)
                     else None)
    return found


def _same_emb(a: dict, b: dict) -> bool:
    import numpy as np

    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@case("SIGINT encode of own videos half-way, then the same command again")
def _(ws):
    frames = ws.reference("many")[0]

    def args(out: Path) -> list:
        return ["encode", "--frames", frames, "--out", out, "--clip", "tiny", "--pretrained", "none", "--batch-size", 1,
                "--workers", 0, "-q"]

    def make() -> Path:
        out = ws.root / "encode-full" / "emb.h5"
        ran = run_c4c(*args(out))
        assert ran.rc == 0, ran.out
        return out
    reference = _cached(ws, "encode_full", make)
    d = ws.fresh("sigint-encode")
    out = d / "emb.h5"
    partial = out.with_name(out.name + ".partial")
    ran, seconds = sigint_at(args(out), partial.exists, 0.0)
    verdict = judge_stop(ran, seconds, path=out, says=("kept the embeddings of", "emb.h5.partial", "again"))
    kept = partial.exists() or seconds is None
    final = run_c4c(*args(out))
    right = final.rc == 0 and _same_emb(_read_emb(out), _read_emb(reference))
    if verdict.kind != HANDLED:
        return Verdict(verdict.kind, not kept, verdict.detail)
    return judge_ok(final, right=right, lost=not kept, why=f"{verdict.detail}; the next run finished it")


@case("SIGINT index of a video folder half-way, then the same command again")
def _(ws):
    src = _many_links(ws)
    d = ws.fresh("sigint-index")
    lib = d / "library"
    args = ["index", src, "--out", lib, "--clip", "tiny", "--pretrained", "none", "--fps", 2, "--size", 32, "-q"]
    ran, seconds = sigint_at(args, lambda: any((lib / "parts").glob("*/frames.h5*")), 0.2)
    verdict = judge_stop(ran, seconds, path=lib, says=("this update stopped", "again to continue"))
    final = run_c4c(*args)
    state = json.loads((lib / "library.json").read_text()) if (lib / "library.json").is_file() else {}
    right = sorted(state.get("videos", {})) == [f"s{i:02d}" for i in range(60)] and not state.get("failed")
    if verdict.kind != HANDLED:
        return verdict
    return judge_ok(final, right=right, why=f"{verdict.detail}; the next run indexed all 60 videos")


# --- the tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("interrupt"))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_case(ws, name):
    check_case(CASES, ws, name)
