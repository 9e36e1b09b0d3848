"""Optimizer wrappers that skip non-finite steps."""
from typing import Optional

import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import OPTIM_WRAPPERS

import mmsaip  # noqa: F401
from mmsaip.engine.optimizers import NonFiniteLossError


def build_wrapper(wrapper_type: str, model: nn.Module,
                  adamw_kwargs: Optional[dict] = None, **kwargs):
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=0.1, **(adamw_kwargs or {}))
    return OPTIM_WRAPPERS.build(
        dict(type=wrapper_type, optimizer=optimizer, **kwargs))


def snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize('wrapper_type',
                         ['SAIPOptimWrapper', 'SAIPAmpOptimWrapper'])
def test_wrapper_finite_step_applied(wrapper_type):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    wrapper = build_wrapper(wrapper_type, model)
    before = snapshot(model)
    loss = model(torch.randn(3, 4)).pow(2).mean()
    wrapper.update_params(loss)
    assert wrapper.last_step_applied
    assert not torch.equal(model.weight, before['weight'])
    assert wrapper.num_nonfinite_steps == 0


@pytest.mark.parametrize('wrapper_type',
                         ['SAIPOptimWrapper', 'SAIPAmpOptimWrapper'])
def test_wrapper_nan_loss_skipped(wrapper_type):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    wrapper = build_wrapper(wrapper_type, model)
    before = snapshot(model)
    loss = model(torch.randn(3, 4)).sum() * float('nan')
    wrapper.update_params(loss)
    assert not wrapper.last_step_applied
    assert_unchanged(model, before)
    # No backward ran and no optimizer state was created.
    assert model.weight.grad is None
    assert len(wrapper.optimizer.state) == 0
    assert wrapper.num_nonfinite_steps == 1
    assert wrapper.consecutive_nonfinite_steps == 1

    wrapper.update_params(model(torch.randn(3, 4)).pow(2).mean())
    assert wrapper.last_step_applied
    assert wrapper.consecutive_nonfinite_steps == 0
    assert wrapper.num_nonfinite_steps == 1


def test_wrapper_consecutive_limit_raises():
    model = nn.Linear(4, 2)
    wrapper = build_wrapper(
        'SAIPOptimWrapper', model, max_consecutive_nonfinite=3)
    bad = torch.tensor(float('inf'), requires_grad=True)
    wrapper.update_params(bad)
    wrapper.update_params(bad)
    with pytest.raises(NonFiniteLossError, match='3 consecutive steps'):
        wrapper.update_params(bad)


def test_wrapper_invalid_limit():
    with pytest.raises(ValueError, match='max_consecutive_nonfinite'):
        build_wrapper(
            'SAIPOptimWrapper', nn.Linear(2, 2), max_consecutive_nonfinite=0)


# The configs use the fused AdamW; the scaler hands it the scale and the
# inf flags instead of unscaling the gradients itself.
ADAMW_IMPLEMENTATIONS = [dict(), dict(foreach=True), dict(fused=True)]


@pytest.mark.parametrize('adamw_kwargs', ADAMW_IMPLEMENTATIONS)
def test_amp_wrapper_cpu_scaler_skips_inf_grad(adamw_kwargs):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    wrapper = build_wrapper('SAIPAmpOptimWrapper', model, adamw_kwargs)
    assert wrapper.device_type == ('cuda'
                                   if torch.cuda.is_available() else 'cpu')
    scale_before = wrapper.loss_scaler.get_scale()
    before = snapshot(model)
    # A finite loss whose gradient overflows: the scaler must skip it.
    hook = model.weight.register_hook(lambda grad: grad * float('inf'))
    wrapper.update_params(model(torch.randn(3, 4)).pow(2).mean())
    hook.remove()
    assert not wrapper.last_step_applied
    assert_unchanged(model, before)
    assert wrapper.loss_scaler.get_scale() < scale_before
    assert wrapper.num_nonfinite_steps == 0

    wrapper.update_params(model(torch.randn(3, 4)).pow(2).mean())
    assert wrapper.last_step_applied
    assert not torch.equal(model.weight, before['weight'])


def test_wrapper_accumulation_reports_boundary():
    model = nn.Linear(4, 2)
    wrapper = build_wrapper('SAIPOptimWrapper', model, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 4)
    applied = []
    for _ in range(4):
        wrapper.update_params(model(torch.randn(3, 4)).pow(2).mean())
        applied.append(wrapper.last_step_applied)
    assert applied == [False, True, False, True]


@pytest.mark.parametrize('adamw_kwargs', ADAMW_IMPLEMENTATIONS)
def test_amp_wrapper_step_matches_plain_adamw(adamw_kwargs):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    plain_model = nn.Linear(4, 2)
    plain_model.load_state_dict(model.state_dict())
    wrapper = build_wrapper('SAIPAmpOptimWrapper', model, adamw_kwargs)
    plain = torch.optim.AdamW(plain_model.parameters(), lr=0.1)
    for _ in range(3):
        inputs = torch.randn(3, 4)
        wrapper.update_params(model(inputs).pow(2).mean())
        assert wrapper.last_step_applied
        plain_model(inputs).pow(2).mean().backward()
        plain.step()
        plain.zero_grad()
    # The loss scale (65536) is divided out before the update.
    for ours, expected in zip(model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
