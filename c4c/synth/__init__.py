"""Synthetic data to test and demonstrate c4c without downloading anything (``c4c synth``).

Two generators, both deterministic from a seed and resumable (a re-run encodes only missing videos):

- :mod:`c4c.synth.clips`: short captioned clips of a coloured shape moving (``run``), with
  order-contrast pairs that only a model reading frame order can tell apart; the generic JSONL
  annotation format.
- :mod:`c4c.synth.howto`: a HowTo100M-like corpus of long narrated videos (``run_howto``), in the
  ``caption.json`` + ``HowTo100M_v1.csv`` format of the real one.

:mod:`c4c.synth.folder` writes the output folder of both, :mod:`c4c.synth.video_writer` encodes the
frames with ffmpeg. Importing this package is light (no numpy until a dataset is planned).
"""

from c4c.synth.clips import (BACKGROUND, COLOURS, FORMAT, MOTIONS, OPPOSITE, SHAPES, VERSION, SynthConfig,
                             SynthResult, SynthVideo, annotation_lines, describe, frame_count, load_metadata,
                             metadata, order_contrast_pairs, plan_videos, render_frames, reverse_motions, run,
                             shape_size, split_sizes, validate)
from c4c.synth.howto import (FOOD, HOWTO_FORMAT, HOWTO_VERSION, OTHER_CATEGORIES, HowToConfig, HowToSegment,
                             HowToVideo, howto_captions, howto_csv, howto_metadata, load_howto_metadata,
                             plan_howto, render_howto, run_howto, validate_howto)

__all__ = [
    "BACKGROUND", "COLOURS", "FORMAT", "MOTIONS", "OPPOSITE", "SHAPES", "VERSION", "SynthConfig", "SynthResult",
    "SynthVideo", "annotation_lines", "describe", "frame_count", "load_metadata", "metadata",
    "order_contrast_pairs", "plan_videos", "render_frames", "reverse_motions", "run", "shape_size", "split_sizes",
    "validate",
    "FOOD", "HOWTO_FORMAT", "HOWTO_VERSION", "OTHER_CATEGORIES", "HowToConfig", "HowToSegment", "HowToVideo",
    "howto_captions", "howto_csv", "howto_metadata", "load_howto_metadata", "plan_howto", "render_howto",
    "run_howto", "validate_howto",
]
