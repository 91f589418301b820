"""(Over 450 lines on purpose: one answer-writer per question, each next to the table it reads, so an
answer can be checked against its numbers in one place.)

The markdown report of a mini run: one section per question with its setup, a table (mean ± std over
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
from c4c.plots import moving_average


def fmt(stats: dict, digits: int = 1, unit: str = "", of: int | None = None) -> str:
    """A :func:`~c4c.mini.scoring.mean_std` result as ``mean ± std`` (``unit`` after both: ``70.0 ± 10.0%``),
    over ``of`` seeds. A single value has no ``±``; ``(n = k)`` says when fewer than ``of`` seeds finished
    (or, with ``of`` unknown, that there is one). ``-`` when there is no value."""
    if not stats or not stats.get("n") or not math.isfinite(stats["mean"]):
        return "-"
    return plot.value_label(stats["mean"], stats["std"], stats["n"], of, digits=digits, unit=unit)


def per_seed(values: Sequence[float | None], digits: int = 1, missing: str = "-") -> str:
    return " / ".join(missing if v is None else f"{v:.{digits}f}" for v in values)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# answers, computed from the numbers
#
# Two numbers count as equal when they print the same (to the report's one decimal): an answer never
# calls one arm better than another whose figure reads the same.


def _same(a: float, b: float, digits: int = 1) -> bool:
    """Whether ``a`` and ``b`` print the same to ``digits`` decimals."""
    return f"{a:.{digits}f}" == f"{b:.{digits}f}"


def _paired(a: dict, b: dict, metric: str) -> list[tuple[float, float]]:
    """(a, b) values of the seeds both arms have, seed by seed."""
    va = dict(zip(a["seeds"], a["values"][metric]))
    vb = dict(zip(b["seeds"], b["values"][metric]))
    return [(va[s], vb[s]) for s in sorted(set(va) & set(vb)) if va[s] is not None and vb[s] is not None]


def compare(base: dict, arm: dict, metric: str = "R@1") -> dict:
    """Paired comparison of ``arm`` against ``base`` over the seeds both have: the mean difference, and
    the seeds where ``arm`` is higher (``wins``), lower (``losses``) or equal as printed (``ties``)."""
    pairs = _paired(base, arm, metric)
    diffs = [b - a for a, b in pairs]
    ties = sum(_same(a, b) for a, b in pairs)
    wins = sum(b > a and not _same(a, b) for a, b in pairs)
    return {"diff": sum(diffs) / len(diffs) if diffs else float("nan"), "wins": wins,
            "losses": len(pairs) - wins - ties, "ties": ties, "n": len(diffs)}


def _seeds_text(c: dict) -> str:
    """"higher in 2/3 seeds, equal in 1" for a :func:`compare` result."""
    text = f"higher in {c['wins']}/{c['n']} seeds"
    return text + (f", equal in {c['ties']}" if c["ties"] else "")


def verdict(base: dict, arm: dict, metric: str = "R@1") -> str:
    """"yes: +d R@1, ..." when ``arm`` beats ``base`` in every paired seed, "no difference" when they are
    equal in every seed, "no" when it never wins, "not consistently" otherwise."""
    c = compare(base, arm, metric)
    if not c["n"]:
        return f"no seed has results for both {base['label']} and {arm['label']} yet"
    tail = f"{c['diff']:+.1f} {metric} ({arm['label']} vs {base['label']}), {_seeds_text(c)}"
    if c["ties"] == c["n"]:
        return "no difference: " + tail
    if c["wins"] == c["n"]:
        return "yes: " + tail
    if c["wins"] == 0:
        return "no: " + tail
    return "not consistently: " + tail


def _arm(section: dict, key: str) -> dict | None:
    return next((a for a in section["arms"] if a["key"] == key), None)


def _seed_count(section: dict) -> int:
    """The seeds the section was run with: the most any arm has (finished or diverged)."""
    return max((len(a["seeds"]) for a in section["arms"]), default=0)


def _names(labels: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    labels = list(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _why_none(arm: dict) -> str:
    if arm["seeds"] and arm.get("diverged", 0) == len(arm["seeds"]):
        return "every seed diverged" if len(arm["seeds"]) > 1 else "its run diverged"
    return "no finished seed yet"


def _without_results(arms: Sequence[dict]) -> str:
    """A sentence naming the arms that have runs but no numbers (every seed diverged), or ''."""
    if not arms:
        return ""
    listed = "; ".join(f"{a['label']}: {_why_none(a)}" for a in arms)
    return f" No results for {listed}."


def answer(section: dict) -> str:
    """The one-sentence answer to a section's question, phrased from its numbers (ties, a single seed, a
    single arm and diverged seeds included)."""
    scored = [a for a in section["arms"] if a["stats"]["R@1"]["n"]]
    unscored = [a for a in section["arms"] if not a["stats"]["R@1"]["n"]]
    if not scored:
        if unscored and all(_why_none(a) != "no finished seed yet" for a in unscored):
            return "No results: every run diverged."
        return "No finished results yet."
    of = _seed_count(section)
    key = section["key"]
    if section.get("contrast"):
        keys = (section["baseline"], section["contrast"])
        base, other = (_arm(dict(section, arms=scored), k) for k in keys)
        if base is None or other is None:
            return _one_sided(section, keys, of)
        text = _capital(verdict(base, other))
        return text + (f"; {_twin_note([base, other], of)}." if key == "patch" else ".")
    section = dict(section, arms=scored)  # arms whose every seed diverged have no numbers to compare
    if key == "heads":
        text = _heads_answer(section, of)
    elif key == "lr":
        text = _lr_answer(section, of)
    else:
        text = _best_answer(section, "sampling" if key == "sampling" else "setting", of)
        if key == "sampling":
            text = text[:-1] + f"; {_twin_note(section['arms'], of)}."
    return text + _without_results(unscored)


def _one_sided(section: dict, keys: tuple[str, str], of: int) -> str:
    """The answer of a two-arm question when at most one of the two arms has numbers."""
    arms = [_arm(section, k) for k in keys]
    present = [a for a in arms if a is not None and a["stats"]["R@1"]["n"]]
    absent = [(a["label"], _why_none(a)) if a is not None else (k, "not run yet") for k, a in zip(keys, arms)
              if a is None or not a["stats"]["R@1"]["n"]]
    missing = "; ".join(f"{label}: {why}" for label, why in absent)
    if not present:
        return f"Neither compared arm has results yet ({missing})."
    arm = present[0]
    return f"Only {arm['label']} has results so far (R@1 {fmt(arm['stats']['R@1'], of=of)}); {missing}."


def coin_flip_band(order_videos: int) -> float:
    """Half-width (percentage points) of the two-sigma band of an order-blind score over ``order_videos``
    test videos with a time-reversed twin: 2 x 50 / sqrt(n). Twin accuracies inside 50 ± it are chance."""
    return 100.0 / math.sqrt(order_videos) if order_videos else float("inf")


def _twin_note(arms: list[dict], of: int | None = None) -> str:
    scored = [a for a in arms if a["stats"]["twin"]["n"]]
    if not scored:
        return "no order-contrast pair in the test split"
    band = coin_flip_band(max(a.get("order_videos", 0) for a in scored))
    listed = ", ".join(f"{a['label']} {fmt(a['stats']['twin'], unit='%', of=of)}" for a in scored)
    return f"own video above its time reversal: {listed} (order-blind 50 ± {band:.1f})"


def _leaders(arms: Sequence[dict], metric: str = "R@1") -> list[dict]:
    """The arms whose mean ``metric`` prints the same as the highest."""
    top = max(a["stats"][metric]["mean"] for a in arms)
    return [a for a in arms if _same(a["stats"][metric]["mean"], top)]


def _listing(arms: Sequence[dict], metric: str, of: int, unit: str = "") -> str:
    return ", ".join(f"{a['label']} {fmt(a['stats'][metric], unit=unit, of=of)}" for a in arms)


def _best_answer(section: dict, what: str, of: int) -> str:
    arms = sorted(section["arms"], key=lambda a: a["stats"]["R@1"]["mean"], reverse=True)
    best = arms[0]
    if len(arms) == 1:
        return f"Only {best['label']} has results so far (R@1 {fmt(best['stats']['R@1'], of=of)})."
    top = _leaders(arms)
    rest = [a for a in arms if a not in top]
    if not rest:
        return f"No {what} is better than another: every one has the same mean R@1 ({_listing(arms, 'R@1', of)})."
    if len(top) == 1:
        text = f"{_capital(best['label'])} {what} is best, R@1 {fmt(best['stats']['R@1'], of=of)}: "
    else:
        text = (f"{_capital(_names([a['label'] for a in top]))} {what} tie for the best R@1, "
                f"{_group(top, 'R@1', of)}; {best['label']} is ")
    parts = []
    for other in ([rest[0], rest[-1]] if len(rest) > 1 else rest[:1]):
        c = compare(other, best)
        seeds = _seeds_text(c) if c["n"] else "no seed in common"
        parts.append(f"{c['diff']:+.1f} over {other['label']} ({seeds})" if c["n"] else
                     f"above {other['label']} ({seeds})")
    return text + " and ".join(parts) + "."


def _group(arms: Sequence[dict], metric: str, of: int, unit: str = "") -> str:
    """The figure of one arm, or of arms whose means print the same: "X each" when their figures print the
    same too, else the mean, then each arm's figure."""
    figures = {fmt(a["stats"][metric], unit=unit, of=of) for a in arms}
    if len(figures) == 1:
        return figures.pop() + ("" if len(arms) == 1 else " each")
    return f"{arms[0]['stats'][metric]['mean']:.1f}{unit} ({_listing(arms, metric, of, unit)})"


def _heads_answer(section: dict, of: int) -> str:
    """The head whose captions most often score their own video above its time reversal, against meanP
    (order-blind by design) and a coin flip, and the head with the best R@1."""
    arms = section["arms"]
    top_r1 = _leaders(arms)
    if len(arms) == 1:
        tail = f"; only {arms[0]['label']} has an R@1, {fmt(arms[0]['stats']['R@1'], of=of)}."
    elif len(top_r1) == len(arms):
        tail = f"; every head has the same mean R@1, {_group(arms, 'R@1', of)}."
    elif len(top_r1) > 1:
        tail = f"; {_names([a['label'] for a in top_r1])} share the best R@1, {_group(top_r1, 'R@1', of)}."
    else:
        tail = f"; the best R@1 is {top_r1[0]['label']}'s {fmt(top_r1[0]['stats']['R@1'], of=of)}."
    scored = [a for a in arms if a["stats"]["twin"]["n"]]
    if not scored:
        return "The test split has no order-contrast pair, so order cannot be measured" + tail
    band = coin_flip_band(max(a.get("order_videos", 0) for a in scored))
    chance = f"order-blind 50 ± {band:.1f}"
    top = _leaders(scored, "twin")
    best = top[0]
    names = _names([a["label"] for a in top])
    above = best["stats"]["twin"]["mean"] - 50.0 > band
    if len(scored) == 1:
        return (f"Only {best['label']} has a twin accuracy, {fmt(best['stats']['twin'], unit='%', of=of)}, "
                f"{'above' if above else 'inside'} the coin-flip band ({chance})" + tail)
    if not above:
        owner = f"{best['label']}'s" if len(top) == 1 else f"shared by {names},"
        return (f"No head orders clearly better than a coin flip: the best twin accuracy is {owner} "
                f"{_group(top, 'twin', of, '%')} ({chance})" + tail)
    mean_pool = _arm(section, "meanP")
    if mean_pool is not None and mean_pool in top:
        return (f"No head orders better than meanP: the best twin accuracy, above a coin flip ({chance}), is "
                f"{'meanP' if len(top) == 1 else names}'s {_group(top, 'twin', of, '%')}" + tail)
    subject = f"{names} orders best: its" if len(top) == 1 else f"{names} order best, tied: their"
    share, each, _ = _group(top, "twin", of, "%").partition(" each")
    text = f"{subject} captions score their own video above the time-reversed twin {share} of the time{each}"
    if mean_pool is None or not mean_pool["stats"]["twin"]["n"]:
        return text + f" ({chance}); meanP has no twin accuracy to compare with" + tail
    c = compare(mean_pool, best, "twin")
    who = "" if len(top) == 1 else f"{best['label']} "
    seeds = f"{who}higher than meanP in {c['wins']}/{c['n']} seeds" if c["n"] else "no seed in common with meanP"
    return text + f", meanP {fmt(mean_pool['stats']['twin'], unit='%', of=of)} ({chance}), {seeds}" + tail


def _lr_answer(section: dict, of: int) -> str:
    arms = section["arms"]
    if len(arms) == 1:
        return f"Only {arms[0]['label']} has results so far (R@1 {fmt(arms[0]['stats']['R@1'], of=of)})."
    top = _leaders(arms)
    if len(top) == len(arms):
        return (f"Not measurably: every learning rate with results has the same mean R@1 "
                f"({_listing(arms, 'R@1', of)}).")
    lowest = min(a["stats"]["R@1"]["mean"] for a in arms)
    bottom = [a for a in arms if _same(a["stats"]["R@1"]["mean"], lowest)]
    best, worst = top[0], bottom[0]
    c = compare(worst, best)
    lrs = [a["lr"] for a in arms if a.get("lr")]
    span = math.log10(max(lrs) / min(lrs)) if len(lrs) > 1 else 0.0
    word = "yes" if c["wins"] == c["n"] else "not consistently"
    seeds = f"{c['diff']:+.1f} for the best, {_seeds_text(c)}"

    def where(group: list[dict]) -> str:
        if len(group) > 1:
            return f"{group[0]['stats']['R@1']['mean']:.1f} ({_listing(group, 'R@1', of)})"
        text, _, n = fmt(group[0]["stats"]["R@1"], of=of).partition(" (n = ")
        return f"{text} ({group[0]['label']}" + (f", n = {n}" if n else ")")

    if not c["n"]:
        return (f"Not yet comparable: over {plural(round(span, 1), 'decade')} of learning rate R@1 goes from "
                f"{where(bottom)} to {where(top)}, but no seed has results at both.")
    return (f"{_capital(word)}: over {plural(round(span, 1), 'decade')} of learning rate R@1 goes from "
            f"{where(bottom)} to {where(top)}, {seeds}.")


# ---------------------------------------------------------------------------------------------
# charts


def _seeds_title(n: int) -> str:
    """What a chart's numbers are: "mean ± std over 3 seeds", or "1 seed, n = 1"."""
    return f"mean ± std over {n} seeds" if n > 1 else "1 seed, n = 1"


def plots(out: Path, section: dict, chance: float) -> list[tuple[str, str]]:
    """Write the section's PNG charts into ``out``; returns (file name, caption) pairs."""
    arms = [a for a in section["arms"] if a["stats"]["R@1"]["n"]]
    if not arms:
        return []
    made = []
    key = section["key"]
    seeds = _seeds_title(_seed_count(section))
    steps = max(len(a["curve"]["step"]) for a in arms)
    window = max(1, steps // 40)
    curves = [plot.Series(a["label"], a["curve"]["step"], moving_average(a["curve"]["loss"], window),
                          moving_average(a["curve"]["std"], window))
              for a in arms if a["curve"]["step"]]
    if curves:
        name = f"curves-{key}.png"
        smooth = f", moving average of {window} steps" if window > 1 else ""
        runs = max(a["stats"]["R@1"]["n"] for a in arms if a["curve"]["step"])
        plot.line_chart(out / name, curves,
                        title=f"{section['number']}. {section['title']}: fine-tuning loss\n"
                              f"({_seeds_title(runs)}{smooth})",
                        xlabel="optimiser step", ylabel="training loss")
        made.append((name, "training curves"))
    chance_line = (chance, f"chance R@1 = {chance:.1f}%")
    if key == "lr":
        lr_arms = sorted((a for a in arms if a.get("lr")), key=lambda a: a["lr"])
        r1 = [a["stats"]["R@1"] for a in lr_arms]
        most = max(s["n"] for s in r1)
        name = "r1-lr.png"
        plot.line_chart(out / name, [plot.Series("test t2v R@1", [a["lr"] for a in lr_arms], [s["mean"] for s in r1],
                                                 [s["std"] if s["n"] > 1 else 0.0 for s in r1])],
                        title=f"R@1 vs learning rate ({seeds})", xlabel="learning rate (log scale)",
                        ylabel="test t2v R@1 (%)", log_x=True, errors="bars", reference=chance_line, ymin=0.0,
                        x_labels=[f"{a['lr']:g}\n{fmt(s, of=most)}" for a, s in zip(lr_arms, r1)])
        made.append((name, "R@1 vs learning rate"))
    else:
        name = f"r1-{key}.png"
        title = "R@1 per head" if key == "heads" else f"R@1 per arm: {section['title']}"
        r1 = [a["stats"]["R@1"] for a in arms]
        plot.bar_chart(out / name, [a["label"] for a in arms], [s["mean"] for s in r1], [s["std"] for s in r1],
                       counts=[s["n"] for s in r1], title=f"{title} ({seeds})", ylabel="test t2v R@1 (%)",
                       reference=chance_line)
        made.append((name, "R@1 per head" if key == "heads" else "R@1 per arm"))
    twins = [a for a in arms if a["stats"]["twin"]["n"]]
    if key == "heads" and twins:  # (a test split without twins has none)
        name = "twin-heads.png"
        twin = [a["stats"]["twin"] for a in twins]
        plot.bar_chart(out / name, [a["label"] for a in twins], [s["mean"] for s in twin], [s["std"] for s in twin],
                       counts=[s["n"] for s in twin],
                       title=f"Own video above its time reversal, per head ({seeds})",
                       ylabel="twin accuracy (%)", reference=(50.0, "order-blind = 50%"), ylim=(0.0, 100.0))
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
    of = _seed_count(section)
    rows = []
    if key == "heads":
        header = ["head", "twin accuracy (order-blind = 50)", "R@1 order queries", "R@1 other queries",
                  "R@1 all", "R@5 all", "R@1 per seed"]
        for a in section["arms"]:
            st = a["stats"]
            rows.append([a["label"], fmt(st["twin"], of=of), fmt(st["R@1 order"], of=of),
                         fmt(st["R@1 other"], of=of), fmt(st["R@1"], of=of), fmt(st["R@5"], of=of),
                         per_seed(a["values"]["R@1"], missing="diverged")])
    else:
        header = ["arm", "test t2v R@1", "R@5", "MnR", "twin accuracy (order-blind = 50)", "R@1 per seed"]
        for a in section["arms"]:
            st = a["stats"]
            rows.append([a["label"], fmt(st["R@1"], of=of), fmt(st["R@5"], of=of), fmt(st["MnR"], of=of),
                         fmt(st["twin"], of=of), per_seed(a["values"]["R@1"], missing="diverged")])
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
        _spread_text(summary["seeds"]) + " Retrieval is text-to-video on the test split of a `c4c synth` set "
        f"({s['videos']} videos; "
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


def _spread_text(seeds: int) -> str:
    """What the report's figures are: mean ± std over the seeds, or single values."""
    what = "(the seed sets the init, the data order and the image-text and post-pretraining runs)"
    if seeds == 1:
        return (f"Every number comes from **a single seed (n = 1)** {what}, so no figure has a spread: run "
                "`--seeds 3` or more for mean ± sample standard deviation.")
    return (f"Every number is the **mean ± sample standard deviation over {seeds} seeds** {what}, followed by "
            "the per-seed values; a figure marked (n = k) has only k finished seeds.")


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
