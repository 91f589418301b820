"""The run folder: a failed start, a failed resume or a garbage run file leaves it byte for byte as it
was; a resumed run keeps its settings; old runs still load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c4c import synth
from c4c.cli.app import main
from c4c.errors import C4CError
from c4c.run.folder import RunFolder
from c4c.stages import extract
from c4c.stages.finetune import FinetuneConfig, run
from c4c.run import checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("runs")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=16, seed=3, duration=2.0, width=64, height=48))
    frames = d / "frames.h5"
    assert extract.run(extract.ExtractConfig(source=d / "synth" / "annotations.jsonl", dataset="jsonl",
                                             videos_dir=d / "synth" / "videos", out=frames, size=32, fps=2.0)).ok
    return d / "synth" / "annotations.jsonl", frames


def _args(data, out: Path, *extra: str) -> list[str]:
    ann, frames = data
    return ["finetune", "--dataset", "jsonl", "--ann", str(ann), "--frames", str(frames), "--out", str(out),
            "--clip", "tiny", "--pretrained", "none", "--epochs", "1", "--batch-size", "4", "--workers", "0",
            "--temporal-layers", "1", "-q", *extra]


def _cfg(data, out: Path, **kw) -> FinetuneConfig:
    ann, frames = data
    base = dict(dataset="jsonl", ann=ann, frames=frames, out=out, clip="tiny", pretrained="none", epochs=1,
                batch_size=4, workers=0, temporal_layers=1)
    return FinetuneConfig(**{**base, **kw})


def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(folder.rglob("*"))}


def _fails(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    run(_cfg(data, out, max_steps=2, save_every=1))
    return out


def test_a_bad_choice_writes_nothing(data, tmp_path, capsys):
    err = _fails(_args(data, tmp_path / "r1", "--amp", "bogus"), capsys)
    assert "'--amp'" in err and not (tmp_path / "r1").exists()


def test_resume_of_a_missing_or_empty_folder_leaves_nothing_behind(data, tmp_path, capsys):
    assert "nothing to resume" in _fails(_args(data, tmp_path / "r2", "--resume"), capsys)
    assert not (tmp_path / "r2").exists()
    (tmp_path / "r3").mkdir()
    assert "nothing to resume" in _fails(_args(data, tmp_path / "r3", "--resume"), capsys)
    assert list((tmp_path / "r3").iterdir()) == []
    main(_args(data, tmp_path / "r3", "--max-steps", "1"))  # and a fresh run may start there
    assert RunFolder(tmp_path / "r3").latest() is not None


def test_resume_with_changed_hyperparameters_is_an_error_naming_them(data, finished, capsys):
    before = _snapshot(finished)
    err = _fails(_args(data, finished, "--resume", "--lr", "0.5", "--batch-size", "2"), capsys)
    assert "--lr" in err and "--batch-size" in err and str(finished / "config.json") in err
    assert _snapshot(finished) == before


def test_resume_keeps_the_saved_settings_and_accepts_what_may_change(data, tmp_path, capsys):
    out = tmp_path / "run"
    main(_args(data, out, "--lr", "0.003", "--max-steps", "1"))
    config = (out / "config.json").read_bytes()
    # no --lr: the run's 0.003 is kept (not the default); --workers and --max-steps may change
    main(_args(data, out, "--resume", "--max-steps", "2", "--workers", "0"))
    assert (out / "config.json").read_bytes() == config
    assert json.loads(config)["lr"] == 0.003
    assert checkpoint.load_meta(RunFolder(out).latest())["step"] == 2


def test_library_resume_refuses_another_config(data, finished):
    with pytest.raises(C4CError, match="--epochs"):
        run(_cfg(data, finished, epochs=3, resume=True))


GARBAGE = {
    "binary latest.json": ("latest.json", b"\x00\xff\xfe garbage \x81"),
    "text latest.json": ("latest.json", b"{not json"),
    "latest.json of another shape": ("latest.json", b"[1, 2, 3]"),
    "truncated weights": ("WEIGHTS", None),
    "random train state": ("STATE", b"\x80\x04 random bytes that are not a pickle" * 10),
    "malicious train state": ("STATE", "malicious"),
    "garbage config": ("config.json", b"\xff\xfe\x00"),
}


def _malicious_pickle() -> bytes:
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    return pickle.dumps({"optimizer": Evil()})


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_a_garbage_run_file_is_one_line_naming_it_and_nothing_is_overwritten(case, data, finished, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    name, content = GARBAGE[case]
    latest = RunFolder(out).latest()
    target = {"WEIGHTS": latest / "model.safetensors", "STATE": latest / "train_state.pt"}.get(name, out / name)
    if content is None:
        content = target.read_bytes()[: target.stat().st_size // 2]
    elif content == "malicious":
        content = _malicious_pickle()
    target.write_bytes(content)
    before = _snapshot(out)
    err = _fails(_args(data, out, "--resume", "--epochs", "1"), capsys)
    assert err.startswith("error:") and len(err.strip().splitlines()) <= 3, err
    assert target.name in err and "code ran" not in err
    assert _snapshot(out) == before


def test_max_steps_0_takes_no_step_and_saves_the_starting_weights(data, tmp_path):
    result = run(_cfg(data, tmp_path / "run", max_steps=0))
    assert result.steps == 0
    latest = RunFolder(tmp_path / "run").latest()
    assert checkpoint.load_meta(latest)["step"] == 0
    lines = RunFolder(tmp_path / "run").history()
    assert not [x for x in lines if x["event"] == "step"]


def test_every_run_has_the_format_key_and_a_model_block(finished):
    config = json.loads((finished / "config.json").read_text())
    assert config["format"] == "c4c-run" and config["format_version"] == 1 and config["task"] == "retrieval"
    assert config["model"]["activation"] in ("quickgelu", "gelu") and config["model"]["sim"] == "meanP"


def test_a_run_written_before_the_format_key_still_loads(finished, tmp_path):
    import shutil

    from c4c.model.load import load_run

    old = tmp_path / "old"
    shutil.copytree(finished, old)
    config = json.loads((old / "config.json").read_text())
    for key in ("format", "format_version", "task", "model", "activation"):
        config.pop(key, None)
    (old / "config.json").write_text(json.dumps(config))
    spec = RunFolder(old).model_spec()
    assert (spec.clip, spec.sim, spec.temporal_layers) == ("tiny", "meanP", 1)
    loaded = load_run(old)
    fresh = load_run(finished)
    a, b = loaded.model.state_dict(), fresh.model.state_dict()
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_a_newer_run_format_is_refused_with_a_hint(finished, tmp_path):
    import shutil

    new = tmp_path / "new"
    shutil.copytree(finished, new)
    config = json.loads((new / "config.json").read_text())
    (new / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(C4CError, match="newer"):
        RunFolder(new).read_config()
