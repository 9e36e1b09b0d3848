import math

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from mmsaip.models.backbones import AttentionMaps
from mmsaip.models.losses import AttentionDistillLoss

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')


def random_maps(batch: int = 2, heads: int = 2,
                length: int = 5) -> AttentionMaps:
    shape = (batch, heads, length, length)
    return AttentionMaps(
        torch.randn(shape).softmax(dim=-1),
        torch.randn(shape).softmax(dim=-1))


def kl_by_hand(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) summed over keys, averaged over batch, heads
    and queries, through F.kl_div."""
    batch, heads, queries, _ = teacher.shape
    total = F.kl_div(student.log(), teacher, reduction='sum')
    return total / (batch * heads * queries)


def test_attention_distill_build_from_registry():
    loss = MODELS.build(dict(type='AttentionDistillLoss'))
    assert isinstance(loss, AttentionDistillLoss)
    assert loss.eps == 1e-10
    assert loss.loss_weight == 1.0


def test_attention_distill_identical_maps_zero():
    loss = MODELS.build(dict(type='AttentionDistillLoss'))
    maps = [random_maps(), random_maps()]
    copies = [AttentionMaps(m.query_key.clone(), m.value_value.clone())
              for m in maps]
    value = loss(maps, copies)
    assert value.shape == ()
    assert value.item() == 0.


def test_attention_distill_small_example():
    # One sample, one head and two queries. The value-value maps agree.
    teacher_qk = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])
    student_qk = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    same_vv = torch.tensor([[[[0.3, 0.7], [0.6, 0.4]]]])
    loss = MODELS.build(dict(type='AttentionDistillLoss'))
    value = loss([AttentionMaps(student_qk, same_vv)],
                 [AttentionMaps(teacher_qk, same_vv)])
    # Query 0: 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.75) = 0.5 ln(4 / 3).
    # Query 1: 1.0 ln(1.0 / 0.5) = ln 2. The zero teacher entry adds 0.
    expected = (0.5 * math.log(4 / 3) + math.log(2)) / 2
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_attention_distill_by_hand():
    student = [random_maps(), random_maps()]
    teacher = [random_maps(), random_maps()]
    loss = MODELS.build(dict(type='AttentionDistillLoss'))
    value = loss(student, teacher)

    per_view = [
        kl_by_hand(t.query_key, s.query_key) +
        kl_by_hand(t.value_value, s.value_value)
        for s, t in zip(student, teacher)
    ]
    expected = sum(per_view) / 2
    assert value.item() > 0
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-5)


def test_attention_distill_direction():
    # KL is not symmetric: swapping the roles changes the value.
    first, second = random_maps(), random_maps()
    loss = MODELS.build(dict(type='AttentionDistillLoss'))
    forward = loss([first], [second])
    expected = kl_by_hand(second.query_key, first.query_key) + \
        kl_by_hand(second.value_value, first.value_value)
    torch.testing.assert_close(forward, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(forward, loss([second], [first]))


def test_attention_distill_loss_weight():
    student, teacher = [random_maps()], [random_maps()]
    plain = MODELS.build(dict(type='AttentionDistillLoss'))(student, teacher)
    weighted = MODELS.build(dict(type='AttentionDistillLoss',
                                 loss_weight=0.5))(student, teacher)
    torch.testing.assert_close(weighted, 0.5 * plain, atol=1e-7, rtol=0)


def test_attention_distill_zero_student_entry_finite():
    teacher_qk = torch.tensor([[[[0.5, 0.5]]]])
    student_qk = torch.tensor([[[[1.0, 0.0]]]], requires_grad=True)
    same_vv = torch.tensor([[[[0.5, 0.5]]]])
    loss = MODELS.build(dict(type='AttentionDistillLoss'))
    value = loss([AttentionMaps(student_qk, same_vv)],
                 [AttentionMaps(teacher_qk, same_vv)])
    # 0.5 ln(0.5 / 1) + 0.5 ln(0.5 / 1e-10), to within eps.
    expected = 0.5 * math.log(0.5) + 0.5 * math.log(0.5 / 1e-10)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(student_qk.grad).all()


@pytest.mark.parametrize('num_student, num_teacher', [(1, 2), (0, 0)])
def test_attention_distill_view_mismatch(num_student, num_teacher):
    loss = MODELS.build(dict(type='AttentionDistillLoss'))
    with pytest.raises(ValueError):
        loss([random_maps() for _ in range(num_student)],
             [random_maps() for _ in range(num_teacher)])
