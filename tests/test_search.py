"""Search over your own videos, end to end through the command line:
`c4c extract FOLDER` -> `c4c encode` (no annotations) -> `c4c index` -> `c4c search`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from c4c import synth
from c4c.cli import main
from c4c.errors import C4CError
from c4c.stages.finetune import FinetuneConfig, run as finetune_run


def _cli(*args: str) -> None:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), f"c4c {' '.join(map(str, args))} exited with {exc.code}"


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> dict:
    """A folder of synthetic videos, extracted as "my videos", and a tiny seqLSTM trained on them."""
    d = tmp_path_factory.mktemp("own")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=24, seed=1, duration=2.0, width=64, height=48))
    _cli("extract", d / "synth" / "videos", "--out", d / "my.h5", "--size", "32", "--fps", "2", "-q")
    ann = d / "synth" / "annotations.jsonl"
    finetune_run(FinetuneConfig(dataset="jsonl", ann=ann, frames=d / "my.h5", out=d / "run", clip="tiny",
                                pretrained="none", sim="seqLSTM", epochs=20, batch_size=8, lr=2e-3, coef_lr=1.0,
                                workers=0, select_on="last", max_frames=4))
    _cli("encode", "--run", d / "run", "--frames", d / "my.h5", "--out", d / "my_emb.h5", "--workers", "0", "-q")
    _cli("index", d / "my_emb.h5", "--out", d / "my_index", "-q")
    records = [json.loads(line) for line in ann.read_text().splitlines()]
    return {"dir": d, "index": d / "my_index", "train": [r for r in records if r["split"] == "train"]}


def _search_json(capsys, index: Path, queries: list[str], k: int = 1) -> list[dict]:
    capsys.readouterr()
    _cli("search", index, *queries, "-k", str(k), "--json", "--device", "cpu")
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_most_captions_find_their_own_video_first(own, capsys):
    queries = [r["caption"] for r in own["train"]]
    results = _search_json(capsys, own["index"], queries)
    hits = sum(res["results"][0]["video_id"] == r["video_id"] for res, r in zip(results, own["train"]))
    assert [res["query"] for res in results] == queries
    assert hits / len(queries) > 0.5, f"{hits} of {len(queries)} captions found their video first (chance 1/24)"


@pytest.mark.slow
def test_search_returns_k_distinct_videos_best_first_and_a_table(own, capsys):
    (result,) = _search_json(capsys, own["index"], ["a red circle moves left"], k=5)
    scores = [hit["score"] for hit in result["results"]]
    assert [hit["rank"] for hit in result["results"]] == [1, 2, 3, 4, 5]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert len({hit["video_id"] for hit in result["results"]}) == 5
    _cli("search", own["index"], "a red circle moves left", "-k", "3", "--device", "cpu")
    table = capsys.readouterr().out
    assert result["results"][0]["video_id"] in table


@pytest.mark.slow
def test_search_errors_are_clear(own, tmp_path):
    from c4c.stages.search import Searcher

    searcher = Searcher(own["index"], device="cpu")
    with pytest.raises(C4CError, match="empty query"):
        searcher.search(["  "])
    with pytest.raises(C4CError, match="config.json missing"):
        Searcher(own["index"], run=tmp_path, device="cpu")
    with pytest.raises(C4CError):
        Searcher(tmp_path, device="cpu")  # not an index folder
