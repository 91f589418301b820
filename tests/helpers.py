"""Helpers shared by the tests (imported as ``helpers``: pytest puts this folder on the path; scripts under
bench/ that reuse them put it there themselves).

- the CLI's commands (:func:`cli_commands`);
- small videos made with the bundled ffmpeg (:func:`encode_frames`, :func:`lavfi_video`, ...);
- the fault and misuse harness: run c4c in a child process, judge how it ended (:func:`judge`,
  :func:`judge_ok`), the inputs the cases share (:class:`Workspace`), and the registry of cases
  (:func:`registry`, :func:`check_case`) that ``bench/fault_tally.py`` counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import c4c
from c4c.video.ffmpeg_bin import ffmpeg_exe

GOOD_IDS = {"clip_a", "clip_b", "clip_c", "tiny"}
BAD_IDS = {"empty", "notes", "audio_only", "cut"}





def cli_commands(typer_app=None) -> list[tuple[list[str], object]]:
    """Every leaf command of the c4c CLI (or of ``typer_app``) as ``(words, click command)``, sub-commands
    included: ``(["caption", "train"], <Command>)``."""
    import typer.main

    if typer_app is None:
        from c4c.cli.app import app as typer_app

    found: list[tuple[list[str], object]] = []

    def walk(command, words: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, words + [name])
        else:
            found.append((words, command))

    walk(typer.main.get_command(typer_app), [])
    return found


# --- small videos ---------------------------------------------------------------------------------------


def encode_frames(path: Path, frames: np.ndarray, fps: float, *, extra_out: list[str] | None = None,
                  extra_in: list[str] | None = None) -> Path:
    """Write ``frames`` (uint8 [T, H, W, 3]) as an H.264 file with exactly one frame per input frame."""
    t, h, w, _ = frames.shape
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *(extra_in or []),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
           "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv444p",
           *(extra_out or []), str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


def annotated_set(root: Path, *, videos: int, seed: int) -> tuple[Path, Path]:
    """A `c4c synth` set of 2-second videos and its frames (32 px, 2 fps), made in this process:
    ``(annotations.jsonl, FRAMES.h5)``."""
    from c4c import synth
    from c4c.stages import extract

    synth.run(synth.SynthConfig(out_dir=root / "synth", videos=videos, seed=seed, duration=2.0, width=64, height=48))
    ann, frames = root / "synth" / "annotations.jsonl", root / "frames.h5"
    assert extract.run(extract.ExtractConfig(source=ann, dataset="jsonl", videos_dir=root / "synth" / "videos",
                                             out=frames, size=32, fps=2.0)).ok
    return ann, frames


def lavfi_video(path: Path, seconds: float, *, size: str = "320x240", rate: str = "30",
                extra_out: list[str] | None = None) -> Path:
    """A test-pattern video of the given length, size and frame rate."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size={size}:rate={rate}", "-t", str(seconds), "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", *(extra_out or []), str(path)]
    subprocess.run(cmd, check=True)
    return path


def brightness_video(path: Path, frames: int, fps: float, size: tuple[int, int] = (64, 48)) -> Path:
    """Frame i is a flat grey of level 2*i (so the sampled frame index can be read back)."""
    w, h = size
    levels = (np.arange(frames) * 2).clip(0, 255).astype(np.uint8)
    data = np.broadcast_to(levels[:, None, None, None], (frames, h, w, 3)).copy()
    return encode_frames(path, data, fps)


# --- the fault and misuse harness --------------------------------------------------------------------

ROOT = Path(c4c.__file__).resolve().parents[1]  # the c4c under test (its child processes run the same)

# --- how a case ends -----------------------------------------------------------------------------

CLEAR, HANDLED = "clear error", "handled"        # the two good endings
TRACEBACK, SEGFAULT, SILENT, UNCLEAR = "traceback", "segfault", "silent accept", "unclear error"


@dataclass
class Ran:
    """A finished child process: exit status and everything it printed."""

    rc: int
    out: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("error:")]


@dataclass
class Verdict:
    """How a case ended (``kind``), whether finished work was lost, and what was seen."""

    kind: str
    lost: bool = False
    detail: str = ""

    @property
    def good(self) -> bool:
        return self.kind in (CLEAR, HANDLED) and not self.lost


class Skip(Exception):
    """The case cannot run here (no tmpfs without root)."""


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", COLUMNS="400", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _limit(fsize: int | None):
    if fsize is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))


def c4c_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "c4c.cli", *map(str, args)]


def run_c4c(*args, cwd: Path | None = None, fsize: int | None = None, timeout: float = 300) -> Ran:
    """Run ``c4c ARGS`` in a child process."""
    p = subprocess.run(c4c_cmd(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
                       preexec_fn=_limit(fsize))
    return Ran(p.returncode, p.stdout + p.stderr)


def start_c4c(*args, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``c4c ARGS`` in a child process of its own process group (to SIGKILL it with its ffmpegs)."""
    return subprocess.Popen(c4c_cmd(*args), cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


# A reader as the commands read frames: FrameStore, with C4CError printed as the CLI prints it. It prints
# a digest of each video's frames and timestamps (the answer compared), as the last line, in JSON.
_READ_ALL = textwrap.dedent("""
    import hashlib, json, sys
    from c4c.errors import C4CError
    from c4c.video.store import FrameStore
    try:
        with FrameStore(sys.argv[1]) as fs:
            digests = {vid: hashlib.sha1(fs.read(vid).tobytes() + fs.timestamps(vid).tobytes()).hexdigest()
                       for vid in fs.ids()}
    except C4CError as exc:
        print("error: " + exc.render(), file=sys.stderr)
        sys.exit(2)
    print(json.dumps(digests))
""")


def read_store(store: Path) -> tuple[Ran, dict[str, str] | None]:
    """Read every frame and timestamp of ``store`` in a child process: ``(ran, {video id: digest})``."""
    p = subprocess.run([sys.executable, "-c", _READ_ALL, str(store)], env=_env(), capture_output=True, text=True,
                       timeout=120)
    ran = Ran(p.returncode, p.stdout + p.stderr)
    if p.returncode != 0:
        return ran, None
    return ran, json.loads(p.stdout.strip().splitlines()[-1])


def crashed(ran: Ran) -> str | None:
    """SEGFAULT or TRACEBACK when the process died by a signal or printed a traceback, else None."""
    if ran.rc < 0 or ran.rc >= 128:
        return SEGFAULT
    if "Traceback" in ran.out:
        return TRACEBACK
    return None


def judge(ran: Ran, *, rc: int, says: tuple[str, ...], lost: bool = False) -> Verdict:
    """A case that must fail: exit status ``rc`` and one ``error:`` line holding every piece of ``says``."""
    detail = f"exit {ran.rc}: {ran.out.strip()[-600:]}"
    bad = crashed(ran)
    if bad:
        return Verdict(bad, lost, detail)
    if ran.rc == 0:
        return Verdict(SILENT, lost, detail)
    errors = ran.errors
    if ran.rc == rc and len(errors) == 1 and all(s in errors[0] for s in says):
        return Verdict(CLEAR, lost, errors[0])
    return Verdict(UNCLEAR, lost, f"expected exit {rc} and one error line with {says}; {detail}")


def judge_ok(ran: Ran, *, right: bool, says: tuple[str, ...] = (), lost: bool = False, why: str = "") -> Verdict:
    """A case that must succeed: exit 0, the right answer (``right``), and ``says`` in what it printed."""
    detail = f"exit {ran.rc}: {why} {ran.out.strip()[-600:]}"
    bad = crashed(ran)
    if bad:
        return Verdict(bad, lost, detail)
    if ran.rc != 0:
        return Verdict(UNCLEAR, lost, detail)
    missing = [s for s in says if s not in ran.out]
    if not right or missing:
        return Verdict(SILENT, lost, f"{'wrong answer; ' if not right else ''}not said: {missing}; {detail}")
    return Verdict(HANDLED, lost, why or "ok")


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (Skip when this process may not mount)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise Skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise Skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name or ".merge-" in p.name]


# --- the material: small videos, stores and datasets, made once ------------------------------------


def noise_video(path: Path, seed: int, frames: int = 20, fps: float = 10, size: tuple[int, int] = (64, 48)) -> Path:
    """A lossless video of random pixels: every file differs from every other."""
    w, h = size
    data = np.random.default_rng(seed).integers(0, 256, (frames, h, w, 3), dtype=np.uint8)
    return encode_frames(path, data, fps)


class Workspace:
    """Inputs shared by the cases (built on first use) and a fresh folder per case."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self._references: dict[str, tuple[Path, dict[str, str]]] = {}

    def fresh(self, name: str) -> Path:
        self._count += 1
        d = self.root / f"case{self._count:02d}-{name}"
        d.mkdir(parents=True)
        return d

    def noise_set(self, folder: str, names: list[str], *, first_seed: int = 0, frames: int = 20) -> Path:
        """``root/folder/NAME.mp4`` for each name: small videos of random pixels at 10 fps, seeded in turn."""
        d = self.root / folder
        d.mkdir()
        for i, name in enumerate(names):
            noise_video(d / f"{name}.mp4", seed=first_seed + i, frames=frames)
        return d

    @cached_property
    def clips(self) -> Path:
        """Six small videos of random pixels, 2 s each at 10 fps."""
        return self.noise_set("clips", [f"clip{i}" for i in range(6)])

    def reference_store(self, videos: Path, name: str) -> Path:
        """``videos`` extracted at 2 fps, 32 px, raw, in one uninterrupted run: the answer a case compares with."""
        out = self.root / f"{name}-ref" / "frames.h5"
        ran = run_c4c("extract", videos, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw", "-q")
        assert ran.rc == 0, ran.out
        return out

    @staticmethod
    def digests(store: Path) -> dict[str, str]:
        """``{video id: digest}`` of every video of ``store`` (:func:`read_store`), which must be readable."""
        ran, frames = read_store(store)
        assert frames is not None, ran.out
        return frames

    def reference(self, videos: str) -> tuple[Path, dict[str, str]]:
        """``(store, digests)`` of the video set ``videos`` (``"clips"`` or ``"many"``) extracted in one
        uninterrupted run (:meth:`reference_store`): the answer a case compares with; made once."""
        if videos not in self._references:
            store = self.reference_store(getattr(self, videos), videos)
            self._references[videos] = (store, self.digests(store))
        return self._references[videos]

    @cached_property
    def shard_set(self) -> Path:
        """The clips as a set of 2 shards (raw, 32 px, 2 fps)."""
        out = self.root / "clips-shards" / "frames"
        assert run_c4c("extract", self.clips, "--out", out, "--shards", 2, "--size", 32, "--fps", 2, "--codec", "raw",
                       "-q").rc == 0
        return out

    @cached_property
    def staged(self) -> Path:
        """A store of the clips but clip3, whose part is staged as a killed run leaves it (folder of both)."""
        from c4c.video import staging
        from c4c.video.decode import sample_video
        from c4c.video.layout import read_settings

        d = self.root / "staged"
        src = d / "src"
        shutil.copytree(self.clips, src)
        (src / "clip3.mp4").unlink()
        out = d / "frames.h5"
        assert run_c4c("extract", src, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw", "-q").rc == 0
        staging.write_part(staging.parts_dir_for(out), "clip3",
                           sample_video(self.clips / "clip3.mp4", fps=2, size=32, codec="raw"), read_settings(out),
                           str(self.clips / "clip3.mp4"))
        shutil.rmtree(src)
        return d

    @cached_property
    def many(self) -> Path:
        """20 distinct small videos (for kills and two writers)."""
        return self.noise_set("many", [f"m{i:02d}" for i in range(20)], first_seed=100, frames=30)

    @cached_property
    def big(self) -> Path:
        """30 copies of a 6 s 320x240 video: 27 MB of raw 224 px frames, more than the small disks hold."""
        d = self.root / "big"
        d.mkdir()
        first = lavfi_video(d / "v00.mp4", 6.0)
        for i in range(1, 30):
            shutil.copy(first, d / f"v{i:02d}.mp4")
        return d

    @cached_property
    def big_digest(self) -> str:
        """The digest every video of :attr:`big` has (raw, 224 px, 1 fps), as :func:`read_store` gives it."""
        out = self.root / "big-one" / "frames.h5"
        one = self.root / "big-one" / "src"
        one.mkdir(parents=True)
        shutil.copy(self.big / "v00.mp4", one)
        assert run_c4c("extract", one, "--out", out, "--codec", "raw", "--size", 224, "-q").rc == 0
        return read_store(out)[1]["v00"]

    @cached_property
    def retrieval(self) -> tuple[Path, Path]:
        """A synthetic captioned dataset and its frames (32 px, 2 fps): ``(annotations, FRAMES.h5)``."""
        d = self.root / "retrieval"
        assert run_c4c("synth", d / "synth", "--count", 12, "--seed", 5, "--duration", 2, "--width", 64,
                       "--height", 48, "-q").rc == 0
        frames = d / "frames.h5"
        assert run_c4c("extract", d / "synth" / "videos", "--out", frames, "--size", 32, "--fps", 2, "-q").rc == 0
        return d / "synth" / "annotations.jsonl", frames

    @cached_property
    def howto(self) -> tuple[Path, Path]:
        """A synthetic HowTo100M corpus and its frames as 2 shards: ``(folder, FRAMES/)``."""
        d = self.root / "howto"
        assert run_c4c("synth", d / "corpus", "--kind", "howto", "--count", 8, "--seed", 2, "--duration", 20,
                       "--fps", 4, "--width", 64, "--height", 48, "-q").rc == 0
        frames = d / "frames"
        assert run_c4c("extract", d / "corpus" / "videos", "--out", frames, "--shards", 2, "--size", 32,
                       "-q").rc == 0
        return d / "corpus", frames

    def finetune_args(self, out: Path) -> list:
        ann, frames = self.retrieval
        return ["finetune", "--dataset", "jsonl", "--ann", ann, "--frames", frames, "--out", out, "--clip", "tiny",
                "--pretrained", "none", "--epochs", 2, "--batch-size", 4, "--lr", "1e-3", "--save-every", 1,
                "--workers", 0, "--temporal-layers", 1, "--sim", "seqTransf", "--train-order", "shuffle", "-q"]

    def pretrain_args(self, out: Path) -> list:
        corpus, frames = self.howto
        return ["pretrain", "--ann", corpus, "--frames", frames, "--out", out, "--clip", "tiny", "--pretrained",
                "none", "--steps", 4, "--batch-size", 2, "--lr", "1e-3", "--save-every", 1, "--workers", 0, "-q"]

    @staticmethod
    def in_process(stage_run: Callable, config) -> Path:
        """Run a stage in this process on one thread, as the child processes run it (the same sums in the
        same order), without paying for another start of torch; ``config.out``."""
        with one_thread():
            stage_run(config)
        return Path(config.out)

    @cached_property
    def finetuned(self) -> Path:
        """An uninterrupted run of :meth:`finetune_args` (the answer a killed and resumed one must give)."""
        from c4c.stages.finetune import FinetuneConfig, run

        ann, frames = self.retrieval
        return self.in_process(run, FinetuneConfig(
            dataset="jsonl", ann=ann, frames=frames, out=self.root / "finetune-full", clip="tiny", pretrained="none",
            epochs=2, batch_size=4, lr=1e-3, save_every=1, workers=0, temporal_layers=1, sim="seqTransf",
            train_order="shuffle"))

    @cached_property
    def pretrained(self) -> Path:
        """An uninterrupted run of :meth:`pretrain_args`."""
        from c4c.stages.pretrain import PretrainConfig, run

        corpus, frames = self.howto
        return self.in_process(run, PretrainConfig(
            ann=corpus, frames=frames, out=self.root / "pretrain-full", clip="tiny", pretrained="none", steps=4,
            batch_size=2, lr=1e-3, save_every=1, workers=0))


@contextlib.contextmanager
def one_thread():
    """torch on one thread, as the child processes (OMP_NUM_THREADS=1): the same sums in the same order."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def same_frames(a: dict[str, str] | None, b: dict[str, str]) -> bool:
    return a == b


def stored_ids(store: Path) -> set[str]:
    import h5py

    with h5py.File(store, "r") as f:
        return set(f["videos"].keys())


def latest_weights(run_dir: Path) -> dict:
    from c4c.run import checkpoint

    return checkpoint.load_model_state(checkpoint.latest(run_dir))


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the cases ----------------------------------------------------------------------------------

def registry() -> tuple[dict[str, Callable[[Workspace], Verdict]], Callable]:
    """A suite's ``(CASES, case)``: its cases by name (``bench/fault_tally.py`` counts every suite's) and
    the decorator ``@case(name)`` that registers one."""
    cases: dict[str, Callable[[Workspace], Verdict]] = {}

    def case(name: str):
        def register(fn: Callable[[Workspace], Verdict]) -> Callable[[Workspace], Verdict]:
            cases[name] = fn
            return fn
        return register

    return cases, case


def check_case(cases: dict[str, Callable[[Workspace], Verdict]], ws: Workspace, name: str) -> None:
    """Run one registered case as a test: skipped where it cannot run here, else it must end well."""
    try:
        verdict = cases[name](ws)
    except Skip as why:
        pytest.skip(str(why))
    assert verdict.good, f"{name}: {verdict.kind}{' and finished work lost' if verdict.lost else ''}: {verdict.detail}"
