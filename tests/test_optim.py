"""Freezing, parameter groups, BertAdam and schedules (spec 4.9, 5.2-5.4), with numbers worked out by hand."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from c4c.errors import C4CError
from c4c.train.optim import (BertAdam, SCHEDULES, freeze_clip_layers, make_optimizer, param_groups,
                             schedule_lambda, warmup_cosine, warmup_cosine_reference, warmup_linear_reference)

D = 4  # width of every fake layer


# --------------------------------------------------------------------------------------------
# A fake CLIP4Clip whose parameter names match the real ones
# --------------------------------------------------------------------------------------------

class FakeAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.randn(3 * D, D))  # 48
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * D))       # 12


class FakeBlock(nn.Module):
    """68 parameters: ln_1 (8) + attn (60)."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(D)
        self.attn = FakeAttention()


class FakeTransformer(nn.Module):
    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(FakeBlock() for _ in range(layers))


class FakeVisual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, D, 2, bias=False)              # 48
        self.conv2 = nn.Conv3d(3, D, (2, 2, 2), bias=False)      # 96 (3-D patch)
        self.class_embedding = nn.Parameter(torch.randn(D))       # 4
        self.positional_embedding = nn.Parameter(torch.randn(5, D))  # 20
        self.ln_pre = nn.LayerNorm(D)                             # 8
        self.transformer = FakeTransformer()                      # 136
        self.ln_post = nn.LayerNorm(D)                            # 8
        self.proj = nn.Parameter(torch.randn(D, D))               # 16


class FakeClip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.visual = FakeVisual()
        self.token_embedding = nn.Embedding(10, D)                # 40
        self.positional_embedding = nn.Parameter(torch.randn(3, D))  # 12
        self.transformer = FakeTransformer()                      # 136
        self.ln_final = nn.LayerNorm(D)                           # 8
        self.text_projection = nn.Parameter(torch.randn(D, D))    # 16
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # 1


class FakeModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.clip = FakeClip()
        self.head = nn.Module()
        self.head.x = nn.Linear(D, D)                             # head.x.weight, head.x.bias
        self.head.frame_position_embeddings = nn.Embedding(6, D)


EMBEDDINGS = {"clip.token_embedding.weight", "clip.positional_embedding", "clip.visual.class_embedding",
              "clip.visual.positional_embedding", "clip.visual.conv1.weight",
              "clip.visual.ln_pre.weight", "clip.visual.ln_pre.bias"}
EMBEDDING_COUNT = 40 + 12 + 4 + 20 + 48 + 8        # 132
PATCH_3D_COUNT = 96                                # visual.conv2 (3-D patch): new, never frozen
ALWAYS_TRAINABLE_COUNT = 8 + 16 + 1 + 8 + 16 + PATCH_3D_COUNT  # ln_final, text_projection, logit_scale, ln_post, proj,
                                                               # conv2: 145
BLOCK_COUNT = 68
CLIP_COUNT = EMBEDDING_COUNT + ALWAYS_TRAINABLE_COUNT + 4 * BLOCK_COUNT  # 549


def frozen_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def test_fake_model_has_the_real_parameter_names() -> None:
    names = {name for name, _ in FakeModel().named_parameters()}
    assert {"clip.visual.transformer.resblocks.1.attn.in_proj_weight", "clip.transformer.resblocks.0.ln_1.weight",
            "clip.visual.ln_post.bias", "clip.visual.proj", "clip.logit_scale", "head.x.bias"} <= names
    assert sum(p.numel() for p in FakeModel().clip.parameters()) == CLIP_COUNT


# --------------------------------------------------------------------------------------------
# freeze_clip_layers
# --------------------------------------------------------------------------------------------

def test_freeze_zero_freezes_exactly_the_embeddings_but_not_the_new_3d_patch() -> None:
    model = FakeModel()
    counts = freeze_clip_layers(model, 0)
    assert frozen_names(model) == EMBEDDINGS
    assert model.clip.visual.conv2.weight.requires_grad
    assert counts == {"frozen": 132, "trainable": 417}


def test_freeze_n_keeps_blocks_from_n_on_in_both_towers() -> None:
    model = FakeModel()
    counts = freeze_clip_layers(model, 1)
    block0 = {f"clip.{tower}transformer.resblocks.0.{leaf}" for tower in ("", "visual.")
              for leaf in ("ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias")}
    assert frozen_names(model) == EMBEDDINGS | block0
    assert counts == {"frozen": 132 + 2 * 68, "trainable": 145 + 2 * 68}


def test_freeze_beyond_depth_leaves_only_final_ln_projections_and_logit_scale() -> None:
    model = FakeModel()
    counts = freeze_clip_layers(model, 12)
    trainable = {name for name, p in model.clip.named_parameters() if p.requires_grad}
    assert trainable == {"ln_final.weight", "ln_final.bias", "text_projection", "logit_scale",
                         "visual.ln_post.weight", "visual.ln_post.bias", "visual.proj", "visual.conv2.weight"}
    assert counts == {"frozen": 404, "trainable": 145}


def test_freeze_minus_one_freezes_nothing() -> None:
    model = FakeModel()
    counts = freeze_clip_layers(model, -1)
    assert frozen_names(model) == set()
    assert counts == {"frozen": 0, "trainable": CLIP_COUNT}


def test_freeze_leaves_parameters_outside_clip_alone() -> None:
    model = FakeModel()
    freeze_clip_layers(model, 12)
    assert all(p.requires_grad for p in model.head.parameters())


def test_freeze_rejects_values_below_minus_one() -> None:
    with pytest.raises(C4CError):
        freeze_clip_layers(FakeModel(), -2)


# --------------------------------------------------------------------------------------------
# param_groups
# --------------------------------------------------------------------------------------------

def group_members(model: nn.Module, groups: list[dict]) -> dict[str, set[str]]:
    name_of = {id(p): name for name, p in model.named_parameters()}
    return {g["name"]: {name_of[id(p)] for p in g["params"]} for g in groups}


def test_param_groups_split_by_clip_prefix_and_bias_substring() -> None:
    model = FakeModel()
    freeze_clip_layers(model, 0)
    groups = param_groups(model, lr=1e-4, coef_lr=1e-3)
    members = group_members(model, groups)
    assert [g["name"] for g in groups] == ["clip_decay", "new_decay", "clip_no_decay", "new_no_decay"]
    # LayerNorm weights, projections and logit_scale are decayed (no 'bias' in their names)
    assert {"clip.ln_final.weight", "clip.transformer.resblocks.0.ln_1.weight", "clip.logit_scale",
            "clip.text_projection", "clip.visual.proj"} <= members["clip_decay"]
    assert {"clip.transformer.resblocks.0.attn.in_proj_bias", "clip.visual.ln_post.bias",
            "clip.ln_final.bias"} <= members["clip_no_decay"]
    assert members["new_decay"] == {"head.x.weight", "head.frame_position_embeddings.weight"}
    assert members["new_no_decay"] == {"head.x.bias"}
    everything = set().union(*members.values())
    assert everything.isdisjoint(EMBEDDINGS)  # frozen parameters are left out
    assert everything == {name for name, p in model.named_parameters() if p.requires_grad}


def test_param_groups_lrs_and_weight_decay() -> None:
    groups = {g["name"]: g for g in param_groups(FakeModel(), lr=1e-4, coef_lr=1e-3, weight_decay=0.2)}
    assert groups["clip_decay"]["lr"] == pytest.approx(1e-7)
    assert groups["clip_no_decay"]["lr"] == pytest.approx(1e-7)
    assert groups["new_decay"]["lr"] == 1e-4 and groups["new_no_decay"]["lr"] == 1e-4
    assert groups["clip_decay"]["weight_decay"] == 0.2 and groups["new_decay"]["weight_decay"] == 0.2
    assert groups["clip_no_decay"]["weight_decay"] == 0.0 and groups["new_no_decay"]["weight_decay"] == 0.0


def test_param_groups_omit_empty_groups() -> None:
    model = FakeModel()
    for p in model.head.parameters():
        p.requires_grad_(False)
    assert [g["name"] for g in param_groups(model, 1e-4, 1e-3)] == ["clip_decay", "clip_no_decay"]


# --------------------------------------------------------------------------------------------
# BertAdam (b1 0.9, b2 0.98, eps 1e-6, no bias correction)
# --------------------------------------------------------------------------------------------

G1 = [1.0, -1.0, 2.0]
G2 = [0.5, 0.5, -1.0]
# after G1: m = 0.1 g1, v = 0.02 g1^2; after G2: m = 0.9 m + 0.1 g2, v = 0.98 v + 0.02 g2^2
M1, V1 = [0.1, -0.1, 0.2], [0.02, 0.02, 0.08]
M2, V2 = [0.14, -0.04, 0.08], [0.0246, 0.0246, 0.0984]
# these hand-worked moments are for unclipped gradients (|G1| = sqrt 6): the tests below turn off
# BertAdam's per-tensor clipping (default 1.0, as the reference), see tests/test_bertadam_clipping.py


def run_steps(param: torch.Tensor, opt: torch.optim.Optimizer, grads: list[list[float]],
              sched: torch.optim.lr_scheduler.LRScheduler | None = None) -> None:
    for g in grads:
        param.grad = torch.tensor(g, dtype=param.dtype)
        opt.step()
        if sched is not None:
            sched.step()


def test_bertadam_two_steps_without_bias_correction() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = BertAdam([p], lr=0.1, max_grad_norm=None)
    run_steps(p, opt, [G1, G2])
    p1 = [x - 0.1 * m / (math.sqrt(v) + 1e-6) for x, m, v in zip([1.0, -2.0, 0.5], M1, V1)]
    p2 = [x - 0.1 * m / (math.sqrt(v) + 1e-6) for x, m, v in zip(p1, M2, V2)]
    # first update is ~0.0707 per element (Adam with bias correction would move ~0.1)
    assert p1[0] == pytest.approx(1.0 - 0.070710178, abs=1e-8)
    torch.testing.assert_close(p.detach(), torch.tensor(p2, dtype=torch.float64))
    torch.testing.assert_close(opt.state[p]["exp_avg"], torch.tensor(M2, dtype=torch.float64))
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], torch.tensor(V2, dtype=torch.float64))
    assert opt.state[p]["step"] == 2


def test_bertadam_weight_decay_is_added_to_the_update() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = BertAdam([p], lr=0.1, weight_decay=0.2, max_grad_norm=None)
    run_steps(p, opt, [G1, G2])
    p1 = [x - 0.1 * (m / (math.sqrt(v) + 1e-6) + 0.2 * x) for x, m, v in zip([1.0, -2.0, 0.5], M1, V1)]
    p2 = [x - 0.1 * (m / (math.sqrt(v) + 1e-6) + 0.2 * x) for x, m, v in zip(p1, M2, V2)]
    assert p1[0] == pytest.approx(1.0 - 0.070710178 - 0.02, abs=1e-8)
    torch.testing.assert_close(p.detach(), torch.tensor(p2, dtype=torch.float64))


def test_bertadam_first_step_under_reference_cosine_only_fills_moments() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = BertAdam([p], lr=0.1, max_grad_norm=None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule_lambda("reference-cosine", 10, 0.1))
    run_steps(p, opt, [G1], sched)
    assert p.tolist() == [1.0, -2.0, 0.5]
    torch.testing.assert_close(opt.state[p]["exp_avg"], torch.tensor(M1, dtype=torch.float64))
    # second update: x = 1/10 = warm-up end -> 0.5 (1 + cos 0.1 pi)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(0.1 * math.pi)))


def test_bertadam_moments_keep_the_parameter_dtype() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16))
    opt = BertAdam([p], lr=0.1)
    run_steps(p, opt, [G1])
    assert opt.state[p]["exp_avg"].dtype == torch.float16
    assert opt.state[p]["exp_avg_sq"].dtype == torch.float16


def test_bertadam_per_tensor_clipping_scales_the_gradient_to_norm_one() -> None:
    p = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = BertAdam([p], lr=0.1, max_grad_norm=1.0)
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)  # norm 5 -> [0.6, 0.8]
    opt.step()
    torch.testing.assert_close(opt.state[p]["exp_avg"], torch.tensor([0.06, 0.08], dtype=torch.float64),
                               rtol=1e-6, atol=0.0)


def through_file(state: dict) -> dict:
    """Save and reload, as a checkpoint does (a live state_dict shares its tensors with the optimiser)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def test_bertadam_state_dict_round_trip_continues_identically() -> None:
    start = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    a = nn.Parameter(start.clone())
    opt_a = BertAdam([{"params": [a], "weight_decay": 0.2}], lr=0.1)
    sched_a = torch.optim.lr_scheduler.LambdaLR(opt_a, schedule_lambda("reference-cosine", 10, 0.1))
    run_steps(a, opt_a, [G1, G2], sched_a)

    b = nn.Parameter(a.detach().clone())
    opt_b = BertAdam([{"params": [b], "weight_decay": 0.2}], lr=0.1)
    sched_b = torch.optim.lr_scheduler.LambdaLR(opt_b, schedule_lambda("reference-cosine", 10, 0.1))
    opt_b.load_state_dict(through_file(opt_a.state_dict()))
    sched_b.load_state_dict(through_file(sched_a.state_dict()))

    run_steps(a, opt_a, [[0.3, -0.7, 0.1]], sched_a)
    run_steps(b, opt_b, [[0.3, -0.7, 0.1]], sched_b)
    assert torch.equal(a, b)
    assert not torch.equal(a.detach(), start)
    assert opt_b.state[b]["step"] == 3


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------

def test_reference_cosine_uses_global_progress_and_jumps_at_warmup_end() -> None:
    assert warmup_cosine_reference(0.0, 0.1) == 0.0
    assert warmup_cosine_reference(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_cosine_reference(0.1, 0.1) == pytest.approx(0.97553, abs=1e-5)
    assert warmup_cosine_reference(0.5, 0.1) == pytest.approx(0.5)
    assert warmup_cosine_reference(1.0, 0.1) == pytest.approx(0.0)


def test_clean_cosine_decays_over_the_remaining_progress() -> None:
    assert warmup_cosine(0.0, 0.1) == 0.0
    assert warmup_cosine(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(0.1, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(0.325, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))  # a quarter: 0.85355
    assert warmup_cosine(0.55, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(1.0, 0.1) == pytest.approx(0.0)
    assert warmup_cosine(1.5, 0.1) == pytest.approx(0.0)  # stays at 0 past the end
    assert warmup_cosine(0.0, 0.0) == 1.0


def test_reference_linear_values() -> None:
    assert warmup_linear_reference(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_linear_reference(0.1, 0.1) == pytest.approx(1.0)
    assert warmup_linear_reference(0.55, 0.1) == pytest.approx(0.5)   # -0.45 / -0.9
    assert warmup_linear_reference(1.0, 0.1) == 0.0
    assert warmup_linear_reference(1.2, 0.1) == 0.0


def test_constant_schedule() -> None:
    assert SCHEDULES["constant"](0.05, 0.1) == pytest.approx(0.5)
    assert SCHEDULES["constant"](0.5, 0.1) == 1.0
    assert SCHEDULES["constant"](0.0, 0.0) == 1.0


def test_schedule_lambda_evaluates_progress_before_the_update() -> None:
    f = schedule_lambda("reference-cosine", 10, 0.1)
    assert f(0) == 0.0
    assert f(1) == pytest.approx(0.97553, abs=1e-5)
    assert f(5) == pytest.approx(0.5)


def test_schedule_lambda_unknown_name_lists_choices() -> None:
    with pytest.raises(C4CError, match="reference-cosine"):
        schedule_lambda("warmup_cosine", 10, 0.1)


# --------------------------------------------------------------------------------------------
# make_optimizer
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "kind"), [("adamw", torch.optim.AdamW), ("bertadam", BertAdam)])
def test_make_optimizer_types_and_group_lrs(name: str, kind: type) -> None:
    opt, sched = make_optimizer(FakeModel(), optimizer=name, lr=1e-4, coef_lr=1e-3, total_steps=20,
                                schedule="cosine", warmup=0.1)
    assert isinstance(opt, kind)
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
    base = {g["name"]: g["initial_lr"] for g in opt.param_groups}
    assert base["clip_decay"] == pytest.approx(1e-7) and base["new_decay"] == pytest.approx(1e-4)
    # update 0 under a 2-step warm-up: half the lr (c4c's schedules learn from the first update)
    assert all(g["lr"] == pytest.approx(0.5 * g["initial_lr"]) for g in opt.param_groups)
    assert opt.param_groups[0]["betas"] == (0.9, 0.98) and opt.param_groups[0]["eps"] == 1e-6


def test_make_optimizer_scheduler_multipliers_follow_the_schedule() -> None:
    model = FakeModel()
    opt, sched = make_optimizer(model, optimizer="bertadam", lr=1e-4, coef_lr=1.0, total_steps=20,
                                schedule="cosine", warmup=0.1)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"] / 1e-4)
        opt.step()  # no gradients: nothing moves
        sched.step()
    # c4c's cosine looks at the progress after the update: x = 0.05, 0.1, 0.15, 0.2 with warm-up 0.1:
    # 0.5, 1, then the cosine over the remaining 0.9
    assert seen == pytest.approx([0.5, 1.0, 0.5 * (1 + math.cos(math.pi * 0.05 / 0.9)),
                                  0.5 * (1 + math.cos(math.pi * 0.1 / 0.9))])


def test_make_optimizer_unknown_names_raise() -> None:
    with pytest.raises(C4CError, match="bertadam"):
        make_optimizer(FakeModel(), optimizer="sgd", total_steps=10)
    with pytest.raises(C4CError):
        make_optimizer(FakeModel(), schedule="linear", total_steps=10)


def test_make_optimizer_without_trainable_parameters_raises() -> None:
    model = FakeModel()
    model.requires_grad_(False)
    with pytest.raises(C4CError):
        make_optimizer(model, total_steps=10)


def test_make_optimizer_fuses_adamw_with_the_same_update_as_the_loop() -> None:
    torch.manual_seed(0)
    model = FakeModel()
    reference = FakeModel()
    reference.load_state_dict(model.state_dict())
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt, _ = make_optimizer(model, optimizer="adamw", lr=1e-2, coef_lr=0.5, total_steps=10, warmup=0.0,
                            schedule="constant")
    assert opt.defaults.get("fused") is True  # torch >= 2.4 fuses AdamW on the CPU
    loop = torch.optim.AdamW(param_groups(reference, 1e-2, 0.5), lr=1e-2, betas=(0.9, 0.98), eps=1e-6,
                             weight_decay=0.2, foreach=False)
    for step in range(3):
        for m in (model, reference):
            g = torch.Generator().manual_seed(step)
            for p in m.parameters():
                p.grad = torch.randn(p.shape, generator=g)
        opt.step()
        loop.step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), name
        assert not torch.equal(a, start[name]) or not a.requires_grad, name  # trainable tensors moved


def test_c4c_schedules_learn_from_the_first_update_and_reference_ones_do_not() -> None:
    for name in ("cosine", "constant"):
        f = schedule_lambda(name, 10, 0.1)
        assert f(0) == pytest.approx(1.0)  # warm-up of one step: the first update has the full lr
        assert f(9) == pytest.approx(0.0 if name == "cosine" else 1.0, abs=1e-12)
    g = schedule_lambda("cosine", 100, 0.1)
    assert g(0) == pytest.approx(0.1) and g(4) == pytest.approx(0.5)
    assert schedule_lambda("reference-cosine", 10, 0.1)(0) == 0.0
