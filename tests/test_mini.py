"""`python -m c4c.mini`: matplotlib charts, the report's tables and answers (ties, one seed, one arm, diverged
seeds), result bookkeeping, and (slow) a quick end-to-end run that a rerun resumes without training again."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from c4c.errors import C4CError, TrainingDiverged
from c4c.mini import config as mini_config
from c4c.mini import data as mini_data
from c4c.mini import experiments, plot, report, scoring
from c4c.mini.config import Experiment, MiniConfig


def colours_in(path: Path) -> set[tuple[int, int, int]]:
    with Image.open(path) as image:
        return {c for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20)}


def cycle_colour(i: int) -> tuple[int, int, int]:
    """The RGB of matplotlib's ``Ci`` (a bar's solid inside has exactly it)."""
    from matplotlib.colors import to_rgb

    return tuple(round(255 * c) for c in to_rgb(f"C{i}"))


def drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def error_bar_lengths(ax) -> list[float]:
    """The vertical extent (data units) of each error bar of ``ax``, left to right."""
    from matplotlib.collections import LineCollection

    segments = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    vertical = sorted((seg[0][0], abs(seg[1][1] - seg[0][1])) for seg in segments if seg[0][0] == seg[1][0])
    return [length for _, length in vertical]


def texts_crossed_by(fig, line) -> list[str]:
    """The texts of ``fig`` whose box the horizontal ``line`` passes through."""
    from matplotlib.text import Text

    renderer = drawn(fig)
    ax = line.axes
    y = ax.transData.transform((0.0, line.get_ydata()[0]))[1]
    left, right = ax.get_window_extent(renderer).x0, ax.get_window_extent(renderer).x1
    crossed = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.y0 <= y <= box.y1 and box.x1 >= left and box.x0 <= right:
            crossed.append(text.get_text())
    return crossed


def legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


# --- plot ---------------------------------------------------------------------------------------------


def test_bar_chart_is_a_png_of_the_requested_size(tmp_path):
    path = plot.bar_chart(tmp_path / "bars.png", ["a", "b"], [3.0, 5.0], [0.5, 1.0], title="t", ylabel="y",
                          size=(640, 360))
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (640, 360)
    assert [p.name for p in tmp_path.iterdir()] == ["bars.png"]  # no temp file left


def test_bars_are_as_high_as_the_means_one_colour_each(tmp_path):
    fig = plot.bar_figure(["meanP", "seqLSTM", "seqTransf"], [10.0, 20.0, 15.0], [1.0, 2.0, 1.5],
                          counts=[3, 3, 3], title="R@1 per head", ylabel="R@1")
    (ax,) = fig.axes
    bars = ax.patches
    assert [b.get_height() for b in bars] == [10.0, 20.0, 15.0]
    assert len({b.get_facecolor() for b in bars}) == 3
    path = plot.bar_chart(tmp_path / "bars.png", ["meanP", "seqLSTM", "seqTransf"], [10.0, 20.0, 15.0],
                          [1.0, 2.0, 1.5], title="R@1 per head", ylabel="R@1")
    assert {cycle_colour(i) for i in range(3)} <= colours_in(path)


def test_error_bars_span_twice_the_std():
    fig = plot.bar_figure(["a", "b"], [20.0, 20.0], [2.0, 4.0], counts=[3, 3], title="t", ylabel="y")
    assert error_bar_lengths(fig.axes[0]) == pytest.approx([4.0, 8.0])
    assert "± 1 std over seeds" in legend_texts(fig)


def test_value_labels_are_mean_std_or_the_single_value():
    assert plot.value_label(10.0, 2.0, 3, 3) == "10.0 ± 2.0"
    assert plot.value_label(10.0, 0.0, 1, 1) == "10.0"                 # one seed: no ± 0.0
    assert plot.value_label(10.0, 0.0, 1, 3) == "10.0 (n = 1)"         # one of three seeds finished
    assert plot.value_label(10.0, 2.0, 2, 3) == "10.0 ± 2.0 (n = 2)"
    assert plot.value_label(10.0, 0.0, 1) == "10.0 (n = 1)"            # how many there should be: unknown
    assert plot.value_label(70.0, 10.0, 3, 3, unit="%") == "70.0 ± 10.0%"


def test_a_single_seed_has_no_error_bar_and_no_plus_minus():
    fig = plot.bar_figure(["a", "b"], [10.0, 30.0], [0.0, 0.0], counts=[1, 1], title="t (1 seed, n = 1)",
                          ylabel="y")
    (ax,) = fig.axes
    assert error_bar_lengths(ax) == []
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a\n10.0", "b\n30.0"]
    assert "± 1 std over seeds" not in legend_texts(fig)


def test_a_bar_with_fewer_seeds_says_so_and_has_no_error_bar_when_single():
    fig = plot.bar_figure(["a", "b", "c"], [10.0, 30.0, 20.0], [1.0, 0.0, 2.0], counts=[3, 1, 2], title="t",
                          ylabel="y")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a\n10.0 ± 1.0", "b\n30.0 (n = 1)",
                                                            "c\n20.0 ± 2.0 (n = 2)"]
    assert error_bar_lengths(ax) == pytest.approx([2.0, 4.0])


@pytest.mark.parametrize("means, reference", [([50.0, 52.0, 58.0, 49.0], (50.0, "order-blind = 50%")),
                                               ([2.0, 20.0, 1.0], (2.5, "chance R@1 = 2.5%"))])
def test_the_reference_line_is_in_the_legend_and_crosses_no_text(means, reference):
    fig = plot.bar_figure([f"arm{i}" for i in range(len(means))], means, [3.0] * len(means),
                          counts=[3] * len(means), title="t", ylabel="y", reference=reference)
    (ax,) = fig.axes
    line = next(line for line in ax.lines if line.get_label() == reference[1])
    assert reference[1] in legend_texts(fig)
    assert texts_crossed_by(fig, line) == []


def test_line_chart_draws_one_colour_per_series_and_a_band_for_the_spread(tmp_path):
    from matplotlib.collections import PolyCollection

    series = [plot.Series("a", [1, 2, 3], [3.0, 2.0, 1.5], [0.1, 0.1, 0.1]),
              plot.Series("b", [1, 2, 3], [2.5, 1.5, 1.0], [0.0, 0.0, 0.0])]
    fig = plot.line_figure(series, title="loss", xlabel="step", ylabel="loss")
    (ax,) = fig.axes
    lines = [line for line in ax.lines if line.get_label() in ("a", "b")]
    assert [line.get_color() for line in lines] == ["C0", "C1"]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection) and len(c.get_paths())]
    assert len(bands) == 1  # series b has no spread (one seed)
    assert legend_texts(fig) == ["a", "b", "± 1 std over seeds"]
    path = plot.line_chart(tmp_path / "lines.png", series, title="loss", xlabel="step", ylabel="loss",
                           size=(500, 300))
    with Image.open(path) as image:
        assert image.size == (500, 300)


def test_log_x_chart_spaces_decades_evenly_with_a_label_per_value():
    series = [plot.Series("R@1", [1e-4, 1e-3, 1e-2], [5.0, 5.0, 5.0], [1.0, 1.0, 1.0])]
    fig = plot.line_figure(series, title="t", xlabel="lr", ylabel="R@1", log_x=True, errors="bars", ymin=0.0,
                           x_labels=["1e-4\n5.0 ± 1.0", "1e-3\n5.0 ± 1.0", "1e-2\n5.0 ± 1.0"],
                           reference=(2.5, "chance"))
    (ax,) = fig.axes
    drawn(fig)
    x = [ax.transData.transform((v, 0.0))[0] for v in (1e-4, 1e-3, 1e-2)]
    assert x[1] - x[0] == pytest.approx(x[2] - x[1], abs=0.5)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1e-4\n5.0 ± 1.0", "1e-3\n5.0 ± 1.0", "1e-2\n5.0 ± 1.0"]
    assert error_bar_lengths(ax) == pytest.approx([2.0, 2.0, 2.0])
    assert ax.get_ylim()[0] <= 0.0
    assert texts_crossed_by(fig, next(line for line in ax.lines if line.get_label() == "chance")) == []


def test_a_flat_line_from_zero_keeps_its_points_inside_the_axes():
    fig = plot.line_figure([plot.Series("R@1", [3e-4, 3e-3], [6.1, 6.1], [0.0, 0.0])], title="t", xlabel="lr",
                           ylabel="R@1", log_x=True, errors="bars", ymin=0.0, reference=(5.0, "chance"))
    bottom, top = fig.axes[0].get_ylim()
    assert bottom == 0.0 and top > 6.1 * 1.05


def test_plots_refuse_bad_input(tmp_path):
    with pytest.raises(C4CError):
        plot.line_chart(tmp_path / "x.png", [], title="t", xlabel="x", ylabel="y")
    with pytest.raises(C4CError):
        plot.line_chart(tmp_path / "x.png", [plot.Series("a", [1, 2], [1.0])], title="t", xlabel="x", ylabel="y")
    with pytest.raises(C4CError):
        plot.line_chart(tmp_path / "x.png", [plot.Series("a", [0, 1], [1.0, 2.0])], title="t", xlabel="x",
                        ylabel="y", log_x=True)
    with pytest.raises(C4CError):
        plot.bar_chart(tmp_path / "x.png", ["a", "b"], [1.0], title="t", ylabel="y")
    with pytest.raises(C4CError):
        plot.bar_chart(tmp_path / "x.png", ["a"], [float("nan")], title="t", ylabel="y")
    with pytest.raises(C4CError):
        plot.bar_chart(tmp_path / "x.png", ["a"], [1.0], title="t", ylabel="y", size=(100, 100))
    assert not list(tmp_path.iterdir())


# --- statistics, answers and the report ---------------------------------------------------------------


def test_mean_std_is_the_sample_standard_deviation():
    stats = scoring.mean_std([1.0, 2.0, 3.0, 4.0])
    assert stats["mean"] == 2.5 and stats["n"] == 4
    assert stats["std"] == pytest.approx(math.sqrt(5.0 / 3.0))  # squared deviations 2.25+0.25+0.25+2.25 over 3
    assert scoring.mean_std([7.0]) == {"mean": 7.0, "std": 0.0, "n": 1}
    assert scoring.mean_std([])["n"] == 0


def _test_metrics(r1: float, twin: float | None = None) -> dict:
    block = {"R@1": r1, "R@5": r1 + 30.0, "R@10": r1 + 50.0, "MdR": 2.0, "MnR": 100.0 / r1, "count": 10}
    return {"all": block, "order": dict(block, **{"R@1": r1 / 2}) if twin is not None else None,
            "other": dict(block), "twin_accuracy": twin, "test_videos": 40, "order_videos": 100, "order_queries": 6,
            "other_queries": 20}


def _result(experiment: str, arm: str, seed: int, r1: float, twin: float | None = None) -> dict:
    return {"format": experiments.RESULT_FORMAT, "version": experiments.VERSION, "experiment": experiment,
            "arm": arm, "seed": seed, "run": f"run-{arm}-{seed}", "test": _test_metrics(r1, twin),
            "curve": {"step": [1, 2, 3], "loss": [3.0 - seed * 0.1, 2.0, 1.0 + seed * 0.1], "val_r1": []},
            "best_epoch": 0, "train_seconds": 1.0, "seconds": 1.0}


def _section(experiment: Experiment, values: dict[str, list[float]],
             twins: dict[str, list[float]] | None = None) -> dict:
    results = {arm: [_result(experiment.key, arm, s, v, (twins or {}).get(arm, [None] * len(vs))[s])
                     for s, v in enumerate(vs)] for arm, vs in values.items()}
    section = scoring.summarise(experiment, results)
    section["answer"] = report.answer(section)
    return section


def _experiment(cfg: MiniConfig, key: str) -> Experiment:
    return next(e for e in mini_config.experiments(cfg) if e.key == key)


CFG = MiniConfig(out=Path("unused"), lrs=(1e-4, 1e-3, 1e-2))


def test_summary_takes_mean_and_std_per_arm():
    section = _section(_experiment(CFG, "image_text"), {"random": [8.0, 10.0, 12.0], "image": [20.0, 23.0, 26.0]})
    random, image = section["arms"]
    assert random["stats"]["R@1"] == {"mean": 10.0, "std": 2.0, "n": 3}
    assert image["stats"]["R@1"] == {"mean": 23.0, "std": 3.0, "n": 3}
    assert random["values"]["R@1"] == [8.0, 10.0, 12.0]


def test_moving_average_uses_the_values_so_far():
    assert report.moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert report.moving_average([4.0, 2.0], 1) == [4.0, 2.0]


def test_mean_curve_averages_the_steps_every_run_logged():
    curve = scoring.mean_curve([{"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0]},
                                    {"step": [1, 2], "loss": [5.0, 4.0]}])
    assert curve["step"] == [1, 2]
    assert curve["loss"] == [4.0, 3.0]
    assert curve["std"] == pytest.approx([math.sqrt(2.0), math.sqrt(2.0)])


def test_answer_is_yes_when_every_seed_is_better():
    section = _section(_experiment(CFG, "image_text"), {"random": [8.0, 10.0, 12.0], "image": [20.0, 23.0, 26.0]})
    assert section["answer"] == "Yes: +13.0 R@1 (image-text pretrained vs random init), higher in 3/3 seeds."


def test_answer_is_no_when_no_seed_is_better():
    section = _section(_experiment(CFG, "patch"), {"2d": [20.0, 21.0, 22.0], "3d": [19.0, 20.0, 18.0]},
                       {"2d": [50.0, 50.0, 50.0], "3d": [60.0, 70.0, 80.0]})
    assert section["answer"] == ("No: -2.0 R@1 (3d vs 2d), higher in 0/3 seeds; own video above its time reversal: "
                                 "2d 50.0 ± 0.0%, 3d 70.0 ± 10.0% (order-blind 50 ± 10.0).")  # 2 x 50 / sqrt(100)


def test_answer_says_not_consistently_for_mixed_seeds():
    section = _section(_experiment(CFG, "post"), {"without": [20.0, 21.0, 22.0], "with": [25.0, 20.0, 21.0]})
    assert section["answer"].startswith("Not consistently: +1.0 R@1")
    assert "higher in 1/3 seeds" in section["answer"]


def test_heads_answer_compares_the_best_ordering_head_with_meanp():
    values = {"meanP": [20.0, 20.0, 20.0], "seqLSTM": [25.0, 26.0, 27.0], "seqTransf": [22.0, 22.0, 22.0],
              "tightTransf": [10.0, 12.0, 14.0]}
    twins = {"meanP": [50.0, 50.0, 50.0], "seqLSTM": [90.0, 95.0, 100.0], "seqTransf": [60.0, 45.0, 70.0],
             "tightTransf": [50.0, 55.0, 60.0]}
    answer = _section(_experiment(CFG, "heads"), values, twins)["answer"]
    assert answer == ("seqLSTM orders best: its captions score their own video above the time-reversed twin "
                      "95.0 ± 5.0% of the time, meanP 50.0 ± 0.0% (order-blind 50 ± 10.0), higher than meanP "
                      "in 3/3 seeds; the best R@1 is seqLSTM's 26.0 ± 1.0.")


def test_heads_answer_when_no_head_beats_meanp_at_order():
    values = {h: [20.0, 21.0] for h in mini_config.HEADS}
    twins = {"meanP": [52.0, 50.0], "seqLSTM": [50.0, 48.0], "seqTransf": [49.0, 50.0], "tightTransf": [45.0, 50.0]}
    answer = _section(_experiment(CFG, "heads"), values, twins)["answer"]
    assert answer.startswith("No head orders clearly better than a coin flip: the best twin accuracy is meanP's "
                             "51.0 ± 1.4% (order-blind 50 ± 10.0)")


def test_heads_answer_counts_a_lead_inside_the_coin_flip_band_as_chance():
    values = {h: [20.0, 21.0] for h in mini_config.HEADS}
    twins = {"meanP": [50.0, 50.0], "seqLSTM": [58.0, 60.0], "seqTransf": [49.0, 50.0], "tightTransf": [45.0, 50.0]}
    answer = _section(_experiment(CFG, "heads"), values, twins)["answer"]
    assert answer.startswith("No head orders clearly better than a coin flip: the best twin accuracy is seqLSTM's "
                             "59.0 ± 1.4% (order-blind 50 ± 10.0)")


def test_sampling_answer_ranks_by_mean_r1():
    section = _section(_experiment(CFG, "sampling"),
                       {"head": [10.0, 12.0], "tail": [14.0, 16.0], "uniform": [20.0, 19.0]},
                       {"head": [50.0, 50.0], "tail": [80.0, 70.0], "uniform": [50.0, 52.0]})
    assert section["answer"] == ("Uniform sampling is best, R@1 19.5 ± 0.7: +4.5 over tail (higher in 2/2 seeds) "
                                 "and +8.5 over head (higher in 2/2 seeds); own video above its time reversal: "
                                 "head 50.0 ± 0.0%, tail 75.0 ± 7.1%, uniform 51.0 ± 1.4% (order-blind 50 ± 10.0).")


def test_lr_answer_reports_the_range_over_decades():
    section = _section(_experiment(CFG, "lr"), {"lr0.0001": [10.0, 12.0], "lr0.001": [20.0, 22.0],
                                               "lr0.01": [2.0, 4.0]})
    assert section["answer"] == ("Yes: over 2 decades of learning rate R@1 goes from 3.0 ± 1.4 (lr 0.01) to "
                                 "21.0 ± 1.4 (lr 0.001), +18.0 for the best, higher in 2/2 seeds.")


def _diverging(experiment: str, arm: str, values: list[float | None]) -> list[dict]:
    """Results of ``arm`` seed by seed; ``None``: that seed diverged."""
    return [_result(experiment, arm, s, v) if v is not None else
            dict(_result(experiment, arm, s, 1.0), test=None, diverged="the loss became nan at step 3")
            for s, v in enumerate(values)]


def _answer_of(key: str, results: dict[str, list[dict]]) -> str:
    return report.answer(scoring.summarise(_experiment(CFG, key), results))


def test_tied_learning_rates_are_not_read_as_a_single_arm():
    # the quick run's case: two lrs, one seed, the same R@1
    answer = _section(_experiment(CFG, "lr"), {"lr0.0001": [25.0], "lr0.001": [25.0]})["answer"]
    assert answer == ("Not measurably: every learning rate with results has the same mean R@1 "
                      "(lr 0.0001 25.0, lr 0.001 25.0).")


def test_learning_rates_tied_for_best_are_all_named():
    answer = _section(_experiment(CFG, "lr"), {"lr0.0001": [25.0, 20.0], "lr0.001": [22.0, 23.0],
                                               "lr0.01": [5.0, 6.0]})["answer"]
    assert answer == ("Yes: over 2 decades of learning rate R@1 goes from 5.5 ± 0.7 (lr 0.01) to 22.5 "
                      "(lr 0.0001 22.5 ± 3.5, lr 0.001 22.5 ± 0.7), +17.0 for the best, higher in 2/2 seeds.")


def test_lr_arms_without_a_common_seed_are_not_compared():
    answer = _answer_of("lr", {"lr0.0001": _diverging("lr", "lr0.0001", [10.0, None]),
                               "lr0.001": _diverging("lr", "lr0.001", [None, 20.0])})
    assert answer == ("Not yet comparable: over 1 decade of learning rate R@1 goes from 10.0 (lr 0.0001, n = 1) to "
                      "20.0 (lr 0.001, n = 1), but no seed has results at both.")


def test_a_lone_arm_is_the_only_one_and_the_diverged_ones_are_named():
    answer = _answer_of("lr", {"lr0.0001": _diverging("lr", "lr0.0001", [None, None]),
                               "lr0.001": _diverging("lr", "lr0.001", [20.0, 22.0])})
    assert answer == ("Only lr 0.001 has results so far (R@1 21.0 ± 1.4). "
                      "No results for lr 0.0001: every seed diverged.")


def test_every_run_diverged():
    answer = _answer_of("lr", {"lr0.0001": _diverging("lr", "lr0.0001", [None]),
                               "lr0.001": _diverging("lr", "lr0.001", [None])})
    assert answer == "No results: every run diverged."


def test_arms_equal_in_every_seed_make_no_difference():
    section = _section(_experiment(CFG, "image_text"), {"random": [10.0, 12.0], "image": [10.0, 12.0]})
    assert section["answer"] == ("No difference: +0.0 R@1 (image-text pretrained vs random init), higher in 0/2 "
                                 "seeds, equal in 2.")


def test_a_compared_arm_without_results_is_named_with_the_reason():
    answer = _answer_of("image_text", {"random": _diverging("image_text", "random", [None, None]),
                                       "image": _diverging("image_text", "image", [20.0, 22.0])})
    assert answer == ("Only image-text pretrained has results so far (R@1 21.0 ± 1.4); random init: every seed "
                      "diverged.")


def test_sampling_arms_tied_for_best_share_it():
    section = _section(_experiment(CFG, "sampling"), {"head": [20.0, 19.0], "tail": [19.5, 19.5],
                                                     "uniform": [10.0, 11.0]},
                       {"head": [50.0, 50.0], "tail": [60.0, 70.0], "uniform": [50.0, 50.0]})
    assert section["answer"].startswith("Head and tail sampling tie for the best R@1, 19.5 (head 19.5 ± 0.7, "
                                        "tail 19.5 ± 0.0); head is +9.0 over uniform (higher in 2/2 seeds); ")


def test_sampling_arms_all_equal_with_one_seed():
    section = _section(_experiment(CFG, "sampling"), {"head": [20.0], "tail": [20.0], "uniform": [20.0]},
                       {"head": [50.0], "tail": [60.0], "uniform": [50.0]})
    assert section["answer"] == ("No sampling is better than another: every one has the same mean R@1 (head 20.0, "
                                 "tail 20.0, uniform 20.0); own video above its time reversal: head 50.0%, "
                                 "tail 60.0%, uniform 50.0% (order-blind 50 ± 10.0).")


def test_heads_tied_at_order_and_at_r1_are_all_named():
    values = {"meanP": [20.0, 20.0], "seqLSTM": [21.0, 19.0], "seqTransf": [15.0, 15.0], "tightTransf": [10.0, 10.0]}
    twins = {"meanP": [50.0, 50.0], "seqLSTM": [90.0, 95.0], "seqTransf": [95.0, 90.0], "tightTransf": [50.0, 50.0]}
    answer = _section(_experiment(CFG, "heads"), values, twins)["answer"]
    assert answer.startswith("seqLSTM and seqTransf order best, tied: their captions score their own video above "
                             "the time-reversed twin 92.5 ± 3.5% of the time each")
    assert answer.endswith("; meanP and seqLSTM share the best R@1, 20.0 (meanP 20.0 ± 0.0, seqLSTM 20.0 ± 1.4).")


def test_a_head_above_chance_without_meanp_is_not_called_chance():
    results = {"meanP": _diverging("heads", "meanP", [None]),
               "seqLSTM": [_result("heads", "seqLSTM", 0, 25.0, 90.0)],
               "seqTransf": [_result("heads", "seqTransf", 0, 20.0, 60.0)]}
    assert _answer_of("heads", results) == (
        "seqLSTM orders best: its captions score their own video above the time-reversed twin 90.0% of the time "
        "(order-blind 50 ± 10.0); meanP has no twin accuracy to compare with; the best R@1 is seqLSTM's 25.0. "
        "No results for meanP: its run diverged.")


def test_meanp_leading_at_order_is_said_plainly():
    section = _section(_experiment(CFG, "heads"), {"meanP": [20.0], "seqLSTM": [20.0]},
                       {"meanP": [80.0], "seqLSTM": [70.0]})
    assert section["answer"] == ("No head orders better than meanP: the best twin accuracy, above a coin flip "
                                 "(order-blind 50 ± 10.0), is meanP's 80.0%; every head has the same mean R@1, "
                                 "20.0 each.")


def test_one_seed_shows_single_values_without_plus_minus():
    sections = [_section(_experiment(CFG, "image_text"), {"random": [8.0], "image": [20.0]}),
                _section(_experiment(CFG, "patch"), {"2d": [20.0], "3d": [25.0]}, {"2d": [50.0], "3d": [80.0]})]
    text = report.render(dict(_summary(sections), seeds=1))
    assert "a single seed (n = 1)" in text
    assert "| random init | 8.0 | 38.0 | 12.5 | - | 8.0 |" in text
    assert "**Answer.** Yes: +12.0 R@1 (image-text pretrained vs random init), higher in 1/1 seeds." in text
    assert "**Answer.** Yes: +5.0 R@1 (3d vs 2d), higher in 1/1 seeds; own video above its time reversal: 2d 50.0%, " \
           "3d 80.0% (order-blind 50 ± 10.0)." in text
    tables_and_answers = [line for line in text.splitlines() if line.startswith(("|", "**Answer."))]
    assert not any("± 0.0" in line for line in tables_and_answers)


def test_write_with_one_seed_makes_every_chart(tmp_path):
    sections = [_section(_experiment(CFG, "heads"), {h: [20.0 + i] for i, h in enumerate(mini_config.HEADS)},
                         {h: [50.0 + i] for i, h in enumerate(mini_config.HEADS)}),
                _section(_experiment(CFG, "lr"), {"lr0.0001": [25.0], "lr0.001": [25.0]})]
    path = report.write(tmp_path, dict(_summary(sections), seeds=1))
    linked = [line[line.index("(") + 1:-1] for line in path.read_text().splitlines() if line.startswith("![")]
    assert sorted(linked) == ["curves-heads.png", "curves-lr.png", "r1-heads.png", "r1-lr.png", "twin-heads.png"]
    for name in linked:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.size == (800, 450)


def _summary(sections: list[dict]) -> dict:
    cfg = MiniConfig(out=Path("unused"), lrs=(1e-4, 1e-3, 1e-2))
    return {"settings": cfg.settings(), "seeds": 3, "test_videos": 40, "chance_R@1": 2.5, "order_pairs_in_test": 5,
            "machine": {"date": "2026-11-26", "cpus": 2, "torch_threads": 1, "processor": "x86_64", "python": "3.11",
                        "torch": "2.x", "load_1min": 3.0},
            "seconds": {"this_run": 125.0, "training_runs": 100.0}, "experiments": sections}


def test_report_renders_a_table_row_per_arm_with_mean_std_and_seeds():
    section = _section(_experiment(CFG, "image_text"), {"random": [8.0, 10.0, 12.0], "image": [20.0, 23.0, 26.0]})
    text = report.render(_summary([section]))
    assert "| random init | 10.0 ± 2.0 | 40.0 ± 2.0 |" in text
    assert text.count("| image-text pretrained | 23.0 ± 3.0 |") == 1
    assert "| 8.0 / 10.0 / 12.0 |" in text
    assert "chance R@1 = 2.5" in text
    assert "**Answer.** Yes: +13.0 R@1" in text
    assert "2 min 05 s" in text


def test_report_heads_table_has_twin_accuracy():
    values = {h: [20.0, 22.0] for h in mini_config.HEADS}
    twins = {h: [50.0, 60.0] for h in mini_config.HEADS}
    text = report.render(_summary([_section(_experiment(CFG, "heads"), values, twins)]))
    assert "| head | twin accuracy (order-blind = 50) |" in text
    assert "| seqLSTM | 55.0 ± 7.1 | 10.5 ± 0.7 | 21.0 ± 1.4 | 21.0 ± 1.4 |" in text


def test_write_makes_the_report_and_the_charts_it_links(tmp_path):
    sections = [_section(_experiment(CFG, "image_text"), {"random": [8.0, 10.0], "image": [20.0, 23.0]}),
                _section(_experiment(CFG, "heads"), {h: [20.0, 22.0] for h in mini_config.HEADS},
                         {h: [50.0, 60.0] for h in mini_config.HEADS}),
                _section(_experiment(CFG, "lr"), {"lr0.0001": [10.0, 12.0], "lr0.001": [20.0, 22.0],
                                                  "lr0.01": [2.0, 4.0]})]
    path = report.write(tmp_path, _summary(sections))
    text = path.read_text()
    linked = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert sorted(linked) == sorted(["curves-image_text.png", "r1-image_text.png", "curves-heads.png",
                                     "r1-heads.png", "twin-heads.png", "curves-lr.png", "r1-lr.png"])
    for name in linked:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
    assert {cycle_colour(i) for i in range(4)} <= colours_in(tmp_path / "r1-heads.png")


# --- evaluation and bookkeeping -----------------------------------------------------------------------


def test_score_test_counts_twin_wins_and_splits_the_queries():
    # videos a, b (b is a reversed), c; captions 0, 1 of a and b, caption 2 of c
    video_ids = ["a", "b", "c"]
    sim = np.array([[0.9, 0.5, 0.1],    # a's caption: own video first, beats its twin
                    [0.7, 0.7, 0.1],    # b's caption: ties with its twin (half a win), rank 0.5
                    [0.1, 0.8, 0.3]],   # c's caption: own video second
                   dtype=np.float32)
    out = scoring.score_test(sim, [0, 1, 2], video_ids, {"a": "b", "b": "a"})
    assert out["twin_accuracy"] == pytest.approx(75.0)
    assert out["order_queries"] == 2 and out["other_queries"] == 1
    assert out["order"]["R@1"] == 100.0  # ranks 0 and 0.5 (a tie sits at its expected rank, under 1)
    assert out["other"]["R@1"] == 0.0
    assert out["all"]["MnR"] == pytest.approx(1.0 + (0 + 0.5 + 1) / 3)


def test_shape_position_follows_the_moves():
    waypoints = [[55.0, 16.0], [28.0, 16.0], [28.0, 40.0]]  # left then down, 64 x 48 frame (crop x 8..56)
    assert mini_data.shape_position(waypoints, 0.0, 4.0, 64, 48) == "right"
    assert mini_data.shape_position(waypoints, 2.0, 4.0, 64, 48) == "centre"
    assert mini_data.shape_position(waypoints, 4.0, 4.0, 64, 48) == "bottom"


def test_image_records_caption_each_second_without_motion(tmp_path):
    from c4c import synth

    synth_json = tmp_path / "synth.json"
    cfg = synth.SynthConfig(out_dir=tmp_path, videos=4, seed=3)
    synth_json.write_text(json.dumps(synth.metadata(cfg, synth.plan_videos(cfg))))
    lines = mini_data.image_records(synth_json, 4)
    assert len(lines) == 4 * 5
    assert [(line["start"], line["end"]) for line in lines[:5]] == [(float(k), k + 0.5) for k in range(5)]
    words = {w for line in lines for w in line["caption"].split()}
    assert not words & {"moves", "then", "going", "slides"}
    assert {line["split"] for line in lines} == {"train"}


def test_experiments_share_the_base_run_between_arms():
    cfg = MiniConfig(out=Path("unused"), lr=1e-3, lrs=(1e-4, 1e-3, 1e-2))
    names = {(e.key, a.key): experiments.run_name(a, cfg, 0) for e in mini_config.experiments(cfg) for a in e.arms}
    base = names[("image_text", "image")]
    assert base == names[("heads", "meanP")] == names[("patch", "2d")] == names[("sampling", "uniform")]
    assert base == names[("lr", "lr0.001")] == names[("post", "without")]
    assert names[("image_text", "image_zero_shot")] == "image-text-s0"  # tested as it is, not fine-tuned
    assert names[("post", "with_zero_shot")] == "post-pretrain-s0"
    assert len(names) == 18
    assert len(set(names.values())) == 13  # 18 arms: 11 fine-tuning runs per seed and the 2 pretraining runs


def test_finished_runs_keep_their_best_weights_only(tmp_path):
    run = tmp_path / "run"
    for name in ("best/model.safetensors", "checkpoints/step-9/model.safetensors", "checkpoints/step-9/train_state.pt",
                 "latest.json", "results.json", "metrics.jsonl"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    experiments.drop_training_state(run)
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == [
        "best/model.safetensors", "metrics.jsonl", "results.json"]
    pretrain_run = tmp_path / "pretrain"  # no best/: its newest checkpoint is what --init loads, so it stays
    (pretrain_run / "checkpoints" / "step-4").mkdir(parents=True)
    experiments.drop_training_state(pretrain_run)
    assert (pretrain_run / "checkpoints" / "step-4").is_dir()


def test_plan_goes_seed_by_seed_over_the_chosen_experiments():
    cfg = MiniConfig(out=Path("unused"), seeds=2, only=(3, 4))
    tasks = [(e.number, a.key, s) for e, a, s in experiments.plan(cfg)]
    assert len(tasks) == 2 * (4 + 2)
    assert [t[2] for t in tasks] == [0] * 6 + [1] * 6
    assert {t[0] for t in tasks} == {3, 4}


def test_settings_must_match_to_reuse_a_folder(tmp_path):
    experiments.check_settings(MiniConfig(out=tmp_path, seeds=1))
    experiments.check_settings(MiniConfig(out=tmp_path, seeds=3, only=(2,)))  # seeds and only may change
    with pytest.raises(C4CError, match="other settings.*epochs"):
        experiments.check_settings(MiniConfig(out=tmp_path, epochs=99))


def test_invocations_are_recorded_beside_the_settings(tmp_path):
    cfg = MiniConfig(out=tmp_path)
    experiments.check_settings(cfg)
    experiments.record_invocation(tmp_path, 600.04, computed=40, threads=1)
    runs = experiments.record_invocation(tmp_path, 3.0, computed=0, threads=1)
    assert [(r["seconds"], r["computed"]) for r in runs] == [(600.0, 40), (3.0, 0)]
    experiments.check_settings(cfg)  # the record does not count as a change of settings
    assert experiments.read_settings(tmp_path)["invocations"] == runs


def test_a_damaged_result_file_is_reported(tmp_path):
    bad = tmp_path / "seed-0.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(C4CError, match="not a c4c-mini-result"):
        experiments.read_result(bad)
    bad.write_text("{")
    with pytest.raises(C4CError, match="cannot read"):
        experiments.read_result(bad)


def test_only_rejects_unknown_experiments(tmp_path):
    with pytest.raises(C4CError, match="1-6"):
        experiments.validate(MiniConfig(out=tmp_path, only=(7,)))
    from c4c.mini.cli import _parse_only

    assert _parse_only("3, 1") == (1, 3)
    with pytest.raises(C4CError):
        _parse_only("x")


# --- end to end ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_run_end_to_end_then_resumes_without_training(tmp_path):
    from c4c.mini.cli import main

    out = tmp_path / "mini"
    main(["--out", str(out), "--quick", "--seeds", "1", "--quiet"])
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "c4c-mini-results"
    assert [s["number"] for s in results["experiments"]] == [1, 2, 3, 4, 5, 6]
    assert all(s["answer"] for s in results["experiments"])
    text = (out / "report.md").read_text()
    assert text.count("**Answer.**") == 6
    files = sorted(p.relative_to(out).as_posix() for p in (out / "results").rglob("seed-0.json"))
    assert len(files) == 3 + 3 + 4 + 2 + 3 + 2  # questions 1-6 (1 and 2 with a zero-shot row; two lrs)
    stamps = {f: (out / "results" / f).stat().st_mtime_ns for f in (p.split("/", 1)[1] for p in files)}
    started = time.perf_counter()
    main(["--out", str(out), "--quick", "--seeds", "1", "--quiet"])
    assert time.perf_counter() - started < 60
    assert {f: (out / "results" / f).stat().st_mtime_ns for f in stamps} == stamps


def test_a_diverged_seed_is_shown_and_left_out_of_the_statistics():
    experiment = _experiment(CFG, "lr")
    results = {"lr0.001": [_result("lr", "lr0.001", s, v) for s, v in enumerate([20.0, 22.0])],
               "lr0.01": [_result("lr", "lr0.01", 0, 6.0),
                          dict(_result("lr", "lr0.01", 1, 1.0), test=None, diverged="the loss became nan at step 3")]}
    section = scoring.summarise(experiment, results)
    high = section["arms"][1]
    assert high["diverged"] == 1 and high["stats"]["R@1"] == {"mean": 6.0, "std": 0.0, "n": 1}
    assert high["curve"]["loss"] == [3.0, 2.0, 1.0]  # the finished seed's curve only (seed 1 logged 2.9, 2, 1.1)
    assert "| lr 0.01 | 6.0 (n = 1) |" in report.section_table(section)  # one of its two seeds finished
    assert "| 6.0 / diverged |" in report.section_table(section)
    assert "higher in 1/1 seeds" in report.answer(section)  # only the seed both arms finished is paired


def test_run_arm_saves_a_result_for_a_run_that_diverged(tmp_path, monkeypatch):
    def diverging(*args, **kwargs):
        raise TrainingDiverged("the loss became nan at step 3 (epoch 0); stopped without saving")

    monkeypatch.setattr(experiments, "finetune_run", diverging)
    cfg = MiniConfig(out=tmp_path)
    experiment = _experiment(cfg, "lr")
    arm = experiment.arms[-1]
    result = experiments.run_arm(cfg, None, experiment, arm, 0)
    saved = experiments.read_result(experiments.result_path(tmp_path, experiment, arm, 0))
    assert saved["diverged"].startswith("the loss became nan") and saved["test"] is None
    assert result["diverged"] == saved["diverged"]


def test_run_arm_passes_other_errors_on(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise C4CError("frame store is damaged")

    monkeypatch.setattr(experiments, "finetune_run", broken)
    cfg = MiniConfig(out=tmp_path)
    experiment = _experiment(cfg, "lr")
    with pytest.raises(C4CError, match="damaged"):
        experiments.run_arm(cfg, None, experiment, experiment.arms[0], 0)
    assert not (tmp_path / "results").exists()
