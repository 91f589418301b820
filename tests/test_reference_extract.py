"""`c4c extract --reference-reader`: the paper's frame numbers at any frame rate, recorded in the store."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from c4c.cli.app import main
from c4c.video.store import FrameStore
from helpers import lavfi_video


@pytest.fixture(scope="module")
def ntsc(tmp_path_factory):
    d = tmp_path_factory.mktemp("ntsc") / "videos"
    d.mkdir()
    lavfi_video(d / "ntsc.mp4", 5.0, size="64x48", rate="30000/1001")
    lavfi_video(d / "film.mp4", 5.0, size="64x48", rate="24000/1001")
    return d


def test_the_reference_reader_steps_by_the_truncated_frame_rate_and_is_recorded(ntsc, tmp_path):
    out = tmp_path / "ref.h5"
    main(["extract", str(ntsc), "--out", str(out), "--size", "32", "--reference-reader", "-q"])
    with FrameStore(out) as store:
        assert store.settings.reader == "reference"
        # 29.97 fps read as 29: frames 0, 29, 58, ... -> one frame every 29 / 29.97 s
        ntsc_times = store.timestamps("ntsc")
        assert np.allclose(ntsc_times[:4], np.arange(4) * 29 * 1001 / 30000, atol=2e-3)
        film_times = store.timestamps("film")
        assert np.allclose(film_times[:4], np.arange(4) * 23 * 1001 / 24000, atol=2e-3)
        assert len(ntsc_times) == len(range(0, 149, 29)) and len(film_times) == len(range(0, 119, 23))
    with h5py.File(out, "r") as f:
        assert f.attrs["reader"] == "reference"


def test_the_default_reader_keeps_true_time_and_a_store_keeps_its_reader(ntsc, tmp_path, capsys):
    out = tmp_path / "c4c.h5"
    main(["extract", str(ntsc), "--out", str(out), "--size", "32", "-q"])
    with FrameStore(out) as store:
        assert store.settings.reader == "c4c"
        assert np.allclose(store.timestamps("ntsc")[:4], [0.0, 1.001, 2.002, 3.003], atol=2e-3)
    with pytest.raises(SystemExit) as info:
        main(["extract", str(ntsc), "--out", str(out), "--size", "32", "--reference-reader", "-q"])
    assert info.value.code == 2 and "reader" in capsys.readouterr().err


def test_the_reference_reader_needs_whole_frames_per_second(ntsc, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["extract", str(ntsc), "--out", str(tmp_path / "x.h5"), "--fps", "0.5", "--reference-reader"])
    assert "--reference-reader" in capsys.readouterr().err and not (tmp_path / "x.h5").exists()
