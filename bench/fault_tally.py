"""Run every fault and misuse case of the test suites and print how each ended, then the tally.

The cases live with the tests that keep them passing: tests/test_faults.py (full disks, kills, damaged
and hostile files), tests/test_misuse.py (every command that writes x every wrong place for its
output), tests/test_interrupt.py (Ctrl-C), tests/test_silent.py (values that must not be taken
silently), tests/test_library_misuse.py (libraries and saved settings) and tests/test_resume_options.py
(--resume with options left out): every module of SUITES that defines ``CASES``.

    python bench/fault_tally.py                 # all cases (about 3 minutes on 2 CPU cores)
    python bench/fault_tally.py --only "disk"   # the cases whose name holds "disk"
    python bench/fault_tally.py --list

Each case injects one fault (a full disk, SIGKILL, a second writer, a damaged or hostile file) into a
c4c child process and is judged as the tests judge it: a clear error (the exit status and one line
``error: FILE: problem (hint)``), handled (the right answer, and it said what it skipped, warned or
resumed), a traceback, a segfault (death by a signal), a silent accept (exit 0 with a wrong answer or
without a word), or an unclear error (failed, but not with one line naming the file); and separately
whether finished work was lost. The target: 0 tracebacks, 0 segfaults, 0 silent accepts, 0 lost.
Full-disk cases mount tmpfs file systems: run as root, or they are counted as skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import importlib  # noqa: E402

import helpers as faults  # noqa: E402  (the harness the cases share; the cases live with their tests)

SUITES = ("test_faults", "test_misuse", "test_interrupt", "test_silent", "test_library_misuse",
          "test_resume_options")


def suites() -> list[tuple[str, dict, type]]:
    """``(module, its CASES, the Workspace class its cases take)`` of every suite that is there."""
    found = []
    for name in SUITES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        cases = getattr(module, "CASES", None)
        if cases:
            workspace = next((v for v in vars(module).values() if isinstance(v, type)
                              and issubclass(v, faults.Workspace) and v is not faults.Workspace
                              and v.__module__ == name), faults.Workspace)
            found.append((name, cases, workspace))
    return found

ROWS = (("clear errors", faults.CLEAR), ("handled (right answer, said so)", faults.HANDLED),
        ("tracebacks", faults.TRACEBACK), ("segfaults", faults.SEGFAULT), ("silent accepts", faults.SILENT),
        ("unclear errors", faults.UNCLEAR), ("hangs (past the time limit)", "hang"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only the cases whose name holds this text")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed at the end)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the cases capture the warnings they check
    plan = [(module, name, cases[name], workspace) for module, cases, workspace in suites()
            for name in cases if args.only.lower() in name.lower()]
    names = [name for _, name, _, _ in plan]
    if args.list:
        print("\n".join(f"{module}: {name}" for module, name, _, _ in plan))
        return
    root = Path(tempfile.mkdtemp(prefix="c4c-faults-"))
    spaces: dict[str, faults.Workspace] = {}
    kinds: dict[str, int] = {}
    lost = skipped = broken = 0
    t0 = time.perf_counter()
    try:
        for module, name, run_case, workspace in plan:
            ws = spaces.setdefault(module, workspace(root / module))
            t = time.perf_counter()
            try:
                verdict = run_case(ws)
            except faults.Skip as why:
                skipped += 1
                print(f"{'skipped':15s}       {time.perf_counter() - t:5.1f}s  {name}: {why}", flush=True)
                continue
            except Exception as exc:  # the harness itself failed: never counted as a good ending
                broken += 1
                print(f"{'harness error':15s}       {time.perf_counter() - t:5.1f}s  {name}: "
                      f"{type(exc).__name__}: {exc}", flush=True)
                continue
            kinds[verdict.kind] = kinds.get(verdict.kind, 0) + 1
            lost += verdict.lost
            detail = " ".join(verdict.detail.split())[:220]
            print(f"{verdict.kind:15s} {'LOST ' if verdict.lost else '     '} {time.perf_counter() - t:5.1f}s  "
                  f"{name}: {detail}", flush=True)
    finally:
        for ws in spaces.values():
            if hasattr(ws, "unmount_all"):
                ws.unmount_all()
        if args.keep:
            print(f"work folder: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{'cases tried':32s} {len(names) - skipped:4d}")
    for label, kind in ROWS:
        print(f"{label:32s} {kinds.get(kind, 0):4d}")
    print(f"{'finished work lost':32s} {lost:4d}")
    if skipped or broken:
        print(f"{'skipped (not root)':32s} {skipped:4d}")
        print(f"{'harness errors':32s} {broken:4d}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
