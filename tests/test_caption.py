"""Captioning: the decoder's masks and loss, beam search, and `c4c caption train|generate` on synthetic data."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from c4c import synth
from c4c.data.text import EOT, SOT, CaptionTokenizer
from c4c.errors import C4CError
from c4c.model.backbone import build_clip
from c4c.data.detokenize import detokenize
from c4c.metrics.captions import load_captions_json
from c4c.model.load import build_model, resolve_spec
from c4c.model.beam import Hypothesis, beam_search, length_penalty
from c4c.model.decoder import CaptionModel, DecoderConfig, IncrementalDecoder
from c4c.model.heads import HEADS
from c4c.stages import caption, extract
from c4c.run import checkpoint


# ------------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def synth_frames(tmp_path_factory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("cap")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=24, seed=5, duration=2.0, width=64, height=48))
    out = d / "frames.h5"
    result = extract.run(extract.ExtractConfig(source=d / "synth" / "annotations.jsonl", dataset="jsonl",
                                               videos_dir=d / "synth" / "videos", out=out, size=32, fps=2.0))
    assert result.ok
    return d / "synth" / "annotations.jsonl", out, d / "synth" / "videos"


def _cfg(synth_frames, out: Path, **kw) -> caption.CaptionTrainConfig:
    ann, frames, _ = synth_frames
    base = dict(dataset="jsonl", ann=ann, frames=frames, out=out, clip="tiny", pretrained="none", sim="seqTransf",
                temporal_layers=1, decoder_layers=1, epochs=1, batch_size=8, lr=1e-3, coef_lr=1.0, workers=0,
                log_every=1, max_words=16, max_frames=4, eval_batch_size=32)
    base.update(kw)
    return caption.CaptionTrainConfig(**base)


@pytest.fixture(scope="module")
def trained_run(synth_frames, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    caption.run(_cfg(synth_frames, out))
    return out


def _model(sim: str = "seqTransf", layers: int = 2, seed: int = 0) -> CaptionModel:
    torch.manual_seed(seed)
    clip, _ = build_clip("tiny", "none")
    return CaptionModel(clip, sim=sim, temporal_layers=2, decoder=DecoderConfig(layers=layers)).eval()


def _videos(b: int, t: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 32, 32, 3), dtype=torch.uint8, generator=g)


def _sharpen(model: CaptionModel) -> CaptionModel:
    """Large, video-dependent logits, so argmax decisions are far from ties in an untrained model."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        w = model.decoder.proj_out.weight
        w.copy_(torch.randn(w.shape, generator=g) * 3.0)
        model.decoder.out_bias[EOT] += 2.0
    return model


# ------------------------------------------------------------------------------------------------
# the model: masks and loss

@pytest.mark.parametrize("sim", list(HEADS))
def test_padded_frames_never_change_the_caption_logits(sim):
    model = _model(sim)
    real = _videos(2, 3)
    padded = torch.cat([real, _videos(2, 3, seed=9)], dim=1)           # garbage in the padded slots
    mask3 = torch.ones(2, 3, dtype=torch.bool)
    mask6 = torch.cat([mask3, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    ids, _ = CaptionTokenizer(8)(["a red circle moves left", "a cat"])
    with torch.no_grad():
        a = model.caption_logits(ids, real, mask3)
        b = model.caption_logits(ids, padded, mask6)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_the_captions_logits_depend_on_the_video():
    model = _model()
    ids, _ = CaptionTokenizer(8)(["a red circle moves left"])
    mask = torch.ones(1, 3, dtype=torch.bool)
    with torch.no_grad():
        a = model.caption_logits(ids, _videos(1, 3, seed=1), mask)
        b = model.caption_logits(ids, _videos(1, 3, seed=2), mask)
    assert (a - b).abs().amax() > 1e-4


def test_a_later_token_never_changes_earlier_logits():
    model = _model()
    ids, _ = CaptionTokenizer(10)(["a red circle moves left then up"])
    changed = ids.clone()
    changed[0, 4] = 1234
    video, mask = _videos(1, 4), torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        a = model.caption_logits(ids, video, mask)
        b = model.caption_logits(changed, video, mask)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=0, rtol=0)  # positions 0..3 see tokens 0..3 only
    assert (a[:, 4:] - b[:, 4:]).abs().amax() > 1e-3


def test_caption_loss_is_the_mean_cross_entropy_over_real_targets_only():
    model = _model()
    ids, mask = CaptionTokenizer(10)(["a red circle", "a blue square moves up"])
    video, vmask = _videos(2, 4), torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        loss, cap, ret = model(ids, mask, video, vmask, retrieval_weight=0.0)
        logits = model.caption_logits(ids[:, :-1], video, vmask)
    # brute force: every position whose target is a caption token or EOT, nothing after EOT
    terms = []
    for i in range(2):
        n_real = int(mask[i].sum())                                    # SOT ... EOT
        for p in range(n_real - 1):
            terms.append(F.cross_entropy(logits[i, p][None], ids[i, p + 1][None]))
    assert len(terms) == int(mask[:, 1:].sum()) == (3 + 1) + (5 + 1)
    torch.testing.assert_close(loss, torch.stack(terms).mean(), atol=1e-5, rtol=1e-5)
    assert float(ret) == 0.0 and float(cap) == pytest.approx(float(loss))
    garbage = ids.clone()
    garbage[~mask] = 777                                                # padding is never a target
    with torch.no_grad():
        torch.testing.assert_close(model(garbage, mask, video, vmask, retrieval_weight=0.0)[0], loss)


def test_retrieval_weight_adds_the_contrastive_loss():
    model = _model("meanP")
    ids, mask = CaptionTokenizer(10)(["a red circle", "a blue square moves up", "a green triangle"])
    video, vmask = _videos(3, 4), torch.ones(3, 4, dtype=torch.bool)
    with torch.no_grad():
        off, cap0, ret0 = model(ids, mask, video, vmask, retrieval_weight=0.0)
        on, cap, ret = model(ids, mask, video, vmask, retrieval_weight=0.5)
        expected_ret = model.loss_from_features(model.encode_text(ids), model.encode_video(video, vmask), vmask)
    assert float(ret0) == 0.0 and float(ret) > 0.0
    torch.testing.assert_close(cap, cap0)
    torch.testing.assert_close(ret, expected_ret)
    torch.testing.assert_close(on, cap + 0.5 * expected_ret)
    assert float(on) != pytest.approx(float(off))


def test_the_decoder_embedding_starts_as_a_copy_of_clips_and_is_trained_separately():
    model = _model()
    torch.testing.assert_close(model.decoder.token_embedding.weight, model.clip.token_embedding.weight)
    assert model.decoder.token_embedding.weight.data_ptr() != model.clip.token_embedding.weight.data_ptr()
    assert model.decoder.proj_out.weight.shape == (32, 32)


def test_incremental_decoding_matches_teacher_forcing():
    model = _model()
    ids, _ = CaptionTokenizer(7)(["a red circle moves left", "two"])
    video = _videos(2, 5)
    vmask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        full = model.caption_logits(ids, video, vmask).log_softmax(-1)
        memory = model.encode_video(video, vmask)
        stepper = IncrementalDecoder(model.decoder, memory, vmask, beams=1, max_len=7, banned=())
        for t in range(7):
            torch.testing.assert_close(stepper.step(ids[:, t]), full[:, t], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# beam search

A, B, C, END, START = 0, 1, 2, 3, 4  # a 5-token vocabulary for hand-built distributions


class TableStepper:
    """Next-token probabilities looked up by prefix (one table per video); unknown prefixes end."""

    def __init__(self, tables: list[dict], beams: int) -> None:
        self.tables, self.beams = tables, beams
        self.prefixes = [() for _ in range(len(tables) * beams)]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        out = torch.full((len(self.prefixes), 5), float("-inf"))
        for i, tok in enumerate(tokens.tolist()):
            if tok != START:
                self.prefixes[i] = self.prefixes[i] + (tok,)
            for t, p in self.tables[i // self.beams].get(self.prefixes[i], {END: 1.0}).items():
                out[i, t] = math.log(p)
        return out

    def reorder(self, rows: torch.Tensor) -> None:
        self.prefixes = [self.prefixes[r] for r in rows.tolist()]


def _search(tables, beam, alpha, max_len=6) -> list[Hypothesis]:
    return beam_search(TableStepper(tables, beam), len(tables), beam=beam, max_len=max_len, alpha=alpha,
                       sot=START, eot=END)


GREEDY_TRAP = {(): {A: 0.6, B: 0.4}, (A,): {END: 0.4, B: 0.3, C: 0.3}, (B,): {END: 0.9, C: 0.1}}
LONG_WINS = {(): {A: 0.52, B: 0.48}, (A,): {END: 1.0}, (B,): {C: 1.0}, (B, C): {C: 1.0}, (B, C, C): {END: 1.0}}


def test_beam_search_finds_the_sequence_greedy_misses():
    greedy = _search([GREEDY_TRAP], beam=1, alpha=0.0)[0]
    assert greedy.tokens == [A] and greedy.log_prob == pytest.approx(math.log(0.6 * 0.4))
    best = _search([GREEDY_TRAP], beam=2, alpha=0.0)[0]
    assert best.tokens == [B] and best.log_prob == pytest.approx(math.log(0.4 * 0.9)) and best.finished


def test_length_penalty_prefers_the_longer_caption_when_alpha_is_large():
    short = _search([LONG_WINS], beam=2, alpha=0.0)[0]
    assert short.tokens == [A] and short.score == pytest.approx(math.log(0.52))
    # alpha 1: "a" scores ln .52 / (7/6) = -0.5605, "b c c" scores ln .48 / (9/6) = -0.4893
    long = _search([LONG_WINS], beam=2, alpha=1.0)[0]
    assert long.tokens == [B, C, C]
    assert long.score == pytest.approx(math.log(0.48) / 1.5) and long.log_prob == pytest.approx(math.log(0.48))
    assert length_penalty(4, 1.0) == pytest.approx(1.5) and length_penalty(2, 0.6) == pytest.approx((7 / 6) ** 0.6)


def test_videos_of_one_batch_are_searched_independently():
    hyps = _search([GREEDY_TRAP, LONG_WINS, GREEDY_TRAP], beam=2, alpha=1.0)
    assert [h.tokens for h in hyps] == [[B], [B, C, C], [B]]


def _random_tables(seed: int, max_len: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    table = {}
    for n in range(max_len):
        for prefix in itertools.product((A, B, C), repeat=n):
            p = torch.rand(4, generator=g) + 0.05
            table[prefix] = {t: float(v) for t, v in zip((A, B, C, END), p / p.sum())}
    return table


def _exhaustive(table: dict, max_len: int, alpha: float) -> tuple[list[int], float]:
    best = (None, float("-inf"))
    for n in range(max_len + 1):
        for prefix in itertools.product((A, B, C), repeat=n):
            logp = sum(math.log(table[prefix[:i]][prefix[i]]) for i in range(n))
            if 0 < n < max_len:   # ends with EOT: n tokens + EOT (never an empty caption)
                s = (logp + math.log(table[prefix][END])) / length_penalty(n + 1, alpha)
            elif n == max_len:    # cut at max_len
                s = logp / length_penalty(max_len, alpha)
            else:
                continue
            if s > best[1]:
                best = (list(prefix), s)
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_a_beam_wide_enough_for_every_prefix_finds_the_exhaustive_optimum(alpha):
    tables = [_random_tables(seed, 4) for seed in range(3)]
    hyps = _search(tables, beam=128, alpha=alpha, max_len=4)
    for table, hyp in zip(tables, hyps):
        tokens, score = _exhaustive(table, 4, alpha)
        assert hyp.tokens == tokens and hyp.score == pytest.approx(score, abs=1e-5)


def test_beam_search_never_returns_an_empty_caption():
    ends_at_once = {(): {END: 0.9, A: 0.1}, (A,): {END: 1.0}}
    for beam in (1, 3):
        hyp = _search([ends_at_once], beam=beam, alpha=0.6)[0]
        assert hyp.tokens == [A] and hyp.log_prob == pytest.approx(math.log(0.1))


@pytest.mark.parametrize("kw, match", [({"beam": 0}, "beam"), ({"max_len": 0}, "max-len"), ({"alpha": -1.0}, "alpha")])
def test_beam_search_rejects_bad_settings(kw, match):
    args = {"beam": 2, "max_len": 3, "alpha": 0.6, **kw}
    with pytest.raises(C4CError, match=match):
        beam_search(TableStepper([GREEDY_TRAP], max(args["beam"], 1)), 1, sot=START, eot=END, **args)


def test_beam_one_is_greedy_decoding_of_the_model():
    model = _sharpen(_model())
    video = _videos(3, 4)
    vmask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        hyps = model.generate(video, vmask, beam=1, max_len=8, alpha=0.6)   # alpha is ignored for one beam
        for i, hyp in enumerate(hyps):
            ids = [SOT]
            for _ in range(8):  # brute force: re-run the whole prefix, take the argmax
                logits = model.caption_logits(torch.tensor([ids]), video[i:i + 1], vmask[i:i + 1])[0, -1]
                logits[SOT] = float("-inf")
                if len(ids) == 1:
                    logits[EOT] = float("-inf")                     # no empty caption
                token = int(logits.argmax())
                if token == EOT:
                    break
                ids.append(token)
            assert hyp.tokens == ids[1:]


def test_beam_decoding_of_the_model_is_deterministic():
    model = _sharpen(_model())
    video, vmask = _videos(4, 4), torch.ones(4, 4, dtype=torch.bool)
    with torch.no_grad():
        first = model.generate(video, vmask, beam=4, max_len=8, alpha=0.6)
        again = model.generate(video, vmask, beam=4, max_len=8, alpha=0.6)
    assert first == again and len(first) == 4


def test_max_len_beyond_the_decoder_positions_is_an_error():
    with pytest.raises(C4CError, match="max-len"):
        _model().generate(_videos(1, 2), torch.ones(1, 2, dtype=torch.bool), beam=2, max_len=77)


def test_detokenize_strips_markers_and_cleans_spaces():
    ids, _ = CaptionTokenizer(32)(["The red circle moves to the left,  then up!", "it's a square"])
    assert detokenize(ids.tolist()) == ["the red circle moves to the left, then up!", "it's a square"]
    assert detokenize([[SOT, 320, EOT, 736]]) == ["a"]                    # nothing after EOT


# ------------------------------------------------------------------------------------------------
# the stage: training

def test_a_caption_run_folder_has_config_metrics_checkpoints_and_best(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["format"] == "c4c-run" and config["format_version"] == 1 and config["task"] == "caption"
    assert config["model"] == {"clip": "tiny", "sim": "seqTransf", "patch": "2d", "temporal_layers": 1,
                               "pretrained": "none", "activation": "quickgelu", "clip_fp16": False,
                               "decoder": {"layers": 1, "heads": 0, "mlp_ratio": 4.0, "dropout": 0.1,
                                           "max_positions": 77}}
    lines = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [x for x in lines if x["event"] == "step"]
    epoch = [x for x in lines if x["event"] == "epoch"][0]
    assert {"caption_loss", "perplexity", "tokens", "retrieval_loss"} <= set(epoch["metrics"])
    assert epoch["metrics"]["perplexity"] == pytest.approx(math.exp(epoch["metrics"]["caption_loss"]))
    results = json.loads((trained_run / "results.json").read_text())
    assert results["selection"] == "val" and results["best_epoch"] == 0
    assert (trained_run / "best" / "model.safetensors").is_file() and checkpoint.latest(trained_run) is not None
    state = checkpoint.load_model_state(trained_run / "best")
    assert any(k.startswith("decoder.") for k in state) and any(k.startswith("clip.") for k in state)


def test_val_loss_selection_keeps_the_lowest_loss_epoch(synth_frames, tmp_path):
    result = caption.run(_cfg(synth_frames, tmp_path / "run", epochs=2, lr=3e-3))
    losses = [h["metrics"]["caption_loss"] for h in result.history]
    assert result.best_epoch == min(range(2), key=lambda e: losses[e])
    assert result.best_metrics["caption_loss"] == pytest.approx(min(losses))


@pytest.mark.slow
def test_resumed_caption_run_ends_with_the_weights_of_an_uninterrupted_one(synth_frames, tmp_path):
    full = _cfg(synth_frames, tmp_path / "full", save_every=1)
    caption.run(full)
    part = replace(full, out=tmp_path / "part", max_steps=2)
    caption.run(part)
    assert checkpoint.load_meta(checkpoint.latest(tmp_path / "part"))["step"] == 2
    caption.run(replace(part, max_steps=None, resume=True))
    a = checkpoint.load_model_state(checkpoint.latest(tmp_path / "full"))
    b = checkpoint.load_model_state(checkpoint.latest(tmp_path / "part"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


@pytest.fixture(scope="module")
def finetune_run(synth_frames, tmp_path_factory) -> Path:
    from c4c.stages.finetune import FinetuneConfig, run

    ann, frames, _ = synth_frames
    out = tmp_path_factory.mktemp("ft") / "ft"
    run(FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=out, clip="tiny", pretrained="none",
                       sim="seqTransf", temporal_layers=1, epochs=1, batch_size=8, lr=1e-3, coef_lr=1.0, workers=0,
                       max_steps=1, max_frames=4, max_words=16))
    return out


def test_init_from_a_finetune_run_loads_its_encoder_and_head(synth_frames, finetune_run, tmp_path):
    cfg = _cfg(synth_frames, tmp_path / "run", init=finetune_run, clip=None, sim=None, temporal_layers=None)
    spec = resolve_spec(cfg, decoder=caption.decoder_config(cfg))
    assert (spec.clip, spec.sim, spec.temporal_layers) == ("tiny", "seqTransf", 1)
    model, _, _ = build_model(spec, init=finetune_run)
    trained = checkpoint.load_model_state(checkpoint.latest(finetune_run))
    mine = model.state_dict()
    assert set(trained) == {k for k in mine if not k.startswith("decoder.")}
    for k, v in trained.items():
        torch.testing.assert_close(mine[k], v, atol=0, rtol=0, msg=k)


def test_init_with_another_head_is_a_clear_error(synth_frames, finetune_run, tmp_path):
    cfg = _cfg(synth_frames, tmp_path / "run", init=finetune_run, sim="meanP")
    with pytest.raises(C4CError, match="does not fit"):
        build_model(resolve_spec(cfg, decoder=caption.decoder_config(cfg)), init=finetune_run)


def test_a_folder_of_other_files_is_not_taken_for_a_run(synth_frames, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("x")
    with pytest.raises(C4CError, match="exists and is not a c4c run folder"):
        caption.run(_cfg(synth_frames, tmp_path / "run"))
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["x"] and not (tmp_path / "run.lock").exists()


def test_a_negative_retrieval_weight_is_refused(synth_frames, tmp_path):
    with pytest.raises(C4CError, match="retrieval-loss-weight"):
        caption.run(_cfg(synth_frames, tmp_path / "run", retrieval_loss_weight=-1.0))


# ------------------------------------------------------------------------------------------------
# the stage: generation

def test_generate_captions_a_split_and_writes_the_meta_file(synth_frames, trained_run, tmp_path):
    ann, frames, _ = synth_frames
    out = tmp_path / "captions.json"
    result = caption.run(caption.GenerateConfig(run=trained_run, frames=frames, out=out, dataset="jsonl", ann=ann,
                                                split="test", beam=3, max_len=6, batch_size=4, workers=0))
    test_ids = {json.loads(x)["video_id"] for x in ann.read_text().splitlines() if json.loads(x)["split"] == "test"}
    captions = load_captions_json(out)
    assert set(captions) == test_ids and captions == result.captions
    assert all(isinstance(c, str) for c in captions.values())
    meta = json.loads((tmp_path / "captions.meta.json").read_text())
    assert meta["format"] == "c4c-captions" and meta["beam"] == 3 and meta["max_len"] == 6
    assert meta["videos"] == len(test_ids) and meta["split"] == "test" and meta["checkpoint"].endswith("best")


def test_generate_on_own_video_frames_without_annotations_is_deterministic(synth_frames, trained_run, tmp_path):
    _, _, videos = synth_frames
    own = tmp_path / "own.h5"
    chosen = tmp_path / "mine"
    chosen.mkdir()
    for name in ("synth0001.mp4", "synth0002.mp4", "synth0003.mp4"):
        (chosen / name).write_bytes((videos / name).read_bytes())
    assert extract.run(extract.ExtractConfig(source=chosen, out=own, size=32, fps=2.0)).ok
    cfg = caption.GenerateConfig(run=trained_run, frames=own, out=tmp_path / "a.json", beam=2, max_len=5,
                                 batch_size=2, workers=0)
    first = caption.run(cfg)
    caption.run(replace(cfg, out=tmp_path / "b.json"))
    assert set(first.captions) == {"synth0001", "synth0002", "synth0003"}
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert json.loads((tmp_path / "a.meta.json").read_text())["split"] is None


def test_generate_refuses_a_run_that_is_not_a_caption_run(synth_frames, finetune_run, tmp_path):
    _, frames, _ = synth_frames
    with pytest.raises(C4CError, match="not a caption run"):
        caption.run(caption.GenerateConfig(run=finetune_run, frames=frames, out=tmp_path / "c.json", workers=0))


def test_generate_needs_dataset_and_ann_together(synth_frames, trained_run, tmp_path):
    ann, frames, _ = synth_frames
    with pytest.raises(C4CError, match="go together"):
        caption.run(caption.GenerateConfig(run=trained_run, frames=frames, out=tmp_path / "c.json", ann=ann,
                                           workers=0))


def test_reading_captions_rejects_what_is_not_a_caption_mapping(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"v1": ["not", "a", "string"]}))
    with pytest.raises(C4CError, match="not a string"):
        load_captions_json(bad)
    bad.write_text(json.dumps(["a list"]))
    with pytest.raises(C4CError, match="not an object"):
        load_captions_json(bad)
    bad.write_text(json.dumps({"v1": "a caption"}))
    (tmp_path / "c.meta.json").write_text(json.dumps({"format": "c4c-captions", "format_version": 99}))
    with pytest.raises(C4CError, match="newer"):
        load_captions_json(bad)


# ------------------------------------------------------------------------------------------------
# the CLI

def _app():
    from c4c.cli.app import app

    return app


def test_cli_help_has_examples():
    from typer.testing import CliRunner

    runner = CliRunner()
    for command in ("train", "generate"):
        result = runner.invoke(_app(), ["caption", command, "--help"])
        assert result.exit_code == 0 and "Examples" in result.output


def test_cli_trains_and_generates(synth_frames, tmp_path):
    from typer.testing import CliRunner

    ann, frames, _ = synth_frames
    runner = CliRunner()
    result = runner.invoke(_app(), [
        "caption", "train", "--dataset", "jsonl", "--ann", str(ann), "--frames", str(frames),
        "--out", str(tmp_path / "run"), "--clip", "tiny", "--pretrained", "none", "--sim", "meanP",
        "--decoder-layers", "1", "--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--coef-lr", "1",
        "--max-words", "16", "--max-frames", "4", "--workers", "0", "--retrieval-loss-weight", "0", "-q"])
    assert result.exit_code == 0, result.output
    assert "val caption loss" in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["retrieval_loss_weight"] == 0.0
    result = runner.invoke(_app(), ["caption", "generate", "--run", str(tmp_path / "run"), "--frames", str(frames),
                                    "--out", str(tmp_path / "caps.json"), "--beam", "2", "--max-len", "5",
                                    "--workers", "0", "-q"])
    assert result.exit_code == 0, result.output
    assert "captions/s" in result.output and len(json.loads((tmp_path / "caps.json").read_text())) == 24


def test_cli_reports_user_errors(synth_frames, tmp_path):
    from typer.testing import CliRunner

    _, frames, _ = synth_frames
    result = CliRunner().invoke(_app(), ["caption", "generate", "--run", str(tmp_path / "nope"), "--frames",
                                         str(frames), "--out", str(tmp_path / "c.json"), "-q"])
    assert result.exit_code != 0 and isinstance(result.exception, C4CError)
    assert "run folder not found" in str(result.exception)


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_the_same_global_batch(synth_frames, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import textwrap

    ann, frames, _ = synth_frames
    script = tmp_path / "ddp_caption.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from c4c.stages.caption import CaptionTrainConfig, run
        run(CaptionTrainConfig(dataset="jsonl", ann=Path({str(ann)!r}), frames=Path({str(frames)!r}),
                               out=Path(sys.argv[1]), clip="tiny", pretrained="none", sim="seqTransf",
                               temporal_layers=1, decoder_layers=1, decoder_dropout=0.0, epochs=1, batch_size=8,
                               lr=1e-3, coef_lr=1.0, workers=0, max_steps=2, log_every=1, max_words=16,
                               max_frames=4, device="cpu"))
    """))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single")], env=env,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(port), str(script), str(tmp_path / "ddp")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    losses = {}
    for name in ("single", "ddp"):
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [x["loss"] for x in lines if x["event"] == "step"]
    assert len(losses["single"]) == 2
    a = checkpoint.load_model_state(checkpoint.latest(tmp_path / "single"))
    b = checkpoint.load_model_state(checkpoint.latest(tmp_path / "ddp"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_gradient_accumulation_keeps_the_contrastive_batch_of_the_retrieval_term(weight):
    """--grad-accum means what it means in finetune: the gradients of 2 micro-batches equal one pass."""
    import contextlib
    from types import SimpleNamespace

    from c4c.data.text import EOT, SOT
    from c4c.model.backbone import build_clip

    torch.manual_seed(0)
    clip, _ = build_clip("tiny", "none")
    model = CaptionModel(clip, sim="seqTransf", temporal_layers=1, decoder=DecoderConfig(layers=1, dropout=0.0))
    model.train()
    b, w = 8, 10
    ids = torch.randint(1, 1000, (b, w))
    ids[:, 0] = SOT
    lengths = torch.randint(3, w + 1, (b,))
    mask = (torch.arange(w)[None] < lengths[:, None]).long()
    ids[torch.arange(b), lengths - 1] = EOT
    ids = ids * mask
    batch = {"text_ids": ids, "text_mask": mask, "video": torch.randint(0, 255, (b, 3, 32, 32, 3), dtype=torch.uint8),
             "video_mask": torch.ones(b, 3, dtype=torch.long)}
    dist_info = SimpleNamespace(distributed=False, world_size=1)

    def grads(accum):
        model.zero_grad(set_to_none=True)
        loss = caption.caption_step(model, model, batch, weight=weight, accum=accum, amp_ctx=contextlib.nullcontext(),
                                    scaler=None, dist_info=dist_info)
        return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss1, g1 = grads(1)
    loss2, g2 = grads(2)
    if weight > 0:
        assert loss2 == pytest.approx(loss1, rel=1e-5)
    assert g1.keys() == g2.keys()
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-6, rtol=1e-4, msg=name)
