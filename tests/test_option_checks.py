"""Every numeric option of every command is checked first: finite, in range, consistent.

Property-based (hypothesis): any number the command line takes is either accepted by the option's rule
(and then it is a sensible value: finite and above the option's floor) or refused by the command in one
line ``error: --option VALUE: ...``, exit status 2, no traceback, nothing written, within a time limit.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c4c.cli import data_cmds, retrieval_cmds, serve_cmd
from c4c.mini import cli as mini_cmd
from c4c.cli.app import app, main
from c4c.options import rules_of
from c4c.stages import caption, encode, evaluate_config, extract, library
from c4c.stages.finetune import FinetuneConfig
from c4c.stages.pretrain import PretrainConfig

from helpers import cli_commands

REPO = Path(__file__).resolve().parents[1]
SECONDS_PER_RUN = 30       # a refusal takes well under a second; more than this is a hang

# The rule tables the commands check, by command.
RULES = {
    "synth": data_cmds.SYNTH_RULES, "extract": rules_of(extract.ExtractConfig), "finetune": rules_of(FinetuneConfig),
    "pretrain": rules_of(PretrainConfig), "caption train": rules_of(caption.CaptionTrainConfig), "encode": encode.RULES,
    "evaluate": evaluate_config.RULES,
    "index": library.RULES, "search": retrieval_cmds.SEARCH_RULES, "serve": serve_cmd.SERVE_RULES,
    "caption generate": caption.GENERATE_RULES, "mini": mini_cmd.MINI_RULES,
}

# What a sensible value of each option is, written from the options' meaning (not from the rules):
# (floor, floor allowed). Every sensible value is also finite, and whole for an int option.
FLOOR = {"fps": (0, False), "window": (0, False), "stride": (0, False), "duration": (0, False),
         "lr": (0, True), "coef_lr": (0, True), "weight_decay": (0, True), "warmup": (0, True), "grad_clip": (0, True),
         "min_seconds": (0, False), "max_seconds": (0, False), "max_gap": (0, True), "alpha": (0, True),
         "retrieval_loss_weight": (0, True), "decoder_dropout": (0, True), "seed": (0, True), "workers": (0, True),
         "ffmpeg_threads": (0, True), "commit_every": (0, True), "shards": (0, True), "save_every": (0, True),
         "max_steps": (0, True), "decoder_heads": (0, True), "port": (0, True), "threads": (0, True),
         "freeze_layers": (-1, True), "size": (8, True), "max_words": (2, True)}
FLOOR_OF_COMMAND = {("extract", "workers"): (1, True), ("caption generate", "max_len"): (1, True)}
BELOW_ONE = {"warmup", "decoder_dropout"}          # fractions: [0, 1)


def _numeric_options() -> list[tuple[str, str, str, type]]:
    """``(command, flag, field, int|float)`` of every numeric option the command line has."""
    found = []
    for words, command in cli_commands(app) + [(["mini"] + w, c) for w, c in cli_commands(mini_cmd.app)]:
        for param in command.params:
            kind = param.type_descriptor.annotation
            kind = {"int": int, "float": float}.get(getattr(kind, "__name__", ""), None) \
                or next((k for k in (int, float) if k in getattr(kind, "__args__", ())), None)
            if kind is not None and param.opts:
                found.append((" ".join(words), param.opts[0], param.name, kind))
    return found


OPTIONS = _numeric_options()


def _base_argv(command: str, tmp: Path) -> list[str]:
    """A command line whose inputs do not exist (so an accepted value could do no work)."""
    out, missing = tmp / "out", tmp / "missing"
    return {
        "synth": ["synth", str(out)],
        "extract": ["extract", str(missing), "--out", str(out)],
        "finetune": ["finetune", "--dataset", "jsonl", "--ann", str(missing), "--frames", str(missing), "--out", str(out),
                     "--clip", "tiny", "--pretrained", "none"],
        "pretrain": ["pretrain", "--ann", str(missing), "--frames", str(missing), "--out", str(out)],
        "caption train": ["caption", "train", "--dataset", "jsonl", "--ann", str(missing), "--frames", str(missing),
                          "--out", str(out)],
        "encode": ["encode", "--frames", str(missing), "--clip", "tiny", "--pretrained", "none", "--out", str(out)],
        "evaluate": ["evaluate", str(missing), "--out", str(out)],
        "index": ["index", str(tmp), "--out", str(out), "--clip", "tiny", "--pretrained", "none"],
        "search": ["search", str(missing), "a query"],
        "serve": ["serve", str(missing)],
        "caption generate": ["caption", "generate", "--run", str(missing), "--frames", str(missing), "--out", str(out)],
        "mini": ["--out", str(out)],
    }[command]


class _TimeLimit(Exception):
    """A command ran past its time limit (a hang, never a good ending)."""


def _on_alarm(signum, frame):
    raise _TimeLimit()


def run_cli(argv: list[str], *, mini: bool = False) -> tuple[int, str]:
    """Run c4c (or `python -m c4c.mini`) in this process: (exit status, stderr); a hang fails the test."""
    err = io.StringIO()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(SECONDS_PER_RUN)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                (mini_cmd.main if mini else main)(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    except _TimeLimit:
        pytest.fail(f"c4c {' '.join(argv)} ran past {SECONDS_PER_RUN} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, err.getvalue()


def _sensible(command: str, field: str, kind: type, value) -> bool:
    if not math.isfinite(value) or (kind is int and not float(value).is_integer()):
        return False
    floor, allowed = FLOOR_OF_COMMAND.get((command, field), FLOOR.get(field, (1, True)))
    if value < floor or (value == floor and not allowed):
        return False
    return not (field in BELOW_ONE and value >= 1)


def _text(value) -> str:
    return repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)


INTS = st.one_of(st.sampled_from([0, -1, 1, 2, -2**31, 2**31, 2**63, 10**30]), st.integers(-10**6, 10**6))
FLOATS = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-300, 1e300, 0.5, 1.0]),
                   st.floats(allow_nan=True, allow_infinity=True))


def _rule(command: str, flag: str, field: str):
    return RULES[command].get(field) or RULES[command].get(flag)


def test_every_numeric_option_has_a_rule():
    missing = [f"{command} {flag}" for command, flag, field, _ in OPTIONS if _rule(command, flag, field) is None]
    assert not missing, f"numeric options without a rule: {missing}"
    assert len(OPTIONS) > 90


@pytest.mark.parametrize("command,flag,field,kind", OPTIONS, ids=[f"{c}{f}" for c, f, _, _ in OPTIONS])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_number_is_sensible_or_refused_in_one_line(tmp_path, command, flag, field, kind, data):
    value = data.draw(INTS if kind is int else FLOATS)
    rule = _rule(command, flag, field)
    if rule.allows(value):
        assert _sensible(command, field, kind, value), f"{command} {flag} accepts {value!r}"
        return
    argv = _base_argv(command, tmp_path) + [flag, _text(value)]
    code, err = run_cli(argv, mini=command == "mini")
    lines = err.splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag} "), err
    assert not (tmp_path / "out").exists()


@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**6, 10**6))
@settings(max_examples=30, deadline=None)
def test_every_accepted_value_of_every_rule_is_finite(value):
    for rules in RULES.values():
        for rule in rules.values():
            if rule.allows(value):
                assert math.isfinite(value)


@pytest.mark.parametrize("argv,problem", [
    (["--batch-size", "6", "--grad-accum", "4"], "error: --grad-accum 4 does not divide --batch-size 6"),
    (["--fps", "nan"], "error: --fps nan: must be a finite number"),
    (["--max-steps", "-1"], "error: --max-steps -1: must be a whole number"),
])
def test_finetune_options_that_disagree_are_refused(tmp_path, argv, problem):
    code, err = run_cli(_base_argv("finetune", tmp_path) + argv)
    assert code == 2 and err.startswith(problem) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_pretrain_min_seconds_above_max_seconds_is_refused(tmp_path):
    code, err = run_cli(_base_argv("pretrain", tmp_path) + ["--min-seconds", "9", "--max-seconds", "3"])
    assert code == 2 and err.startswith("error: --min-seconds 9") and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command,extra", [
    ("finetune", ["--batch-size", "0"]), ("pretrain", ["--lr", "inf"]), ("caption train", ["--decoder-dropout", "1"]),
    ("encode", ["--fps", "nan"]), ("index", ["--max-frames", "0"]), ("extract", ["--fps", "inf"]),
    ("caption generate", ["--beam", "0"]), ("evaluate", ["--chunk", "0"]), ("search", ["-k", "0"]),
])
def test_refusing_a_bad_option_imports_no_torch(tmp_path, command, extra):
    argv = _base_argv(command, tmp_path) + extra
    script = ("import json, sys\nfrom c4c.cli.app import main\ntry:\n    main(json.loads(sys.argv[1]))\n"
              "except SystemExit as exc:\n    code = exc.code\n"
              "heavy = [m for m in ('torch', 'open_clip', 'faiss', 'h5py') if m in sys.modules]\n"
              "print(json.dumps({'code': code, 'heavy': heavy}))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(argv)], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=60)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"code": 2, "heavy": []}, done.stderr
    assert done.stderr.startswith(f"error: {extra[0]} {extra[1]}:"), done.stderr
