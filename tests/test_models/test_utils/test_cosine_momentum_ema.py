import math

import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from mmsaip.models.utils import CosineMomentumEMA

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')


def build_student() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def build_ema(student: nn.Module, **kwargs) -> CosineMomentumEMA:
    cfg = dict(
        type='CosineMomentumEMA',
        model=student,
        momentum=0.004,
        end_momentum=0.)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_ema_build_from_registry():
    student = build_student()
    ema = build_ema(student)
    assert isinstance(ema, CosineMomentumEMA)
    assert ema.module is not student
    for name, param in ema.module.named_parameters():
        assert not param.requires_grad
        assert torch.equal(param, student.state_dict()[name])


def test_momentum_at_global():
    ema = build_ema(build_student())
    assert ema.momentum_at(0, 100) == pytest.approx(0.004, abs=1e-12)
    assert ema.momentum_at(50, 100) == pytest.approx(0.002, abs=1e-12)
    # Last iteration: 0.004 * (1 + cos(0.99 * pi)) / 2, about 1e-6.
    last = 0.004 * (1. + math.cos(math.pi * 99 / 100)) / 2.
    assert ema.momentum_at(99, 100) == pytest.approx(last, rel=1e-9)
    assert ema.momentum_at(99, 100) < 1e-5
    # Past the end the schedule stays at end_momentum.
    assert ema.momentum_at(150, 100) == pytest.approx(0., abs=1e-12)


def test_momentum_at_end_value():
    ema = build_ema(build_student(), momentum=0.01, end_momentum=0.002)
    assert ema.momentum_at(0, 10) == pytest.approx(0.01, abs=1e-12)
    assert ema.momentum_at(5, 10) == pytest.approx(0.006, abs=1e-12)
    assert ema.momentum_at(10, 10) == pytest.approx(0.002, abs=1e-12)


def test_momentum_at_per_epoch_legacy():
    ema = build_ema(build_student(), momentum_indexing='per_epoch_legacy')
    # 10 epochs of 10 iterations: the schedule restarts at each epoch and
    # only covers the first tenth of the cosine.
    fifth = 0.004 * (1. + math.cos(math.pi * 5 / 100)) / 2.
    assert ema.momentum_at(0, 100, 10) == pytest.approx(0.004, abs=1e-12)
    assert ema.momentum_at(10, 100, 10) == pytest.approx(0.004, abs=1e-12)
    assert ema.momentum_at(90, 100, 10) == pytest.approx(0.004, abs=1e-12)
    assert ema.momentum_at(5, 100, 10) == pytest.approx(fifth, rel=1e-9)
    assert ema.momentum_at(55, 100, 10) == pytest.approx(fifth, rel=1e-9)
    assert ema.momentum_at(99, 100, 10) > 0.0039


def test_momentum_at_invalid_args():
    ema = build_ema(build_student())
    with pytest.raises(ValueError):
        ema.momentum_at(0, 0)
    legacy = build_ema(build_student(), momentum_indexing='per_epoch_legacy')
    with pytest.raises(ValueError):
        legacy.momentum_at(3, 100)


def test_update_parameters_two_steps():
    student = build_student()
    ema = build_ema(student)
    for momentum in (0.25, 0.5):
        # Move the student away from the teacher and change its buffers.
        with torch.no_grad():
            for param in student.parameters():
                param.add_(torch.randn_like(param))
        student.train()
        student(torch.randn(6, 3))
        teacher_before = {
            name: param.clone()
            for name, param in ema.module.named_parameters()
        }

        ema.update_parameters(student, momentum)

        student_params = dict(student.named_parameters())
        for name, param in ema.module.named_parameters():
            expected = (1 - momentum) * teacher_before[name] + \
                momentum * student_params[name]
            torch.testing.assert_close(
                param, expected, atol=1e-6, rtol=0, msg=name)
            assert not param.requires_grad
        for name, buffer in student.named_buffers():
            assert torch.equal(ema.module.state_dict()[name], buffer), name
    assert int(ema.steps) == 2


def test_update_parameters_zero_momentum_keeps_teacher():
    student = build_student()
    ema = build_ema(student)
    with torch.no_grad():
        for param in student.parameters():
            param.add_(1.)
    teacher_before = [param.clone() for param in ema.module.parameters()]
    ema.update_parameters(student, 0.)
    for before, param in zip(teacher_before, ema.module.parameters()):
        assert torch.equal(before, param)


def test_avg_func_not_used():
    ema = build_ema(build_student())
    with pytest.raises(NotImplementedError):
        ema.avg_func(torch.zeros(1), torch.ones(1), 0)


@pytest.mark.parametrize('kwargs', [
    dict(momentum_indexing='epoch'),
    dict(momentum=-0.1),
    dict(momentum=1.5),
    dict(end_momentum=2.),
])
def test_ema_invalid_args(kwargs):
    with pytest.raises(ValueError):
        build_ema(build_student(), **kwargs)
