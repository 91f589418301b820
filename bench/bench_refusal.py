"""How long each command takes to refuse a bad option, beside `python -c pass` and `import torch`.

Each row runs one command with one bad option in a fresh child process (the way a user meets it) and
keeps the fastest of --repeat runs (the machine is shared); every row must end with exit status 2 and
one line `error: --option VALUE: ...`. The target is 1 s or less per refusal (README: every command
resolves and checks its options before it imports torch, open_clip, faiss or h5py).

    .venv/bin/python bench/bench_refusal.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cases(tmp: Path) -> list[tuple[str, str, list[str]]]:
    """``(command, bad option, argv)``: inputs that do not exist, one bad number each."""
    missing, out = str(tmp / "missing"), str(tmp / "out")
    train = ["--dataset", "jsonl", "--ann", missing, "--frames", missing, "--out", out, "--clip", "tiny",
             "--pretrained", "none"]
    return [
        ("synth", "--duration nan", ["synth", out, "--duration", "nan"]),
        ("extract", "--fps inf", ["extract", missing, "--out", out, "--fps", "inf"]),
        ("finetune", "--batch-size 0", ["finetune", *train, "--batch-size", "0"]),
        ("finetune", "--grad-accum 4 (batch 6)", ["finetune", *train, "--batch-size", "6", "--grad-accum", "4"]),
        ("pretrain", "--lr nan", ["pretrain", "--ann", missing, "--frames", missing, "--out", out, "--lr", "nan"]),
        ("caption train", "--decoder-dropout 1", ["caption", "train", *train, "--decoder-dropout", "1"]),
        ("encode", "--fps nan", ["encode", "--frames", missing, "--clip", "tiny", "--out", out, "--fps", "nan"]),
        ("encode", "--window inf", ["encode", "--frames", missing, "--clip", "tiny", "--out", out, "--window", "inf"]),
        ("evaluate", "--chunk 0", ["evaluate", missing, "--chunk", "0"]),
        ("index", "--max-frames 0", ["index", str(tmp), "--out", out, "--clip", "tiny", "--max-frames", "0"]),
        ("index", "--fps -2", ["index", str(tmp), "--out", out, "--clip", "tiny", "--fps", "-2"]),
        ("search", "-k 0", ["search", missing, "a query", "-k", "0"]),
        ("serve", "--port 70000", ["serve", missing, "--port", "70000"]),
        ("caption generate", "--beam 0", ["caption", "generate", "--run", missing, "--frames", missing, "--out", out,
                                          "--beam", "0"]),
    ]


def timed(argv: list[str], repeat: int) -> tuple[float, subprocess.CompletedProcess]:
    """The fastest wall time of ``repeat`` runs of ``argv``, and the last run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    best, done = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env)
        best = min(best, time.perf_counter() - t0)
    return best, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the fastest is kept")
    args = parser.parse_args()
    py = sys.executable
    rows: list[tuple[str, str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        plain, _ = timed([py, "-c", "pass"], args.repeat)
        torch_s, _ = timed([py, "-c", "import torch"], args.repeat)
        for command, option, argv in cases(Path(tmp)):
            seconds, done = timed([py, "-m", "c4c.cli", *argv], args.repeat)
            lines = done.stderr.splitlines()
            ok = done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
            rows.append((command, option, seconds, "one line, exit 2" if ok else
                         f"UNEXPECTED exit {done.returncode}: {done.stderr.strip()[:80]}"))
    print(f"{os.cpu_count()} CPUs; fastest of {args.repeat} runs each")
    print(f"{'command':<18} {'bad option':<26} {'seconds':>8} {'x pass':>7} {'x torch':>8}  result")
    print(f"{'python -c pass':<45} {plain:>8.2f} {1.0:>7.1f} {plain / torch_s:>8.2f}")
    label = 'python -c "import torch"'
    print(f"{label:<45} {torch_s:>8.2f} {torch_s / plain:>7.1f} {1.0:>8.2f}")
    for command, option, seconds, result in rows:
        print(f"{command:<18} {option:<26} {seconds:>8.2f} {seconds / plain:>7.1f} {seconds / torch_s:>8.2f}  {result}")
    worst = max(r[2] for r in rows)
    print(f"slowest refusal {worst:.2f} s ({'within' if worst <= 1.0 else 'OVER'} the 1 s target)")
    if any(not r[3].startswith("one line") for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
