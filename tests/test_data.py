"""Model inputs: frame selection, caption tokens, (text, video) datasets and the epoch sampler."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from c4c.data.frames import ClipSpec, select_frames
from c4c.data.sampler import EpochSampler
from c4c.data.text import CaptionTokenizer
from c4c.data.video_text import EvalSet, TrainPairs, check_videos, collate
from c4c.datasets.records import VideoRecord
from c4c.errors import C4CError
from c4c.video import layout, staging, store
from c4c.video.decode import SampledVideo, VideoInfo

SIZE = 8
LENGTHS = {"v0": 5, "v1": 20, "v2": 3}  # stored frames per video, one per second
UNIFORM_20_12 = [0, 1, 3, 5, 6, 8, 10, 12, 13, 15, 17, 19]  # np.linspace(0, 19, 12, dtype=int)


def _frames(v: int, t: int) -> np.ndarray:
    """Frame k of video v is a flat image of value 10 * v + k."""
    values = (10 * v + np.arange(t)).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (t, SIZE, SIZE, 3)).copy()


@pytest.fixture(scope="module")
def frame_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "frames.h5"
    settings = layout.StoreSettings(fps=1.0, size=SIZE, codec="raw")
    layout.create_store(path, settings)
    parts = staging.parts_dir_for(path)
    for v, (vid, t) in enumerate(LENGTHS.items()):
        sample = SampledVideo(frames=_frames(v, t), timestamps=np.arange(t, dtype=np.float32),
                              info=VideoInfo(duration=float(t), fps=30.0, width=SIZE, height=SIZE))
        staging.write_part(parts, vid, sample, settings, f"/src/{vid}.mp4")
    staging.merge_parts(path, staging.list_parts(parts))
    with store.FrameStore(path) as fs:
        yield fs


@pytest.fixture(scope="module")
def tokenizer():
    return CaptionTokenizer(32)


def _records() -> list[VideoRecord]:
    return [VideoRecord("v0", ["a dog runs", "a dog plays", "a brown dog"], "train"),
            VideoRecord("v1", ["a man sings"], "train"),
            VideoRecord("v2", [f"caption {i}" for i in range(20)], "train")]


def _values(video: torch.Tensor, mask: torch.Tensor) -> list[int]:
    """The pixel value of each real frame (frames are flat)."""
    return video[mask][:, 0, 0, 0].tolist()


# --- select_frames ---------------------------------------------------------------------------------

def test_uniform_sampling_matches_the_reference_linspace():
    idx = select_frames(np.arange(20.0), max_frames=12, sampling="uniform")
    assert idx.dtype == np.int64
    assert idx.tolist() == UNIFORM_20_12 == [0, 1, 3, 5, 6, 8, 10, 12, 13, 15, 17, 19]


def test_head_and_tail_take_the_first_and_last_frames():
    t = np.arange(20.0)
    assert select_frames(t, max_frames=4, sampling="head").tolist() == [0, 1, 2, 3]
    assert select_frames(t, max_frames=4, sampling="tail").tolist() == [16, 17, 18, 19]


def test_fewer_frames_than_max_keeps_all():
    for sampling in ("head", "tail", "uniform"):
        assert select_frames(np.arange(5.0), max_frames=12, sampling=sampling).tolist() == [0, 1, 2, 3, 4]


def test_window_reads_whole_seconds_start_to_end_inclusive():
    t = np.arange(0, 10, 0.5)  # 2 frames per second: index = 2 * t
    # seconds 2..5 inclusive = [2.0, 6.0)
    assert select_frames(t, max_frames=100, start=2, end=5).tolist() == list(range(4, 12))
    assert select_frames(t, max_frames=100, start=8).tolist() == [16, 17, 18, 19]
    assert select_frames(t, max_frames=100, end=1).tolist() == [0, 1, 2, 3]


def test_window_tolerates_float32_timestamps_just_below_an_instant():
    t = np.array([0.0, 0.9999999, 2.0, 3.0], dtype=np.float32)
    assert select_frames(t, max_frames=10, start=1, end=2).tolist() == [1, 2]


def test_empty_window_falls_back_to_the_frame_nearest_start():
    t = np.arange(5.0)
    assert select_frames(t, max_frames=4, start=30, end=40).tolist() == [4]
    assert select_frames(np.zeros(0), max_frames=4).tolist() == []


def test_fps_thins_to_the_first_frame_at_or_after_each_instant():
    t = np.arange(0, 6, 0.25)  # 4 frames per second
    assert select_frames(t, max_frames=100, fps=1).tolist() == [0, 4, 8, 12, 16, 20]
    assert select_frames(t, max_frames=100, fps=2, start=1, end=2).tolist() == [4, 6, 8, 10]
    # jittered timestamps (30 fps source sampled at 3 fps): one frame per second survives
    jitter = np.array([0.0, 0.333, 0.667, 1.0, 1.333, 1.667, 2.033, 2.367, 2.7])
    assert select_frames(jitter, max_frames=100, fps=1).tolist() == [0, 3, 6]
    # a rate at or above the stored one keeps every frame
    assert select_frames(t, max_frames=100, fps=8).tolist() == list(range(24))


def test_order_reverse_and_shuffle():
    t = np.arange(20.0)
    keep = select_frames(t, max_frames=12)
    assert select_frames(t, max_frames=12, order="reverse").tolist() == keep[::-1].tolist()
    a = select_frames(t, max_frames=12, order="shuffle", rng=np.random.default_rng(1))
    b = select_frames(t, max_frames=12, order="shuffle", rng=np.random.default_rng(1))
    assert a.tolist() == b.tolist() and sorted(a.tolist()) == keep.tolist() and a.tolist() != keep.tolist()


def test_bad_names_are_user_errors():
    with pytest.raises(C4CError, match="sampling"):
        select_frames(np.arange(3.0), max_frames=2, sampling="middle")
    with pytest.raises(C4CError, match="order"):
        select_frames(np.arange(3.0), max_frames=2, order="sideways")
    with pytest.raises(C4CError):
        ClipSpec(sampling="random")


# --- CaptionTokenizer -------------------------------------------------------------------------------

def test_tokenizer_matches_the_reference_example(tokenizer):
    ids, mask = tokenizer(["A man is playing a guitar on stage."])
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool and ids.shape == (1, 32)
    assert ids[0].tolist() == [49406, 320, 786, 533, 1629, 320, 5084, 525, 2170, 269, 49407] + [0] * 21
    assert mask[0].tolist() == [True] * 11 + [False] * 21


def test_long_caption_keeps_thirty_tokens_and_ends_with_eot(tokenizer):
    ids, mask = tokenizer([" ".join(["word"] * 40)])
    assert ids[0, 0] == 49406 and ids[0, -1] == 49407 and (ids[0] == 49407).sum() == 1
    assert bool(mask.all())


def test_mask_covers_real_tokens_with_id_zero(tokenizer):
    ids, mask = tokenizer(["hi !~ there"])  # "!" alone is byte token 0
    n = int((ids[0] == 49407).nonzero()) + 1
    assert 0 in ids[0, :n].tolist()
    assert mask[0].tolist() == [True] * n + [False] * (32 - n)


def test_tokenizer_pickles_without_its_open_clip_state(tokenizer):
    tokenizer(["warm up"])
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert len(pickle.dumps(tokenizer)) < 200
    assert torch.equal(copy(["a cat"])[0], tokenizer(["a cat"])[0])


# --- TrainPairs -------------------------------------------------------------------------------------

def test_expansion_gives_one_item_per_caption(frame_store, tokenizer):
    expanded = TrainPairs(_records(), frame_store, tokenizer, ClipSpec())
    assert len(expanded) == 3 + 1 + 20
    assert TrainPairs(_records(), frame_store, tokenizer, ClipSpec(), expand_sentences=False).__len__() == 3
    first = tokenizer(["a dog plays"])[0][0]
    assert torch.equal(expanded[1]["text_ids"], first)


def test_short_video_is_zero_padded_at_the_end(frame_store, tokenizer):
    item = TrainPairs(_records(), frame_store, tokenizer, ClipSpec(max_frames=6))[0]  # v0: 5 frames
    assert item["video"].shape == (6, SIZE, SIZE, 3) and item["video"].dtype == torch.uint8
    assert item["video_mask"].tolist() == [True] * 5 + [False]
    assert _values(item["video"], item["video_mask"]) == [0, 1, 2, 3, 4]
    assert int(item["video"][5].abs().sum()) == 0
    assert item["text_ids"].shape == (32,) and item["index"] == 0


def test_long_video_uses_the_selected_frames(frame_store, tokenizer):
    pairs = TrainPairs(_records(), frame_store, tokenizer, ClipSpec(max_frames=12))
    item = pairs[3]  # v1: 20 frames of values 10..29
    assert bool(item["video_mask"].all())
    assert _values(item["video"], item["video_mask"]) == [10 + k for k in UNIFORM_20_12]
    tail_reversed = ClipSpec(max_frames=4, sampling="tail", order="reverse")
    reverse = TrainPairs(_records(), frame_store, tokenizer, tail_reversed)
    assert _values(reverse[3]["video"], reverse[3]["video_mask"]) == [29, 28, 27, 26]


def test_record_window_and_caption_times_choose_the_frames(frame_store, tokenizer):
    records = [VideoRecord("v1", ["a man sings"], "train", start=2.0, end=4.0),
               VideoRecord("v1", ["one", "two"], "train", caption_times=[(0.0, 1.0), (15.0, 16.0)])]
    pairs = TrainPairs(records, frame_store, tokenizer, ClipSpec(max_frames=12))
    assert [_values(pairs[i]["video"], pairs[i]["video_mask"]) for i in range(3)] == \
        [[12, 13, 14], [10, 11], [25, 26]]


def test_caption_choice_is_deterministic_per_seed_epoch_and_index(frame_store, tokenizer):
    def choices(epoch: int, seed: int = 42) -> list[int]:
        pairs = TrainPairs(_records(), frame_store, tokenizer, ClipSpec(), expand_sentences=False, seed=seed)
        pairs.set_epoch(epoch)
        return [pairs.caption_index(2) for _ in range(2)] + [pairs.caption_index(0)]

    assert choices(0) == choices(0)
    assert choices(0)[0] == choices(0)[1]
    per_epoch = [choices(e)[0] for e in range(8)]
    assert len(set(per_epoch)) > 1  # 20 captions: the draw changes across epochs
    pairs = TrainPairs(_records(), frame_store, tokenizer, ClipSpec(), expand_sentences=False)
    pairs.set_epoch(3)
    expected = tokenizer([f"caption {pairs.caption_index(2)}"])[0][0]
    assert torch.equal(pairs[2]["text_ids"], expected)


def test_frame_shuffle_is_reproducible_and_changes_with_epoch(frame_store, tokenizer):
    pairs = TrainPairs(_records(), frame_store, tokenizer, ClipSpec(max_frames=12, order="shuffle"))
    a, b = pairs[3], pairs[3]
    assert torch.equal(a["video"], b["video"])
    assert sorted(_values(a["video"], a["video_mask"])) == [10 + k for k in UNIFORM_20_12]
    orders = set()
    for epoch in range(4):
        pairs.set_epoch(epoch)
        orders.add(tuple(_values(pairs[3]["video"], pairs[3]["video_mask"])))
    assert len(orders) > 1


def test_paragraph_joins_captions_into_one_item(frame_store, tokenizer):
    pairs = TrainPairs(_records()[:1], frame_store, tokenizer, ClipSpec(), paragraph=True)
    assert len(pairs) == 1
    assert torch.equal(pairs[0]["text_ids"], tokenizer(["a dog runs a dog plays a brown dog"])[0][0])


def test_collate_stacks_items_and_survives_a_worker(frame_store, tokenizer):
    pairs = TrainPairs(_records(), frame_store, tokenizer, ClipSpec(max_frames=4))
    batch = collate([pairs[0], pairs[5]])
    assert batch["video"].shape == (2, 4, SIZE, SIZE, 3) and batch["text_ids"].shape == (2, 32)
    assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == [0, 5]
    copy = pickle.loads(pickle.dumps(pairs))
    assert torch.equal(copy[5]["video"], pairs[5]["video"])


# --- EvalSet ----------------------------------------------------------------------------------------

def test_eval_set_maps_captions_to_distinct_videos(frame_store, tokenizer):
    records = [VideoRecord("v1", ["x", "y"], "test"), VideoRecord("v0", ["z"], "test"),
               VideoRecord("v1", ["w"], "test")]
    ev = EvalSet(records, frame_store, tokenizer, ClipSpec(max_frames=4))
    assert ev.video_ids == ["v1", "v0"] and ev.captions == ["x", "y", "z", "w"]
    assert ev.video_of_caption.dtype == np.int64 and ev.video_of_caption.tolist() == [0, 0, 1, 0]
    assert ev.multi_sentence
    videos, texts = ev.video_dataset(), ev.text_dataset()
    assert len(videos) == 2 and len(texts) == 4
    # linspace(0, 4, 4) = 0, 1.33, 2.67, 4 -> frames 0, 1, 2, 4 of v0
    assert _values(videos[1]["video"], videos[1]["video_mask"]) == [0, 1, 2, 4] and videos[1]["index"] == 1
    assert torch.equal(texts[3]["text_ids"], tokenizer(["w"])[0][0])


def test_eval_set_paragraph_joins_each_records_captions(frame_store, tokenizer):
    records = [VideoRecord("v0", ["one.", "two."], "test"), VideoRecord("v2", ["three."], "test")]
    ev = EvalSet(records, frame_store, tokenizer, ClipSpec(), paragraph=True)
    assert ev.captions == ["one. two.", "three."] and ev.video_of_caption.tolist() == [0, 1]
    assert not ev.multi_sentence


# --- check_videos -----------------------------------------------------------------------------------

def test_missing_videos_are_named_in_the_error(frame_store):
    records = _records() + [VideoRecord(f"gone{i}", ["c"], "test") for i in range(7)]
    with pytest.raises(C4CError) as info:
        check_videos(records, frame_store)
    message = str(info.value)
    assert "7 of 10 videos" in message and "gone0" in message and "gone4" in message
    assert "gone5" not in message and "--skip-missing" in message and "c4c extract" in message
    assert str(frame_store.path) in message


def test_skip_missing_drops_their_records(frame_store, caplog):
    records = _records() + [VideoRecord("gone", ["c"], "test")]
    kept = check_videos(records, frame_store, skip_missing=True)
    assert [r.video_id for r in kept] == ["v0", "v1", "v2"]
    assert "skipping 1 of 4 videos" in caplog.text
    assert check_videos(_records(), frame_store) == _records()


# --- EpochSampler -----------------------------------------------------------------------------------

def test_same_seed_and_epoch_give_the_same_permutation():
    a, b = EpochSampler(50, batch_size=5), EpochSampler(50, batch_size=5)
    assert list(a) == list(b) and sorted(a) == list(range(50)) and list(a) != list(range(50))
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(EpochSampler(50, batch_size=5, shuffle=False)) == list(range(50))


def test_ranks_partition_the_padded_epoch():
    samplers = [EpochSampler(10, batch_size=2, rank=r, world_size=4, drop_last=False) for r in range(4)]
    parts = [list(s) for s in samplers]
    assert [len(p) for p in parts] == [3] * 4 and all(len(s) == 3 for s in samplers)
    order = samplers[0].epoch_order()
    assert order.tolist()[10:] == order.tolist()[:2]  # padded by repeating the start
    merged = [None] * 12
    for r, p in enumerate(parts):
        merged[r::4] = p
    assert merged == order.tolist()


def test_drop_last_gives_every_rank_the_same_full_batches():
    samplers = [EpochSampler(103, batch_size=4, rank=r, world_size=3) for r in range(3)]
    # 103 // 3 = 34 per rank -> 8 full batches of 4
    assert [len(s) for s in samplers] == [32] * 3 and samplers[0].batches_per_epoch == 8
    seen = [i for s in samplers for i in s]
    assert len(seen) == len(set(seen)) == 96
    with pytest.raises(C4CError, match="no full batch"):
        EpochSampler(10, batch_size=4, world_size=3)


def test_skip_resumes_with_the_tail_of_an_uninterrupted_epoch():
    full = EpochSampler(40, batch_size=4, rank=1, world_size=2)
    full.set_epoch(3)
    expected = list(full)
    resumed = EpochSampler(40, batch_size=4, rank=1, world_size=2)
    resumed.set_epoch(3)
    resumed.skip(8)
    resumed.set_epoch(3)  # same epoch: the pending skip stays
    assert list(resumed) == expected[8:]
    assert list(resumed) == expected  # the skip applies to one iteration only


def test_state_dict_round_trip_resumes_mid_epoch():
    a = EpochSampler(30, batch_size=3, seed=7)
    a.set_epoch(2)
    it = iter(a)
    taken = [next(it) for _ in range(9)]
    state = a.state_dict()
    assert state["epoch"] == 2 and state["position"] == 9
    b = EpochSampler(30, batch_size=3, seed=7)
    b.load_state_dict(state)
    assert taken + list(b) == list(a)
    assert b.state_dict(position=6)["position"] == 6
    with pytest.raises(C4CError, match="seed"):
        EpochSampler(30, batch_size=3, seed=8).load_state_dict(state)
