"""Collapse warning for the CSM loss."""
import math
from types import SimpleNamespace

import pytest
import torch
from mmpretrain.registry import HOOKS, MODELS

import mmsaip  # noqa: F401


class RecordingLogger:

    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)


def make_runner(out_channels=64, loss_weight=2.0):
    head = MODELS.build(
        dict(type='CSMHead', out_channels=out_channels,
             loss_weight=loss_weight))
    model = SimpleNamespace(csm_head=head)
    return SimpleNamespace(model=model, logger=RecordingLogger())


def feed(hook, runner, cross_entropy, times, loss_weight=2.0):
    for _ in range(times):
        outputs = dict(loss_csm=torch.tensor(cross_entropy * loss_weight))
        hook.after_train_iter(runner, 0, outputs=outputs)


def test_collapse_warns_after_patience():
    hook = HOOKS.build(
        dict(type='CSMCollapseHook', patience=5, tolerance=0.01))
    runner = make_runner()
    uniform = math.log(64)
    feed(hook, runner, uniform + 0.005, 4)
    assert runner.logger.warnings == []
    feed(hook, runner, uniform - 0.005, 1)
    assert len(runner.logger.warnings) == 1
    assert 'ln(K) = 4.1589' in runner.logger.warnings[0]
    # No repeat while the loss stays in the band.
    feed(hook, runner, uniform, 20)
    assert len(runner.logger.warnings) == 1


def test_collapse_resets_outside_band():
    hook = HOOKS.build(
        dict(type='CSMCollapseHook', patience=3, tolerance=0.01))
    runner = make_runner()
    uniform = math.log(64)
    feed(hook, runner, uniform, 2)
    feed(hook, runner, uniform - 0.5, 1)
    feed(hook, runner, uniform, 2)
    assert runner.logger.warnings == []
    feed(hook, runner, uniform, 1)
    assert len(runner.logger.warnings) == 1
    # Leaving the band re-arms the warning.
    feed(hook, runner, 1.0, 1)
    feed(hook, runner, uniform, 3)
    assert len(runner.logger.warnings) == 2


def test_collapse_hook_invalid_args():
    with pytest.raises(ValueError, match='patience'):
        HOOKS.build(dict(type='CSMCollapseHook', patience=0))
    with pytest.raises(ValueError, match='tolerance'):
        HOOKS.build(dict(type='CSMCollapseHook', tolerance=0.))
