"""`--resume` takes the saved value of every option left out (README: "options you leave out take the
saved values"), those that may change included; only --max-steps and --out are the command's own.

The class is tested option by option: for every option of finetune, pretrain and caption train that
has a default, a saved run whose value differs from that default is resumed without the option, and
the stage must be handed the saved value. The issue's own example (a run made with --pretrained none,
resumed offline without it) runs end to end as a registered case (tests/test_faults.py's form).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from helpers import Verdict, Workspace, check_case, judge_ok, latest_weights, registry, run_c4c  # noqa: E402

from c4c.options import allowed_values, types_of  # noqa: E402
from c4c.run.folder import FORMAT, FORMAT_VERSION  # noqa: E402
from c4c.stages.caption import CaptionTrainConfig  # noqa: E402
from c4c.stages.finetune import FinetuneConfig  # noqa: E402
from c4c.stages.pretrain import PretrainConfig  # noqa: E402
from c4c.train.settings import NOT_TAKEN_ON_RESUME  # noqa: E402

# a valid value other than the default, for options whose other values are words
OTHER_WORD = {"pretrained": "none", "activation": "gelu", "amp": "none", "device": "cpu", "frame_decoder": "cpu",
              "report_to": "tensorboard", "schedule": "constant", "optimizer": "bertadam", "sampling": "head",
              "train_order": "shuffle", "select_on": "last", "sim": "seqLSTM", "clip": "tiny", "patch": "3d"}
COMMANDS = {"finetune": FinetuneConfig, "pretrain": PretrainConfig, "caption train": CaptionTrainConfig}
STAGES = {"finetune": "c4c.stages.finetune", "pretrain": "c4c.stages.pretrain", "caption train": "c4c.stages.caption"}


def _other(name: str, default, config: type | None = None):
    """A valid saved value that differs from ``default`` (a choice option: another of its choices)."""
    if name in OTHER_WORD:
        return OTHER_WORD[name]
    allowed = allowed_values(types_of(config)[name]) if config is not None else None
    if allowed:
        return next(value for value in allowed if value != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default / 2 if default else 0.5
    if isinstance(default, tuple):
        return ["Sports and Fitness"]
    raise AssertionError(f"no other value for {name}={default!r}")


def _options_with_defaults() -> list[tuple[str, str]]:
    cases = []
    for command, config in COMMANDS.items():
        for f in fields(config):
            default = f.default if f.default is not MISSING else MISSING
            if f.name in NOT_TAKEN_ON_RESUME or default is MISSING or default is None or f.name == "dataset_options":
                continue
            cases.append((command, f.name))
    return cases


class Handed(Exception):
    """Raised by the stand-in stage with the config the command line built."""

    def __init__(self, cfg) -> None:
        super().__init__("handed")
        self.cfg = cfg


def _saved_run(out: Path, config: type, name: str, value) -> None:
    saved = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": "retrieval"}
    for f in fields(config):
        if f.default is not MISSING:
            saved[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    saved[name] = value
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(saved))


@pytest.mark.parametrize("command, name", _options_with_defaults())
def test_an_option_left_out_of_resume_takes_the_saved_value(command, name, tmp_path, monkeypatch):
    import importlib

    from c4c.cli import main

    config = COMMANDS[command]
    default = next(f.default for f in fields(config) if f.name == name)
    saved = _other(name, default, config)
    out = tmp_path / "run"
    _saved_run(out, config, name, saved)
    (tmp_path / "ann.jsonl").write_text('{"video_id": "v", "caption": "a"}\n')
    (tmp_path / "frames.h5").write_bytes(b"")

    def stand_in(cfg, on_event=None):
        raise Handed(cfg)

    monkeypatch.setattr(importlib.import_module(STAGES[command]), "run", stand_in)
    data = (["--ann", str(tmp_path), "--frames", str(tmp_path / "frames.h5")] if command == "pretrain" else
            ["--dataset", "jsonl", "--ann", str(tmp_path / "ann.jsonl"), "--frames", str(tmp_path / "frames.h5")])
    with pytest.raises(Handed) as handed:
        main([*command.split(), *data, "--out", str(out), "--resume", "-q"])
    value = getattr(handed.value.cfg, name)
    assert (list(value) if isinstance(value, tuple) else value) == saved, \
        f"--{name.replace('_', '-')} left out of --resume: {value!r}, the run saved {saved!r}"


# --- the example, end to end ---------------------------------------------------------------

CASES, case = registry()


@case("finetune --pretrained none, then --resume without --pretrained (offline)")
def _resume_without_pretrained(ws: Workspace) -> Verdict:
    out = ws.fresh("resume-pretrained") / "run"
    args = ws.finetune_args(out)
    first = run_c4c(*args, "--max-steps", 2)
    if first.rc != 0:
        return Verdict("unclear error", detail=f"the first part failed: {first.out[-600:]}")
    i = args.index("--pretrained")
    resumed = run_c4c(*args[:i], *args[i + 2:], "--resume")
    done = resumed.rc == 0 and json.loads((out / "results.json").read_text()).get("steps", 0) > 2
    return judge_ok(resumed, right=done and bool(latest_weights(out)), why="resumed with the saved --pretrained none")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("resume-options"))


@pytest.mark.parametrize("name", list(CASES))
def test_resume_case_ends_clearly(ws, name):
    check_case(CASES, ws, name)
