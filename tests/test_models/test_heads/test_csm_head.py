import math

import pytest
import torch
from mmpretrain.registry import MODELS

from mmsaip.models.heads import CSMHead

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')

NUM_PROTOTYPES = 8


def build_head(**kwargs) -> CSMHead:
    cfg = dict(type='CSMHead', out_channels=NUM_PROTOTYPES)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def cross_entropy_by_hand(student_logits, teacher_logits, center,
                          student_temp, teacher_temp):
    """Average CE over all pairs (teacher view i, student view v), v != i,
    written as plain loops over views and samples."""
    terms = []
    for i in range(teacher_logits.shape[0]):
        for v in range(student_logits.shape[0]):
            if v == i:
                continue
            for b in range(teacher_logits.shape[1]):
                # Shift by the maximum so that exp cannot overflow.
                sharpened = (teacher_logits[i, b] - center) / teacher_temp
                target = torch.exp(sharpened - sharpened.max())
                target = target / target.sum()
                scaled = student_logits[v, b] / student_temp
                scaled = scaled - scaled.max()
                log_prob = scaled - torch.log(torch.exp(scaled).sum())
                terms.append(-(target * log_prob).sum())
    return torch.stack(terms).mean()


def test_csm_head_build_from_registry():
    head = build_head()
    assert isinstance(head, CSMHead)
    assert head.center.shape == (1, NUM_PROTOTYPES)
    assert torch.count_nonzero(head.center) == 0
    assert 'center' in head.state_dict()


def test_csm_loss_by_hand():
    head = build_head()
    center = torch.randn(1, NUM_PROTOTYPES) * 0.1
    head.center.copy_(center)
    # 2 teacher views and 3 student views: 2 * 3 - 2 = 4 pairs.
    student_logits = torch.randn(3, 2, NUM_PROTOTYPES, requires_grad=True)
    teacher_logits = torch.randn(2, 2, NUM_PROTOTYPES)

    losses = head.loss(student_logits, teacher_logits)

    expected = cross_entropy_by_hand(student_logits.detach(), teacher_logits,
                                     center[0], 0.1, 0.04)
    assert set(losses) == {
        'loss_csm', 'csm_teacher_temp', 'csm_teacher_entropy'
    }
    assert losses['loss_csm'].shape == ()
    torch.testing.assert_close(
        losses['loss_csm'].detach(), expected, atol=1e-4, rtol=1e-5)
    assert losses['loss_csm'].requires_grad
    assert not losses['csm_teacher_temp'].requires_grad
    assert not losses['csm_teacher_entropy'].requires_grad

    losses['loss_csm'].backward()
    assert torch.isfinite(student_logits.grad).all()
    assert student_logits.grad.abs().sum() > 0


def test_csm_loss_skips_same_view_pairs():
    # One teacher view: student view 0 is the teacher's own view, so it is
    # in no pair and changing it leaves the loss unchanged.
    head = build_head()
    teacher_logits = torch.randn(1, 2, NUM_PROTOTYPES)
    student_logits = torch.randn(3, 2, NUM_PROTOTYPES)
    loss = head.loss(student_logits, teacher_logits,
                     update_center=False)['loss_csm']

    same_view_changed = student_logits.clone()
    same_view_changed[0] = torch.randn(2, NUM_PROTOTYPES)
    other_view_changed = student_logits.clone()
    other_view_changed[2] = torch.randn(2, NUM_PROTOTYPES)

    assert torch.equal(
        head.loss(same_view_changed, teacher_logits,
                  update_center=False)['loss_csm'], loss)
    assert not torch.allclose(
        head.loss(other_view_changed, teacher_logits,
                  update_center=False)['loss_csm'], loss)


def test_csm_loss_weight():
    student_logits = torch.randn(3, 2, NUM_PROTOTYPES)
    teacher_logits = torch.randn(2, 2, NUM_PROTOTYPES)
    plain = build_head().loss(student_logits, teacher_logits)['loss_csm']
    weighted = build_head(loss_weight=2.5).loss(student_logits,
                                                teacher_logits)['loss_csm']
    torch.testing.assert_close(weighted, 2.5 * plain, atol=1e-5, rtol=0)


def test_csm_center_update():
    head = build_head()
    old_center = torch.randn(1, NUM_PROTOTYPES)
    head.center.copy_(old_center)
    teacher_logits = torch.randn(2, 3, NUM_PROTOTYPES)

    head.loss(torch.randn(4, 3, NUM_PROTOTYPES), teacher_logits)

    batch_mean = sum(teacher_logits[i, b] for i in range(2)
                     for b in range(3)) / 6
    expected = 0.9 * old_center + 0.1 * batch_mean
    torch.testing.assert_close(head.center, expected, atol=1e-6, rtol=0)


def test_csm_center_update_off():
    head = build_head()
    head.loss(
        torch.randn(3, 2, NUM_PROTOTYPES),
        torch.randn(2, 2, NUM_PROTOTYPES),
        update_center=False)
    assert torch.count_nonzero(head.center) == 0


def test_csm_loss_uses_old_center():
    head = build_head()
    student_logits = torch.randn(3, 2, NUM_PROTOTYPES)
    teacher_logits = torch.randn(2, 2, NUM_PROTOTYPES) + 5.
    loss = head.loss(student_logits, teacher_logits)['loss_csm']
    # The centre was zero when the loss was computed.
    expected = cross_entropy_by_hand(student_logits, teacher_logits,
                                     torch.zeros(NUM_PROTOTYPES), 0.1, 0.04)
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)


def test_csm_teacher_temp_constant_by_default():
    head = build_head()
    assert head.teacher_temperature(0.) == pytest.approx(0.04)
    assert head.teacher_temperature(250.) == pytest.approx(0.04)


def test_csm_teacher_temp_warmup():
    head = build_head(
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        teacher_temp_warmup_epochs=10)
    assert head.teacher_temperature(0.) == pytest.approx(0.04)
    assert head.teacher_temperature(5.) == pytest.approx(0.055)
    assert head.teacher_temperature(7.5) == pytest.approx(0.0625)
    assert head.teacher_temperature(10.) == pytest.approx(0.07)
    assert head.teacher_temperature(30.) == pytest.approx(0.07)

    student_logits = torch.randn(3, 2, NUM_PROTOTYPES)
    teacher_logits = torch.randn(2, 2, NUM_PROTOTYPES)
    losses = head.loss(student_logits, teacher_logits, epoch=5.)
    expected = cross_entropy_by_hand(student_logits, teacher_logits,
                                     torch.zeros(NUM_PROTOTYPES), 0.1, 0.055)
    assert losses['csm_teacher_temp'].item() == pytest.approx(0.055)
    torch.testing.assert_close(
        losses['loss_csm'], expected, atol=1e-4, rtol=1e-5)


def test_csm_teacher_entropy_by_hand():
    head = build_head()
    teacher_logits = torch.randn(2, 2, NUM_PROTOTYPES) * 0.05
    losses = head.loss(torch.randn(3, 2, NUM_PROTOTYPES), teacher_logits)

    entropies = []
    for i in range(2):
        for b in range(2):
            probs = torch.softmax(teacher_logits[i, b] / 0.04, dim=0)
            entropies.append(-(probs * probs.log()).sum())
    expected = torch.stack(entropies).mean()
    torch.testing.assert_close(
        losses['csm_teacher_entropy'], expected, atol=1e-5, rtol=0)


def test_csm_teacher_entropy_limits():
    head = build_head()
    uniform = head.loss(
        torch.randn(3, 2, NUM_PROTOTYPES),
        torch.zeros(2, 2, NUM_PROTOTYPES),
        update_center=False)
    assert uniform['csm_teacher_entropy'].item() == pytest.approx(
        math.log(NUM_PROTOTYPES), abs=1e-5)
    assert head.uniform_loss(NUM_PROTOTYPES) == pytest.approx(
        math.log(NUM_PROTOTYPES))

    peaked_logits = torch.zeros(2, 2, NUM_PROTOTYPES)
    peaked_logits[..., 3] = 10.
    peaked = head.loss(
        torch.randn(3, 2, NUM_PROTOTYPES), peaked_logits,
        update_center=False)
    assert peaked['csm_teacher_entropy'].item() < 1e-6


@pytest.mark.parametrize('num_student, num_teacher', [(1, 2), (1, 1)])
def test_csm_loss_too_few_student_views(num_student, num_teacher):
    head = build_head()
    with pytest.raises(ValueError):
        head.loss(
            torch.randn(num_student, 2, NUM_PROTOTYPES),
            torch.randn(num_teacher, 2, NUM_PROTOTYPES))


def test_csm_loss_equal_view_counts():
    # Two views each: the pairs (0, 1) and (1, 0) remain.
    head = build_head()
    student_logits = torch.randn(2, 2, NUM_PROTOTYPES)
    teacher_logits = torch.randn(2, 2, NUM_PROTOTYPES)
    loss = head.loss(student_logits, teacher_logits)['loss_csm']
    expected = cross_entropy_by_hand(student_logits, teacher_logits,
                                     torch.zeros(NUM_PROTOTYPES), 0.1, 0.04)
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('kwargs', [
    dict(student_temp=0.),
    dict(teacher_temp=-0.04),
    dict(warmup_teacher_temp=0.),
    dict(teacher_temp_warmup_epochs=-1),
    dict(center_momentum=1.),
    dict(center_momentum=-0.1),
])
def test_csm_head_invalid_args(kwargs):
    with pytest.raises(ValueError):
        build_head(**kwargs)
