"""Paper-reproduction rows (configs/reproduce/*.json): one row of the CLIP4Clip paper's tables each.

A row config names the dataset, the options of every stage (the paper's hyper-parameters) and the
paper's figures with their source. ``reproduce.mk`` turns it into commands:

    python -m c4c.reproduce flags CONFIG STAGE --data DATA --out OUT   # the arguments of one `c4c` command
    python -m c4c.reproduce compare CONFIG METRICS_JSON [--out FILE]   # our figures beside the paper's
    python -m c4c.reproduce list [CONFIG_DIR] [--markdown]             # every row and its make target

Files of a row (the Makefile's targets use the same layout):

    DATA/<dataset>/<annotations>, DATA/<dataset>/videos       as data/README.md lays them out
    DATA/<dataset>/frames.h5                                  shared by every row of the dataset
    OUT/<row>/run/                                            the training run
    OUT/<row>/test.emb.h5 (retrieval) or captions.json (captioning)
    OUT/<row>/metrics.json, OUT/<row>/compare.json

make runs ``flags`` for every command it prints, so this module imports only the standard library at
import time (``python -S`` starts it in a few tens of milliseconds) and keeps configs as plain classes.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from c4c.atomic import write_json
from c4c.choices import HEADS
from c4c.errors import C4CError

FORMAT = "c4c-reproduce"
FORMAT_VERSION = 1
COMPARE_FORMAT = "c4c-reproduce-compare"

# task -> its stages in pipeline order (each stage is one `c4c` command)
TASKS = {
    "retrieval": ("extract", "finetune", "encode", "evaluate"),
    "pretrain": ("extract", "pretrain", "encode", "evaluate"),
    "caption": ("extract", "caption-train", "caption-generate", "evaluate"),
}
TRAIN_STAGES = ("finetune", "pretrain", "caption-train")
# dataset -> (annotations, frame store), both relative to DATA/<dataset>/ (data/README.md)
LAYOUT = {
    "msrvtt": ("msrvtt_data", "frames.h5"),
    "msvd": ("msvd_data", "frames.h5"),
    "lsmdc": ("annotations", "frames.h5"),
    "activitynet": ("annotations", "frames.h5"),
    "didemo": ("annotations", "frames.h5"),
    "howto100m": ("", "frames"),               # caption.json + HowTo100M_v1.csv in the folder; a shard set
}
RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "MdR", "MnR")
OPTIONAL_RETRIEVAL_METRICS = ("R@50",)         # ActivityNet is reported with R@50
CAPTION_METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")  # paper scale: x 100
LOWER_IS_BETTER = ("MdR", "MnR")
_KEYS = {"format", "format_version", "name", "title", "task", "dataset", "eval_dataset", "init", "paper", "notes"}
_PAPER_KEYS = {"retrieval": ("t2v", "v2t"), "pretrain": ("t2v", "v2t"), "caption": ("captions",)}
# options the row sets itself from DATA, OUT and the run folder (see stage_args)
_RESERVED = {"dataset", "ann", "videos", "frames", "out", "run", "init", "resume", "skip_missing"}


class RowConfig:
    """One validated row config (the JSON file's fields; ``stages`` maps stage -> its options)."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.name: str = data["name"]
        self.title: str = data["title"]
        self.task: str = data["task"]
        self.dataset: str = data["dataset"]                      # trained on (and extracted)
        self.eval_dataset: str = data.get("eval_dataset") or data["dataset"]  # encoded and scored
        self.init: str | None = data.get("init")                 # row whose run starts this one
        self.stages: dict[str, dict[str, object]] = {s: data[s] for s in TASKS[data["task"]]}
        self.paper: dict = data["paper"]
        self.notes: str = data.get("notes", "")

    @property
    def train_stage(self) -> str:
        return TASKS[self.task][1]

    @property
    def head(self) -> str:
        return str(self.stages[self.train_stage].get("sim", "meanP"))


def load_config(path: str | Path) -> RowConfig:
    """Read and validate a row config; every problem is a C4CError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise C4CError(f"cannot read the row config: {exc.strerror or exc}", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise C4CError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(data, dict):
        raise C4CError("a row config is a JSON object", path=path)
    if data.get("format") != FORMAT:
        raise C4CError(f"not a {FORMAT} file (format is {data.get('format')!r})", path=path)
    if data.get("format_version") != FORMAT_VERSION:
        raise C4CError(f"{FORMAT} version {data.get('format_version')!r} is not supported",
                       path=path, hint=f"this c4c reads version {FORMAT_VERSION}")
    task = data.get("task")
    if task not in TASKS:
        raise C4CError(f"unknown task {task!r}", path=path, hint=f"choose one of: {', '.join(TASKS)}")
    unknown = sorted(set(data) - _KEYS - set(TASKS[task]))
    if unknown:
        raise C4CError(f"unknown key(s) for a {task} row: {', '.join(unknown)}", path=path)
    for key in ("name", "title"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise C4CError(f"{key!r} must be a non-empty string", path=path)
    if data["name"] != path.stem:
        raise C4CError(f"name {data['name']!r} differs from the file name", path=path,
                       hint=f"the make target is reproduce-<name>: rename the file to {data['name']}.json")
    for key in ("dataset", "eval_dataset"):
        if key in data and data[key] not in LAYOUT:
            raise C4CError(f"unknown {key} {data[key]!r}", path=path, hint=f"choose one of: {', '.join(LAYOUT)}")
    if "dataset" not in data:
        raise C4CError("missing 'dataset'", path=path)
    init = data.get("init")
    if init is not None and not (isinstance(init, str) and (path.parent / f"{init}.json").is_file()):
        raise C4CError(f"'init' must name another row config in {path.parent}, not {init!r}", path=path)
    for stage in TASKS[task]:
        _check_options(path, stage, data.get(stage))
    _check_paper(path, task, data.get("paper"))
    return RowConfig(path, data)


def _check_options(path: Path, stage: str, options: object) -> None:
    if not isinstance(options, dict):
        raise C4CError(f"stage {stage!r} needs an object of options (may be empty)", path=path)
    for key, value in options.items():
        if not key.replace("_", "").isalnum() or not key.islower():
            raise C4CError(f"{stage}: option {key!r} must be a snake_case name (e.g. max_frames)", path=path)
        if key in _RESERVED:
            raise C4CError(f"{stage}: option {key!r} is set by the row itself (from DATA, OUT and 'init')",
                           path=path)
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise C4CError(f"{stage}.{key}: options are strings, numbers, booleans or null", path=path)


def _check_paper(path: Path, task: str, paper: object) -> None:
    if not isinstance(paper, dict):
        raise C4CError("missing 'paper' (the paper's figures; null where it gives none)", path=path)
    groups = _PAPER_KEYS[task]
    unknown = sorted(set(paper) - set(groups) - {"source", "unconfirmed"})
    if unknown:
        raise C4CError(f"paper: unknown key(s) {', '.join(unknown)}", path=path,
                       hint=f"a {task} row has {', '.join(groups)}, source, unconfirmed")
    if not isinstance(paper.get("source"), str) or not paper["source"]:
        raise C4CError("paper.source must say where the figures come from", path=path)
    for group in groups:
        if group not in paper:
            raise C4CError(f"paper.{group} missing (null when the paper gives none)", path=path)
        figures = paper[group]
        if figures is None:
            continue
        required = CAPTION_METRICS if group == "captions" else RETRIEVAL_METRICS
        optional = () if group == "captions" else OPTIONAL_RETRIEVAL_METRICS
        if not isinstance(figures, dict) or not set(required) <= set(figures) or \
                not set(figures) <= set(required) | set(optional):
            raise C4CError(f"paper.{group} must have exactly {', '.join(required)}"
                           + (f" (and optionally {', '.join(optional)})" if optional else ""), path=path)
        for metric, value in figures.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise C4CError(f"paper.{group}.{metric} must be a non-negative number or null", path=path)
    for ref in paper.get("unconfirmed", []):
        group, _, metric = str(ref).partition(".")
        figures = paper.get(group) if group in groups else None
        if not isinstance(figures, dict) or figures.get(metric) is None:
            raise C4CError(f"paper.unconfirmed names {ref!r}, which is not a figure of this row", path=path,
                           hint="write GROUP.METRIC, e.g. t2v.MdR")


# ---------------------------------------------------------------- paths and flags

def paths(cfg: RowConfig, data: str | Path, out: str | Path) -> dict[str, Path]:
    """Every file of a row under DATA and OUT (the layout reproduce.mk's targets use)."""
    data, out = Path(data), Path(out)
    ann, frames = LAYOUT[cfg.dataset]
    eval_ann, eval_frames = LAYOUT[cfg.eval_dataset]
    row = out / cfg.name
    return {
        "source": data / cfg.dataset / ann if ann else data / cfg.dataset,
        "videos": data / cfg.dataset / "videos",
        "frames": data / cfg.dataset / frames,
        "eval_ann": data / cfg.eval_dataset / eval_ann if eval_ann else data / cfg.eval_dataset,
        "eval_frames": data / cfg.eval_dataset / eval_frames,
        "run": row / "run",
        "init": out / cfg.init / "run" if cfg.init else None,
        "emb": row / "test.emb.h5",
        "captions": row / "captions.json",
        "metrics": row / "metrics.json",
        "compare": row / "compare.json",
    }


def stage_args(cfg: RowConfig, stage: str, data: str | Path, out: str | Path, *,
               skip_missing: bool = False) -> list[str]:
    """The arguments of the `c4c` command of ``stage`` (everything after e.g. ``c4c finetune``).

    A training stage whose run folder already holds a checkpoint gets ``--resume``, so re-running a
    make target continues an interrupted run.
    """
    if stage not in TASKS[cfg.task]:
        raise C4CError(f"a {cfg.task} row has no stage {stage!r}", path=cfg.path,
                       hint=f"its stages: {', '.join(TASKS[cfg.task])}")
    p = paths(cfg, data, out)
    if stage == "extract":
        args = [p["source"], "--dataset", cfg.dataset, "--videos", p["videos"], "--out", p["frames"]]
    elif stage == "pretrain":
        args = ["--ann", p["source"], "--frames", p["frames"], "--out", p["run"]]
    elif stage in ("finetune", "caption-train"):
        args = ["--dataset", cfg.dataset, "--ann", p["source"], "--frames", p["frames"], "--out", p["run"]]
    elif stage == "encode":
        args = ["--run", p["run"], "--frames", p["eval_frames"], "--dataset", cfg.eval_dataset,
                "--ann", p["eval_ann"], "--out", p["emb"]]
    elif stage == "caption-generate":
        args = ["--run", p["run"], "--frames", p["eval_frames"], "--dataset", cfg.eval_dataset,
                "--ann", p["eval_ann"], "--out", p["captions"]]
    elif cfg.task == "caption":  # evaluate captions against the annotated references
        args = [p["captions"], "--dataset", cfg.eval_dataset, "--ann", p["eval_ann"], "--out", p["metrics"]]
    else:
        args = [p["emb"], "--out", p["metrics"]]
    if stage in TRAIN_STAGES and p["init"] is not None:
        args += ["--init", p["init"]]
    for key, value in cfg.stages[stage].items():
        args += _option(key, value)
    if stage in TRAIN_STAGES and (p["run"] / "latest.json").is_file():
        args.append("--resume")
    if skip_missing and stage in TRAIN_STAGES + ("encode", "caption-generate"):
        args.append("--skip-missing")
    return [str(a) for a in args]


def _option(key: str, value: object) -> list[str]:
    """``max_frames: 12`` -> ``--max-frames 12``; booleans -> ``--flag`` / ``--no-flag``; null -> nothing."""
    name = "--" + key.replace("_", "-")
    if value is None:
        return []
    if isinstance(value, bool):
        return [name if value else "--no-" + key.replace("_", "-")]
    return [name, repr(value) if isinstance(value, float) else str(value)]


def shell_quote(arg: str) -> str:
    """``arg`` as one shell word (like shlex.quote, which costs make a module import per command)."""
    if arg and all(c.isalnum() or c in "@%+=:,./-_" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


# ---------------------------------------------------------------- comparison with the paper

def load_metrics(path: str | Path) -> dict:
    """Our figures from `c4c evaluate`'s metrics JSON: {"t2v": {...}, "v2t": {...}} or {"captions": {...}}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise C4CError(f"cannot read the metrics: {exc.strerror or exc}", path=path,
                       hint="`c4c evaluate` writes this file") from None
    except json.JSONDecodeError as exc:
        raise C4CError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(data, dict):
        raise C4CError("metrics JSON must be an object", path=path)
    if data.get("format") == "c4c-caption-metrics":
        if not isinstance(data.get("scores"), dict):
            raise C4CError("caption metrics without 'scores'", path=path)
        return {"captions": {k: 100.0 * v for k, v in data["scores"].items()
                             if k in CAPTION_METRICS and isinstance(v, (int, float))},
                "dataset": data.get("dataset")}
    if not isinstance(data.get("t2v"), dict):
        raise C4CError("not retrieval metrics (no 't2v') nor caption metrics", path=path,
                       hint="pass the metrics.json written by `c4c evaluate`")
    return {"t2v": data["t2v"], "v2t": data.get("v2t") or {}, "dataset": data.get("dataset")}


def compare(cfg: RowConfig, metrics: dict) -> list[dict]:
    """Rows {group, metric, ours, paper, difference (ours - paper), confirmed} for every figure either side."""
    unconfirmed = set(cfg.paper.get("unconfirmed", []))
    rows = []
    for group in _PAPER_KEYS[cfg.task]:
        paper = cfg.paper.get(group) or {}
        ours = metrics.get(group) or {}
        names = CAPTION_METRICS if group == "captions" else \
            [m for m in RETRIEVAL_METRICS[:3] + OPTIONAL_RETRIEVAL_METRICS + RETRIEVAL_METRICS[3:]
             if m in RETRIEVAL_METRICS or paper.get(m) is not None]
        for metric in names:
            mine, theirs = ours.get(metric), paper.get(metric)
            mine = float(mine) if isinstance(mine, (int, float)) else None
            rows.append({"group": group, "metric": metric, "ours": mine, "paper": theirs,
                         "difference": None if mine is None or theirs is None else round(mine - theirs, 4),
                         "confirmed": None if theirs is None else f"{group}.{metric}" not in unconfirmed})
    return rows


def write_comparison(cfg: RowConfig, metrics_path: Path, rows: list[dict], out: Path) -> None:
    """The comparison as JSON (format c4c-reproduce-compare, version 1), written atomically."""
    result = {"format": COMPARE_FORMAT, "format_version": 1, "row": cfg.name, "title": cfg.title,
              "config": str(cfg.path), "metrics": str(metrics_path), "paper_source": cfg.paper["source"],
              "notes": cfg.notes, "rows": rows}
    write_json(out, result)


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if metric not in CAPTION_METRICS else f"{value:.2f}"


def _print_comparison(cfg: RowConfig, rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{cfg.title}: ours vs the paper", caption="* unconfirmed paper figure (see the config's "
                  "paper.source); difference = ours - paper (lower is better for MdR, MnR)"
                  + ("; caption scores x 100" if cfg.task == "caption" else ""))
    for col in ("", "metric", "ours", "paper", "difference"):
        table.add_column(col, justify="right" if col in ("ours", "paper", "difference") else "left")
    for row in rows:
        diff = row["difference"]
        style = "" if diff is None or diff == 0 else \
            ("green" if (diff > 0) != (row["metric"] in LOWER_IS_BETTER) else "red")
        paper = _fmt(row["paper"], row["metric"]) + ("*" if row["confirmed"] is False else "")
        table.add_row(row["group"], row["metric"], _fmt(row["ours"], row["metric"]), paper,
                      "—" if diff is None else f"[{style}]{diff:+.2f}[/]" if style else f"{diff:+.2f}")
    console = Console()
    console.print(table)
    console.print(f"paper figures: {cfg.paper['source']}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- the list of rows

def load_rows(folder: str | Path) -> list[RowConfig]:
    """Every row config in ``folder``, in the paper's order: task, dataset, split, the four heads, variants."""
    folder = Path(folder)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise C4CError("no row configs (*.json) here", path=folder)
    rows = [load_config(f) for f in files]
    tasks, datasets = list(TASKS), list(LAYOUT)
    return sorted(rows, key=lambda r: (tasks.index(r.task), datasets.index(r.dataset), r.name.split("-")[0],
                                       r.name.count("-") > 1,  # ablations after the plain heads
                                       HEADS.index(r.head) if r.head in HEADS else len(HEADS), r.name))


def markdown_table(rows: list[RowConfig]) -> str:
    """The README's table: target, dataset, head, the paper's text-to-video figures (* unconfirmed)."""
    lines = ["| target | row | paper t2v R@1 | R@5 | R@10 | MdR | MnR |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for cfg in rows:
        lines.append(f"| `make reproduce-{cfg.name}` | {cfg.title} | " + " | ".join(_paper_cells(cfg)) + " |")
    return "\n".join(lines)


def _paper_cells(cfg: RowConfig) -> list[str]:
    figures = cfg.paper.get("t2v") if cfg.task != "caption" else None
    unconfirmed = set(cfg.paper.get("unconfirmed", []))
    cells = []
    for metric in RETRIEVAL_METRICS:
        value = (figures or {}).get(metric)
        cells.append("—" if value is None else f"{value:.1f}" + ("*" if f"t2v.{metric}" in unconfirmed else ""))
    return cells


def _print_rows(rows: list[RowConfig]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="make reproduce-<row> DATA=...: the paper's text-to-video figures",
                  caption="* unconfirmed; — none given or confirmed. Settings, sources: configs/reproduce/<row>.json")
    table.add_column("target", no_wrap=True)
    for col in ("dataset", "head", "R@1", "R@5", "R@10", "MdR", "MnR"):
        table.add_column(col, justify="right" if col.startswith(("R@", "Md", "Mn")) else "left")
    for cfg in rows:
        table.add_row(f"reproduce-{cfg.name}", cfg.eval_dataset, cfg.head, *_paper_cells(cfg))
    Console().print(table)


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``python -m c4c.reproduce flags|compare|list ...``; user errors print one line and return 2."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m c4c.reproduce", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("flags", help="print the arguments of one stage's c4c command")
    p.add_argument("config")
    p.add_argument("stage", choices=sorted({s for stages in TASKS.values() for s in stages}))
    p.add_argument("--data", default="data", help="the datasets' folder (data/README.md layout)")
    p.add_argument("--out", default="runs/reproduce", help="the folder of the rows' outputs")
    p.add_argument("--skip-missing", action="store_true", help="add --skip-missing to train and encode")
    p = sub.add_parser("compare", help="print our figures beside the paper's; write them as JSON")
    p.add_argument("config")
    p.add_argument("metrics")
    p.add_argument("--out", help="comparison JSON (default: compare.json next to METRICS)")
    p = sub.add_parser("list", help="print every row")
    p.add_argument("folder", nargs="?", default="configs/reproduce")
    p.add_argument("--markdown", action="store_true", help="a markdown table for the README")
    args = parser.parse_args(argv)
    try:
        if args.command == "flags":
            cfg = load_config(args.config)
            words = stage_args(cfg, args.stage, args.data, args.out, skip_missing=args.skip_missing)
            print(" ".join(shell_quote(w) for w in words))
        elif args.command == "compare":
            cfg = load_config(args.config)
            metrics = load_metrics(args.metrics)
            if metrics.get("dataset") and metrics["dataset"] != cfg.eval_dataset:
                raise C4CError(f"these metrics are for {metrics['dataset']}, the row is scored on "
                               f"{cfg.eval_dataset}", path=args.metrics)
            rows = compare(cfg, metrics)
            out = Path(args.out) if args.out else Path(args.metrics).with_name("compare.json")
            _print_comparison(cfg, rows)
            write_comparison(cfg, Path(args.metrics), rows, out)
            print(f"comparison written to {out}")
        else:
            rows = load_rows(args.folder)
            if args.markdown:
                print(markdown_table(rows))
            else:
                _print_rows(rows)
    except C4CError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
