"""`make demo` holds its figures: every model it trains beats chance or a trivial baseline, and the
questions it asks are answered right more often than chance (the full recipe, as `make demo` runs it)."""

from __future__ import annotations

import json
import os

import pytest

from c4c import demo


def test_the_quick_demo_runs_end_to_end_and_writes_its_summary(tmp_path):
    summary = demo.run(tmp_path / "d", demo.QUICK)
    saved = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary)) and saved["format"] == "c4c-demo"
    whats = [f["what"] for f in saved["figures"]]
    assert any("R@1" in w for w in whats) and any("CIDEr" in w for w in whats) and any("moment" in w for w in whats)
    assert saved["answers"] and all({"caption", "video_id", "start", "end", "top", "right"} <= set(a)
                                    for a in saved["answers"])


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("C4C_SKIP_DEMO_TEST") == "1", reason="C4C_SKIP_DEMO_TEST=1")
def test_the_demo_figures_beat_their_baselines(tmp_path):
    summary = demo.run(tmp_path / "d", demo.Recipe())
    failing = [f for f in summary["figures"] if not f["beats"]]
    assert not failing, failing
    r1 = {f["what"].split()[0]: f for f in summary["figures"] if "R@1" in f["what"]}
    assert all(f["value"] >= 3 * f["baseline"] for f in r1.values()), r1  # clearly, not barely
