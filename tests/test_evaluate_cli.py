"""`c4c evaluate captions.json`: the command scores against the annotation file's references."""

from __future__ import annotations

import json

import pytest

from c4c.cli import main
from c4c.metrics.captions import score_captions


def _ann(tmp_path):
    lines = [{"video_id": "v1", "caption": "a red circle moves left", "split": "test"},
             {"video_id": "v1", "caption": "the red circle goes to the left", "split": "test"},
             {"video_id": "v2", "caption": "a blue square moves up", "split": "test"},
             {"video_id": "v3", "caption": "a green triangle moves down", "split": "train"}]
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.mark.slow  # METEOR starts a Java process (~10 s)
def test_caption_scores_are_written_next_to_the_captions(tmp_path, capsys):
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"v1": "a red circle moves left", "v2": "a blue circle moves up"}))
    main(["evaluate", str(captions), "--dataset", "jsonl", "--ann", str(_ann(tmp_path)), "--tokenize", "simple"])
    written = json.loads((tmp_path / "captions.metrics.json").read_text())
    want = score_captions({"v1": "a red circle moves left", "v2": "a blue circle moves up"},
                          {"v1": ["a red circle moves left", "the red circle goes to the left"],
                           "v2": ["a blue square moves up"]}, tokenize="simple")
    assert written["format"] == "c4c-caption-metrics" and written["videos"] == 2
    assert written["scores"]["CIDEr"] == pytest.approx(want["CIDEr"])
    assert written["scores"]["BLEU-1"] == pytest.approx(want["BLEU-1"])
    assert "CIDEr" in capsys.readouterr().out


def test_caption_scoring_needs_the_references(tmp_path, capsys):
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"v1": "a red circle"}))
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(captions)])
    assert exc.value.code == 2
    assert "--dataset and --ann" in capsys.readouterr().err
