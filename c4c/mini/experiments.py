"""The CLIP4Clip paper's six empirical questions as small experiments on synthetic data (tiny CLIP, CPU).

Every experiment fine-tunes the tiny CLIP4Clip for text-to-video retrieval on one cached `c4c synth`
set and changes one thing against a shared *base recipe* (meanP, 2-D patch, uniform sampling, the base
learning rate, starting from the image-text pretrained tiny CLIP):

1. ``image_text``  random init vs the tiny CLIP pretrained contrastively on single frames and captions
                   that say what one frame shows (colour, shape, where it is; never motion): the analogue
                   of CLIP's image-text pretraining;
2. ``post``        the image-text CLIP vs the same CLIP post-pretrained on a HowTo100M-like corpus
                   (`c4c pretrain`), both then fine-tuned alike;
3. ``heads``       meanP, seqLSTM, seqTransf, tightTransf; besides R@1, how often a caption scores its
                   own video above the video's exact time reversal (order-blind heads tie: 50%);
4. ``patch``       2-D vs 3-D patch embedding;
5. ``sampling``    head, tail or uniform choice of ``max_frames`` frames from longer videos;
6. ``lr``          a learning-rate sweep.

Arms with the same settings and seed share one training run (the base recipe serves as an arm of several
experiments). Each (experiment, arm, seed) result is a JSON file (format ``c4c-mini-result``)
written when it is done; a rerun skips it. Layout under ``out``::

    mini.json                     format "c4c-mini": the settings the results were made with
    data/retrieval/ images/ howto/  synthetic sets and their frame stores
    runs/<name>/                  training runs (finetune / pretrain run folders, plus test.json)
    results/<experiment>/<arm>/seed-<k>.json
    results.json                  format "c4c-mini-results": settings, machine, times, every number
    report.md, *.png              the report (:mod:`c4c.mini.report`) and its charts
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from c4c.atomic import write_text
from c4c.errors import C4CError, TrainingDiverged

log = logging.getLogger(__name__)

SETTINGS_FORMAT = "c4c-mini"
RESULT_FORMAT = "c4c-mini-result"
RESULTS_FORMAT = "c4c-mini-results"
TEST_FORMAT = "c4c-mini-test"
VERSION = 1
HEADS = ("meanP", "seqLSTM", "seqTransf", "tightTransf")
SAMPLINGS = ("head", "tail", "uniform")
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


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class MiniData:
    """Paths of the cached data sets and what the evaluation needs to know about the test split."""

    ann: Path                             # retrieval annotations.jsonl
    frames: Path                          # its FRAMES.h5
    synth_json: Path
    twins: dict[str, str]                 # test video -> its time-reversed twin in the test split
    test_videos: int
    image_ann: Path | None = None         # single-frame image-text records (jsonl with windows)
    image_frames: Path | None = None
    howto: Path | None = None             # HowTo-like folder (caption.json, HowTo100M_v1.csv)
    howto_frames: Path | None = None
    seconds: float = 0.0


def reversal_twins(synth_json: Path) -> dict[str, str]:
    """Test videos whose exact time reversal is also a test video, mapped to it (both directions)."""
    from c4c import synth

    meta = synth.load_metadata(synth_json)
    split = {v["video_id"]: v["split"] for v in meta["videos"]}
    twins: dict[str, str] = {}
    for a, b in synth.order_contrast_pairs(synth_json):
        if split[a] == split[b] == "test":
            twins[a], twins[b] = b, a
    return twins


def shape_position(waypoints: list[list[float]], t: float, duration: float, width: float, height: float) -> str:
    """Where the shape's centre is at ``t`` s, in words ("top left", "centre", "right", ...).

    Moves take equal time at constant speed (as `c4c synth` renders them); positions are judged in the
    centre square that `c4c extract` keeps, cut in thirds each way.
    """
    moves = len(waypoints) - 1
    s = min(max(t / duration, 0.0), 1.0) * moves
    j = min(int(s), moves - 1)
    u = s - j
    (x0, y0), (x1, y1) = waypoints[j], waypoints[j + 1]
    side = min(width, height)
    x = x0 + (x1 - x0) * u - (width - side) / 2
    y = y0 + (y1 - y0) * u - (height - side) / 2
    column = ("left", "centre", "right")[min(max(int(3 * x / side), 0), 2)]
    row = ("top", "middle", "bottom")[min(max(int(3 * y / side), 0), 2)]
    if row == "middle":
        return column
    return row if column == "centre" else f"{row} {column}"


def _where(position: str) -> str:
    if position == "centre":
        return "in the centre"
    return f"on the {position}" if position in ("left", "right") else f"at the {position}"


def image_records(synth_json: Path, seconds: int, positions: bool = True) -> list[dict]:
    """Image-text annotation lines: one per video and stored second ``k`` (a window holding the frame at
    ``k`` s first), captioned as an image would be: the shape's colour and shape and, with
    ``positions``, where it is ("a red circle at the top left"); nothing about motion."""
    from c4c import synth

    meta = synth.load_metadata(synth_json)
    settings = meta["config"]
    lines = []
    for i, video in enumerate(meta["videos"]):
        for k in range(seconds + 1):
            template = IMAGE_TEMPLATES[(i + k) % len(IMAGE_TEMPLATES)]
            caption = template.format(c=video["colour"], s=video["shape"])
            if positions:
                where = shape_position(video["waypoints"], float(k), float(settings["duration"]),
                                       float(settings["width"]), float(settings["height"]))
                caption += " " + _where(where)
            lines.append({"video_id": video["video_id"], "split": "train", "start": float(k), "end": k + 0.5,
                          "caption": caption})
    return lines


def _extract(source: Path, videos: Path, out: Path, dataset: str, fps: float, size: int) -> None:
    """Extract (or finish extracting: `c4c extract` skips stored videos) a synthetic set's frames, raw."""
    from c4c.stages import extract

    result = extract.run(extract.ExtractConfig(source=source, dataset=dataset, videos_dir=videos, out=out,
                                               size=size, fps=fps, codec="raw", workers=1))
    if not result.ok:
        raise C4CError(f"{len(result.failed)} synthetic videos could not be extracted "
                       f"(first: {result.failed[0].video_id}: {result.failed[0].reason})", path=out)


def prepare_data(cfg: MiniConfig, need_howto: bool, on_event: Event | None = None) -> MiniData:
    """Make (or find) the retrieval set, the image-text set and, when needed, the HowTo-like corpus."""
    from c4c.datasets.registry import read_annotations, split_records
    from c4c import synth

    on_event = on_event or (lambda event: None)
    t0 = time.perf_counter()
    root = cfg.out / "data"
    duration = 4.0

    on_event({"event": "data", "name": "retrieval videos"})
    ret = root / "retrieval"
    synth.run(synth.SynthConfig(out_dir=ret, videos=cfg.videos, seed=0, duration=duration, width=64, height=48,
                                val_fraction=0.0, test_fraction=cfg.test_fraction, shapes=tuple(cfg.shapes),
                                colours=tuple(cfg.colours)))
    _extract(ret / "annotations.jsonl", ret / "videos", ret / "frames.h5", "jsonl", cfg.fps, cfg.size)
    test = split_records(read_annotations("jsonl", ret / "annotations.jsonl"), "test")
    data = MiniData(ann=ret / "annotations.jsonl", frames=ret / "frames.h5", synth_json=ret / "synth.json",
                    twins=reversal_twins(ret / "synth.json"), test_videos=len({r.video_id for r in test}))

    on_event({"event": "data", "name": "image-text frames"})
    img = root / "images"
    synth.run(synth.SynthConfig(out_dir=img, videos=cfg.image_videos, seed=1, duration=duration, width=64,
                                height=48))  # every shape and colour: broader than the retrieval set
    _extract(img / "annotations.jsonl", img / "videos", img / "frames.h5", "jsonl", 1.0, cfg.size)
    data.image_ann = img / "images.jsonl"
    if not data.image_ann.exists():
        text = "".join(json.dumps(line) + "\n"
                       for line in image_records(img / "synth.json", int(duration), cfg.image_positions))
        write_text(data.image_ann, text)
    data.image_frames = img / "frames.h5"

    if need_howto:
        on_event({"event": "data", "name": "HowTo-like corpus"})
        how = root / "howto"
        synth.run_howto(synth.HowToConfig(out_dir=how, videos=cfg.howto_videos, seed=2, duration=cfg.howto_duration,
                                          fps=4, width=64, height=48, shapes=tuple(cfg.shapes),
                                          colours=tuple(cfg.colours)))
        _extract(how, how / "videos", how / "frames.h5", "howto100m", 1.0, cfg.size)
        data.howto, data.howto_frames = how, how / "frames.h5"
    data.seconds = time.perf_counter() - t0
    return data


# ---------------------------------------------------------------------------------------------
# training runs (cached by name)


def _fresh(run_dir: Path) -> bool:
    """True when ``run_dir`` must be trained: it holds no finished run (a half-done one is removed and
    started again; the runs are short)."""
    if (run_dir / "results.json").exists():
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def drop_training_state(run_dir: Path) -> None:
    """Delete a finished run's resumable checkpoints (optimiser state included), keeping ``best/`` (the
    weights that are tested and that `--init` loads): about 19 of a tiny run's 25 MB."""
    if (run_dir / "best" / "model.safetensors").exists():
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        (run_dir / "latest.json").unlink(missing_ok=True)


def image_text_run(cfg: MiniConfig, data: MiniData, seed: int, on_event: Event | None = None) -> Path:
    """The tiny CLIP of ``seed`` trained contrastively on single frames and their captions."""
    from c4c.stages import finetune

    run_dir = cfg.out / "runs" / f"image-text-s{seed}"
    if _fresh(run_dir):
        finetune.run(finetune.FinetuneConfig(
            dataset="jsonl", ann=data.image_ann, frames=data.image_frames, out=run_dir, sim="meanP", clip="tiny",
            pretrained="none", epochs=cfg.image_epochs, batch_size=cfg.batch_size * 2, lr=cfg.pretrain_lr, coef_lr=1.0,
            warmup=0.05, freeze_layers=-1, max_frames=1, select_on="last", seed=seed, workers=0, log_every=1,
            keep_checkpoints=1), on_event=on_event)
        drop_training_state(run_dir)
    return run_dir


def post_pretrain_run(cfg: MiniConfig, data: MiniData, seed: int, on_event: Event | None = None) -> Path:
    """The image-text CLIP of ``seed`` post-pretrained on the HowTo-like corpus (meanP, as in the paper)."""
    from c4c.stages import pretrain

    init = image_text_run(cfg, data, seed, on_event)
    run_dir = cfg.out / "runs" / f"post-pretrain-s{seed}"
    if _fresh(run_dir):
        pretrain.run(pretrain.PretrainConfig(
            ann=data.howto, frames=data.howto_frames, out=run_dir, clip="tiny", pretrained="none", init=init,
            sim="meanP", steps=cfg.pretrain_steps, batch_size=cfg.batch_size, lr=cfg.pretrain_lr, coef_lr=1.0,
            warmup=0.05, freeze_layers=-1, max_frames=cfg.max_frames, seed=seed, workers=0, save_every=0,
            log_every=1, keep_checkpoints=1), on_event=on_event)
    return run_dir


def patch3d_init(cfg: MiniConfig, data: MiniData, seed: int, on_event: Event | None = None) -> Path:
    """The image-text CLIP of ``seed`` with a 3-D patch whose centre slice is its 2-D patch (outer slices
    zero), as the paper initialises the 3-D patch from CLIP's; `finetune --init` starts from this folder."""
    source = image_text_run(cfg, data, seed, on_event)
    folder = cfg.out / "runs" / f"image-text-3d-s{seed}"
    if (folder / "best" / "model.safetensors").exists():
        return folder
    import torch

    from c4c.model.backbone import build_clip
    from c4c.model.clip4clip import CLIP4Clip
    from c4c.train import checkpoint

    clip, _ = build_clip("tiny", "none")
    flat = CLIP4Clip(clip, sim="meanP", patch="2d")
    flat.load_state_dict(checkpoint.load_model_state(source / "best"))
    with torch.no_grad():
        model = CLIP4Clip(flat.clip, sim="meanP", patch="3d")  # conv2 made from the loaded conv1
    checkpoint.save(folder / "best", model.state_dict(), None, {"source": str(source), "patch": "3d"})
    return folder


def run_name(arm: Arm, cfg: MiniConfig, seed: int) -> str:
    """The training run of an arm: arms with the same settings and seed share it."""
    if not arm.train:
        return f"post-pretrain-s{seed}" if arm.init == "post" else f"image-text-s{seed}"
    lr = cfg.lr if arm.lr is None else arm.lr
    return f"ft-{arm.sim}-{arm.patch}-{arm.sampling}-lr{lr:g}-{arm.init}-s{seed}"


def finetune_run(cfg: MiniConfig, data: MiniData, arm: Arm, seed: int, on_event: Event | None = None) -> Path:
    """Fine-tune the arm's recipe for ``seed`` (or find the finished run); the last epoch is kept.

    A run whose loss became non-finite leaves ``diverged.json`` and raises the same C4CError again.
    """
    from c4c.stages import finetune

    if arm.init == "none":
        init = None
    elif arm.init == "post":
        init = post_pretrain_run(cfg, data, seed, on_event)
    elif arm.patch == "3d":
        init = patch3d_init(cfg, data, seed, on_event)
    else:
        init = image_text_run(cfg, data, seed, on_event)
    run_dir = cfg.out / "runs" / run_name(arm, cfg, seed)
    marker = run_dir / "diverged.json"
    if marker.exists():  # a run that stopped on a non-finite loss stays stopped: same seed, same loss
        raise TrainingDiverged(json.loads(marker.read_text(encoding="utf-8"))["problem"], path=run_dir)
    if not _fresh(run_dir):
        return run_dir
    try:
        finetune.run(finetune.FinetuneConfig(
            dataset="jsonl", ann=data.ann, frames=data.frames, out=run_dir, sim=arm.sim, clip="tiny",
            pretrained="none", init=init, patch=arm.patch, temporal_layers=cfg.temporal_layers,
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr if arm.lr is None else arm.lr, coef_lr=1.0,
            warmup=0.05, freeze_layers=-1, max_frames=cfg.max_frames, sampling=arm.sampling, select_on="last",
            seed=seed, workers=0, log_every=1, keep_checkpoints=1), on_event=on_event)
    except TrainingDiverged as exc:
        write_text(marker, json.dumps({"problem": exc.problem}) + "\n")
        raise
    drop_training_state(run_dir)
    return run_dir


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate_run(run_dir: Path, data: MiniData, clip: tuple[int, str] | None = None) -> dict:
    """Test-split text-to-video metrics of a run's best (else newest) weights, cached in ``run_dir/test.json``.

    ``clip`` = (max_frames, sampling) overrides the run's own (zero-shot tests of pretraining runs, whose
    clips differ from fine-tuning's; cached in ``test-<frames>-<sampling>.json``).

    ``all``, ``order`` (captions of videos with a time-reversed twin in the test split) and ``other``:
    R@1/5/10, MdR, MnR with ties at their expected rank; ``twin_accuracy``: % of order queries whose own
    video scores above its twin (a tie counts one half).
    """
    cached = run_dir / ("test.json" if clip is None else f"test-{clip[0]}-{clip[1]}.json")
    if cached.exists():
        try:
            found = json.loads(cached.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            found = None
        if isinstance(found, dict) and found.get("format") == TEST_FORMAT and found.get("version") == VERSION:
            return found["metrics"]
        log.warning("%s is not a %s version %d file: evaluating again", cached, TEST_FORMAT, VERSION)
    import torch

    from c4c.data.text import CaptionTokenizer
    from c4c.data.video_text import ClipSpec, EvalSet
    from c4c.datasets.registry import read_annotations, split_records
    from c4c.model.inference import encode_eval_set, similarity_matrix
    from c4c.model.load import load_run
    from c4c.video.store import FrameStore

    loaded = load_run(run_dir, which="best")
    max_frames, sampling = clip or (int(loaded.config["max_frames"]), loaded.config["sampling"])
    spec = ClipSpec(max_frames=max_frames, sampling=sampling)
    records = split_records(read_annotations("jsonl", data.ann), "test")
    evalset = EvalSet(records, FrameStore(data.frames), CaptionTokenizer(int(loaded.config["max_words"])), spec)
    with torch.no_grad():
        text, video, mask = encode_eval_set(loaded.model, evalset, batch_size=64)
        sim = similarity_matrix(loaded.model, text, video, mask)  # [Nt, Nv]
    result = score_test(sim, evalset.video_of_caption, evalset.video_ids, data.twins)
    write_text(cached, json.dumps({"format": TEST_FORMAT, "version": VERSION, "metrics": result}, indent=2) + "\n")
    return result


def score_test(sim, video_of_caption, video_ids: list[str], twins: dict[str, str]) -> dict:
    """Metrics of a ``sim: [Nt, Nv]`` test matrix (see :func:`evaluate_run`)."""
    import numpy as np

    from c4c.metrics.retrieval import metrics_from_ranks, positive_ranks

    video_of_caption = np.asarray(video_of_caption)
    ranks = positive_ranks(sim, video_of_caption, ties="mean")
    column = {vid: j for j, vid in enumerate(video_ids)}
    is_order = np.array([video_ids[v] in twins for v in video_of_caption], dtype=bool)
    wins = []
    for i, v in enumerate(video_of_caption):
        twin = twins.get(video_ids[v])
        if twin is not None:
            own, other = sim[i, v], sim[i, column[twin]]
            wins.append(1.0 if own > other else 0.5 if own == other else 0.0)
    return {"all": metrics_from_ranks(ranks),
            "order": metrics_from_ranks(ranks[is_order]) if is_order.any() else None,
            "other": metrics_from_ranks(ranks[~is_order]) if (~is_order).any() else None,
            "twin_accuracy": 100.0 * float(np.mean(wins)) if wins else None,
            "test_videos": len(video_ids), "order_videos": sum(v in twins for v in video_ids),
            "order_queries": int(is_order.sum()),
            "other_queries": int((~is_order).sum())}


def loss_curve(run_dir: Path) -> dict[str, list]:
    """``{"step": [...], "loss": [...]}`` from the run's metrics.jsonl step lines; ``val_r1`` per epoch."""
    steps, losses, val = [], [], []
    if not (run_dir / "metrics.jsonl").exists():
        return {"step": steps, "loss": losses, "val_r1": val}
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if record.get("event") == "step":
                steps.append(int(record["step"]))
                losses.append(float(record["loss"]))
            elif record.get("event") == "epoch" and record.get("metrics"):
                val.append(float(record["metrics"]["t2v"]["R@1"]))
    return {"step": steps, "loss": losses, "val_r1": val}


# ---------------------------------------------------------------------------------------------
# results: one JSON file per (experiment, arm, seed)


def result_path(out: Path, experiment: Experiment, arm: Arm, seed: int) -> Path:
    return out / "results" / experiment.key / arm.key / f"seed-{seed}.json"


def read_result(path: Path) -> dict:
    """Read one result file, checking its format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise C4CError(f"cannot read a mini result: {exc}", path=path,
                       hint="delete the file to recompute it") from None
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT or data.get("version") != VERSION:
        raise C4CError(f"not a {RESULT_FORMAT} version {VERSION} file", path=path,
                       hint="delete the file to recompute it")
    return data


def run_arm(cfg: MiniConfig, data: MiniData, experiment: Experiment, arm: Arm, seed: int,
            on_event: Event | None = None) -> dict:
    """Train (or reuse) the arm's run, evaluate it on test, and save the result file.

    A zero-shot arm (``train=False``) tests its pretraining run as it is, with fine-tuning's clips. A run
    that diverges is saved as such (``diverged``: the message, ``test``: None).
    """
    t0 = time.perf_counter()
    run_dir = cfg.out / "runs" / run_name(arm, cfg, seed)
    result = {"format": RESULT_FORMAT, "version": VERSION, "experiment": experiment.key, "arm": arm.key,
              "seed": seed, "run": run_dir.name, "settings": asdict(arm), "diverged": None,
              "curve": {"step": [], "loss": [], "val_r1": []}, "best_epoch": None, "train_seconds": None}
    if not arm.train:
        (post_pretrain_run if arm.init == "post" else image_text_run)(cfg, data, seed, on_event)
        result["test"] = evaluate_run(run_dir, data, clip=(cfg.max_frames, "uniform"))
    else:
        try:
            finetune_run(cfg, data, arm, seed, on_event)
        except TrainingDiverged as exc:
            log.warning("%s diverged: %s", run_dir.name, exc.problem)
            result.update(diverged=exc.problem, test=None, curve=loss_curve(run_dir))
        else:
            train = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
            result.update(test=evaluate_run(run_dir, data), curve=loss_curve(run_dir),
                          best_epoch=train.get("best_epoch"), train_seconds=train.get("seconds"))
    result["seconds"] = time.perf_counter() - t0
    path = result_path(cfg.out, experiment, arm, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------------------------------------
# summary statistics


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value) of ``values``."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


METRICS: dict[str, Callable[[dict], float | None]] = {
    "R@1": lambda t: t["all"]["R@1"],
    "R@5": lambda t: t["all"]["R@5"],
    "MnR": lambda t: t["all"]["MnR"],
    "twin": lambda t: t["twin_accuracy"],
    "R@1 order": lambda t: t["order"]["R@1"] if t["order"] else None,
    "R@1 other": lambda t: t["other"]["R@1"] if t["other"] else None,
}


def mean_curve(curves: list[dict]) -> dict[str, list[float]]:
    """The mean loss per step over runs (steps all runs logged) and its sample spread."""
    if not curves:
        return {"step": [], "loss": [], "std": []}
    common = set(curves[0]["step"])
    for c in curves[1:]:
        common &= set(c["step"])
    steps = sorted(common)
    by_run = [dict(zip(c["step"], c["loss"])) for c in curves]
    stats = [mean_std([r[s] for r in by_run]) for s in steps]
    return {"step": steps, "loss": [s["mean"] for s in stats], "std": [s["std"] for s in stats]}


def summarise(experiment: Experiment, results: dict[str, list[dict]]) -> dict:
    """Per arm: per-seed values and mean ± std of every metric, and the mean loss curve."""
    arms = []
    for arm in experiment.arms:
        runs = sorted(results.get(arm.key, []), key=lambda r: r["seed"])
        if not runs:
            continue
        values = {name: [get(r["test"]) if r.get("test") else None for r in runs] for name, get in METRICS.items()}
        finished = [r for r in runs if not r.get("diverged")]
        arms.append({"key": arm.key, "label": arm.label, "seeds": [r["seed"] for r in runs],
                     "values": values, "diverged": len(runs) - len(finished),
                     "stats": {name: mean_std([v for v in vs if v is not None]) for name, vs in values.items()},
                     "curve": mean_curve([r["curve"] for r in finished if r["curve"]["step"]]),
                     "order_videos": max((r["test"].get("order_videos", 0) for r in finished), default=0),
                     "trained": arm.train,
                     "lr": arm.lr, "runs": [r["run"] for r in runs]})
    return {"number": experiment.number, "key": experiment.key, "title": experiment.title,
            "question": experiment.question, "baseline": experiment.baseline, "contrast": experiment.contrast,
            "arms": arms}


# ---------------------------------------------------------------------------------------------
# the whole thing


def machine() -> dict:
    import torch

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_1min": load,
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}


def resolve_threads(threads: int) -> int:
    cpus = os.cpu_count() or 1
    if threads > 0:
        return threads
    return 1 if cpus <= 2 else max(1, cpus // 2)


def read_settings(out: Path) -> dict | None:
    """The folder's mini.json (settings and the invocations that computed its results), or None."""
    path = out / "mini.json"
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise C4CError(f"cannot read the mini settings: {exc}", path=path) from None
    if not isinstance(found, dict) or found.get("format") != SETTINGS_FORMAT or found.get("version") != VERSION:
        raise C4CError(f"not a {SETTINGS_FORMAT} version {VERSION} settings file", path=path)
    return found


def check_settings(cfg: MiniConfig) -> None:
    """Write mini.json, or check that the folder's results were made with the same settings."""
    wanted = {"format": SETTINGS_FORMAT, "version": VERSION, "settings": cfg.settings(), "invocations": []}
    found = read_settings(cfg.out)
    if found is not None:
        if found.get("settings") != wanted["settings"]:
            changed = sorted(k for k in wanted["settings"] if found["settings"].get(k) != wanted["settings"][k])
            raise C4CError(f"this folder holds results made with other settings ({', '.join(changed)})",
                           path=cfg.out / "mini.json", hint="choose another --out, or delete the folder to start over")
        return
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_text(cfg.out / "mini.json", json.dumps(wanted, indent=2) + "\n")


def record_invocation(out: Path, seconds: float, computed: int, threads: int, data_seconds: float = 0.0) -> list[dict]:
    """Add one finished invocation (wall seconds, of them making the data; results computed) to mini.json;
    returns them all."""
    found = read_settings(out) or {}
    found.setdefault("invocations", []).append(
        {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(seconds, 1),
         "data_seconds": round(data_seconds, 1), "computed": computed, "torch_threads": threads})
    write_text(out / "mini.json", json.dumps(found, indent=2) + "\n")
    return found["invocations"]


def plan(cfg: MiniConfig) -> list[tuple[Experiment, Arm, int]]:
    """Every (experiment, arm, seed) to compute, seed by seed so an interrupted run has whole seeds."""
    chosen = [e for e in experiments(cfg) if e.number in cfg.only]
    return [(e, a, s) for s in range(cfg.seeds) for e in chosen for a in e.arms]


def validate(cfg: MiniConfig) -> None:
    if cfg.seeds < 1:
        raise C4CError(f"--seeds must be at least 1, got {cfg.seeds}")
    if not cfg.only or any(n not in range(1, 7) for n in cfg.only):
        raise C4CError(f"--only takes experiment numbers 1-6, got {','.join(map(str, cfg.only)) or 'none'}")
    if not cfg.lrs or any(not lr > 0 for lr in cfg.lrs):
        raise C4CError("learning rates must be positive")


def run(cfg: MiniConfig, on_event: Event | None = None) -> dict:
    """Run the chosen experiments (skipping finished results), then write results.json and the report."""
    import torch

    from c4c.mini import report

    on_event = on_event or (lambda event: None)
    t0 = time.perf_counter()
    validate(cfg)
    torch.set_num_threads(resolve_threads(cfg.threads))
    check_settings(cfg)
    tasks = plan(cfg)
    data = prepare_data(cfg, need_howto=2 in cfg.only, on_event=on_event)
    pending = [t for t in tasks if not result_path(cfg.out, *t).exists()]
    on_event({"event": "plan", "tasks": len(tasks), "pending": len(pending)})
    for i, (experiment, arm, seed) in enumerate(pending):
        on_event({"event": "task", "index": i, "experiment": experiment.number, "arm": arm.label, "seed": seed})
        run_arm(cfg, data, experiment, arm, seed, on_event)
        on_event({"event": "task_done", "index": i})
    seconds = time.perf_counter() - t0
    record_invocation(cfg.out, seconds, len(pending), torch.get_num_threads(), data.seconds)
    summary = collect(cfg, data, seconds_this_run=seconds)
    report.write(cfg.out, summary)
    on_event({"event": "done", "seconds": seconds})
    return summary


def collect(cfg: MiniConfig, data: MiniData, seconds_this_run: float) -> dict:
    """Everything on disk for this folder (any experiment with results), as results.json holds it."""
    from c4c.mini import report

    summaries, raw = [], {}
    for experiment in experiments(cfg):
        results: dict[str, list[dict]] = {}
        for arm in experiment.arms:
            for seed in range(cfg.seeds):
                path = result_path(cfg.out, experiment, arm, seed)
                if path.exists():
                    result = read_result(path)
                    results.setdefault(arm.key, []).append(result)
        if results:
            section = summarise(experiment, results)
            section["answer"] = report.answer(section)
            summaries.append(section)
            keep = ("seed", "run", "diverged", "test", "best_epoch", "train_seconds")
            raw[experiment.key] = {k: [{key: r.get(key) for key in keep} for r in v] for k, v in results.items()}
    run_seconds = {}
    for folder in sorted((cfg.out / "runs").glob("*/results.json")):
        run_seconds[folder.parent.name] = json.loads(folder.read_text(encoding="utf-8")).get("seconds")
    task_seconds = sum(s for s in run_seconds.values() if s)
    invocations = (read_settings(cfg.out) or {}).get("invocations", [])
    summary = {"format": RESULTS_FORMAT, "version": VERSION, "settings": cfg.settings(), "seeds": cfg.seeds,
               "machine": machine(), "test_videos": data.test_videos, "chance_R@1": 100.0 / data.test_videos,
               "order_pairs_in_test": len(data.twins) // 2,
               "seconds": {"this_run": round(seconds_this_run, 1), "data_this_run": round(data.seconds, 1),
                           "all_invocations": round(sum(i["seconds"] for i in invocations), 1),
                           "data_all_invocations": round(sum(i.get("data_seconds", 0.0) for i in invocations), 1),
                           "invocations": len(invocations), "training_runs": round(task_seconds, 1)},
               "experiments": summaries, "raw": raw, "run_seconds": run_seconds}
    write_text(cfg.out / "results.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary

