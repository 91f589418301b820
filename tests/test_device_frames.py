"""Frames decoded after batching (--frame-decoder cuda): the same pixels, batches and training as the CPU path.

torchvision's decoder runs on the CPU too, so the whole path (JPEG items, collate, one batch decode,
the trainer's switch) is checked here; on a GPU the same code decodes with nvJPEG.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from c4c import synth
from c4c.data import device_frames
from c4c.data.text import CaptionTokenizer
from c4c.data.frames import ClipSpec
from c4c.data.video_text import TrainPairs, collate
from c4c.datasets.jsonl import read_jsonl
from c4c.errors import C4CError
from c4c.stages import extract
from c4c.stages.finetune import FinetuneConfig, run
from c4c.run import checkpoint
from c4c.video import jpeg
from c4c.video.store import FrameStore

pytestmark = pytest.mark.skipif(not jpeg.torchvision_decoder_available(), reason="needs torchvision.io.decode_jpeg")


@pytest.fixture(scope="module")
def synth_frames(tmp_path_factory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("devframes")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=12, seed=3, duration=2.0, width=64, height=48))
    ann, videos = d / "synth" / "annotations.jsonl", d / "synth" / "videos"
    stores = []
    for codec in ("jpeg", "raw"):
        out = d / f"frames-{codec}.h5"
        assert extract.run(extract.ExtractConfig(source=ann, dataset="jsonl", videos_dir=videos, out=out, size=32,
                                                 fps=2.0, codec=codec)).ok
        stores.append(out)
    return ann, stores[0], stores[1]


def _pairs(ann: Path, frames: Path, max_frames: int = 6) -> TrainPairs:
    records = [r for r in read_jsonl(ann) if r.split == "train"] or read_jsonl(ann)
    return TrainPairs(records, FrameStore(frames), CaptionTokenizer(16), ClipSpec(max_frames=max_frames))


def test_a_batch_decoded_after_collate_equals_the_cpu_batch(synth_frames):
    ann, frames, _ = synth_frames
    plain, packed = _pairs(ann, frames, max_frames=6), _pairs(ann, frames, max_frames=6)
    packed.encoded_frames = True
    items = list(range(min(5, len(plain))))
    expected = collate([plain[i] for i in items])
    batch = collate([packed[i] for i in items])
    assert "video" not in batch and batch["video_jpeg"].dtype == torch.uint8 and batch["video_jpeg"].dim() == 1
    assert batch["video_jpeg_lengths"].shape == (len(items), 6)
    assert int(batch["video_jpeg_lengths"].sum()) == batch["video_jpeg"].numel()
    torch.testing.assert_close(batch["video_mask"], expected["video_mask"])
    assert ((batch["video_jpeg_lengths"] > 0) == expected["video_mask"]).all()  # padded frames carry no bytes
    decoded = device_frames.decode_batch(batch, 32, "cpu")
    assert set(decoded) == set(expected)
    diff = (decoded["video"].to(torch.int16) - expected["video"].to(torch.int16)).abs().max()
    assert int(diff) <= 1  # libjpeg-turbo either way: identical on these frames
    assert not decoded["video"][~expected["video_mask"]].any()


def test_padding_only_batches_and_wrong_sizes():
    data, lengths, mask = device_frames.pack_rows([], 4)
    batch = {"video_jpeg": data, "video_jpeg_lengths": lengths[None], "video_mask": mask[None]}
    out = device_frames.decode_batch(batch, 8, "cpu")
    assert out["video"].shape == (1, 4, 8, 8, 3) and not out["video"].any()
    from c4c.video.decode import encode_jpeg

    row = np.frombuffer(encode_jpeg(np.zeros((16, 16, 3), np.uint8), 95), np.uint8)
    data, lengths, mask = device_frames.pack_rows([row], 2)
    with pytest.raises(ValueError, match="16x16"):
        device_frames.decode_batch({"video_jpeg": data, "video_jpeg_lengths": lengths[None]}, 8, "cpu")


def test_raw_stores_cannot_hand_out_jpeg_bytes(synth_frames):
    ann, _, raw = synth_frames
    pairs = _pairs(ann, raw)
    pairs.encoded_frames = True
    with pytest.raises(C4CError, match="raw frames"):
        pairs[0]


def _cfg(ann: Path, frames: Path, out: Path, **kw) -> FinetuneConfig:
    base = dict(dataset="jsonl", ann=ann, frames=frames, out=out, clip="tiny", pretrained="none", epochs=1,
                batch_size=4, lr=1e-3, coef_lr=1.0, workers=0, log_every=1, eval_batch_size=8, max_steps=2)
    base.update(kw)
    return FinetuneConfig(**base)


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if json.loads(x).get("event") == "step"]


def test_training_with_frames_decoded_after_batching_matches_the_cpu_path(synth_frames, tmp_path, monkeypatch):
    ann, frames, _ = synth_frames
    cpu = _cfg(ann, frames, tmp_path / "cpu", frame_decoder="cpu")
    run(cpu)
    # as on a CUDA model: the trainer gets JPEG batches and decodes them itself (here with torchvision on the CPU)
    monkeypatch.setattr(jpeg, "frame_decoder", lambda name, device: "cuda")
    seen: list[int] = []
    real = device_frames.decode_batch

    def spy(batch, size, device):
        seen.append(int(batch["video_jpeg_lengths"].shape[0]))
        return real(batch, size, device)

    monkeypatch.setattr("c4c.train.loop.decode_batch", spy)
    run(replace(cpu, out=tmp_path / "device", frame_decoder="cuda"))
    assert seen == [4, 4]
    assert _losses(tmp_path / "cpu") == _losses(tmp_path / "device")
    a = checkpoint.load_model_state(checkpoint.latest(tmp_path / "cpu"))
    b = checkpoint.load_model_state(checkpoint.latest(tmp_path / "device"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_a_raw_store_falls_back_to_cpu_decoding(synth_frames, tmp_path, monkeypatch, caplog):
    ann, _, raw = synth_frames
    monkeypatch.setattr(jpeg, "frame_decoder", lambda name, device: "cuda")
    with caplog.at_level("WARNING"):
        run(_cfg(ann, raw, tmp_path / "raw", frame_decoder="cuda", max_steps=1))
    assert "decoded on the CPU" in caplog.text and "raw frames" in caplog.text
