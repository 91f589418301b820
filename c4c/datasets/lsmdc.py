"""LSMDC annotations.

Files read from the dataset folder (whichever exist, at least one):

* ``LSMDC16_annos_training.csv`` (train), ``LSMDC16_annos_val.csv`` (val) and
  ``LSMDC16_challenge_1000_publictect.csv`` (test; the name is spelled this way).

Each is tab-separated with no header and exactly six fields per line: ``clip_id, start_aligned,
end_aligned, start_extracted, end_extracted, sentence``. Only the clip id and sentence are used: the
clip file already is the clip.
"""

from __future__ import annotations

from pathlib import Path

from c4c.datasets.records import VideoRecord, check_video_id
from c4c.datasets.files import dataset_dir, iter_split_lines, split_files
from c4c.errors import C4CError

SPLIT_FILES = {
    "train": "LSMDC16_annos_training.csv",
    "val": "LSMDC16_annos_val.csv",
    "test": "LSMDC16_challenge_1000_publictect.csv",
}
N_FIELDS = 6


def read_lsmdc(path: str | Path) -> list[VideoRecord]:
    """Read LSMDC: one record per line (clip id, one sentence), splits in train/val/test order."""
    folder = dataset_dir(path)
    files = split_files(folder, SPLIT_FILES, "LSMDC")
    records = []
    for split, file_path, line, text in iter_split_lines(files):
        fields = text.split("\t")
        if len(fields) != N_FIELDS:
            raise C4CError(f"expected {N_FIELDS} tab-separated fields, found {len(fields)}",
                           path=file_path, line=line,
                           hint="clip_id, start/end aligned, start/end extracted, sentence")
        clip_id = check_video_id(fields[0], path=str(file_path), line=line)
        sentence = fields[5].strip()
        if not sentence:
            raise C4CError(f"empty sentence for clip {clip_id!r}", path=file_path, line=line)
        records.append(VideoRecord(video_id=clip_id, captions=[sentence], split=split))
    return records
