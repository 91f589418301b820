"""BertAdam clips each tensor's gradient to norm 1.0 by itself, as the reference optimiser (spec 5.3),
so it is exact without the loop's global clip."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from c4c.train.optim import BertAdam, make_optimizer

B1, B2, EPS, LR, WD = 0.9, 0.98, 1e-6, 0.1, 0.2


def hand_written_bertadam(p: list[float], grads: list[list[float]], max_grad_norm: float) -> list[float]:
    """The reference's update written out: per-tensor clip (torch's rule norm + 1e-6), no bias correction."""
    m = [0.0] * len(p)
    v = [0.0] * len(p)
    for g in grads:
        norm = math.sqrt(sum(x * x for x in g))
        g = [x * min(1.0, max_grad_norm / (norm + 1e-6)) for x in g]
        m = [B1 * a + (1 - B1) * x for a, x in zip(m, g)]
        v = [B2 * a + (1 - B2) * x * x for a, x in zip(v, g)]
        p = [x - LR * (a / (math.sqrt(b) + EPS) + WD * x) for x, a, b in zip(p, m, v)]
    return p


# norms 5, 13 (clipped) and 0.5 (left alone)
GRADS = [[3.0, 4.0, 0.0], [0.0, -5.0, 12.0], [0.3, 0.0, -0.4]]
START = [1.0, -2.0, 0.5]


def _run(opt_kwargs: dict, grads=GRADS) -> tuple[nn.Parameter, BertAdam]:
    p = nn.Parameter(torch.tensor(START, dtype=torch.float64))
    opt = BertAdam([p], lr=LR, weight_decay=WD, **opt_kwargs)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)  # no global clip anywhere
        opt.step()
    return p, opt


def test_default_bertadam_matches_the_reference_update_with_per_tensor_clipping():
    p, opt = _run({})
    assert opt.defaults["max_grad_norm"] == 1.0
    expected = hand_written_bertadam(START, GRADS, 1.0)
    torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_per_tensor_clipping_is_in_place_on_the_gradient_as_the_reference():
    p, _ = _run({}, grads=[[0.0, -5.0, 12.0]])
    torch.testing.assert_close(p.grad, torch.tensor([0.0, -5.0, 12.0], dtype=torch.float64) / (13.0 + 1e-6))


def test_each_tensor_is_clipped_on_its_own_norm():
    a = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    b = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = BertAdam([a, b], lr=LR)
    a.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)   # norm 5 -> scaled to 1
    b.grad = torch.tensor([0.3, 0.4], dtype=torch.float64)   # norm 0.5 -> unchanged
    opt.step()
    torch.testing.assert_close(opt.state[a]["exp_avg"], torch.tensor([0.06, 0.08], dtype=torch.float64),
                               rtol=1e-5, atol=0.0)
    torch.testing.assert_close(opt.state[b]["exp_avg"], torch.tensor([0.03, 0.04], dtype=torch.float64))


@pytest.mark.parametrize("off", [None, -1, -1.0, 0])
def test_clipping_can_be_turned_off(off):
    p, _ = _run({"max_grad_norm": off})
    expected = hand_written_bertadam(START, GRADS, math.inf)
    torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_make_optimizer_gives_bertadam_the_reference_clip_unless_told_otherwise():
    model = nn.Linear(3, 2)
    opt, _ = make_optimizer(model, optimizer="bertadam", total_steps=10)
    assert {g["max_grad_norm"] for g in opt.param_groups} == {1.0}
    opt, _ = make_optimizer(model, optimizer="bertadam", total_steps=10, max_grad_norm=None)
    assert {g["max_grad_norm"] for g in opt.param_groups} == {None}


def test_an_optimizer_saved_without_the_setting_resumes_without_clipping():
    """Runs saved before BertAdam clipped by itself continue as they were trained."""
    p, opt = _run({"max_grad_norm": None}, grads=GRADS[:1])
    state = copy.deepcopy(opt.state_dict())  # a live state_dict shares its moments with opt
    for group in state["param_groups"]:
        del group["max_grad_norm"]
    q = nn.Parameter(p.detach().clone())
    resumed = BertAdam([q], lr=LR, weight_decay=WD)
    resumed.load_state_dict(state)
    for param, o in ((p, opt), (q, resumed)):
        param.grad = torch.tensor(GRADS[1], dtype=torch.float64)
        o.step()
    assert torch.equal(p, q)
