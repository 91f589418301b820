"""JPEG frame decoders: simplejpeg and torchvision give Pillow's pixels (within 1 level); auto falls back."""

from __future__ import annotations

import numpy as np
import pytest

from c4c.video import jpeg, layout, staging, store
from c4c.video.decode import SampledVideo, VideoInfo, encode_jpeg

SIZE = 64


def _frames(t: int, seed: int) -> np.ndarray:
    """Camera-like frames: moving gradients plus noise (uint8 [t, SIZE, SIZE, 3])."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    out = []
    for k in range(t):
        base = np.stack([x * 3 + 7 * k, y * 2 + 5 * k, (x + y) * 1.5 + 11 * k], -1) % 256
        out.append(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def jpeg_store(tmp_path_factory):
    """A store of two videos of JPEG q95 frames (with their CRC-32s), and their stored bytes."""
    path = tmp_path_factory.mktemp("jpeg") / "frames.h5"
    settings = layout.StoreSettings(fps=1.0, size=SIZE, codec="jpeg")
    layout.create_store(path, settings)
    parts = staging.parts_dir_for(path)
    stored = {}
    for i, vid in enumerate(["a", "b"]):
        data = [encode_jpeg(f, 95) for f in _frames(6, seed=i)]
        stored[vid] = [np.frombuffer(d, np.uint8) for d in data]
        staging.write_part(parts, vid, SampledVideo(frames=data, timestamps=np.arange(6, dtype=np.float32),
                                                    info=VideoInfo(duration=6.0, fps=30.0, width=SIZE, height=SIZE)),
                           settings, f"/src/{vid}.mp4")
    staging.merge_parts(path, staging.list_parts(parts))
    return path, stored


def _max_diff(a, b) -> int:
    return int(np.abs(np.asarray(a).astype(np.int16) - np.asarray(b).astype(np.int16)).max())


def test_simplejpeg_reads_stored_frames_within_one_level_of_pillow(jpeg_store):
    pytest.importorskip("simplejpeg", reason="simplejpeg is not installed")
    path, stored = jpeg_store
    assert jpeg.cpu_decoder("auto") == "simplejpeg"
    with store.FrameStore(path) as fs:  # reading checks each frame's CRC-32 before decoding it
        for vid, rows in stored.items():
            frames = fs.read(vid)
            assert frames.shape == (6, SIZE, SIZE, 3) and frames.dtype == np.uint8
            assert _max_diff(frames, jpeg.decode_jpegs(rows, "pillow")) <= 1


def test_auto_falls_back_to_pillow_without_simplejpeg(jpeg_store, monkeypatch):
    monkeypatch.setattr(jpeg, "_simplejpeg", False)  # as if the import had failed
    _, stored = jpeg_store
    assert jpeg.cpu_decoder("auto") == "pillow"
    with pytest.raises(ImportError, match="simplejpeg"):
        jpeg.cpu_decoder("simplejpeg")
    np.testing.assert_array_equal(jpeg.decode_jpegs(stored["a"]), jpeg.decode_jpegs(stored["a"], "pillow"))


def test_torchvision_cpu_decode_within_one_level_of_pillow(jpeg_store):
    if not jpeg.torchvision_decoder_available():
        pytest.skip("torchvision.io.decode_jpeg is unavailable in this torchvision build")
    _, stored = jpeg_store
    rows = stored["a"] + stored["b"]
    frames = jpeg.decode_jpegs_torch(rows, "cpu")
    assert tuple(frames.shape) == (12, SIZE, SIZE, 3) and str(frames.device) == "cpu"
    assert _max_diff(frames.numpy(), jpeg.decode_jpegs(rows, "pillow")) <= 1


@pytest.mark.parametrize("decoder", ["pillow", "simplejpeg"])
def test_frames_of_different_sizes_are_refused(decoder):
    if decoder == "simplejpeg":
        pytest.importorskip("simplejpeg", reason="simplejpeg is not installed")
    rows = [encode_jpeg(np.zeros((8, 8, 3), np.uint8), 95), encode_jpeg(np.zeros((8, 16, 3), np.uint8), 95)]
    with pytest.raises(ValueError, match="frame 1 is 16x8"):
        jpeg.decode_jpegs(rows, decoder)


@pytest.mark.parametrize("decoder", ["pillow", "simplejpeg"])
def test_damaged_jpeg_raises_what_the_store_reports_as_damaged(decoder):
    if decoder == "simplejpeg":
        pytest.importorskip("simplejpeg", reason="simplejpeg is not installed")
    data = encode_jpeg(_frames(1, seed=3)[0], 95)
    with pytest.raises(store._DAMAGED):
        jpeg.decode_jpegs([np.frombuffer(b"\x00" * 64 + data[64:], np.uint8)], decoder)


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="unknown JPEG decoder"):
        jpeg.cpu_decoder("turbo")


def test_frame_decoder_uses_the_gpu_only_for_a_cuda_model():
    assert jpeg.frame_decoder("cpu", "cuda:0") == "cpu"
    assert jpeg.frame_decoder("auto", "cpu") == "cpu"
    assert jpeg.frame_decoder("cuda", "cpu") == "cpu"  # the CPU path is the fallback
    expected = "cuda" if jpeg.torchvision_decoder_available() else "cpu"
    assert jpeg.frame_decoder("auto", "cuda:0") == expected
    with pytest.raises(ValueError, match="unknown frame decoder"):
        jpeg.frame_decoder("gpu", "cuda")


def test_cuda_decode_within_one_level_of_pillow(jpeg_store):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or not jpeg.torchvision_decoder_available():
        pytest.skip("needs CUDA and torchvision.io.decode_jpeg (nvJPEG)")
    _, stored = jpeg_store
    rows = stored["a"] + stored["b"]
    frames = jpeg.decode_jpegs_torch(rows, "cuda")
    assert frames.is_cuda and tuple(frames.shape) == (12, SIZE, SIZE, 3)
    assert _max_diff(frames.cpu().numpy(), jpeg.decode_jpegs(rows, "pillow")) <= 1
