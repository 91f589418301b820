"""Settings of `python -m c4c.mini` and its plan: six experiments, their arms (see :mod:`c4c.mini.experiments`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from c4c.choices import HEADS, SAMPLINGS


log = logging.getLogger(__name__)

SETTINGS_FORMAT = "c4c-mini"
RESULT_FORMAT = "c4c-mini-result"
RESULTS_FORMAT = "c4c-mini-results"
TEST_FORMAT = "c4c-mini-test"
VERSION = 1
IMAGE_TEMPLATES = ("a {c} {s}", "a photo of a {c} {s}", "an image of a {c} {s}")

Event = Callable[[dict], None]


@dataclass
class MiniConfig:
    """Settings of a mini run. Everything but ``out``, ``seeds``, ``only`` and ``threads`` is saved in
    mini.json and must match when an output folder is reused."""

    out: Path                                    # output folder (data, runs, results, report)
    seeds: int = 3                               # training seeds per arm (mean and spread reported)
    only: tuple[int, ...] = (1, 2, 3, 4, 5, 6)   # experiments to run
    threads: int = 0                             # torch CPU threads (0: 1 on <= 2 cores, else half the cores)
    quick: bool = False                          # tiny budgets (a smoke run: numbers mean little)
    # retrieval data: `c4c synth`, 4 s videos, frames stored at `fps`
    videos: int = 240
    test_fraction: float = 0.5                   # no val split: every run keeps its last epoch
    shapes: tuple[str, ...] = ("circle", "square", "triangle")
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "white", "magenta")
    fps: float = 4.0                             # stored frames per second: 17 frames of a 4 s video
    size: int = 32                               # frame side in pixels
    # image-text pretraining: single frames of another synth set, captioned as images (no motion)
    image_videos: int = 480
    image_epochs: int = 10
    image_positions: bool = True                 # image captions also say where the shape is
    # post-pretraining: `c4c synth --kind howto`, frames at 1 fps
    howto_videos: int = 60
    howto_duration: float = 40.0
    pretrain_steps: int = 200
    pretrain_lr: float = 1e-3                    # image-text and post-pretraining (every parameter)
    # the base fine-tuning recipe
    epochs: int = 12
    batch_size: int = 16
    lr: float = 3e-4                             # every parameter (coef_lr 1); the best of experiment 6
    max_frames: int = 4                          # of 17 stored frames: sampling matters
    temporal_layers: int = 2
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # experiment 6: two decades

    def settings(self) -> dict[str, Any]:
        """The settings that decide the results (what mini.json records)."""
        skip = {"out", "seeds", "only", "threads"}
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in skip}


def quick_config(out: Path, **overrides: Any) -> MiniConfig:
    """A smoke-test configuration: a few videos, one or two epochs (minutes on a CPU)."""
    base = dict(out=out, quick=True, videos=40, image_videos=24, image_epochs=1, howto_videos=16,
                howto_duration=16.0, pretrain_steps=4, epochs=1, batch_size=8, lrs=(3e-4, 3e-3))
    base.update(overrides)
    return MiniConfig(**base)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


# ---------------------------------------------------------------------------------------------
# experiments and arms


@dataclass(frozen=True)
class Arm:
    """One setting of an experiment: changes to the base recipe."""

    key: str                              # file-safe name
    label: str                            # shown in tables and plots
    sim: str = "meanP"
    patch: str = "2d"
    sampling: str = "uniform"
    lr: float | None = None               # None: the base lr
    init: str = "image"                   # none (random) | image (image-text CLIP) | post (+ post-pretraining)
    train: bool = True                    # False: test the init itself (zero-shot), no fine-tuning


@dataclass(frozen=True)
class Experiment:
    number: int
    key: str
    title: str
    question: str
    arms: tuple[Arm, ...]
    baseline: str                         # the arm others are compared against
    contrast: str | None = None           # two-arm questions: the arm the answer compares with the baseline


def experiments(cfg: MiniConfig) -> list[Experiment]:
    """The six experiments of ``cfg`` (every one, whatever ``cfg.only`` says)."""
    lr_arms = tuple(Arm(f"lr{lr:g}", f"lr {lr:g}", lr=lr) for lr in cfg.lrs)
    base_lr = min(cfg.lrs, key=lambda lr: abs(math.log(lr / cfg.lr)))
    return [
        Experiment(1, "image_text", "Image-text pretraining",
                   "Does image-text pretraining (a tiny CLIP trained on single frames and captions) help "
                   "text-to-video retrieval, against the same model from random init?",
                   (Arm("random", "random init", init="none"), Arm("image", "image-text pretrained"),
                    Arm("image_zero_shot", "image-text CLIP, zero-shot", train=False)), "random", "image"),
        Experiment(2, "post", "Post-pretraining",
                   "Does post-pretraining the image-text CLIP on a HowTo100M-like video corpus help?",
                   (Arm("without", "image-text CLIP"), Arm("with", "+ post-pretraining", init="post"),
                    Arm("with_zero_shot", "+ post-pretraining, zero-shot", init="post", train=False)),
                   "without", "with"),
        Experiment(3, "heads", "Similarity heads",
                   "Which similarity head models time? Order-contrast queries ask for a video over its exact "
                   "time reversal.",
                   tuple(Arm(h, h, sim=h) for h in HEADS), "meanP"),
        Experiment(4, "patch", "2-D vs 3-D patch",
                   "Does the 3-D patch embedding (Conv3d over neighbouring frames) beat the 2-D one?",
                   (Arm("2d", "2d"), Arm("3d", "3d", patch="3d")), "2d", "3d"),
        Experiment(5, "sampling", "Frame sampling",
                   f"Which {cfg.max_frames} of a video's frames should a clip keep: the first, the last, "
                   f"or evenly spread?",
                   tuple(Arm(s, s, sampling=s) for s in SAMPLINGS), "uniform"),
        Experiment(6, "lr", "Learning rate",
                   "How sensitive is fine-tuning to the learning rate?", lr_arms, f"lr{base_lr:g}"),
    ]


