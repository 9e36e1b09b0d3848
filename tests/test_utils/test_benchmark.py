"""Benchmark helpers: FLOP counts, timing, memory and the training step."""
import math
import time

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from saip_test_utils import tiny_saip_model_cfg
from torch.utils.flop_counter import FlopCounterMode

import mmsaip  # noqa: F401
from mmsaip.utils.benchmark import (PeakMemory, TrainStep, count_flops,
                                    measure_matmul_rate, time_call,
                                    vit_forward_flops)

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')


def build_vit_tiny(img_size=(256, 128)):
    backbone = MODELS.build(
        dict(type='SAIPViT', arch='deit-tiny', img_size=img_size))
    backbone.eval()
    return backbone


def test_hand_count_vit_tiny_256x128():
    backbone = build_vit_tiny()
    images = torch.randn(1, 3, 256, 128)
    with torch.no_grad():
        _, counted = count_flops(lambda: backbone.forward_views(images))
    by_hand = vit_forward_flops((256, 128))
    # 128 patches + the class token, 12 blocks of width 192.
    assert by_hand['attention'] == 12 * 2 * 2 * 129 * 129 * 192
    assert by_hand['total'] == sum(
        value for key, value in by_hand.items() if key != 'total')
    assert counted / by_hand['total'] == pytest.approx(1., rel=0.02)


def test_count_flops_includes_cpu_attention():
    # torch's own table lacks the CPU attention kernel: without the extra
    # formulas exactly the attention products go uncounted.
    backbone = build_vit_tiny()
    images = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        _, counted = count_flops(lambda: backbone.forward_views(images))
        with FlopCounterMode(display=False) as plain:
            backbone.forward_views(images)
    by_hand = vit_forward_flops((256, 128), batch_size=2)
    assert counted == by_hand['total']
    assert counted - plain.get_total_flops() == by_hand['attention']


def test_count_flops_attention_backward():
    batch, heads, length, dims = 2, 3, 10, 8
    query = torch.randn(batch, heads, length, dims, requires_grad=True)
    key = torch.randn(batch, heads, length, dims, requires_grad=True)
    value = torch.randn(batch, heads, length, dims, requires_grad=True)

    def forward_backward():
        F.scaled_dot_product_attention(query, key, value).sum().backward()

    _, counted = count_flops(forward_backward)
    product = 2 * batch * heads * length * length * dims
    # Forward: Q K^T and the weighted sum. Backward: the scores again and
    # the gradients of the weights, V, Q and K.
    assert counted == 2 * product + 5 * product


def test_time_call_runs_warmup_and_iters():
    calls = []
    seconds = time_call(lambda: calls.append(time.sleep(0.01)), iters=3,
                        warmup=2)
    assert len(calls) == 5
    assert len(seconds) == 3
    assert all(value >= 0.009 for value in seconds)
    with pytest.raises(ValueError, match='iters'):
        time_call(lambda: None, iters=0)


def test_time_call_before_each_untimed():
    order = []
    seconds = time_call(lambda: order.append('call'), iters=2, warmup=1,
                        before_each=lambda: order.append(time.sleep(0.05)))
    # Not before the warm-up call, once before each timed call.
    assert order == ['call', None, 'call', None, 'call']
    assert len(seconds) == 2
    assert all(value < 0.04 for value in seconds)


def test_measure_matmul_rate_positive():
    rate = measure_matmul_rate(size=128, iters=2, warmup=1)
    assert math.isfinite(rate)
    assert rate > 1e6


def test_peak_memory_sees_allocation():
    with PeakMemory(torch.device('cpu')) as memory:
        baseline = memory.peak_bytes
        block = torch.ones(64, 2**20)  # 256 MiB, written so it is resident
        time.sleep(0.1)
        del block
    assert memory.source == 'sampled_rss'
    assert memory.peak_bytes - baseline >= 200 * 2**20


@pytest.mark.parametrize('amp', ['none', 'bf16'])
def test_train_step_updates_student_and_teacher(amp):
    model = MODELS.build(tiny_saip_model_cfg())
    model.init_weights()
    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        global_views=torch.randn(2, 2, 3, 64, 32, generator=generator),
        local_views=torch.randn(2, 2, 3, 32, 16, generator=generator),
        roi_view=torch.randn(2, 3, 32, 16, generator=generator),
        region_view=torch.randn(2, 3, 32, 16, generator=generator),
        canvas=torch.randn(2, 3, 56, 56, generator=generator),
        inst_mask=torch.rand(2, 56, 56, generator=generator) > 0.5,
        roi_mask=torch.rand(2, 56, 56, generator=generator) > 0.5)
    student_before = model.backbone.cls_token.detach().clone()
    teacher = model.teacher.module['backbone']
    teacher_before = teacher.cls_token.detach().clone()

    step = TrainStep(model, optimizer,
                     lambda batch: model(batch, mode='loss'), amp)
    loss = step(inputs)

    assert torch.isfinite(loss)
    assert not loss.requires_grad
    assert not torch.equal(model.backbone.cls_token, student_before)
    assert not torch.equal(teacher.cls_token, teacher_before)
    assert all(param.grad is None for param in model.parameters())


def test_train_step_invalid_amp():
    model = MODELS.build(tiny_saip_model_cfg())
    optimizer = torch.optim.SGD(model.backbone.parameters(), lr=0.1)
    with pytest.raises(ValueError, match='amp'):
        TrainStep(model, optimizer, lambda batch: {}, amp='fp8')
