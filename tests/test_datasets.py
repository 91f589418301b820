"""Annotation readers: small files in each dataset's real format -> the expected records."""

from __future__ import annotations

import importlib
import inspect
import json
import pickle
from typing import get_args

import pytest

from c4c.datasets.records import SPLITS, VideoRecord
from c4c.datasets.registry import (DATASETS, DatasetName, ExtractDatasetName, read_annotations, reader_options,
                                   split_records)
from c4c.errors import C4CError
from c4c.stages.pairs import dataset_options


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def summary(records: list[VideoRecord]) -> list[tuple]:
    return [(r.video_id, r.split, r.captions) for r in records]


# ---------------------------------------------------------------------------------------------
# registry


@pytest.mark.parametrize("name", list(DATASETS))
def test_each_format_names_a_reader_whose_keyword_options_are_the_ones_listed(name):
    fmt = DATASETS[name]
    reader = getattr(importlib.import_module(fmt.module), fmt.reader)
    keyword_only = tuple(p.name for p in inspect.signature(reader).parameters.values()
                         if p.kind is inspect.Parameter.KEYWORD_ONLY)
    assert keyword_only == reader_options(name)
    for task, options in fmt.task_defaults.items():
        assert set(options) <= set(fmt.options), (task, options)


def test_extract_takes_every_format_and_the_other_commands_those_with_splits_to_score():
    assert get_args(ExtractDatasetName) == tuple(DATASETS)
    assert get_args(DatasetName) == tuple(name for name in DATASETS if DATASETS[name].retrieval)


def test_command_line_flags_become_options_only_of_the_readers_that_take_them():
    assert dataset_options("msrvtt", None) == {"msrvtt_train": "9k"}
    assert dataset_options("msrvtt", None, task="caption") == {"msrvtt_train": "full"}
    assert dataset_options("msrvtt", "7k", task="caption", activitynet_val2=True) == {"msrvtt_train": "7k"}
    assert dataset_options("activitynet", "7k", activitynet_val2=True) == {"val2_as_val": True}
    assert dataset_options("activitynet", None) == dataset_options("msvd", "7k") == dataset_options(None, "7k") == {}


def test_unknown_dataset_error_lists_the_valid_names(tmp_path):
    with pytest.raises(C4CError, match="unknown dataset 'youcook'.*msrvtt, msvd, lsmdc"):
        read_annotations("youcook", tmp_path)


def test_unknown_reader_option_is_refused(tmp_path):
    with pytest.raises(C4CError, match="unknown option.*lsmdc reader: max_words"):
        read_annotations("lsmdc", tmp_path, max_words=32)


def test_split_records_filters_in_order_and_rejects_unknown_splits():
    records = [VideoRecord("a", ["x"], "train"), VideoRecord("b", ["y"], "test"),
               VideoRecord("c", ["z"], "train")]
    assert [r.video_id for r in split_records(records, "train")] == ["a", "c"]
    assert split_records(records, "val") == []
    with pytest.raises(C4CError, match="unknown split 'dev'"):
        split_records(records, "dev")


def test_missing_dataset_path_is_a_clear_error(tmp_path):
    with pytest.raises(C4CError, match="no such file or folder"):
        read_annotations("msvd", tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# MSR-VTT


def make_msrvtt(folder, n_videos=4):
    videos = [{"video_id": f"video{i}", "url": f"https://youtu.be/{i}", "split": "train"}
              for i in range(n_videos)]
    sentences = []
    for i in range(n_videos):
        sentences += [{"video_id": f"video{i}", "caption": f"caption {i} a", "sen_id": 2 * i},
                      {"video_id": f"video{i}", "caption": f"caption {i} b", "sen_id": 2 * i + 1}]
    # one out-of-order caption: json order must be kept
    sentences.append({"video_id": "video0", "caption": "caption 0 c", "sen_id": 99})
    write_json(folder / "MSRVTT_data.json", {"info": {}, "videos": videos, "sentences": sentences})
    write(folder / "MSRVTT_train.9k.csv", "video_id\nvideo1\nvideo0\n")
    write(folder / "MSRVTT_train.7k.csv", "video_id\nvideo2\n")
    write(folder / "MSRVTT_JSFUSION_test.csv",
          "key,vid_key,video_id,sentence\n"
          "ret0,msr3,video3,a person is connecting something to system\n"
          "ret1,msr2,video2,\"a man, talking\"\n")
    return folder


def test_msrvtt_9k_train_videos_have_all_captions_and_jsfusion_rows_are_tests(tmp_path):
    make_msrvtt(tmp_path)
    records = read_annotations("msrvtt", tmp_path)
    assert summary(records) == [
        ("video1", "train", ["caption 1 a", "caption 1 b"]),
        ("video0", "train", ["caption 0 a", "caption 0 b", "caption 0 c"]),
        ("video3", "test", ["a person is connecting something to system"]),
        ("video2", "test", ["a man, talking"]),
    ]
    assert all(r.start is None and r.end is None for r in records)


def test_msrvtt_7k_uses_the_7k_csv_and_accepts_a_file_path(tmp_path):
    make_msrvtt(tmp_path)
    records = read_annotations("msrvtt", tmp_path / "MSRVTT_data.json", msrvtt_train="7k")
    assert [(r.video_id, r.split) for r in records] == [("video2", "train"), ("video3", "test"),
                                                        ("video2", "test")]


def test_msrvtt_missing_file_is_named(tmp_path):
    make_msrvtt(tmp_path)
    (tmp_path / "MSRVTT_JSFUSION_test.csv").unlink()
    with pytest.raises(C4CError, match="missing annotation file MSRVTT_JSFUSION_test.csv"):
        read_annotations("msrvtt", tmp_path)


def test_msrvtt_train_video_without_captions_names_the_csv_line(tmp_path):
    make_msrvtt(tmp_path)
    write(tmp_path / "MSRVTT_train.9k.csv", "video_id\nvideo1\nvideo77\n")
    with pytest.raises(C4CError, match=r"MSRVTT_train\.9k\.csv:3: training video 'video77' has no captions"):
        read_annotations("msrvtt", tmp_path)


def test_msrvtt_csv_without_video_id_column(tmp_path):
    make_msrvtt(tmp_path)
    write(tmp_path / "MSRVTT_train.9k.csv", "vid\nvideo1\n")
    with pytest.raises(C4CError, match=r"MSRVTT_train\.9k\.csv:1: the CSV header lacks column\(s\) video_id"):
        read_annotations("msrvtt", tmp_path)


def test_msrvtt_unsafe_video_id_is_rejected_with_line(tmp_path):
    make_msrvtt(tmp_path)
    write(tmp_path / "MSRVTT_JSFUSION_test.csv", "key,vid_key,video_id,sentence\nret0,x,../etc,hello\n")
    with pytest.raises(C4CError, match=r"MSRVTT_JSFUSION_test\.csv:2: invalid video id '\.\./etc'"):
        read_annotations("msrvtt", tmp_path)


def test_msrvtt_full_split_is_6513_train_497_val_rest_test(tmp_path):
    make_msrvtt(tmp_path, n_videos=7013)
    records = read_annotations("msrvtt", tmp_path, msrvtt_train="full")
    assert [sum(r.split == s for r in records) for s in ("train", "val", "test")] == [6513, 497, 3]
    assert (records[6512].video_id, records[6512].split) == ("video6512", "train")
    assert (records[6513].video_id, records[6513].split) == ("video6513", "val")
    assert (records[7010].video_id, records[7010].split) == ("video7010", "test")
    assert records[0].captions == ["caption 0 a", "caption 0 b", "caption 0 c"]


def test_msrvtt_full_split_needs_the_full_json(tmp_path):
    make_msrvtt(tmp_path, n_videos=10)
    with pytest.raises(C4CError, match="full' split needs the complete 10,000-video"):
        read_annotations("msrvtt", tmp_path, msrvtt_train="full")


def test_msrvtt_unknown_training_split(tmp_path):
    make_msrvtt(tmp_path)
    with pytest.raises(C4CError, match="unknown MSR-VTT training split '8k'"):
        read_annotations("msrvtt", tmp_path, msrvtt_train="8k")


# ---------------------------------------------------------------------------------------------
# MSVD


def make_msvd(folder, captions=None):
    if captions is None:
        captions = {
            "vidA": [["a", "man", "runs"], ["someone", "is", "running"]],
            "vidB": ["a cat sleeps"],
            "vidC": [["a", "dog"]],
        }
    with open(folder / "raw-captions.pkl", "wb") as handle:
        pickle.dump(captions, handle)
    write(folder / "train_list.txt", "vidB\n\nvidA\n")
    write(folder / "val_list.txt", "")
    write(folder / "test_list.txt", "vidC\n")
    return folder


def test_msvd_joins_word_tokens_and_keeps_list_and_pickle_order(tmp_path):
    make_msvd(tmp_path)
    assert summary(read_annotations("msvd", tmp_path / "test_list.txt")) == [
        ("vidB", "train", ["a cat sleeps"]),
        ("vidA", "train", ["a man runs", "someone is running"]),
        ("vidC", "test", ["a dog"]),
    ]


def test_msvd_listed_video_missing_from_pickle_names_list_line(tmp_path):
    make_msvd(tmp_path)
    write(tmp_path / "test_list.txt", "vidC\nvidZ\n")
    with pytest.raises(C4CError, match=r"test_list\.txt:2: video 'vidZ' has no captions in raw-captions"):
        read_annotations("msvd", tmp_path)


class _Exploit:
    """A pickle payload that would create a file if the unpickler allowed function calls."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_msvd_pickle_that_references_code_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    make_msvd(tmp_path, captions={"vidA": [_Exploit(target)]})
    with pytest.raises(C4CError, match=r"raw-captions\.pkl: not a plain captions pickle.*refusing"):
        read_annotations("msvd", tmp_path)
    assert not target.exists()


def test_msvd_corrupt_pickle_is_a_clear_error(tmp_path):
    make_msvd(tmp_path)
    (tmp_path / "raw-captions.pkl").write_bytes(b"this is not a pickle")
    with pytest.raises(C4CError, match=r"raw-captions\.pkl: not a plain captions pickle"):
        read_annotations("msvd", tmp_path)


def test_msvd_without_lists_or_pickle(tmp_path):
    with pytest.raises(C4CError, match="no MSVD annotation files found"):
        read_annotations("msvd", tmp_path)
    write(tmp_path / "train_list.txt", "vidA\n")
    with pytest.raises(C4CError, match="missing annotation file raw-captions.pkl"):
        read_annotations("msvd", tmp_path)


# ---------------------------------------------------------------------------------------------
# LSMDC


def lsmdc_line(clip, sentence):
    return f"{clip}\t00.00.01.000\t00.00.03.500\t00.00.01.100\t00.00.03.400\t{sentence}\n"


def test_lsmdc_reads_one_record_per_line_from_each_existing_file(tmp_path):
    write(tmp_path / "LSMDC16_annos_training.csv",
          lsmdc_line("0001_American_Beauty_00.00.51.926-00.00.54.202", "SOMEONE looks up.")
          + lsmdc_line("0001_American_Beauty_00.00.54.500-00.00.56.000", "He smiles, \"quietly\".")
          + "\n")
    write(tmp_path / "LSMDC16_challenge_1000_publictect.csv", lsmdc_line("1010_TITANIC_clip", "Ship sails."))
    records = read_annotations("lsmdc", tmp_path / "LSMDC16_annos_training.csv")
    assert summary(records) == [
        ("0001_American_Beauty_00.00.51.926-00.00.54.202", "train", ["SOMEONE looks up."]),
        ("0001_American_Beauty_00.00.54.500-00.00.56.000", "train", ["He smiles, \"quietly\"."]),
        ("1010_TITANIC_clip", "test", ["Ship sails."]),
    ]


def test_lsmdc_line_with_wrong_field_count_names_file_and_line(tmp_path):
    write(tmp_path / "LSMDC16_annos_val.csv", lsmdc_line("clip1", "ok") + "clip2\t1\t2\tno sentence\n")
    with pytest.raises(C4CError, match=r"LSMDC16_annos_val\.csv:2: expected 6 tab-separated fields, found 4"):
        read_annotations("lsmdc", tmp_path)


def test_lsmdc_without_any_file_lists_the_expected_names(tmp_path):
    with pytest.raises(C4CError, match="LSMDC16_annos_training.csv, LSMDC16_annos_val.csv, "
                                       "LSMDC16_challenge_1000_publictect.csv"):
        read_annotations("lsmdc", tmp_path)


# ---------------------------------------------------------------------------------------------
# ActivityNet


def make_activitynet(folder):
    write_json(folder / "train.json", {
        "v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 60.81]],
                          "sentences": ["A young woman is seen standing in a room. ", " She dances."]},
        "v_ehGHCYKzyZ8": {"duration": 61.2, "timestamps": [[0, 10]], "sentences": ["A man plays."]},
    })
    write_json(folder / "val_1.json", {
        "v_uqiMw7tQ1Cc": {"duration": 55.15, "timestamps": [[0.28, 55.15]], "sentences": ["People ride."]},
    })
    write_json(folder / "val_2.json", {
        "v_uqiMw7tQ1Cc": {"duration": 55.15, "timestamps": [[1, 2], [3, 4]], "sentences": ["One.", "Two."]},
    })
    return folder


def test_activitynet_one_paragraph_per_video_over_zero_to_ceil_duration(tmp_path):
    make_activitynet(tmp_path)
    records = read_annotations("activitynet", tmp_path, val2_as_val=True)  # default: val_2 unread
    assert summary(records) == [
        ("QOlSCBRmfWY", "train", ["A young woman is seen standing in a room. She dances."]),
        ("ehGHCYKzyZ8", "train", ["A man plays."]),
        ("uqiMw7tQ1Cc", "test", ["People ride."]),
        ("uqiMw7tQ1Cc", "val", ["One. Two."]),
    ]
    first = records[0]
    assert (first.start, first.end, first.source_name) == (0.0, 83.0, "v_QOlSCBRmfWY")
    assert records[1].end == 62.0
    assert first.extra == {"sentences": ["A young woman is seen standing in a room. ", " She dances."],
                           "timestamps": [[0.83, 19.86], [17.37, 60.81]]}


def test_activitynet_ids_files_restrict_the_videos(tmp_path):
    make_activitynet(tmp_path)
    write_json(tmp_path / "train_ids.json", ["v_ehGHCYKzyZ8", "v_notannotated"])
    write_json(tmp_path / "val_ids.json", [])
    records = read_annotations("activitynet", tmp_path / "train.json")
    assert [(r.video_id, r.split) for r in records] == [("ehGHCYKzyZ8", "train")]


def test_activitynet_mismatched_timestamps_and_sentences(tmp_path):
    make_activitynet(tmp_path)
    write_json(tmp_path / "val_1.json", {"v_x": {"duration": 5.0, "timestamps": [[0, 1]],
                                                  "sentences": ["a", "b"]}})
    with pytest.raises(C4CError, match=r"val_1\.json: entry 'v_x' has 1 timestamps but 2 sentences"):
        read_annotations("activitynet", tmp_path)


def test_activitynet_requires_val_1(tmp_path):
    make_activitynet(tmp_path)
    (tmp_path / "val_1.json").unlink()
    with pytest.raises(C4CError, match="missing annotation file val_1.json"):
        read_annotations("activitynet", tmp_path)


def test_activitynet_invalid_json_names_the_line(tmp_path):
    make_activitynet(tmp_path)
    write(tmp_path / "train.json", '{\n  "v_a": {"duration": 1,\n}')
    with pytest.raises(C4CError, match=r"train\.json:3: invalid JSON"):
        read_annotations("activitynet", tmp_path)


# ---------------------------------------------------------------------------------------------
# DiDeMo


def didemo_item(video, description, times=((0, 0),)):
    return {"annotation_id": 1, "video": video, "description": description,
            "times": [list(t) for t in times], "dl_link": "http://example"}


def test_didemo_paragraphs_follow_json_order_and_are_restricted_to_listed_videos(tmp_path):
    write(tmp_path / "test_list.txt", "b_video.mov\n\na.video.mp4\nnotannotated.mp4\n")
    write_json(tmp_path / "test_data.json", [
        didemo_item("a.video.mp4", "first a", times=((1, 1), (1, 2))),
        didemo_item("unlisted.mp4", "ignored"),
        didemo_item("b_video.mov", "only b"),
        didemo_item("a.video.mp4", "second a "),
    ])
    records = read_annotations("didemo", tmp_path / "test_list.txt")
    assert summary(records) == [("a.video", "test", ["first a second a"]), ("b_video", "test", ["only b"])]
    first = records[0]
    assert (first.start, first.end, first.source_name) == (0.0, 31.0, "a.video.mp4")
    assert first.extra["times"] == [[[1, 1], [1, 2]], [[0, 0]]]


def test_didemo_reads_each_split_with_a_list(tmp_path):
    for split in ("train", "val"):
        write(tmp_path / f"{split}_list.txt", f"{split}1.mp4\n")
        write_json(tmp_path / f"{split}_data.json", [didemo_item(f"{split}1.mp4", f"{split} text")])
    assert summary(read_annotations("didemo", tmp_path)) == [("train1", "train", ["train text"]),
                                                               ("val1", "val", ["val text"])]


def test_didemo_missing_field_names_file_and_index(tmp_path):
    write(tmp_path / "train_list.txt", "a.mp4\n")
    write_json(tmp_path / "train_data.json", [didemo_item("a.mp4", "x"), {"video": "a.mp4", "times": []}])
    with pytest.raises(C4CError, match=r"train_data\.json: entry at index 1 has no str field 'description'"):
        read_annotations("didemo", tmp_path)


# ---------------------------------------------------------------------------------------------
# HowTo100M


def make_howto(folder):
    write(folder / "HowTo100M_v1.csv",
          "video_id,category_1,category_2,rank,task_id\n"
          "vidfood,Food and Entertaining,Recipes,1,100\n"
          "vidcar,Cars & Other Vehicles,Repair,2,200\n")
    write_json(folder / "caption.json", {
        "vidcar": {"start": [0.0], "end": [2.0], "text": ["fix the wheel"]},
        "vidfood": {"start": [1.5, 4], "end": [3.0, 6.25], "text": ["chop the onion", "fry it"]},
        "vidnocsv": {"start": [0], "end": [1], "text": ["hello"]},
    })
    return folder


def test_howto100m_keeps_the_default_category_with_caption_times(tmp_path):
    make_howto(tmp_path)
    records = read_annotations("howto100m", tmp_path)
    assert summary(records) == [("vidfood", "train", ["chop the onion", "fry it"])]
    assert records[0].caption_times == [(1.5, 3.0), (4.0, 6.25)]


def test_howto100m_without_category_filter_needs_no_csv(tmp_path):
    make_howto(tmp_path)
    (tmp_path / "HowTo100M_v1.csv").unlink()
    records = read_annotations("howto100m", tmp_path / "caption.json", categories=None)
    assert [r.video_id for r in records] == ["vidcar", "vidfood", "vidnocsv"]


def test_howto100m_other_categories(tmp_path):
    make_howto(tmp_path)
    records = read_annotations("howto100m", tmp_path, categories=["Cars & Other Vehicles"])
    assert [r.video_id for r in records] == ["vidcar"]


def test_howto100m_unequal_lists_name_the_video(tmp_path):
    write_json(tmp_path / "caption.json", {"vidbad": {"start": [0, 1], "end": [1], "text": ["a", "b"]}})
    with pytest.raises(C4CError, match=r"caption\.json: video 'vidbad': 2 starts, 1 ends and 2 texts"):
        read_annotations("howto100m", tmp_path, categories=None)


def test_howto100m_category_filter_needs_the_csv(tmp_path):
    make_howto(tmp_path)
    (tmp_path / "HowTo100M_v1.csv").unlink()
    with pytest.raises(C4CError, match="missing annotation file HowTo100M_v1.csv"):
        read_annotations("howto100m", tmp_path)


# ---------------------------------------------------------------------------------------------
# generic JSON Lines


def test_jsonl_groups_lines_by_video_split_and_window_in_first_appearance_order(tmp_path):
    path = write(tmp_path / "ann.jsonl", "\n".join([
        '{"video_id": "v1", "caption": "a dog runs", "split": "train", "source": "mine"}',
        '{"video_id": "v2", "caption": "a cat", "split": "test"}',
        "",
        '{"video_id": "v1", "caption": "a dog plays", "split": "train", "source": "other"}',
        '{"video_id": "v1", "caption": "windowed", "split": "train", "start": 2, "end": 4.5}',
        '{"video_id": "v1", "caption": "as test", "split": "test"}',
        '{"video_id": "v1", "caption": "windowed too", "split": "train", "start": 2.0, "end": 4.5}',
    ]) + "\n")
    records = read_annotations("jsonl", path)
    assert [(r.video_id, r.split, r.start, r.end, r.captions) for r in records] == [
        ("v1", "train", None, None, ["a dog runs", "a dog plays"]),
        ("v2", "test", None, None, ["a cat"]),
        ("v1", "train", 2.0, 4.5, ["windowed", "windowed too"]),
        ("v1", "test", None, None, ["as test"]),
    ]
    assert records[0].extra == {"source": "mine"}
    assert records[1].extra == {}


@pytest.mark.parametrize("bad_line, problem", [
    ('{"video_id": "v", "caption": "c", "split": "train",}', "invalid JSON"),
    ('["v", "c", "train"]', "expected a JSON object"),
    ('{"caption": "c", "split": "train"}', "missing or empty string 'video_id'"),
    ('{"video_id": "", "caption": "c", "split": "train"}', "missing or empty string 'video_id'"),
    ('{"video_id": 7, "caption": "c", "split": "train"}', "missing or empty string 'video_id'"),
    ('{"video_id": "a/b", "caption": "c", "split": "train"}', "invalid video id"),
    ('{"video_id": "v", "caption": "  ", "split": "train"}', "missing or empty string 'caption'"),
    ('{"video_id": "v", "caption": ["c"], "split": "train"}', "missing or empty string 'caption'"),
    ('{"video_id": "v", "caption": "c", "split": "dev"}', "'split' must be one of train, val, test"),
    ('{"video_id": "v", "caption": "c", "split": "train", "start": "1"}', "'start' must be a number"),
    ('{"video_id": "v", "caption": "c", "split": "train", "start": -1}', "'start' must be >= 0"),
    ('{"video_id": "v", "caption": "c", "split": "train", "start": 3, "end": 3}', "'end' .* greater"),
    ('{"video_id": "v", "caption": "c", "split": "train", "end": true}', "'end' must be a number"),
])
def test_jsonl_malformed_line_names_file_and_line(tmp_path, bad_line, problem):
    path = write(tmp_path / "ann.jsonl",
                 '{"video_id": "ok", "caption": "fine", "split": "val"}\n\n' + bad_line + "\n")
    with pytest.raises(C4CError, match=rf"ann\.jsonl:3: {problem}"):
        read_annotations("jsonl", path)


def test_jsonl_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "ann.jsonl"
    path.write_bytes(b'{"video_id": "v", "caption": "c", "split": "train"}\n{"caption": "\xff"}\n')
    with pytest.raises(C4CError, match=r"ann\.jsonl:2: line is not valid UTF-8"):
        read_annotations("jsonl", path)


# ---------------------------------------------------------------------------------------------
# every format of the registry


def make_lsmdc(folder):
    write(folder / "LSMDC16_annos_training.csv", lsmdc_line("0001_clip", "SOMEONE looks up."))
    write(folder / "LSMDC16_challenge_1000_publictect.csv", lsmdc_line("1010_clip", "Ship sails."))
    return folder


def make_didemo(folder):
    for split in ("train", "test"):
        write(folder / f"{split}_list.txt", f"{split}.mp4\n")
        write_json(folder / f"{split}_data.json", [didemo_item(f"{split}.mp4", "a man"),
                                                   didemo_item(f"{split}.mp4", "walks")])
    return folder


def make_jsonl(folder):
    return write(folder / "ann.jsonl", '{"video_id": "v1", "caption": "a dog runs", "split": "train"}\n'
                                       '{"video_id": "v1", "caption": "a dog plays", "split": "train"}\n'
                                       '{"video_id": "v2", "caption": "a cat", "split": "test"}\n')


# a small sample of each format: name -> a function that writes one into a folder and returns what to read
SAMPLES = {"msrvtt": make_msrvtt, "msvd": make_msvd, "lsmdc": make_lsmdc, "activitynet": make_activitynet,
           "didemo": make_didemo, "howto100m": make_howto, "jsonl": make_jsonl}


def _sample(name, folder):
    if name not in SAMPLES:
        pytest.fail(f"add a sample for {name} to SAMPLES in tests/test_datasets.py")
    return read_annotations(name, SAMPLES[name](folder))


@pytest.mark.parametrize("name", list(DATASETS))
def test_each_format_reads_its_sample_into_captioned_records_of_known_splits(name, tmp_path):
    records = _sample(name, tmp_path)
    assert records and all(isinstance(r, VideoRecord) for r in records)
    assert all(r.split in SPLITS and r.captions and all(c.strip() for c in r.captions) for r in records)


@pytest.mark.parametrize("name", [name for name in DATASETS if DATASETS[name].paragraph])
def test_each_paragraph_format_gives_a_video_one_caption(name, tmp_path):
    assert all(len(r.captions) == 1 for r in _sample(name, tmp_path))


@pytest.mark.parametrize("name", list(DATASETS))
def test_the_formats_for_scoring_have_splits_besides_train_and_the_extract_only_ones_do_not(name, tmp_path):
    assert bool({r.split for r in _sample(name, tmp_path)} - {"train"}) is DATASETS[name].retrieval
