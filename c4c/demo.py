"""`make demo` (`python -m c4c.demo --out DIR`): the whole pipeline on synthetic data, on a CPU, in minutes.

An application on top of the command line (like :mod:`c4c.mini`): every step is a `c4c` command,
printed before it runs, so what the demo does is what a person would type. At the end every figure is
printed beside chance or a trivial baseline, the search questions have known answers and say whether
they were found, and ``DIR/summary.json`` (format ``c4c-demo`` v1) keeps the numbers (a test holds them).

Steps: synthetic captioned clips and narrated long videos (HowTo100M files) -> frames (one store, one
2-shard set) -> post-pretraining (meanP) -> fine-tuning meanP and seqTransf from it -> test metrics ->
a captioner on the seqTransf encoder -> captions and their scores -> a searchable library of long
videos made of test clips -> questions whose answer (video and time) is known.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from c4c.atomic import write_json
from c4c.cli import ui
from c4c.datasets.registry import read_annotations, split_records
from c4c.errors import C4CError
from c4c.metrics.captions import references_from_records, score_captions
from c4c.stages.search import Searcher
from c4c.video.ffmpeg_bin import ffmpeg_exe

FORMAT = "c4c-demo"
VERSION = 1


@dataclass
class Recipe:
    """The demo's sizes: ``full`` is `make demo`; ``quick`` is the smoke test's."""

    clips: int = 120                  # captioned synthetic clips (train / val / test 60 / 15 / 25 %)
    howto_videos: int = 64            # narrated long videos for post-pretraining
    pretrain_steps: int = 90
    finetune_epochs: int = 12
    caption_epochs: int = 40
    long_videos: int = 4              # long videos for moment search, each made of test clips
    clips_per_long: int = 4
    queries: int = 4


QUICK = Recipe(clips=48, howto_videos=28, pretrain_steps=8, finetune_epochs=2, caption_epochs=2,
               long_videos=2, clips_per_long=3, queries=2)


@dataclass
class Figure:
    what: str
    value: float
    baseline: float
    baseline_what: str
    unit: str = ""
    higher_is_better: bool = True

    @property
    def beats(self) -> bool:
        return self.value > self.baseline if self.higher_is_better else self.value < self.baseline

    def as_dict(self) -> dict:
        return {"what": self.what, "value": self.value, "baseline": self.baseline,
                "baseline_what": self.baseline_what, "unit": self.unit, "beats": self.beats}


@dataclass
class Demo:
    out: Path
    recipe: Recipe
    quiet: bool = True
    figures: list[Figure] = field(default_factory=list)
    answers: list[dict] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def c4c(self, *args: object) -> None:
        """Print and run one `c4c` command in this process (a failure stops the demo with its message)."""
        from c4c.cli.app import main

        words = [str(a) for a in args]
        print("$ c4c " + " ".join(shlex.quote(w) for w in words), flush=True)
        main(words + (["-q"] if self.quiet else []))

    def step(self, number: int, title: str) -> None:
        print(f"\n== {number}/9 {title}", flush=True)
        self._t = time.perf_counter()
        self._title = title

    def done(self) -> None:
        self.seconds[self._title] = round(time.perf_counter() - self._t, 1)


def _test_videos(annotations: Path) -> list[str]:
    seen: dict[str, None] = {}
    for line in annotations.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["split"] == "test":
            seen.setdefault(record["video_id"], None)
    return list(seen)


def _concat_clips(clips: list[Path], out: Path) -> None:
    """One video made of ``clips`` back to back (same size and rate: the demo's synth clips)."""

    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{c.resolve()}'\n" for c in clips), encoding="utf-8")
    tmp = out.with_name(out.stem + ".part" + out.suffix)
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                    "-i", str(listing), "-c", "copy", str(tmp)], check=True)
    tmp.replace(out)
    listing.unlink()


def run(out: Path, recipe: Recipe = Recipe(), quiet: bool = True) -> dict:
    """Run the demo into ``out``; returns the summary (also written to ``out/summary.json``)."""
    out = Path(out)
    demo = Demo(out=out, recipe=recipe, quiet=quiet)
    synth, howto = out / "synth", out / "howto"
    ann = synth / "annotations.jsonl"
    started = time.perf_counter()

    demo.step(1, f"synthetic data: {recipe.clips} captioned clips and {recipe.howto_videos} narrated long videos")
    demo.c4c("synth", synth, "--count", recipe.clips, "--seed", 0)
    demo.c4c("synth", howto, "--kind", "howto", "--count", recipe.howto_videos, "--duration", 30, "--fps", 4,
             "--width", 64, "--height", 48, "--seed", 0)
    demo.done()

    demo.step(2, "frames: one store for the clips, a 2-shard set for the narrated videos")
    demo.c4c("extract", ann, "--dataset", "jsonl", "--videos", synth / "videos", "--out", out / "frames.h5",
             "--size", 32, "--fps", 2)
    demo.c4c("extract", howto, "--dataset", "howto100m", "--videos", howto / "videos", "--out",
             out / "howto-frames", "--shards", 2, "--size", 32, "--fps", 1)
    demo.done()

    demo.step(3, "post-pretraining meanP on the narrated videos (the paper's HowTo100M stage)")
    _fresh(out / "run-pretrain")
    demo.c4c("pretrain", "--ann", howto, "--frames", out / "howto-frames", "--clip", "tiny", "--pretrained", "none",
             "--steps", recipe.pretrain_steps, "--batch-size", 16, "--lr", "1e-3", "--coef-lr", 1, "--workers", 0,
             "--out", out / "run-pretrain")
    demo.done()

    demo.step(4, "fine-tuning meanP and seqTransf from the post-pretrained run")
    for sim in ("meanP", "seqTransf"):
        _fresh(out / f"run-{sim}")
        demo.c4c("finetune", "--dataset", "jsonl", "--ann", ann, "--frames", out / "frames.h5", "--init",
                 out / "run-pretrain", "--sim", sim, "--temporal-layers", 2, "--epochs", recipe.finetune_epochs,
                 "--batch-size", 16, "--lr", "1e-3", "--coef-lr", 1, "--workers", 0, "--out", out / f"run-{sim}")
    demo.done()

    demo.step(5, "test metrics of both (and meanP re-ranked with dual softmax)")
    tests = _test_videos(ann)
    for sim in ("meanP", "seqTransf"):
        emb = out / sim / "test.emb.h5"
        demo.c4c("encode", "--run", out / f"run-{sim}", "--frames", out / "frames.h5", "--dataset", "jsonl",
                 "--ann", ann, "--out", emb, "--workers", 0, "--overwrite")
        demo.c4c("evaluate", emb, *(["--rerank", "dsl"] if sim == "meanP" else []))
        metrics = json.loads((emb.parent / "metrics.json").read_text(encoding="utf-8"))
        demo.figures.append(Figure(f"{sim} text-to-video R@1, {len(tests)} test videos", metrics["t2v"]["R@1"],
                                   100.0 / len(tests), f"chance (1 in {len(tests)})", "%"))
        demo.figures.append(Figure(f"{sim} text-to-video median rank", metrics["t2v"]["MdR"],
                                   (len(tests) + 1) / 2, "chance", "", higher_is_better=False))
    demo.done()

    demo.step(6, "a captioner on the seqTransf encoder (decoder + the joint retrieval loss)")
    _fresh(out / "run-caption")
    demo.c4c("caption", "train", "--dataset", "jsonl", "--ann", ann, "--frames", out / "frames.h5", "--init",
             out / "run-seqTransf", "--decoder-layers", 2, "--epochs", recipe.caption_epochs, "--batch-size", 16,
             "--lr", "5e-3", "--coef-lr", 1, "--workers", 0, "--out", out / "run-caption")
    demo.done()

    demo.step(7, "captions of the test videos, scored against their reference captions")
    demo.c4c("caption", "generate", "--run", out / "run-caption", "--frames", out / "frames.h5", "--dataset", "jsonl",
             "--ann", ann, "--split", "test", "--beam", 3, "--out", out / "captions.json")
    demo.c4c("evaluate", out / "captions.json", "--dataset", "jsonl", "--ann", ann, "--split", "test",
             "--tokenize", "simple")
    _caption_figures(demo, out, ann)
    demo.done()

    demo.step(8, f"a searchable library: {recipe.long_videos} long videos, each {recipe.clips_per_long} test clips "
                 "back to back")
    library = out / "long-videos"
    truth = _make_long_videos(synth, tests, library, recipe)
    demo.c4c("index", library, "--out", out / "library", "--run", out / "run-seqTransf", "--window", 4,
             "--stride", 2, "--size", 32, "--fps", 2, "--workers", 0)
    demo.done()

    demo.step(9, "questions whose answer is known: which video, and when")
    _ask(demo, out / "library", truth)
    demo.done()

    summary = {"format": FORMAT, "format_version": VERSION, "recipe": recipe.__dict__,
               "figures": [f.as_dict() for f in demo.figures], "answers": demo.answers,
               "seconds": {**demo.seconds, "total": round(time.perf_counter() - started, 1)}}
    write_json(out / "summary.json", summary)
    _print_summary(demo, out)
    return summary


def _fresh(run_dir: Path) -> None:
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)


def _caption_figures(demo: Demo, out: Path, ann: Path) -> None:
    """CIDEr beside the most frequent training caption said of every video; colour/shape/motion accuracy."""

    records = read_annotations("jsonl", ann)
    scores = json.loads((out / "captions.metrics.json").read_text(encoding="utf-8"))["scores"]
    captions = json.loads((out / "captions.json").read_text(encoding="utf-8"))
    train = [c for r in split_records(records, "train") for c in r.captions]
    common = max(sorted(set(train)), key=train.count)
    references = references_from_records(split_records(records, "test"))
    baseline = score_captions({v: common for v in captions}, references, tokenize="simple")
    demo.figures.append(Figure("captions CIDEr (test)", scores["CIDEr"], baseline["CIDEr"],
                               f"the most frequent training caption for every video ({common!r})"))
    meta = json.loads((out / "synth" / "synth.json").read_text(encoding="utf-8"))
    truth = {v["video_id"]: v for v in meta["videos"]}
    right = {"colour": 0, "shape": 0, "motions in order": 0}
    for vid, text in captions.items():
        video = truth[vid]
        right["colour"] += video["colour"] in text
        right["shape"] += video["shape"] in text
        where = [text.find(m) for m in video["motions"]]
        right["motions in order"] += all(w >= 0 for w in where) and where == sorted(where)
    n = max(len(captions), 1)
    colours, shapes = len(meta["config"]["colours"]), len(meta["config"]["shapes"])
    demo.figures.append(Figure("captions naming the right colour", 100.0 * right["colour"] / n, 100.0 / colours,
                               f"chance (1 in {colours})", "%"))
    demo.figures.append(Figure("captions naming the right shape", 100.0 * right["shape"] / n, 100.0 / shapes,
                               f"chance (1 in {shapes})", "%"))
    demo.figures.append(Figure("captions naming the motions in order", 100.0 * right["motions in order"] / n,
                               100.0 / 12, "chance (1 in 12 one- or two-move paths)", "%"))


def _make_long_videos(synth: Path, tests: list[str], library: Path, recipe: Recipe) -> list[dict]:
    """Long videos of distinct test clips; returns where each clip is (video, start, end) and its caption."""
    meta = json.loads((synth / "synth.json").read_text(encoding="utf-8"))
    by_id = {v["video_id"]: v for v in meta["videos"]}
    duration = (meta["frames"] - 1) / meta["config"]["fps"] + 1 / meta["config"]["fps"]
    library.mkdir(parents=True, exist_ok=True)
    truth, used = [], 0
    for k in range(recipe.long_videos):
        chosen = tests[used:used + recipe.clips_per_long]
        used += recipe.clips_per_long
        if len(chosen) < recipe.clips_per_long:
            raise C4CError(f"only {len(tests)} test clips for {recipe.long_videos} x {recipe.clips_per_long} long-video parts",
                           hint="make more clips")
        name = f"long{k:02d}"
        target = library / f"{name}.mp4"
        if not target.exists():
            _concat_clips([synth / "videos" / f"{vid}.mp4" for vid in chosen], target)
        for i, vid in enumerate(chosen):
            truth.append({"video_id": name, "start": round(i * duration, 3), "end": round((i + 1) * duration, 3),
                          "clip": vid, "caption": by_id[vid]["captions"][0]})
    return truth


def _ask(demo: Demo, index: Path, truth: list[dict]) -> None:
    """Ask for clips by caption; right = the top moment is in the right video and overlaps the clip by
    IoU >= 0.5. Questions are spread over the videos; each prints its answer and whether it is right."""
    from rich.table import Table

    per = demo.recipe.clips_per_long  # one question per long video, each at another position in it
    picks = [truth[(q * per + q % per) % len(truth)] for q in range(demo.recipe.queries)]
    searcher = Searcher(index, device="cpu")
    hits = searcher.search([p["caption"] for p in picks], k=3, group="moment")
    table = Table(title="questions with known answers")
    for col in ("question", "answer", "top moment", "IoU", "right?"):
        table.add_column(col)
    right = 0
    for pick, moments in zip(picks, hits):
        top = moments[0]
        iou = _iou((pick["start"], pick["end"]), (top.start or 0.0, top.end or 0.0)) if top.video_id == pick["video_id"] else 0.0
        ok = iou >= 0.5
        right += ok
        table.add_row(pick["caption"], f"{pick['video_id']} {pick['start']:.1f}-{pick['end']:.1f} s",
                      f"{top.video_id} {top.start or 0:.1f}-{top.end or 0:.1f} s ({top.score:.3f})", f"{iou:.2f}",
                      "yes" if ok else "no")
        demo.answers.append({**pick, "top": top.as_dict(), "iou": round(iou, 3), "right": ok})
    ui.console().print(table)
    clips = len(truth)
    demo.figures.append(Figure(f"questions answered with the right moment (IoU >= 0.5), of {len(picks)}",
                               100.0 * right / max(len(picks), 1), 100.0 / clips,
                               f"chance (1 in {clips} clips)", "%"))


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _print_summary(demo: Demo, out: Path) -> None:
    from rich.table import Table

    table = Table(title="c4c demo: every figure beside chance or a trivial baseline")
    for col, justify in (("figure", "left"), ("value", "right"), ("baseline", "right"), ("", "left")):
        table.add_column(col, justify=justify)
    for f in demo.figures:
        table.add_row(f.what, f"{f.value:.1f}{f.unit}", f"{f.baseline:.1f}{f.unit} {f.baseline_what}",
                      "better" if f.beats else "NOT better")
    ui.console().print(table)
    print(f"\nsummary: {out / 'summary.json'}   (total {sum(demo.seconds.values()):.0f} s)")
    example = demo.answers[0]["caption"] if demo.answers else "a red circle moves to the left"
    print(f"runs: {out}/run-*   captions: {out / 'captions.json'}   library: {out / 'library'}")
    print(f"try:  .venv/bin/c4c search {out / 'library'} {shlex.quote(example)}")


def main(argv: list[str] | None = None) -> None:
    """`python -m c4c.demo --out DIR [--quick] [--verbose]`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m c4c.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, its numbers mean little")
    parser.add_argument("--verbose", action="store_true", help="every command's progress bars and tables")
    args = parser.parse_args(argv)
    summary = run(args.out, QUICK if args.quick else Recipe(), quiet=not args.verbose)
    if not args.quick and not all(f["beats"] for f in summary["figures"]):
        print("some figures did not beat their baseline (see above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
