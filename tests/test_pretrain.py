"""`c4c pretrain` and its data: HowTo100M-like synthetic corpus, ASR fragment merging, clip sampling,
the run folder, exact resume, DDP, and fine-tuning from the result."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from c4c import synth
from c4c.data.frames import ClipSpec
from c4c.data.howto import CaptionCorpus, HowToClips, MergeRule, merge_window, window_frames
from c4c.data.text import CaptionTokenizer
from c4c.datasets.howto100m import read_howto100m
from c4c.datasets.records import VideoRecord
from c4c.errors import C4CError
from c4c.stages import extract
from c4c.stages.pretrain import PretrainConfig, run
from c4c.run import checkpoint
from c4c.video.store import FrameStore


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's steps take milliseconds: one thread is faster than two fighting for a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def howto(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("howto")
    synth.run_howto(synth.HowToConfig(out_dir=d, videos=10, seed=2, duration=24.0, fps=4, width=64, height=48))
    return d


@pytest.fixture(scope="module")
def howto_frames(howto, tmp_path_factory) -> Path:
    """Frames of EVERY video (other categories too: the category filter must drop them), as 2 shards."""
    out = tmp_path_factory.mktemp("howto-frames") / "frames"
    assert extract.run(extract.ExtractConfig(source=howto / "videos", out=out, shards=2, size=32, fps=1.0,
                                             workers=1)).ok
    return out


@pytest.fixture(scope="module")
def retrieval(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("retrieval")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=12, seed=4, duration=2.0, width=64, height=48))
    out = d / "frames.h5"
    assert extract.run(extract.ExtractConfig(source=d / "synth" / "annotations.jsonl", dataset="jsonl",
                                             videos_dir=d / "synth" / "videos", out=out, size=32, fps=2.0)).ok
    return d / "synth" / "annotations.jsonl", out


def _food(howto: Path) -> set[str]:
    with open(howto / "HowTo100M_v1.csv", newline="") as fh:
        return {row["video_id"] for row in csv.DictReader(fh) if row["category_1"] == "Food and Entertaining"}


def _cfg(howto, frames, out: Path, **kw) -> PretrainConfig:
    base = dict(ann=howto, frames=frames, out=out, clip="tiny", pretrained="none", steps=4, batch_size=4, lr=1e-3,
                coef_lr=1.0, workers=0, log_every=1, save_every=0)
    base.update(kw)
    return PretrainConfig(**base)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load_model_state(checkpoint.latest(run_dir))


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0 if atol == 0 else 1e-5, msg=k)


# --- the synthetic HowTo100M corpus ---------------------------------------------------------------

def test_howto_synth_writes_the_howto100m_files(howto):
    with open(howto / "HowTo100M_v1.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["video_id", "category_1", "category_2", "rank", "task_id"]
    food = _food(howto)
    assert len(rows) == 10 and 0 < len(food) < 10  # some videos belong to other categories
    records = read_howto100m(howto)
    assert {r.video_id for r in records} == food
    captions = json.loads((howto / "caption.json").read_text())
    assert set(captions) == {r["video_id"] for r in rows}
    for record in records:
        assert len(record.captions) == len(record.caption_times) >= 3
        assert all(re.fullmatch(r"[a-z]+( [a-z]+)*", text) for text in record.captions)  # ASR: no case, no punctuation
        ends = [e for _, e in record.caption_times]
        starts = [s for s, _ in record.caption_times]
        assert starts[0] == 0.0 and starts[1:] == ends[:-1]  # fragments tile the narration


def test_howto_synth_has_fragments_too_short_to_stand_alone(howto):
    words = [len(t.split()) for r in read_howto100m(howto) for t in r.captions]
    assert min(words) <= 2 and max(words) <= 6 and np.mean(words) < 5


def test_howto_narration_names_the_action_on_screen(howto):
    config = synth.HowToConfig(out_dir=howto, videos=10, seed=2, duration=24.0, fps=4, width=64, height=48)
    plan = synth.plan_howto(config)
    meta = synth.load_howto_metadata(howto / "synth.json")
    assert [v["video_id"] for v in meta["videos"]] == [v.video_id for v in plan]
    video = plan[0]
    frames = list(synth.render_howto(video, config))
    assert len(frames) == video.frames == sum(s.frames for s in video.segments)
    for segment in video.segments:
        words = segment.narration.split()
        assert segment.action.colour in words and segment.action.shape in words
        middle = frames[segment.first + segment.frames // 2]
        colour = np.array(synth.COLOURS[segment.action.colour], np.uint8)
        assert (middle == colour).all(axis=-1).sum() > 20  # the shape shown has the colour narrated


def test_howto_frames_cover_each_video_at_one_frame_per_second(howto, howto_frames):
    meta = synth.load_howto_metadata(howto / "synth.json")
    with FrameStore(howto_frames) as fs:
        for v in meta["videos"]:
            assert fs.num_frames(v["video_id"]) == (v["frames"] - 1) // 4 + 1  # frames at 0, 1, 2 ... s


def test_howto_synth_is_deterministic_and_checks_its_settings(howto, tmp_path):
    a = synth.plan_howto(synth.HowToConfig(out_dir=tmp_path, videos=3, seed=9, duration=12.0, fps=4))
    b = synth.plan_howto(synth.HowToConfig(out_dir=tmp_path / "x", videos=3, seed=9, duration=12.0, fps=4))
    assert a == b
    with pytest.raises(C4CError, match="different synthetic dataset"):
        synth.run_howto(synth.HowToConfig(out_dir=howto, videos=10, seed=3, duration=24.0, fps=4, width=64, height=48))
    with pytest.raises(C4CError, match="segment lengths"):
        synth.plan_howto(synth.HowToConfig(out_dir=tmp_path, segment_min=9.0, segment_max=4.0))
    with pytest.raises(C4CError, match="other_fraction"):
        synth.plan_howto(synth.HowToConfig(out_dir=tmp_path, other_fraction=1.0))


def test_synth_cli_makes_a_howto_corpus(tmp_path, capsys):
    from c4c.cli import main

    main(["synth", str(tmp_path / "h"), "--kind", "howto", "--count", "2", "--duration", "8", "--fps", "4",
          "--width", "64", "--height", "48", "-q"])
    assert (tmp_path / "h" / "caption.json").is_file() and (tmp_path / "h" / "HowTo100M_v1.csv").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(tmp_path / "k"), "--kind", "movies"])
    assert exit_info.value.code == 2 and "'--kind'" in capsys.readouterr().err


# --- merging ASR fragments into clips --------------------------------------------------------------

# one video's fragments: (start, end, words)
_STARTS = np.array([0.0, 1.0, 3.0, 6.0, 11.0, 11.5])
_ENDS = np.array([1.0, 3.0, 6.0, 7.0, 11.5, 12.0])
_WORDS = np.array([1, 3, 4, 2, 1, 2])


def test_short_fragments_are_joined_until_words_and_seconds_suffice():
    rule = MergeRule(min_words=8, min_seconds=4.0, max_seconds=12.0, max_gap=2.0)
    # 1 + 3 words in 3 s: too few; + 4 words -> 8 words, 0..6 s
    assert merge_window(_STARTS, _ENDS, _WORDS, 0, rule) == (0, 2, 0.0, 6.0)
    # from fragment 1: 3 + 4 + 2 = 9 words over 1..7 s
    assert merge_window(_STARTS, _ENDS, _WORDS, 1, rule) == (1, 3, 1.0, 7.0)


def test_a_long_pause_stops_joining_and_a_short_window_is_widened():
    rule = MergeRule(min_words=8, min_seconds=4.0, max_seconds=12.0, max_gap=2.0)
    # fragment 4 follows a 4 s pause: it can only join fragment 5 (3 words, 11..12 s),
    # then the window is widened around its centre 11.5 to 4 s
    assert merge_window(_STARTS, _ENDS, _WORDS, 4, rule) == (4, 5, 9.5, 13.5)
    # widening never goes below 0
    assert merge_window(np.array([0.0]), np.array([1.0]), np.array([9]), 0, rule) == (0, 0, 0.0, 4.0)


def test_at_the_end_of_speech_earlier_fragments_are_joined():
    rule = MergeRule(min_words=8, min_seconds=4.0, max_seconds=12.0, max_gap=2.0)
    # from fragment 3 (6..7 s, 2 words): nothing follows within 2 s, so fragments 2, 1 come before it
    assert merge_window(_STARTS, _ENDS, _WORDS, 3, rule) == (1, 3, 1.0, 7.0)


def test_joining_never_makes_a_window_longer_than_max_seconds():
    rule = MergeRule(min_words=8, min_seconds=4.0, max_seconds=5.0, max_gap=2.0)
    # 0..6 s would be 6 s long: stop at 0..3 s (4 words), then widen to 4 s around 1.5
    assert merge_window(_STARTS, _ENDS, _WORDS, 0, rule) == (0, 1, 0.0, 4.0)


def test_bad_merge_rules_are_user_errors():
    with pytest.raises(C4CError):
        MergeRule(min_seconds=5.0, max_seconds=4.0)
    with pytest.raises(C4CError):
        MergeRule(min_words=0)


def test_window_frames_are_those_inside_the_window_cut_to_max_frames():
    t = np.arange(20, dtype=np.float32)
    assert window_frames(t, 4.0, 9.0, ClipSpec(max_frames=12)).tolist() == [4, 5, 6, 7, 8]
    assert window_frames(t, 4.0, 9.0, ClipSpec(max_frames=3)).tolist() == [4, 6, 8]  # linspace(0, 4, 3)
    assert window_frames(t, 4.0, 9.0, ClipSpec(max_frames=3, sampling="head")).tolist() == [4, 5, 6]
    assert window_frames(t, 30.0, 34.0, ClipSpec(max_frames=3)).tolist() == [19]  # beyond the video: its nearest frame
    assert window_frames(t + 0.0004, 4.0, 6.0, ClipSpec(max_frames=12)).tolist() == [4, 5]  # float32 timestamps


def test_window_frames_thin_from_the_window_start_and_follow_the_training_order():
    t = np.arange(20, dtype=np.float32)
    assert window_frames(t, 5.0, 12.0, ClipSpec(fps=0.5)).tolist() == [5, 7, 9, 11]  # instants 5, 7, 9, 11
    assert window_frames(t, 4.0, 9.0, ClipSpec(order="reverse")).tolist() == [8, 7, 6, 5, 4]
    shuffled = [window_frames(t, 4.0, 9.0, ClipSpec(order="shuffle"), np.random.default_rng(seed)).tolist()
                for seed in (0, 0, 1)]
    assert shuffled[0] == shuffled[1] and sorted(shuffled[0]) == [4, 5, 6, 7, 8] and shuffled[0] != shuffled[2]


def test_pretraining_clips_take_the_training_order(howto, howto_frames):
    kept = _clips(howto, howto_frames, clip=ClipSpec(max_frames=4), seed=3)
    reversed_ = _clips(howto, howto_frames, clip=ClipSpec(max_frames=4, order="reverse"), seed=3)
    shuffled = [_clips(howto, howto_frames, clip=ClipSpec(max_frames=4, order="shuffle"), seed=3) for _ in range(2)]
    for index in range(len(kept)):
        a, b = kept[index], reversed_[index]
        n = int(a["video_mask"].sum())
        assert torch.equal(b["video"][:n], a["video"][:n].flip(0)) and torch.equal(a["text_ids"], b["text_ids"])
        assert torch.equal(shuffled[0][index]["video"], shuffled[1][index]["video"])  # from (seed, epoch, index)


def test_the_corpus_sorts_fragments_normalises_text_and_drops_empty_ones():
    records = [VideoRecord("a", ["second  bit", "first", "  "], "train",
                           caption_times=[(2.0, 3.0), (0.0, 2.0), (3.0, 4.0)]),
               VideoRecord("b", [" "], "train", caption_times=[(0.0, 1.0)]),
               VideoRecord("c", ["only one"], "train", caption_times=[(5.0, 6.0)])]
    corpus = CaptionCorpus(records)
    assert len(corpus) == 2 and corpus.video_id(1) == "c" and corpus.fragments == 3
    assert corpus.starts.tolist() == [0.0, 2.0, 5.0] and corpus.words.tolist() == [1, 2, 2]
    assert corpus.text_of(0, 1) == "first second bit"
    with pytest.raises(C4CError, match="without time spans"):
        CaptionCorpus([VideoRecord("d", ["x"], "train")])


def _clips(howto, howto_frames, **kw) -> HowToClips:
    store = FrameStore(howto_frames)
    return HowToClips(CaptionCorpus(read_howto100m(howto)), store, CaptionTokenizer(32), **kw)


def test_clips_are_drawn_from_seed_epoch_and_index(howto, howto_frames):
    a, b = _clips(howto, howto_frames, seed=1), _clips(howto, howto_frames, seed=1)
    assert [a.clip(i) for i in range(len(a))] == [b.clip(i) for i in range(len(b))]
    by_epoch = []
    for epoch in range(3):
        a.set_epoch(epoch)
        by_epoch.append([a.clip(i) for i in range(len(a))])
    assert by_epoch[0] != by_epoch[1] != by_epoch[2]
    other = _clips(howto, howto_frames, seed=2)
    assert [other.clip(i) for i in range(len(other))] != by_epoch[0]


def test_a_clip_is_its_merged_text_and_the_frames_of_its_window(howto, howto_frames):
    clips = _clips(howto, howto_frames, clip=ClipSpec(max_frames=4), seed=3)
    rule = clips.rule
    records = {r.video_id: r for r in read_howto100m(howto)}
    for index in range(len(clips)):
        clip = clips.clip(index)
        record = records[clip.video_id]
        lo, hi = clip.fragments
        assert clip.text == " ".join(record.captions[lo:hi + 1])
        # the window covers its fragments and is at least min_seconds long
        assert clip.start <= record.caption_times[lo][0] and clip.end >= record.caption_times[hi][1]
        assert clip.end - clip.start >= rule.min_seconds
        item = clips[index]
        idx = window_frames(clips.store.timestamps(clip.video_id), clip.start, clip.end, ClipSpec(max_frames=4))
        n = int(item["video_mask"].sum())
        assert n == len(idx) and 1 <= n <= 4 and item["video"].shape == (4, 32, 32, 3)
        np.testing.assert_array_equal(item["video"][:n].numpy(), clips.store.read(clip.video_id, idx))
        assert not item["video"][n:].any()


# --- the pretrain stage ------------------------------------------------------------------------------

def test_a_pretrain_run_folder_has_config_metrics_checkpoints_and_results(howto, howto_frames, tmp_path):
    result = run(_cfg(howto, howto_frames, tmp_path / "run"))
    run_dir = tmp_path / "run"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["stage"] == "pretrain" and config["sim"] == "meanP" and config["backbone"]["name"] == "tiny"
    assert config["videos"] == len(_food(howto)) == result.videos  # other categories dropped
    assert config["clip_sampling"] == {"min_words": 8, "min_seconds": 4.0, "max_seconds": 12.0, "max_gap": 2.0}
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in steps if x["event"] == "step"]
    assert [x["step"] for x in steps] == [1, 2, 3, 4] and all(np.isfinite(x["loss"]) for x in steps)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == result.steps == 4 and results["finished"] and results["clips"] == 16
    assert checkpoint.load_meta(checkpoint.latest(run_dir))["step"] == 4
    assert result.checkpoint == checkpoint.latest(run_dir)


def test_all_categories_can_be_kept(howto, howto_frames, tmp_path):
    result = run(_cfg(howto, howto_frames, tmp_path / "run", categories=None, steps=1))
    assert result.videos == 10


def test_default_length_is_one_epoch(howto, howto_frames, tmp_path):
    result = run(_cfg(howto, howto_frames, tmp_path / "run", steps=None, batch_size=2))
    assert result.steps == len(_food(howto)) // 2


def test_resumed_pretraining_ends_with_the_weights_of_an_uninterrupted_run(howto, howto_frames, tmp_path):
    # 2 steps per epoch: stop in the middle of the second epoch, then resume
    full = _cfg(howto, howto_frames, tmp_path / "full", steps=5, save_every=1, workers=1)
    run(full)
    part = replace(full, out=tmp_path / "part", max_steps=3, workers=0)
    first = run(part)
    assert first.steps == 3 and not first.finished
    assert checkpoint.load_meta(checkpoint.latest(tmp_path / "part"))["position"] == 4  # mid-epoch
    second = run(replace(part, max_steps=None, resume=True))
    assert second.steps == 5 and second.finished
    _assert_same_weights(_weights(tmp_path / "full"), _weights(tmp_path / "part"))
    losses = {}
    for name in ("full", "part"):
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [x["loss"] for x in lines if x["event"] == "step"]
    assert losses["full"] == losses["part"]


def test_resuming_a_finished_run_trains_no_further(howto, howto_frames, tmp_path):
    cfg = _cfg(howto, howto_frames, tmp_path / "run", steps=2)
    run(cfg)
    before = _weights(tmp_path / "run")
    again = run(replace(cfg, resume=True))
    assert again.steps == 2
    _assert_same_weights(before, _weights(tmp_path / "run"))


def test_finetune_init_starts_from_the_pretrained_clip_weights(howto, howto_frames, retrieval, tmp_path):
    from c4c.model.load import build_model, resolve_spec
    from c4c.stages import finetune

    pre = run(_cfg(howto, howto_frames, tmp_path / "pre", steps=3))
    pretrained = checkpoint.load_model_state(pre.checkpoint)
    ann, frames = retrieval
    cfg = finetune.FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=tmp_path / "ft", clip="tiny",
                                  pretrained="none", init=tmp_path / "pre", sim="seqTransf", temporal_layers=2,
                                  epochs=1, batch_size=4, lr=0.0, coef_lr=1.0, workers=0, max_steps=1)
    model, _, _ = build_model(resolve_spec(cfg), "cpu", init=cfg.init)
    start = model.state_dict()
    clip_keys = [k for k in pretrained if k.startswith("clip.")]
    assert clip_keys and all(k in start for k in clip_keys)
    for k in clip_keys:
        torch.testing.assert_close(start[k], pretrained[k], atol=0, rtol=0, msg=k)
    # the whole command: with lr 0 one step leaves the weights it started from
    finetune.run(cfg)
    after = checkpoint.load_model_state(checkpoint.latest(tmp_path / "ft"))
    for k in clip_keys:
        torch.testing.assert_close(after[k], pretrained[k], atol=0, rtol=0, msg=k)
    # and not the random init of the same seed
    fresh, _, _ = build_model(resolve_spec(replace(cfg, init=None)), "cpu")
    assert not torch.equal(fresh.state_dict()["clip.visual.proj"], pretrained["clip.visual.proj"])


def test_videos_missing_from_the_frames_are_an_error_unless_skipped(howto, howto_frames, tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    captions = json.loads((howto / "caption.json").read_text())
    captions["ghost"] = {"start": [0.0], "end": [4.0], "text": ["a ghost"]}
    (ann / "caption.json").write_text(json.dumps(captions))
    (ann / "HowTo100M_v1.csv").write_text((howto / "HowTo100M_v1.csv").read_text()
                                          + "ghost,Food and Entertaining,Recipes,1,1\n")
    with pytest.raises(C4CError, match="ghost"):
        run(_cfg(ann, howto_frames, tmp_path / "a", steps=1))
    assert run(_cfg(ann, howto_frames, tmp_path / "b", steps=1, skip_missing=True)).videos == len(_food(howto))


def test_a_non_empty_run_folder_needs_resume_and_bad_options_are_user_errors(howto, howto_frames, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("x")
    with pytest.raises(C4CError, match="exists and is not a c4c run folder"):
        run(_cfg(howto, howto_frames, tmp_path / "run"))
    with pytest.raises(C4CError, match="nothing to resume"):
        run(_cfg(howto, howto_frames, tmp_path / "empty", resume=True))
    with pytest.raises(C4CError, match="unknown --sim"):
        run(_cfg(howto, howto_frames, tmp_path / "new", sim="maxP"))
    with pytest.raises(C4CError, match="no captioned video of the categories"):
        run(_cfg(howto, howto_frames, tmp_path / "new2", categories=("Pets",)))


def test_the_pretrain_command_runs_and_prints_a_summary(howto, howto_frames, tmp_path):
    from typer.testing import CliRunner

    from c4c.cli.app import app

    args = ["pretrain", "--ann", str(howto), "--frames", str(howto_frames), "--out", str(tmp_path / "run"),
            "--clip", "tiny", "--pretrained", "none", "--steps", "2", "--batch-size", "4", "--workers", "0", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "c4c pretrain" in result.output and "finetune --init" in result.output
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 2
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, C4CError) and "--resume" in str(again.exception)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_pretrain_like_one_with_the_same_global_batch(howto, howto_frames, tmp_path):
    script = tmp_path / "ddp_pretrain.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from c4c.stages.pretrain import PretrainConfig, run
        run(PretrainConfig(ann=Path({str(howto)!r}), frames=Path({str(howto_frames)!r}), out=Path(sys.argv[1]),
                           clip="tiny", pretrained="none", steps=3, batch_size=4, lr=1e-3, coef_lr=1.0, workers=0,
                           log_every=1, save_every=0, device="cpu"))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single")], env=env,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), str(script), str(tmp_path / "ddp")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    losses = {}
    for name in ("single", "ddp"):
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [x["loss"] for x in lines if x["event"] == "step"]
    assert len(losses["single"]) == 3 and losses["single"] == pytest.approx(losses["ddp"], abs=1e-5)
    _assert_same_weights(_weights(tmp_path / "single"), _weights(tmp_path / "ddp"), atol=1e-5)


def test_jpeg_items_decode_to_the_same_clips(howto, howto_frames):
    pytest.importorskip("torchvision.io", reason="needs torchvision's JPEG decoder")
    from c4c.data.device_frames import decode_batch
    from c4c.data.video_text import collate

    plain, packed = (_clips(howto, howto_frames, clip=ClipSpec(max_frames=4), seed=3) for _ in range(2))
    packed.encoded_frames = True
    items = range(len(plain))
    expected = collate([plain[i] for i in items])
    decoded = decode_batch(collate([packed[i] for i in items]), 32, "cpu")
    assert set(decoded) == set(expected)
    torch.testing.assert_close(decoded["video"], expected["video"], rtol=0, atol=1)
    torch.testing.assert_close(decoded["video_mask"], expected["video_mask"])
