"""Faults and hostile files: full disks, SIGKILL, two writers, damaged files and hostile names.

Every case runs c4c in a child process (so that a segfault is seen as one) and is judged the same way
(:func:`judge`): a case that must fail ends with its exit status and ONE line ``error: FILE: problem``
naming the file, never a traceback or a signal; a case that must succeed gives the right answer (the
frames of the right file, the weights of an uninterrupted run) and says what it skipped or changed;
and in every case nothing that was finished is lost. ``bench/fault_tally.py`` runs the same cases and
prints the tally. Cases for EMB.h5 and index folders are not here yet (their owner is changing them).

The full-disk cases mount small tmpfs file systems and are skipped when that is not allowed (not root).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest


from helpers import (CLEAR, UNCLEAR, Ran, Verdict, Workspace, _env, check_case, judge, judge_ok, latest_weights,
                     noise_video, read_store, registry, run_c4c, same_frames, same_weights, start_c4c, stored_ids,
                     temp_files, tmpfs)

CASES, case = registry()


# full disks

def _videos(n: int) -> str:
    return f"{n} video" + ("" if n == 1 else "s")


def _disk_full_extract(ws: Workspace, size: str, *extra) -> Verdict:
    d = ws.fresh("diskfull")
    with tmpfs(d / "disk", size) as disk:
        out = disk / "frames.h5"
        ran = run_c4c("extract", ws.big, "--out", out, "--codec", "raw", "--size", 224, "-j", 1, "-q", *extra)
        leftovers = temp_files(disk)
        kept = sorted(p.name for p in (disk / "frames.h5.parts").glob("*.h5"))
        said = next(iter(ran.errors), "")
        counted = f"{_videos(len(kept))} finished and kept in {out}.parts/" in said if kept else True
        # nothing lost: moved to a disk with room, one more run merges what was kept and does the rest
        roomy = d / "roomy"
        shutil.copytree(disk, roomy)
    again = run_c4c("extract", ws.big, "--out", roomy / "frames.h5", "--codec", "raw", "--size", 224, "-q")
    _, frames = read_store(roomy / "frames.h5")
    ok_after = again.rc == 0 and frames == {p.stem: ws.big_digest for p in ws.big.glob("*.mp4")}
    verdict = judge(ran, rc=1, says=(str(out), "no space left on device", "free space and re-run"),
                    lost=not ok_after)
    if verdict.kind == CLEAR and (leftovers or not counted):
        verdict = Verdict(UNCLEAR, verdict.lost, f"temp files left: {leftovers}; parts kept {len(kept)}, said: {said}")
    return verdict


@case("disk full (20 MB) while extracting")
def _(ws):
    return _disk_full_extract(ws, "20m")


@case("disk full (20 MB) while merging every 3 videos")
def _(ws):
    return _disk_full_extract(ws, "20m", "--commit-every", 3)


@case("disk full (5 MB) while extracting")
def _(ws):
    return _disk_full_extract(ws, "5m")


@case("file size limit (RLIMIT_FSIZE 4 MB) at the merge")
def _(ws):
    d = ws.fresh("fsize")
    out = d / "frames.h5"
    ran = run_c4c("extract", ws.big, "--out", out, "--codec", "raw", "--size", 224, "-j", 1, "-q", fsize=4_000_000)
    kept = len(list((d / "frames.h5.parts").glob("*.h5")))
    again = run_c4c("extract", ws.big, "--out", out, "--codec", "raw", "--size", 224, "-q")
    lost = again.rc != 0 or len(stored_ids(out)) != len(list(ws.big.glob("*.mp4")))
    verdict = judge(ran, rc=1, says=(str(out), "file size limit", f"{_videos(kept)} finished and kept"), lost=lost)
    if verdict.kind == CLEAR and temp_files(d):
        return Verdict(UNCLEAR, lost, f"temp files left: {temp_files(d)}")
    return verdict


@case("disk full before the store is created")
def _(ws):
    d = ws.fresh("nospace")
    with tmpfs(d / "disk", "1m") as disk:
        with open(disk / "filler", "wb", buffering=0) as fh:  # fill it to the last byte
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 4096)
        out = disk / "frames.h5"
        ran = run_c4c("extract", ws.clips, "--out", out, "--size", 32, "-q")
        leftovers = temp_files(disk)
    verdict = judge(ran, rc=1, says=(str(out), "no space left on device"))
    if verdict.kind == CLEAR and leftovers:
        return Verdict(UNCLEAR, False, f"temp files left: {leftovers}")
    return verdict


@case("disk full while writing JSON through c4c.atomic")
def _(ws):
    d = ws.fresh("json")
    script = textwrap.dedent("""
        import sys
        from c4c.atomic import write_json
        from c4c.errors import C4CError
        target = sys.argv[1]
        write_json(target, {"old": True})
        try:
            write_json(target, {"new": "x" * 3_000_000})
        except C4CError as exc:
            print("error: " + exc.render(), file=sys.stderr)
            sys.exit(1)
    """)
    with tmpfs(d / "disk", "2m") as disk:
        target = disk / "summary.json"
        p = subprocess.run([sys.executable, "-c", script, str(target)], env=_env(), capture_output=True, text=True)
        ran = Ran(p.returncode, p.stdout + p.stderr)
        kept = target.is_file() and json.loads(target.read_text()) == {"old": True}
        leftovers = temp_files(disk)
    verdict = judge(ran, rc=1, says=(str(target), "no space left on device", "keeps its previous content"),
                    lost=not kept)
    if verdict.kind == CLEAR and leftovers:
        return Verdict(UNCLEAR, not kept, f"temp files left: {leftovers}")
    return verdict


@case("disk full while saving a finetune checkpoint")
def _(ws):
    d = ws.fresh("ckpt")
    args = ws.finetune_args(d / "disk" / "run")
    with tmpfs(d / "disk", "12m") as disk:
        ran = run_c4c(*args)
        run_dir = disk / "run"
        leftovers = [p for p in run_dir.rglob("*") if ".tmp-" in p.name]
        roomy = d / "roomy"
        shutil.copytree(run_dir, roomy)
    from c4c.errors import C4CError
    from c4c.run import checkpoint

    newest = checkpoint.latest(roomy)
    said = next(iter(ran.errors), "")
    names_kept = newest is not None and f"the previous checkpoint {newest.name} (named by latest.json) is intact" in said
    try:  # nothing lost: the checkpoint it names is whole, weights and training state
        checkpoint.load_model_state(newest)
        checkpoint.load_train_state(newest)
        lost = False
    except (C4CError, TypeError):
        lost = True
    # exit 1: a full disk is the machine's fault, not the input's (DiskFull.exit_code, c4c/cli/app.py)
    verdict = judge(ran, rc=1, says=("checkpoints/step-", "no space left on device", "resume with --resume"),
                    lost=lost)
    if verdict.kind == CLEAR and (leftovers or not names_kept):
        return Verdict(UNCLEAR, lost, f"temp folders {leftovers}; previous checkpoint named: {names_kept}; {said}")
    return verdict


# SIGKILL at random moments, then resume: the answer of an uninterrupted run

def _kill_at_random(args: list, ready: Callable[[], bool], rng: random.Random, kills: int, spread: float,
                    after_each: Callable[[], str | None]) -> tuple[int, str | None]:
    """Start ``args`` (with --resume after the first), SIGKILL it a random time after ``ready()``; ``kills``
    times. Returns (kills made, the first problem ``after_each`` found)."""
    made = 0
    for k in range(kills):
        proc = start_c4c(*args, *(["--resume"] if k and "--resume" not in args and args[0] != "extract" else []))
        started = time.monotonic()
        while proc.poll() is None and not ready() and time.monotonic() - started < 120:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, spread))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            made += 1
        proc.communicate()
        problem = after_each()
        if problem:
            return made, problem
    return made, None


@case("SIGKILL extract at random moments, then resume")
def _(ws):
    d = ws.fresh("kill-extract")
    out = d / "frames.h5"
    args = ["extract", ws.many, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw", "--commit-every", 1,
            "--workers", 2, "-q"]
    seen: set[str] = set()

    def check() -> str | None:
        nonlocal seen
        if not out.exists():
            return None
        now = stored_ids(out)
        if not seen <= now:
            return f"finished videos lost: {sorted(seen - now)}"
        seen = now
        return None

    made, problem = _kill_at_random(args, lambda: (d / "frames.h5.parts").exists(), random.Random(1), 4, 0.6, check)
    final = run_c4c(*args)
    _, frames = read_store(out)
    return judge_ok(final, right=same_frames(frames, ws.reference("many")[1]), lost=problem is not None,
                    why=f"{made} kills; {problem or 'nothing lost'}")


def _kill_training(ws: Workspace, name: str, args_of: Callable[[Path], list], reference: Path) -> Verdict:
    from c4c.errors import C4CError
    from c4c.run import checkpoint

    d = ws.fresh(name)
    run_dir = d / "run"
    steps: list[int] = []

    def check() -> str | None:
        try:
            folder = checkpoint.latest(run_dir)
            step = int(checkpoint.load_meta(folder)["step"]) if folder else 0
            if folder:
                checkpoint.load_model_state(folder)
        except C4CError as exc:
            return f"unreadable checkpoint after a kill: {exc}"
        if steps and step < steps[-1]:
            return f"the newest checkpoint went back from step {steps[-1]} to {step}"
        steps.append(step)
        return None

    made, problem = _kill_at_random(args_of(run_dir), lambda: (run_dir / "latest.json").exists(),
                                    random.Random(len(name)), 2, 1.5, check)
    final = run_c4c(*args_of(run_dir), "--resume")
    right = final.rc == 0 and same_weights(latest_weights(run_dir), latest_weights(reference))
    return judge_ok(final, right=right, lost=problem is not None,
                    why=f"{made} kills at steps {steps}; {problem or 'nothing lost'}")


@case("SIGKILL finetune at random moments, then resume")
def _(ws):
    return _kill_training(ws, "kill-finetune", ws.finetune_args, ws.finetuned)


@case("SIGKILL pretrain at random moments, then resume")
def _(ws):
    return _kill_training(ws, "kill-pretrain", ws.pretrain_args, ws.pretrained)


# two writers

def _slow_source(ws: Workspace, d: Path, n: int = 60) -> Path:
    src = d / "slow"
    src.mkdir()
    for i in range(n):  # hard links: many videos, no disk
        os.link(ws.many / f"m{i % 20:02d}.mp4", src / f"s{i:02d}.mp4")
    return src


def _wait_for_lock(lock: Path, proc: subprocess.Popen) -> None:
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() - started < 60:
        if lock.exists() and lock.read_text(errors="replace").startswith("pid"):
            return
        time.sleep(0.01)


@case("two extract runs into one store")
def _(ws):
    d = ws.fresh("two-writers")
    out = d / "frames.h5"
    first = start_c4c("extract", _slow_source(ws, d), "--out", out, "--size", 32, "-j", 1, "--batch", 1, "-q")
    _wait_for_lock(d / "frames.h5.lock", first)
    second = run_c4c("extract", ws.clips, "--out", out, "--size", 32, "-q", timeout=60)
    first.communicate()
    lost = first.returncode != 0 or len(stored_ids(out)) != 60
    return judge(second, rc=2, says=(str(out), f"pid {first.pid} on host {socket.gethostname()}", "--wait"),
                 lost=lost)


@case("two extract runs into one store, the second with --wait")
def _(ws):
    d = ws.fresh("two-writers-wait")
    out = d / "frames.h5"
    first = start_c4c("extract", _slow_source(ws, d), "--out", out, "--size", 32, "-j", 1, "--batch", 1, "-q")
    _wait_for_lock(d / "frames.h5.lock", first)
    second = run_c4c("extract", ws.clips, "--out", out, "--size", 32, "--wait", timeout=120)
    first.communicate()
    right = first.returncode == 0 and stored_ids(out) == {f"s{i:02d}" for i in range(60)} | {f"clip{i}" for i in range(6)}
    return judge_ok(second, right=right, says=("waiting for c4c extract",), why="both runs' videos are in the store")


@case("two machines on other shards, and a third on a taken shard")
def _(ws):
    d = ws.fresh("shards")
    out = d / "frames"
    src = _slow_source(ws, d)
    common = ["--out", out, "--shards", 2, "--size", 32, "-j", 1, "--batch", 1, "-q"]
    first = start_c4c("extract", src, *common, "--shard-index", 0)
    _wait_for_lock(out / "frames-00000-of-00002.h5.lock", first)
    other = start_c4c("extract", src, *common, "--shard-index", 1)
    taken = run_c4c("extract", src, *common, "--shard-index", 0, timeout=60)
    first.communicate()
    other.communicate()
    from c4c.video.store import FrameStore

    with FrameStore(out) as fs:
        complete = len(fs) == 60
    lost = first.returncode != 0 or other.returncode != 0 or not complete
    return judge(taken, rc=2, says=("frames-00000-of-00002.h5", f"pid {first.pid}"), lost=lost)


@case("a garbage lock file left behind")
def _(ws):
    d = ws.fresh("lockfile")
    out = d / "frames.h5"
    (d / "frames.h5.lock").write_bytes(os.urandom(300))
    ran = run_c4c("extract", ws.clips, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw", "-q")
    _, frames = read_store(out)
    return judge_ok(ran, right=same_frames(frames, ws.reference("clips")[1]) and not (d / "frames.h5.lock").exists())


# damaged files c4c wrote: FRAMES.h5, the shard manifest, staged parts

def _copy_store(ws: Workspace, d: Path) -> Path:
    out = d / "frames.h5"
    shutil.copy(ws.reference("clips")[0], out)
    return out


def _damage(path: Path, how: str, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    n = len(data)
    if how == "truncated":
        data = data[: n // 2]
    elif how == "empty":
        data = bytearray()
    elif how == "garbage":
        data = bytearray(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    elif how == "garbage header":
        data[:2048] = rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    elif how == "garbage metadata":  # the first 4 kB after the superblock: object headers, B-trees, heaps
        data[96:4096] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    elif how.startswith("garbage at "):  # a block of random bytes at a fraction of the file
        at = int(n * float(how.split()[-1]))
        data[at:at + 512] = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
    else:
        raise ValueError(how)
    path.write_bytes(bytes(data))


def _damaged_store_is_refused_on_read(ws: Workspace, how: str) -> Verdict:
    d = ws.fresh("store-read")
    out = _copy_store(ws, d)
    _damage(out, how)
    ran, frames = read_store(out)
    if ran.rc == 0:  # readable after all: every frame and timestamp must be the original's
        return judge_ok(ran, right=same_frames(frames, ws.reference("clips")[1]), why="damage missed the data")
    return judge(ran, rc=2, says=(str(out),))


for _how in ("truncated", "empty", "garbage", "garbage header", "garbage metadata", "garbage at 0.3",
             "garbage at 0.5", "garbage at 0.7", "garbage at 0.9"):
    case(f"FRAMES.h5 {_how}, read")(lambda ws, how=_how: _damaged_store_is_refused_on_read(ws, how))


@case("FRAMES.h5 (jpeg) garbage in the frames, read")
def _(ws):
    d = ws.fresh("store-jpeg")
    out = d / "frames.h5"
    assert run_c4c("extract", ws.clips, "--out", out, "--size", 32, "--fps", 2, "-q").rc == 0
    _, before = read_store(out)
    _damage(out, "garbage at 0.6")
    ran, frames = read_store(out)
    if ran.rc == 0:
        return judge_ok(ran, right=same_frames(frames, before), why="damage missed the data")
    return judge(ran, rc=2, says=(str(out),))


@case("FRAMES.h5 truncated by a crash elsewhere, re-extract")
def _(ws):
    from c4c.video import staging
    from c4c.video.decode import sample_video
    from c4c.video.layout import read_settings

    d = ws.fresh("store-truncated")
    out = _copy_store(ws, d)
    settings = read_settings(out)
    extra = d / "gone.mp4"  # finished by an interrupted run whose video is no longer there
    noise_video(extra, seed=77)
    staging.write_part(staging.parts_dir_for(out), "gone", sample_video(extra, fps=2, size=32, codec="raw"),
                       settings, str(extra))
    extra.unlink()
    _damage(out, "truncated")
    args = ["extract", ws.clips, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw", "-q"]
    ran = run_c4c(*args)
    # as the message says: move it aside and re-run; the staged video is merged into the new store
    out.rename(d / "frames.h5.damaged")
    again = run_c4c(*args)
    lost = again.rc != 0 or stored_ids(out) != {f"clip{i}" for i in range(6)} | {"gone"}
    return judge(ran, rc=2, says=(str(out), "move it aside", "merged into a new store"), lost=lost)


def _shard_set(ws: Workspace, d: Path) -> Path:
    out = d / "frames"
    shutil.copytree(ws.shard_set, out)
    return out


@case("shard file truncated, read")
def _(ws):
    d = ws.fresh("shard-truncated")
    out = _shard_set(ws, d)
    shard = out / "frames-00001-of-00002.h5"
    _damage(shard, "truncated")
    ran, _ = read_store(out)
    return judge(ran, rc=2, says=(str(shard),))


@case("shard file garbage in the frames, read")
def _(ws):
    d = ws.fresh("shard-garbage")
    out = _shard_set(ws, d)
    shard = out / "frames-00000-of-00002.h5"
    size = shard.stat().st_size
    _damage(shard, "garbage at 0.5")
    manifest = json.loads((out / "manifest.json").read_text())
    assert shard.stat().st_size == size and manifest
    ran, frames = read_store(out)
    if ran.rc == 0:
        return judge_ok(ran, right=same_frames(frames, ws.reference("clips")[1]), why="damage missed the data")
    return judge(ran, rc=2, says=(str(shard),))


_MANIFESTS = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "garbage": lambda text: os.urandom(len(text)).decode("latin-1"),
    "not an object": lambda text: "[1, 2, 3]",
    "deeply nested": lambda text: "[" * 100_000 + "]" * 100_000,
    "huge num_shards": lambda text: text.replace('"num_shards": 2', '"num_shards": 1e400'),
    "shards not a list": lambda text: json.dumps({**json.loads(text), "shards": {"a": json.loads(text)["shards"]}}),
    "videos not a list": lambda text: json.dumps({**json.loads(text), "shards": [
        {**s, "videos": 5} for s in json.loads(text)["shards"]]}),
    "bytes not a number": lambda text: json.dumps({**json.loads(text), "shards": [
        {**s, "bytes": "many"} for s in json.loads(text)["shards"]]}),
    "a shard outside the folder": lambda text: json.dumps({**json.loads(text), "shards": [
        {**s, "file": "../" + s["file"]} for s in json.loads(text)["shards"]]}),
    "settings null": lambda text: json.dumps({**json.loads(text), "settings": None}),
}

for _how in _MANIFESTS:
    def _manifest_case(ws, how=_how):
        d = ws.fresh("manifest")
        out = _shard_set(ws, d)
        manifest = out / "manifest.json"
        text = manifest.read_text()
        manifest.write_text(_MANIFESTS[how](text), encoding="latin-1")
        ran, _ = read_store(out)
        return judge(ran, rc=2, says=(str(manifest),))
    case(f"shard manifest {_how}, read")(_manifest_case)


def _staged_part(ws: Workspace, d: Path) -> tuple[Path, Path]:
    """A store of the clips but clip3, whose part is staged as by a killed run: ``(store, part)``."""
    shutil.copytree(ws.staged, d, dirs_exist_ok=True)
    out = d / "frames.h5"
    return out, next((d / "frames.h5.parts").glob("*.h5"))


def _damaged_part_is_redone(ws: Workspace, damage: Callable[[Path], None], says: tuple[str, ...]) -> Verdict:
    d = ws.fresh("part")
    out, part = _staged_part(ws, d)
    damage(part)
    ran = run_c4c("extract", ws.clips, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw")
    _, frames = read_store(out)
    return judge_ok(ran, right=same_frames(frames, ws.reference("clips")[1]), says=(str(part), *says),
                    why="the damaged part is dropped and its video extracted again")


for _how in ("truncated", "empty", "garbage", "garbage at 0.5", "garbage at 0.8"):
    case(f"staged part {_how}, re-extract")(
        lambda ws, how=_how: _damaged_part_is_redone(ws, lambda p: _damage(p, how), ("removing",)))


def _link_in_part(part: Path) -> None:
    import h5py

    with h5py.File(part, "r+") as f:
        g = f["videos"]
        name = list(g.keys())[0]
        del g[name]
        g[name] = h5py.ExternalLink("/etc/hostname", "/videos/x")


@case("staged part holding an external link, re-extract")
def _(ws):
    return _damaged_part_is_redone(ws, _link_in_part, ("removing", "external link"))


@case("staged part made with other settings, re-extract")
def _(ws):
    import h5py

    d = ws.fresh("part-settings")
    out, part = _staged_part(ws, d)
    with h5py.File(part, "r+") as f:
        f.attrs["size"] = 64
    ran = run_c4c("extract", ws.clips, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw", "-q")
    return judge(ran, rc=2, says=(str(part), "other settings"), lost=not part.exists())


# hostile contents and names

def _store_with(ws: Workspace, d: Path, change: Callable) -> Path:
    import h5py

    out = _copy_store(ws, d)
    with h5py.File(out, "r+") as f:
        change(f, h5py)
    return out


def _other_file(d: Path) -> Path:
    import h5py

    other = d / "other.h5"
    with h5py.File(other, "w") as f:
        g = f.create_group("videos/x")
        g["frames"] = np.full((4, 32, 32, 3), 255, np.uint8)
        g["timestamps"] = np.arange(4, dtype=np.float32)
    return other


@case("external link to another file's video in FRAMES.h5, read")
def _(ws):
    d = ws.fresh("extlink")
    other = _other_file(d)

    def change(f, h5py):
        del f["videos/clip1"]
        f["videos/clip1"] = h5py.ExternalLink(str(other), "/videos/x")
    out = _store_with(ws, d, change)
    ran, _ = read_store(out)
    return judge(ran, rc=2, says=(str(out), "'clip1'", "external link"))


@case("external link to another file's frames in FRAMES.h5, read")
def _(ws):
    d = ws.fresh("extlink-frames")
    other = _other_file(d)

    def change(f, h5py):
        del f["videos/clip2/frames"]
        f["videos/clip2/frames"] = h5py.ExternalLink(str(other), "/videos/x/frames")
    out = _store_with(ws, d, change)
    ran, _ = read_store(out)
    return judge(ran, rc=2, says=(str(out), "'clip2'", "external link"))


@case("soft link to another video in FRAMES.h5, read")
def _(ws):
    d = ws.fresh("softlink")

    def change(f, h5py):
        del f["videos/clip1"]
        f["videos/clip1"] = h5py.SoftLink("/videos/clip0")
    out = _store_with(ws, d, change)
    ran, _ = read_store(out)
    return judge(ran, rc=2, says=(str(out), "'clip1'", "soft link"))


@case("frames of another size than the store's, read")
def _(ws):
    d = ws.fresh("shape")

    def change(f, h5py):
        g = f["videos/clip4"]
        t = g["frames"].shape[0]
        del g["frames"], g["crc32"]
        g["frames"] = np.zeros((t, 16, 16, 3), np.uint8)
    out = _store_with(ws, d, change)
    ran, _ = read_store(out)
    return judge(ran, rc=2, says=(str(out), "'clip4'", "32"))


def _protocol_name(ws: Workspace, name: str) -> Verdict:
    """A file whose name ffmpeg could read as a protocol or an option: its own frames, or it failed alone."""
    d = ws.fresh("names")
    src = d / "src"
    src.mkdir()
    shutil.copy(ws.clips / "clip0.mp4", src / "y.mp4")
    shutil.copy(ws.clips / "clip5.mp4", src / name)
    ran = run_c4c("extract", ".", "--out", d / "frames.h5", "--size", 32, "--fps", 2, "--codec", "raw", "-q",
                  cwd=src)
    _, frames = read_store(d / "frames.h5")
    vid = Path(name).stem
    right = frames is not None and frames.get(vid) == ws.reference("clips")[1]["clip5"]
    return judge_ok(ran, right=right, why=f"{name} is extracted from its own bytes")


for _name in ("concat:y.mp4", "subfile:y.mp4", "http:y.mp4", "file:y.mp4", "-y.mp4", "pipe:0.mp4"):
    case(f"video named {_name}")(lambda ws, name=_name: _protocol_name(ws, name))


@case("hidden files and macOS resource forks in the video folder")
def _(ws):
    d = ws.fresh("hidden")
    src = d / "src"
    shutil.copytree(ws.clips, src)
    for name in ("..mp4", "._IMG_0001.MOV", ".hidden.mp4"):
        shutil.copy(ws.clips / "clip0.mp4", src / name)
    (src / "notes.txt").write_text("not a video\n")
    out = d / "frames.h5"
    ran = run_c4c("extract", src, "--out", out, "--size", 32, "--fps", 2, "--codec", "raw")
    summary = json.loads((d / "frames.extract.json").read_text()) if (d / "frames.extract.json").exists() else {}
    listed = {Path(x["path"]).name: x["reason"] for x in summary.get("ignored", [])}
    right = {"..mp4", "._IMG_0001.MOV", ".hidden.mp4", "notes.txt"} <= set(listed) and "resource fork" in listed.get(
        "._IMG_0001.MOV", "") and stored_ids(out) == {f"clip{i}" for i in range(6)}
    return judge_ok(ran, right=right, says=("skipped", "._IMG_0001.MOV", "..mp4", ".hidden.mp4"),
                    why=f"listed: {listed}")


def _annotations(ws: Workspace, name: str, text: str, dataset: str, says: tuple[str, ...]) -> Verdict:
    d = ws.fresh("ann")
    ann = d / name
    ann.write_text(text)
    ran = run_c4c("extract", ann, "--dataset", dataset, "--videos", ws.clips, "--out", d / "frames.h5", "-q")
    return judge(ran, rc=2, says=(str(ann), *says))


@case("empty annotation file")
def _(ws):
    return _annotations(ws, "ann.jsonl", "", "jsonl", ("no jsonl annotations",))


@case("annotation file of blank lines")
def _(ws):
    return _annotations(ws, "ann.jsonl", "\n   \n\n", "jsonl", ("no jsonl annotations",))


@case("empty HowTo100M caption.json")
def _(ws):
    d = ws.fresh("howto-ann")
    (d / "caption.json").write_text("  \n")
    (d / "HowTo100M_v1.csv").write_text("video_id,category_1\nclip0,Food and Entertaining\n")
    ran = run_c4c("extract", d, "--dataset", "howto100m", "--videos", ws.clips, "--out", d / "frames.h5", "-q")
    return judge(ran, rc=2, says=(str(d / "caption.json"), "empty file"))


@case("MSR-VTT CSV with only its header")
def _(ws):
    d = ws.fresh("msrvtt")
    (d / "MSRVTT_data.json").write_text(json.dumps({"videos": [{"video_id": "clip0"}],
                                                    "sentences": [{"video_id": "clip0", "caption": "noise"}]}))
    (d / "MSRVTT_train.9k.csv").write_text("video_id\n")
    (d / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\nk,v,clip0,noise\n")
    ran = run_c4c("extract", d, "--dataset", "msrvtt", "--videos", ws.clips, "--out", d / "frames.h5", "-q")
    return judge(ran, rc=2, says=(str(d / "MSRVTT_train.9k.csv"), "no rows"))


@case("224 px frames fed to a 32 px model")
def _(ws):
    import logging

    import torch

    from c4c.model.backbone import build_clip
    from c4c.model.clip4clip import CLIP4Clip

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("c4c.model.clip4clip")
    logger.addHandler(handler)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.WARNING)  # bench/fault_tally.py quiets the root logger to errors
    logger.propagate = False          # heard here only, not printed by the tally's own handler
    try:
        model = CLIP4Clip(build_clip("tiny", "none")[0], sim="meanP").eval()
        video, mask = torch.zeros(2, 3, 224, 224, 3, dtype=torch.uint8), torch.ones(2, 3)
        with torch.no_grad():
            for _ in range(3):
                model.encode_video(video, mask)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    warned = [m for m in seen if "224x224" in m and "the model takes 32 px" in m]
    return judge_ok(Ran(0, "\n".join(seen)), right=len(warned) == 1, why=f"{len(warned)} warnings: {seen}")


# --- the suite --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("faults"))


@pytest.mark.parametrize("name", list(CASES))
def test_fault_ends_clearly_and_loses_nothing(ws, name):
    check_case(CASES, ws, name)


# --- the pieces, one behaviour each -----------------------------------------------------------------


@pytest.mark.parametrize("exc, code", [
    (OSError(28, "No space left on device"), 28),
    (OSError(27, "File too large"), 27),
    (RuntimeError("Unable to synchronously copy object (file write failed: time = x, filename = 'f', "
                  "file descriptor = 3, errno = 28, error message = 'No space left on device')"), 28),
    (Exception("Error while serializing: I/O error: No space left on device (os error 28)"), 28),
    (OSError(13, "Permission denied"), None),
    (RuntimeError("errno = 2, error message = 'No such file or directory'"), None),
])
def test_a_write_that_ran_out_of_space_is_recognised_however_the_library_says_it(exc, code):
    from c4c.atomic import disk_full_errno

    assert disk_full_errno(exc) == code
    try:
        try:
            raise exc
        except Exception as inner:
            raise RuntimeError("while merging") from inner
    except RuntimeError as outer:
        assert disk_full_errno(outer) == code  # also when raised from another error


def test_a_full_disk_inside_atomic_path_keeps_the_old_content_and_names_the_target(tmp_path):
    from c4c.atomic import DiskFull, atomic_path, write_text

    target = tmp_path / "a.json"
    write_text(target, "old\n")
    with pytest.raises(DiskFull) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert info.value.render() == f"{target}: no space left on device (it keeps its previous content; free space " \
                                  "and run again)"
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_write_beyond_the_file_size_limit_is_refused_before_it_starts(tmp_path):
    script = textwrap.dedent("""
        import resource, sys
        from c4c.atomic import DiskFull, ensure_space
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
        try:
            ensure_space(sys.argv[1], 10, path=sys.argv[1] + "/big.h5", largest_file=2_000_000)
        except DiskFull as exc:
            print(exc.errno, exc.render())
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=_env(), capture_output=True, text=True)
    assert out.stdout.startswith("27 ") and "big.h5: file too large" in out.stdout and "file size limit is 1.0 MB" \
        in out.stdout, out.stderr
