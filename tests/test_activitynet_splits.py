"""ActivityNet's val_2 is not a val split unless asked (its videos are all test videos), and the split
helpers: a held-out val from training videos, and the videos two splits share."""

from __future__ import annotations

import json
import random

import pytest

from c4c.datasets.records import VideoRecord
from c4c.datasets.registry import read_annotations, reader_options
from c4c.datasets.splits import hold_out_val, split_overlap
from c4c.errors import C4CError


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")


def entry(*sentences, duration=10.0):
    return {"duration": duration, "timestamps": [[0, 1]] * len(sentences), "sentences": list(sentences)}


def make_activitynet(folder):
    """Four train videos; val_1 (test) has three; val_2 has two of those three, as in the real files."""
    write_json(folder / "train.json", {f"v_train{i}": entry(f"train {i}.") for i in range(4)})
    write_json(folder / "val_1.json", {f"v_test{i}": entry(f"test {i}.") for i in range(3)})
    write_json(folder / "val_2.json", {"v_test2": entry("other 2."), "v_test0": entry("other 0.")})


def splits(records):
    return [(r.video_id, r.split) for r in records]


def test_val_2_is_not_read_by_default(tmp_path):
    make_activitynet(tmp_path)
    records = read_annotations("activitynet", tmp_path)
    assert splits(records) == [("train0", "train"), ("train1", "train"), ("train2", "train"),
                               ("train3", "train"), ("test0", "test"), ("test1", "test"), ("test2", "test")]


def test_val2_as_val_reads_it_as_val_and_warns_of_the_overlap(tmp_path, caplog):
    make_activitynet(tmp_path)
    records = read_annotations("activitynet", tmp_path, val2_as_val=True)
    assert [(r.video_id, r.captions) for r in records if r.split == "val"] == [
        ("test2", ["other 2."]), ("test0", ["other 0."])]
    assert split_overlap(records, "val", "test") == ["test0", "test2"]
    assert "2 of the val (val_2) videos are also test (val_1) videos" in caplog.text


def test_the_registry_accepts_the_option():
    assert "val2_as_val" in reader_options("activitynet")


# ---------------------------------------------------------------------------------------------
# hold_out_val

def train_records(n, captions_per_record=1):
    return [VideoRecord(video_id=f"vid{i:03d}", captions=[f"c{i}"] * captions_per_record, split="train")
            for i in range(n)] + [VideoRecord(video_id="t0", captions=["t"], split="test")]


def val_ids(records):
    return sorted(r.video_id for r in records if r.split == "val")


@pytest.mark.parametrize(("spec", "expected"), [("5%", 5), ("2.5%", 3), ("7", 7), (" 7 ", 7), (7, 7),
                                                (0.05, 5), ("0.05", 5), ("0.5%", 1)])
def test_the_spec_sets_how_many_training_videos_move(spec, expected):
    records = hold_out_val(train_records(100), spec)
    assert len(val_ids(records)) == expected
    assert sum(r.split == "train" for r in records) == 100 - expected
    assert [r.video_id for r in records if r.split == "test"] == ["t0"]


def test_the_choice_depends_on_ids_and_seed_not_on_record_order():
    records = train_records(50)
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    assert val_ids(hold_out_val(records, "10%", seed=1)) == val_ids(hold_out_val(shuffled, "10%", seed=1))
    assert val_ids(hold_out_val(records, "10%", seed=1)) != val_ids(hold_out_val(records, "10%", seed=2))
    assert val_ids(hold_out_val(records, 5)) == val_ids(hold_out_val(records, 5, seed=0))


def test_records_keep_their_order_and_the_input_is_not_changed():
    records = train_records(20)
    out = hold_out_val(records, 4)
    assert [r.video_id for r in out] == [r.video_id for r in records]
    assert all(r.split == "train" for r in records[:20])


def test_every_record_of_a_chosen_video_moves_and_counts_are_in_videos():
    records = [VideoRecord(video_id=f"v{i % 10}", captions=[f"w{i}"], split="train", start=float(i))
               for i in range(30)]  # 10 videos, 3 windows each
    out = hold_out_val(records, "20%")
    moved = [r for r in out if r.split == "val"]
    assert len({r.video_id for r in moved}) == 2 and len(moved) == 6
    assert not set(split_overlap(out, "train", "val"))


def test_a_larger_part_contains_the_smaller_one():
    records = train_records(40)
    assert set(val_ids(hold_out_val(records, 3))) <= set(val_ids(hold_out_val(records, 8)))


@pytest.mark.parametrize("spec", ["five", "5 %%", "-3", "0%", "100%", "150%", "nan%", 0, -1, 1.5, 0.0, True,
                                  None, "", "1e9", 100])
def test_bad_specs_are_user_errors(spec):
    with pytest.raises(C4CError, match="held-out val size|bad held-out"):
        hold_out_val(train_records(100), spec)


def test_an_existing_val_split_or_no_train_videos_is_refused():
    records = train_records(10) + [VideoRecord(video_id="v", captions=["x"], split="val")]
    with pytest.raises(C4CError, match="already have a val split"):
        hold_out_val(records, 2)
    with pytest.raises(C4CError, match="no training videos"):
        hold_out_val([VideoRecord(video_id="t", captions=["x"], split="test")], 1)


def test_activitynet_gets_a_val_split_that_shares_nothing_with_test(tmp_path):
    make_activitynet(tmp_path)
    records = hold_out_val(read_annotations("activitynet", tmp_path), "1")
    assert len(val_ids(records)) == 1 and val_ids(records)[0].startswith("train")
    assert split_overlap(records, "val", "test") == []


# ---------------------------------------------------------------------------------------------
# split_overlap

def test_split_overlap_lists_shared_ids_sorted_once():
    records = [VideoRecord(video_id=v, captions=["x"], split=s) for v, s in
               [("b", "train"), ("a", "train"), ("b", "test"), ("a", "test"), ("a", "test"), ("c", "val")]]
    assert split_overlap(records, "train", "test") == ["a", "b"]
    assert split_overlap(records, "train", "val") == []


def test_split_overlap_rejects_unknown_splits():
    with pytest.raises(C4CError, match="unknown split 'dev'"):
        split_overlap([], "train", "dev")
