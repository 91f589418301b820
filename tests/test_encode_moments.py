"""`c4c encode` of your own videos: zero-shot CLIP (no run), moments (--window/--stride), EMB.h5 version 2
(spans, sources, the model that made it), and version-1 files still read."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from c4c import synth
from c4c.data.embeddings import EmbeddingWriter, Embeddings, partial_path
from c4c.errors import C4CError
from c4c.search.moments import plan_video, video_duration
from c4c.stages import encode, extract
from c4c.stages.finetune import FinetuneConfig, run as finetune_run
from c4c.video.store import FrameStore


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Eight 8-second synthetic videos stored at 2 fps, 32 px, and two tiny runs (meanP, seqTransf)."""
    d = tmp_path_factory.mktemp("moments")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=8, seed=5, duration=8.0, width=64, height=48))
    frames = d / "frames.h5"
    assert extract.run(extract.ExtractConfig(source=d / "synth" / "videos", out=frames, size=32, fps=2.0)).ok
    runs = {}
    for sim in ("meanP", "seqTransf", "tightTransf"):
        runs[sim] = d / f"run-{sim}"
        finetune_run(FinetuneConfig(dataset="jsonl", ann=d / "synth" / "annotations.jsonl", frames=frames,
                                    out=runs[sim], clip="tiny", pretrained="none", sim=sim, epochs=1, batch_size=4,
                                    lr=1e-3, coef_lr=1.0, workers=0, temporal_layers=1, select_on="last",
                                    max_frames=12))
    return {"dir": d, "frames": frames, "runs": runs}


def _encode(data, out: Path, **kw) -> encode.EncodeResult:
    base = dict(frames=data["frames"], out=out, device="cpu", workers=0, batch_size=2)
    base.update(kw)
    return encode.run(encode.EncodeConfig(**base))


def _clip_embedding(model, store: FrameStore, video_id: str, idx: np.ndarray, max_frames: int) -> np.ndarray:
    """One window encoded the plain way: its frames as one zero-padded clip through encode_video."""
    video = torch.zeros(1, max_frames, *store.read(video_id, idx[:1]).shape[1:], dtype=torch.uint8)
    mask = torch.zeros(1, max_frames, dtype=torch.bool)
    video[0, :len(idx)] = torch.from_numpy(store.read(video_id, idx))
    mask[0, :len(idx)] = True
    with torch.no_grad():
        return model.pooled_video(model.encode_video(video, mask), mask)[0].numpy()


# --- zero-shot ------------------------------------------------------------------------------------

def test_zero_shot_is_clip_over_the_frames_mean_pooled(data, tmp_path):
    """meanP at initialisation: the normalised mean of CLIP's normalised image features of the clip's frames."""
    import open_clip  # noqa: F401  (the tower the model wraps)

    from c4c.search.source import build_zero_shot, zero_shot_spec

    emb = Embeddings(_encode(data, tmp_path / "zs.h5", clip="tiny", pretrained="none", max_frames=6).out)
    model, _ = build_zero_shot(zero_shot_spec("tiny", "none"))
    store = FrameStore(data["frames"])
    vid = emb.video_ids[2]
    ts = store.timestamps(vid)
    plan = plan_video(vid, ts, video_duration(ts, store.info(vid), 2.0), window=None, stride=None, max_frames=6,
                      sampling="uniform", fps=None)
    pixels = model._pixels(torch.from_numpy(store.read(vid, plan.frames)))           # [6, 3, 32, 32]
    with torch.no_grad():
        feats = torch.nn.functional.normalize(model.clip.encode_image(pixels).float(), dim=-1)
    want = torch.nn.functional.normalize(feats.mean(0), dim=-1).numpy()
    np.testing.assert_allclose(emb.video_emb()[2], want, atol=1e-5)
    assert emb.sim == "meanP" and emb.model_source.kind == "zero-shot"
    assert emb.model_source.spec["clip"] == "tiny" and emb.attrs["run"] == ""


def test_the_same_zero_shot_spec_always_builds_the_same_model(data, tmp_path):
    a = Embeddings(_encode(data, tmp_path / "a.h5", clip="tiny", pretrained="none").out)
    b = Embeddings(_encode(data, tmp_path / "b.h5", clip="tiny", pretrained="none").out)
    np.testing.assert_array_equal(a.video_emb(), b.video_emb())
    assert a.attrs["model_fingerprint"] == b.attrs["model_fingerprint"] == a.model_source.fingerprint


def test_zero_shot_from_a_weights_file_records_its_digest(data, tmp_path):
    from c4c.model.backbone import build_clip

    clip, _ = build_clip("tiny", "none")
    weights = tmp_path / "tiny.pt"
    torch.save(clip.state_dict(), weights)
    emb = Embeddings(_encode(data, tmp_path / "f.h5", clip="tiny", pretrained=str(weights)).out)
    source = emb.model_source
    assert source.spec["pretrained"] == str(weights.resolve()) and len(source.weights["sha256"]) == 64
    with torch.no_grad():
        clip.logit_scale.add_(1.0)
    torch.save(clip.state_dict(), weights)  # other weights in the same file: another model
    other = Embeddings(_encode(data, tmp_path / "g.h5", clip="tiny", pretrained=str(weights)).out)
    assert other.model_source.fingerprint != source.fingerprint


def test_zero_shot_evaluates_an_annotated_split(data, tmp_path):
    from c4c.stages import evaluate

    ann = data["dir"] / "synth" / "annotations.jsonl"
    out = _encode(data, tmp_path / "test.h5", clip="tiny", pretrained="none", dataset="jsonl", ann=ann).out
    metrics = evaluate.run(evaluate.EvaluateConfig(emb=out)).metrics
    assert metrics["sim"] == "meanP" and metrics["texts"] > 0 and 0 <= metrics["t2v"]["R@1"] <= 100


@pytest.mark.parametrize("options, message", [
    ({}, "which model encodes"),
    ({"run": "RUN", "clip": "tiny"}, "mutually exclusive"),
    ({"run": "RUN", "pretrained": "none"}, "go with --clip"),
    ({"clip": "tiny", "pretrained": "none", "window": 4, "dataset": "jsonl", "ann": "a.jsonl"}, "--window cuts"),
    ({"clip": "tiny", "pretrained": "none", "stride": 2}, "--stride needs --window"),
])
def test_model_and_window_options_are_checked_first(data, tmp_path, options, message):
    if options.get("run") == "RUN":
        options = {**options, "run": data["runs"]["meanP"]}
    with pytest.raises(C4CError, match=message):
        _encode(data, tmp_path / "x.h5", **options)
    assert not (tmp_path / "x.h5").exists() and not partial_path(tmp_path / "x.h5").exists()


# --- moments --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sim", ["meanP", "seqTransf"])
def test_each_window_equals_its_frames_encoded_as_one_clip(data, tmp_path, sim):
    from c4c.model.load import load_run

    emb = Embeddings(_encode(data, tmp_path / "m.h5", run=data["runs"][sim], window=4.0, stride=1.0).out)
    model = load_run(data["runs"][sim]).model
    store = FrameStore(data["frames"])
    start, end = emb.spans()
    assert emb.moments and emb.attrs["window"] == 4.0 and emb.attrs["stride"] == 1.0
    vid = emb.video_ids[0]
    rows = [i for i, v in enumerate(emb.video_ids) if v == vid]
    # 8.1 s at 2 fps (17 frames): windows 0-4, 1-5, 2-6, 3-7, 4-8, then 5-9 passes the end: 5-8.1
    assert [(start[i], end[i]) for i in rows] == [(0, 4), (1, 5), (2, 6), (3, 7), (4, 8), (5, 8.1)]
    ts = store.timestamps(vid)
    for i in rows:
        idx = np.flatnonzero((ts >= start[i]) & ((ts < end[i]) | (i == rows[-1])))
        np.testing.assert_allclose(emb.video_emb()[i], _clip_embedding(model, store, vid, idx, 12), atol=2e-5)
    assert emb.sources()[rows[0]].endswith(f"{vid}.mp4")


def test_every_stored_frame_goes_through_the_image_tower_once(data, tmp_path, monkeypatch):
    from c4c.model.clip4clip import CLIP4Clip

    seen = []
    original = CLIP4Clip.encode_frames

    def counting(self, video, mask):
        seen.append(int(mask.sum()))
        return original(self, video, mask)

    monkeypatch.setattr(CLIP4Clip, "encode_frames", counting)
    result = _encode(data, tmp_path / "m.h5", run=data["runs"]["meanP"], window=4.0, stride=1.0)
    store = FrameStore(data["frames"])
    stored = sum(store.num_frames(v) for v in store.ids())
    assert sum(seen) == result.frames == stored == 8 * 17  # six overlapping windows per video, frames once
    assert result.rows == 8 * 6


def test_a_video_shorter_than_a_window_is_one_moment(data, tmp_path):
    emb = Embeddings(_encode(data, tmp_path / "m.h5", clip="tiny", pretrained="none", window=30.0).out)
    start, end = emb.spans()
    assert len(emb.video_ids) == len(set(emb.video_ids)) == 8
    np.testing.assert_allclose(end, 8.1)
    np.testing.assert_array_equal(start, 0.0)


def test_without_a_window_each_video_is_one_row_spanning_it(data, tmp_path):
    emb = Embeddings(_encode(data, tmp_path / "v.h5", run=data["runs"]["seqTransf"]).out)
    start, end = emb.spans()
    assert not emb.moments and len(emb.video_ids) == 8
    np.testing.assert_array_equal(start, 0.0)
    np.testing.assert_allclose(end, 8.1)


def test_a_video_is_encoded_the_same_whatever_else_is_in_the_store(data, tmp_path):
    """What makes an updated library equal a rebuilt one: a video's rows depend on that video alone."""
    full = Embeddings(_encode(data, tmp_path / "all.h5", run=data["runs"]["seqTransf"], window=4.0).out)
    one = tmp_path / "one.h5"
    keep = full.video_ids[5]
    with h5py.File(data["frames"], "r") as src, h5py.File(one, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        src.copy(src[f"videos/{keep}"], dst.require_group("videos"), name=keep)
    alone = Embeddings(_encode(data, tmp_path / "alone.h5", frames=one, run=data["runs"]["seqTransf"],
                               window=4.0).out)
    rows = [i for i, v in enumerate(full.video_ids) if v == keep]
    np.testing.assert_array_equal(alone.video_emb(), full.video_emb()[rows])


@pytest.mark.parametrize("sim, message", [("tightTransf", "cross encoder")])
def test_moments_of_a_tight_head_are_refused(data, tmp_path, sim, message):
    with pytest.raises(C4CError, match=message):
        _encode(data, tmp_path / "t.h5", run=data["runs"][sim], window=4.0)


def test_an_interrupted_moment_encode_resumes_to_the_same_file(data, tmp_path, monkeypatch):
    full = Embeddings(_encode(data, tmp_path / "full.h5", run=data["runs"]["meanP"], window=4.0).out)
    monkeypatch.setattr(encode, "ROWS_PER_WRITE", 1)  # one write per video
    original = EmbeddingWriter.write_videos
    calls = {"n": 0}

    def failing(self, start, emb, mask=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        original(self, start, emb, mask)

    monkeypatch.setattr(EmbeddingWriter, "write_videos", failing)
    with pytest.raises(KeyboardInterrupt):
        _encode(data, tmp_path / "cut.h5", run=data["runs"]["meanP"], window=4.0)
    with h5py.File(partial_path(tmp_path / "cut.h5"), "r") as f:
        assert f.attrs["videos_done"] == 3 * 4  # three whole videos of 4 windows (stride 2: 0-4, 2-6, 4-8, 6-8.1)
    monkeypatch.setattr(EmbeddingWriter, "write_videos", original)
    result = _encode(data, tmp_path / "cut.h5", run=data["runs"]["meanP"], window=4.0)
    assert result.resumed
    np.testing.assert_array_equal(Embeddings(result.out).video_emb(), full.video_emb())


# --- EMB.h5 versions ---------------------------------------------------------------------------------

def test_version_2_records_the_model_and_spans(data, tmp_path):
    emb = Embeddings(_encode(data, tmp_path / "r.h5", run=data["runs"]["meanP"]).out)
    model = json.loads(emb.attrs["model"])
    assert emb.version == 2 and model["kind"] == "run" and model["run"] == str(data["runs"]["meanP"].resolve())
    assert model["checkpoint"].endswith("best") and len(model["weights"]["sha256"]) == 64
    assert model["spec"]["sim"] == "meanP" and emb.attrs["model_fingerprint"] == model["fingerprint"]


def test_a_version_1_file_still_reads(tmp_path):
    """The layout the c4c of before moments wrote (no spans, sources or model), written by hand."""
    path = tmp_path / "v1.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "c4c-embeddings", "format_version": 1, "complete": True, "sim": "meanP",
                        "loose": True, "logit_scale": 100.0, "dim": 4, "run": "/runs/a",
                        "checkpoint": "/runs/a/best", "settings": json.dumps({"max_words": 32})})
        f.create_dataset("videos/ids", data=np.array(["x", "y"], dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("videos/emb", data=np.eye(2, 4, dtype=np.float32))
        f.create_dataset("texts/captions", data=np.array([], dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("texts/video_index", data=np.zeros(0, np.int64))
        f.create_dataset("texts/emb", shape=(0, 4), dtype="f4")
    emb = Embeddings(path)
    start, end = emb.spans()
    assert emb.version == 1 and not emb.moments and emb.video_ids == ["x", "y"]
    assert np.isnan(start).all() and np.isnan(end).all() and emb.sources() == ["", ""]
    source = emb.model_source
    assert (source.kind, source.run, source.checkpoint, source.weights) == ("run", "/runs/a", "/runs/a/best", None)
