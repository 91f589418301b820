"""MSR-VTT annotations.

Files read from the dataset folder:

* ``MSRVTT_data.json``: ``videos`` (field ``video_id``) and ``sentences`` (``video_id``, ``caption``);
* ``MSRVTT_train.9k.csv`` or ``MSRVTT_train.7k.csv``: the training videos (column ``video_id``);
* ``MSRVTT_JSFUSION_test.csv``: the 1k-A test set, one ``sentence`` per ``video_id``.

With ``msrvtt_train="full"`` the csv files are not used: the json's videos are split by position into
the standard captioning split (6,513 train, 497 val, the rest test).
"""

from __future__ import annotations

from pathlib import Path

from c4c.datasets.records import VideoRecord, check_video_id
from c4c.datasets.files import dataset_dir, iter_csv_rows, read_json, require_file
from c4c.errors import C4CError

DATA_JSON = "MSRVTT_data.json"
TRAIN_CSV = {"9k": "MSRVTT_train.9k.csv", "7k": "MSRVTT_train.7k.csv"}
TEST_CSV = "MSRVTT_JSFUSION_test.csv"
TRAIN_CHOICES = ("9k", "7k", "full")
FULL_TRAIN = 6513  # videos 0 .. 6512 of the json
FULL_VAL = 497  # the next 497; everything after is test


def read_msrvtt(path: str | Path, *, msrvtt_train: str = "9k") -> list[VideoRecord]:
    """Read MSR-VTT: 9k/7k training videos + the JSFusion 1k-A test set, or the "full" split."""
    if msrvtt_train not in TRAIN_CHOICES:
        raise C4CError(f"unknown MSR-VTT training split {msrvtt_train!r}",
                       hint=f"choose one of: {', '.join(TRAIN_CHOICES)}")
    folder = dataset_dir(path)
    json_path = require_file(folder, DATA_JSON)
    if msrvtt_train == "full":
        video_ids, captions = _read_data_json(json_path)
        return _full_split(json_path, video_ids, captions)

    train_path = require_file(folder, TRAIN_CSV[msrvtt_train])
    test_path = require_file(folder, TEST_CSV)
    _, captions = _read_data_json(json_path)
    records = []
    for line, row in iter_csv_rows(train_path, ("video_id",)):
        video_id = check_video_id(row["video_id"], path=str(train_path), line=line)
        video_captions = captions.get(video_id)
        if not video_captions:
            raise C4CError(f"training video {video_id!r} has no captions in {DATA_JSON}",
                           path=train_path, line=line)
        records.append(VideoRecord(video_id=video_id, captions=list(video_captions), split="train"))
    for line, row in iter_csv_rows(test_path, ("video_id", "sentence")):
        video_id = check_video_id(row["video_id"], path=str(test_path), line=line)
        sentence = row["sentence"]
        if not sentence.strip():
            raise C4CError(f"empty sentence for test video {video_id!r}", path=test_path, line=line)
        records.append(VideoRecord(video_id=video_id, captions=[sentence], split="test"))
    return records


def _read_data_json(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The video ids in json order, and each video's captions in json order."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise C4CError("expected a JSON object with 'videos' and 'sentences'", path=path)
    videos, sentences = data.get("videos"), data.get("sentences")
    if not isinstance(videos, list) or not isinstance(sentences, list):
        raise C4CError("expected lists under 'videos' and 'sentences'", path=path)

    video_ids = []
    for index, video in enumerate(videos):
        if not isinstance(video, dict) or not isinstance(video.get("video_id"), str):
            raise C4CError(f"videos[{index}] has no string 'video_id'", path=path)
        video_ids.append(check_video_id(video["video_id"], path=str(path)))

    captions: dict[str, list[str]] = {}
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, dict):
            raise C4CError(f"sentences[{index}] is not an object", path=path)
        video_id, caption = sentence.get("video_id"), sentence.get("caption")
        if not isinstance(video_id, str):
            raise C4CError(f"sentences[{index}] has no string 'video_id'", path=path)
        if not isinstance(caption, str) or not caption.strip():
            raise C4CError(f"sentences[{index}] has no non-empty string 'caption'", path=path)
        captions.setdefault(video_id, []).append(caption)
    return video_ids, captions


def _full_split(path: Path, video_ids: list[str], captions: dict[str, list[str]]) -> list[VideoRecord]:
    if len(video_ids) < FULL_TRAIN + FULL_VAL:
        raise C4CError(f"the 'full' split needs the complete 10,000-video {DATA_JSON}; this one lists "
                       f"{len(video_ids)} videos (at least {FULL_TRAIN + FULL_VAL} needed)", path=path,
                       hint="use msrvtt_train='9k' or '7k'")
    records = []
    for position, video_id in enumerate(video_ids):
        split = "train" if position < FULL_TRAIN else "val" if position < FULL_TRAIN + FULL_VAL else "test"
        video_captions = captions.get(video_id)
        if not video_captions:
            raise C4CError(f"video {video_id!r} ({split}) has no captions", path=path)
        records.append(VideoRecord(video_id=video_id, captions=list(video_captions), split=split))
    return records
