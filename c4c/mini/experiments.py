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
import os
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from c4c.atomic import write_text
from c4c.errors import C4CError, TrainingDiverged
from c4c.mini import report
from c4c.mini.config import (RESULT_FORMAT, RESULTS_FORMAT, SETTINGS_FORMAT, VERSION, Arm, Event, Experiment,
                             MiniConfig, experiments)
from c4c.mini.data import MiniData, prepare_data
from c4c.mini.scoring import evaluate_run, loss_curve, summarise
from c4c.model.backbone import build_clip
from c4c.model.clip4clip import CLIP4Clip
from c4c.run import checkpoint
from c4c.stages import finetune, pretrain

log = logging.getLogger(__name__)


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

