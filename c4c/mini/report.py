"""The markdown report of a mini run: one section per question with its setup, a table (mean ± std over
seeds, per-seed values), charts (PNG files next to the report) and a one-sentence answer worked out from
the numbers.

Everything here reads the summary that :func:`c4c.mini.experiments.collect` builds (``results.json``);
no conclusion is written in advance.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from c4c.atomic import write_text
from c4c.mini import plot


def fmt(stats: dict, digits: int = 1) -> str:
    """``mean ± std`` of a :func:`~c4c.mini.experiments.mean_std` result (``-`` when there is no value)."""
    if not stats or not stats.get("n") or not math.isfinite(stats["mean"]):
        return "-"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def per_seed(values: Sequence[float | None], digits: int = 1, missing: str = "-") -> str:
    return " / ".join(missing if v is None else f"{v:.{digits}f}" for v in values)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# answers, computed from the numbers


def _paired(a: dict, b: dict, metric: str) -> list[tuple[float, float]]:
    """(a, b) values of the seeds both arms have, seed by seed."""
    va = dict(zip(a["seeds"], a["values"][metric]))
    vb = dict(zip(b["seeds"], b["values"][metric]))
    return [(va[s], vb[s]) for s in sorted(set(va) & set(vb)) if va[s] is not None and vb[s] is not None]


def compare(base: dict, arm: dict, metric: str = "R@1") -> dict:
    """Paired comparison of ``arm`` against ``base``: mean difference and seeds where ``arm`` is higher."""
    pairs = _paired(base, arm, metric)
    diffs = [b - a for a, b in pairs]
    return {"diff": sum(diffs) / len(diffs) if diffs else float("nan"), "wins": sum(d > 0 for d in diffs),
            "losses": sum(d < 0 for d in diffs), "n": len(diffs)}


def verdict(base: dict, arm: dict, metric: str = "R@1") -> str:
    """"yes: +d R@1, k/n seeds" when ``arm`` beats ``base`` in every seed, "no" when it loses in every
    seed (or never wins), "not consistently" otherwise."""
    c = compare(base, arm, metric)
    if not c["n"]:
        return "no paired seeds yet"
    tail = f"{c['diff']:+.1f} {metric} ({arm['label']} vs {base['label']}), higher in {c['wins']}/{c['n']} seeds"
    if c["wins"] == c["n"]:
        return "yes: " + tail
    if c["wins"] == 0:
        return "no: " + tail
    return "not consistently: " + tail


def _arm(section: dict, key: str) -> dict | None:
    return next((a for a in section["arms"] if a["key"] == key), None)


def answer(section: dict) -> str:
    """The one-sentence answer to a section's question, phrased from its numbers."""
    arms = [a for a in section["arms"] if a["stats"]["R@1"]["n"]]
    if not arms:
        return "No finished results yet."
    section = dict(section, arms=arms)  # arms whose every seed diverged have no numbers to compare
    key = section["key"]
    if section.get("contrast"):
        base, other = _arm(section, section["baseline"]), _arm(section, section["contrast"])
        if base is None or other is None:
            return "Only one of the compared arms has results so far."
        text = verdict(base, other)
        text = text[0].upper() + text[1:]
        return text + (f"; {_twin_note([base, other])}." if key == "patch" else ".")
    if key == "heads":
        return _heads_answer(section)
    if key == "lr":
        return _lr_answer(section)
    text = _best_answer(section, "sampling" if key == "sampling" else "setting")
    return text[:-1] + f"; {_twin_note(section['arms'])}." if key == "sampling" else text


def coin_flip_band(order_videos: int) -> float:
    """Half-width (percentage points) of the two-sigma band of an order-blind score over ``order_videos``
    test videos with a time-reversed twin: 2 x 50 / sqrt(n). Twin accuracies inside 50 ± it are chance."""
    return 100.0 / math.sqrt(order_videos) if order_videos else float("inf")


def _twin_note(arms: list[dict]) -> str:
    scored = [a for a in arms if a["stats"]["twin"]["n"]]
    if not scored:
        return "no order-contrast pair in the test split"
    band = coin_flip_band(max(a.get("order_videos", 0) for a in scored))
    listed = ", ".join(f"{a['label']} {fmt(a['stats']['twin'])}%" for a in scored)
    return f"own video above its time reversal: {listed} (order-blind 50 ± {band:.1f})"


def _best_answer(section: dict, what: str) -> str:
    arms = sorted(section["arms"], key=lambda a: a["stats"]["R@1"]["mean"], reverse=True)
    best = arms[0]
    if len(arms) == 1:
        return f"Only {best['label']} has results so far (R@1 {fmt(best['stats']['R@1'])})."
    second, worst = arms[1], arms[-1]
    c = compare(second, best)
    name = best["label"][0].upper() + best["label"][1:]
    text = (f"{name} {what} is best, R@1 {fmt(best['stats']['R@1'])}: {c['diff']:+.1f} over "
            f"{second['label']} (higher in {c['wins']}/{c['n']} seeds)")
    if worst is not second:
        w = compare(worst, best)
        text += f" and {w['diff']:+.1f} over {worst['label']} (higher in {w['wins']}/{w['n']} seeds)"
    return text + "."


def _heads_answer(section: dict) -> str:
    """The head whose captions most often score their own video above its time reversal, against meanP
    (order-blind by design) and a coin flip, and the head with the best R@1."""
    arms = section["arms"]
    best_r1 = max(arms, key=lambda a: a["stats"]["R@1"]["mean"])
    tail = f"; the best R@1 is {best_r1['label']}'s {fmt(best_r1['stats']['R@1'])}."
    scored = [a for a in arms if a["stats"]["twin"]["n"]]
    if not scored:
        return "The test split has no order-contrast pair, so order cannot be measured" + tail
    band = coin_flip_band(max(a.get("order_videos", 0) for a in scored))
    best = max(scored, key=lambda a: a["stats"]["twin"]["mean"])
    mean_pool = _arm(section, "meanP")
    chance = f"order-blind 50 ± {band:.1f}"
    if best["stats"]["twin"]["mean"] - 50.0 <= band or mean_pool is None or best is mean_pool:
        return (f"No head orders clearly better than a coin flip: the best twin accuracy is {best['label']}'s "
                f"{fmt(best['stats']['twin'])}% ({chance})" + tail)
    c = compare(mean_pool, best, "twin")
    return (f"{best['label']} orders best: its captions score their own video above the time-reversed twin "
            f"{fmt(best['stats']['twin'])}% of the time, meanP {fmt(mean_pool['stats']['twin'])}% ({chance}), "
            f"higher than meanP in {c['wins']}/{c['n']} seeds" + tail)


def _lr_answer(section: dict) -> str:
    arms = [a for a in section["arms"] if a["stats"]["R@1"]["n"]]
    best = max(arms, key=lambda a: a["stats"]["R@1"]["mean"])
    worst = min(arms, key=lambda a: a["stats"]["R@1"]["mean"])
    if best is worst:
        return f"Only {best['label']} has results so far (R@1 {fmt(best['stats']['R@1'])})."
    c = compare(worst, best)
    lrs = [a["lr"] for a in arms if a.get("lr")]
    span = math.log10(max(lrs) / min(lrs)) if len(lrs) > 1 else 0.0
    word = "yes" if c["wins"] == c["n"] else "not consistently"
    return (f"{word[0].upper() + word[1:]}: over {plural(round(span, 1), 'decade')} of learning rate R@1 goes from "
            f"{fmt(worst['stats']['R@1'])} ({worst['label']}) to {fmt(best['stats']['R@1'])} ({best['label']}), "
            f"{c['diff']:+.1f} for the best, higher in {c['wins']}/{c['n']} seeds.")


# ---------------------------------------------------------------------------------------------
# charts


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of each value and up to ``window - 1`` values before it (the first ones average fewer)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plots(out: Path, section: dict, chance: float) -> list[tuple[str, str]]:
    """Write the section's PNG charts into ``out``; returns (file name, caption) pairs."""
    arms = [a for a in section["arms"] if a["stats"]["R@1"]["n"]]
    if not arms:
        return []
    made = []
    key, n = section["key"], max(len(a["seeds"]) for a in arms)
    seeds = f"mean of {n} seed{'s' if n > 1 else ''}"
    steps = max(len(a["curve"]["step"]) for a in arms)
    window = max(1, steps // 40)
    curves = [plot.Series(a["label"], a["curve"]["step"], moving_average(a["curve"]["loss"], window),
                          moving_average(a["curve"]["std"], window))
              for a in arms if a["curve"]["step"]]
    if curves:
        name = f"curves-{key}.png"
        smooth = f", moving average of {window} steps" if window > 1 else ""
        plot.line_chart(out / name, curves,
                        title=f"{section['number']}. {section['title']}: fine-tuning loss ({seeds}, ± std{smooth})",
                        xlabel="optimiser step", ylabel="training loss")
        made.append((name, "training curves"))
    if key == "lr":
        lr_arms = sorted((a for a in arms if a.get("lr")), key=lambda a: a["lr"])
        name = "r1-lr.png"
        plot.line_chart(out / name, [plot.Series("test t2v R@1", [a["lr"] for a in lr_arms],
                                                 [a["stats"]["R@1"]["mean"] for a in lr_arms],
                                                 [a["stats"]["R@1"]["std"] for a in lr_arms])],
                        title=f"R@1 vs learning rate ({seeds}, ± std)", xlabel="learning rate (log scale)",
                        ylabel="test t2v R@1 (%)", log_x=True, errors="bars",
                        reference=(chance, f"chance {chance:.1f}"), ymin=0.0)
        made.append((name, "R@1 vs learning rate"))
    else:
        name = f"r1-{key}.png"
        title = "R@1 per head" if key == "heads" else f"R@1 per arm: {section['title']}"
        plot.bar_chart(out / name, [a["label"] for a in arms], [a["stats"]["R@1"]["mean"] for a in arms],
                       [a["stats"]["R@1"]["std"] for a in arms], title=f"{title} ({seeds}, ± std)",
                       ylabel="test t2v R@1 (%)", reference=(chance, f"chance {chance:.1f}"))
        made.append((name, "R@1 per head" if key == "heads" else "R@1 per arm"))
    if key == "heads" and all(a["stats"]["twin"]["n"] for a in arms):  # (a test split without twins has none)
        name = "twin-heads.png"
        plot.bar_chart(out / name, [a["label"] for a in arms], [a["stats"]["twin"]["mean"] for a in arms],
                       [a["stats"]["twin"]["std"] for a in arms],
                       title=f"Own video above its time reversal, per head ({seeds}, ± std)",
                       ylabel="twin accuracy (%)", reference=(50.0, "order-blind 50"))
        made.append((name, "twin accuracy per head"))
    return made


# ---------------------------------------------------------------------------------------------
# the document


def plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def setup_text(section: dict, settings: dict, chance: float, test_videos: int) -> str:
    """What was trained for a section, from the settings."""
    s = settings
    key = section["key"]
    lr = "the lr above" if key == "lr" else f"lr {s['lr']:g}"
    base = (f"tiny CLIP4Clip (`clip=tiny`), batch {s['batch_size']}, {plural(s['epochs'], 'epoch')}, "
            f"AdamW at {lr} for every parameter (nothing frozen), warm-up then cosine, "
            f"{s['max_frames']} frames per clip; the last epoch is tested on {test_videos} test videos "
            f"(chance R@1 {chance:.1f})")
    pretrain_lr = s.get("pretrain_lr", s["lr"])
    image = (f"image-text pretraining: {plural(s['image_epochs'], 'epoch')} of meanP with one frame per clip "
             f"(batch {2 * s['batch_size']}, lr {pretrain_lr:g}) on the frames, one per second, of "
             f"{s['image_videos']} other synthetic videos of every shape and colour, captioned as images are: "
             f"colour and shape{' and where the shape is' if s.get('image_positions') else ''}, never motion "
             f"(\"a red circle at the top left\")")
    zero_shot = (" The zero-shot row tests the pretrained model itself, without fine-tuning (meanP, "
                 f"{s['max_frames']} uniform frames).")
    frames = int(round(4 * s["fps"])) + 1
    m = s["max_frames"]
    picks = [int(i * (frames - 1) / (m - 1)) for i in range(m)] if m > 1 else [0]  # the reference's linspace
    if key == "image_text":
        return (f"Both arms fine-tune meanP alike; one starts from random init, the other from the {image}. "
                f"{base}.{zero_shot}")
    if key == "post":
        return (f"Both arms start from the image-text CLIP; one is first post-pretrained for "
                f"{plural(s['pretrain_steps'], 'step')} (meanP, `c4c pretrain`, batch {s['batch_size']}, "
                f"lr {pretrain_lr:g}, {s['max_frames']} frames per clip) on {s['howto_videos']} HowTo-like "
                f"narrated videos (up to {s['howto_duration']:g} s, frames at 1 fps). Then fine-tuning as in every "
                f"experiment: {base}.{zero_shot}")
    if key == "heads":
        return (f"Each head fine-tuned from the image-text CLIP ({s['temporal_layers']} temporal layers for "
                f"seqTransf/tightTransf): {base}. *Twin accuracy*: for captions of test videos whose exact time "
                f"reversal is also in the test split, how often the caption scores its own video above the "
                f"reversal (a tie counts one half; order-blind = 50; a coin flip over the test videos with a twin "
                f"stays within 50 ± 100/√n, two standard deviations). meanP is order-blind up to the sampled "
                f"frames: uniform sampling picks frames {', '.join(map(str, picks))} of {frames}, the reversal's "
                f"picks are the original's {', '.join(str(frames - 1 - p) for p in picks)}. *R@1 order / other*: "
                f"R@1 over those queries / over the rest.")
    if key == "patch":
        return (f"meanP from the image-text CLIP; the 3-D patch (Conv3d over 3 neighbouring frames) starts equal "
                f"to the 2-D one (centre slice = its weights, outer slices zero): {base}.")
    if key == "sampling":
        return (f"Videos have {frames} stored frames (4 s at {s['fps']:g} fps) and a clip keeps {s['max_frames']}: "
                f"the first (head), the last (tail) or evenly spread (uniform), in training and test. A head (or "
                f"tail) clip of a video's time reversal shows the original's last (first) frames, so with head or "
                f"tail sampling even meanP can see which way a video runs. meanP from the image-text CLIP: {base}.")
    if key == "lr":
        lrs = ", ".join(f"{lr:g}" for lr in s["lrs"])
        return f"meanP from the image-text CLIP at lr {lrs} (every other setting as in the base recipe): {base}."
    return base


def section_table(section: dict) -> str:
    key = section["key"]
    rows = []
    if key == "heads":
        header = ["head", "twin accuracy (order-blind = 50)", "R@1 order queries", "R@1 other queries",
                  "R@1 all", "R@5 all", "R@1 per seed"]
        for a in section["arms"]:
            st = a["stats"]
            rows.append([a["label"], fmt(st["twin"]), fmt(st["R@1 order"]), fmt(st["R@1 other"]), fmt(st["R@1"]),
                         fmt(st["R@5"]), per_seed(a["values"]["R@1"], missing="diverged")])
    else:
        header = ["arm", "test t2v R@1", "R@5", "MnR", "twin accuracy (order-blind = 50)", "R@1 per seed"]
        for a in section["arms"]:
            st = a["stats"]
            rows.append([a["label"], fmt(st["R@1"]), fmt(st["R@5"]), fmt(st["MnR"]), fmt(st["twin"]),
                         per_seed(a["values"]["R@1"], missing="diverged")])
    return table(header, rows)


def render(summary: dict, images: dict[str, list[tuple[str, str]]] | None = None) -> str:
    """The report's markdown from a results summary; ``images``: per section key, (file, caption) pairs."""
    images = images or {}
    s = summary["settings"]
    m = summary["machine"]
    chance = summary["chance_R@1"]
    seconds = summary["seconds"]
    lines = [
        "# c4c mini: the CLIP4Clip paper's questions on synthetic data",
        "",
        f"Made by `python -m c4c.mini` on {m['date']}: {m['cpus']} CPU(s), {m['torch_threads']} torch thread(s), "
        f"{m['processor']}, Python {m['python']}, torch {m['torch']}"
        + (f", 1-minute load {m['load_1min']:.1f} at the end" if m.get("load_1min") is not None else "") + ". "
        + _timing(seconds),
        "",
        f"Every number is the **mean ± sample standard deviation over {summary['seeds']} seed(s)** (the seed sets "
        "the init, the data order and the image-text and post-pretraining runs), followed by the per-seed "
        f"values. Retrieval is text-to-video on the test split of a `c4c synth` set ({s['videos']} videos; "
        f"shapes {', '.join(s['shapes'])}; colours {', '.join(s['colours'])}; 64×48, 4 s, frames stored at "
        f"{s['fps']:g} fps, {s['size']} px): {summary['test_videos']} test videos, "
        f"{summary['order_pairs_in_test']} order-contrast pairs among them; **chance R@1 = {chance:.1f}**. "
        "Ties count at their expected rank.",
        "",
        "Each experiment changes one thing in a shared *base recipe* (meanP, 2-D patch, uniform sampling, "
        f"lr {s['lr']:g}, from the image-text pretrained tiny CLIP); arms with the same settings and seed share "
        "one training run, so the base recipe's numbers recur across sections.",
    ]
    if any(a.get("diverged") for section in summary["experiments"] for a in section["arms"]):
        lines += ["", "*diverged*: that seed's loss became NaN or infinite and `c4c finetune` stopped; it is left "
                      "out of the mean and spread."]
    if s.get("quick"):
        lines += ["", "**Quick run (`--quick`): tiny budgets, one or two epochs. The numbers only show that the "
                      "pipeline works.**"]
    for section in summary["experiments"]:
        lines += ["", f"## {section['number']}. {section['title']}", "",
                  f"**Question.** {section['question']}", "",
                  f"**Setup.** {setup_text(section, s, chance, summary['test_videos'])}", "",
                  section_table(section), ""]
        for name, caption in images.get(section["key"], []):
            lines += [f"![{caption}]({name})", ""]
        lines += [f"**Answer.** {section.get('answer') or answer(section)}"]
    return "\n".join(lines) + "\n"


def _timing(seconds: dict) -> str:
    """How long the results took: every invocation that worked on them together."""
    count = seconds.get("invocations", 1)
    total = seconds.get("all_invocations", seconds["this_run"])
    data = seconds.get("data_all_invocations", seconds.get("data_this_run", 0.0))
    text = f"Computing these results took {_duration(total)} of wall time ({_duration(data)} of it making the data)"
    if count > 1:
        text += f" over {count} invocations (a rerun skips finished results)"
    return text + f"; the training runs alone took {_duration(seconds['training_runs'])}."


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def write(out: Path, summary: dict) -> Path:
    """Write the charts and ``out/report.md``; returns the report's path."""
    out = Path(out)
    images = {section["key"]: plots(out, section, summary["chance_R@1"])
              for section in summary["experiments"] if section["arms"]}
    path = out / "report.md"
    write_text(path, render(summary, images))
    return path
