"""SAIP algorithm on tiny shapes."""
import math

import pytest
import torch
from mmpretrain.registry import MODELS
from saip_reference import saip_losses_reference
from saip_test_utils import tiny_saip_model_cfg
from torch.utils._python_dispatch import TorchDispatchMode

import mmsaip  # noqa: F401

LOSS_KEYS = {
    'loss_csm', 'loss_csm_attn', 'loss_csr', 'loss_css_inst', 'loss_css_roi'
}
DIAGNOSTIC_KEYS = {
    'ema_momentum', 'csm_teacher_temp', 'csm_teacher_entropy',
    'css_inst_iou', 'css_roi_iou'
}


def make_batch(batch_size: int = 2, num_local: int = 2) -> dict:
    """Random uint8 views with two known pasted rectangles per canvas."""
    generator = torch.Generator().manual_seed(1)

    def images(*shape):
        return torch.randint(
            0, 256, shape, dtype=torch.uint8, generator=generator)

    samples = []
    for _ in range(batch_size):
        inst_mask = torch.zeros(56, 56, dtype=torch.bool)
        roi_mask = torch.zeros(56, 56, dtype=torch.bool)
        roi_mask[8:40, 0:16] = True
        inst_mask[16:48, 24:40] = True
        samples.append(
            dict(
                global_views=images(2, 3, 64, 32),
                local_views=images(num_local, 3, 32, 16),
                roi_view=images(3, 32, 16),
                region_view=images(3, 32, 16),
                canvas=images(3, 56, 56),
                inst_mask=inst_mask,
                roi_mask=roi_mask))
    return dict(inputs=samples, data_samples=None)


def build_model(**overrides):
    model = MODELS.build(tiny_saip_model_cfg(**overrides))
    model.init_weights()
    return model


def compute_losses(model, batch=None):
    data = model.data_preprocessor(batch or make_batch(), True)
    return model(**data, mode='loss')


def total_loss(losses: dict) -> torch.Tensor:
    return sum(value for key, value in losses.items() if 'loss' in key)


def test_saip_loss_keys(seeded):
    losses = compute_losses(build_model())
    assert set(losses) == LOSS_KEYS | DIAGNOSTIC_KEYS
    for key, value in losses.items():
        assert value.dim() == 0, key
        assert torch.isfinite(value), key
    for key in DIAGNOSTIC_KEYS:
        assert not losses[key].requires_grad, key


def test_saip_first_step_values(seeded):
    model = build_model()
    losses = compute_losses(model)
    # The teacher starts as an exact copy, so its attention maps equal the
    # student's and the distillation term is exactly zero.
    assert losses['loss_csm_attn'].item() == 0.
    # The centre starts at 0 and the teacher receives the same views: every
    # CSM pair is a cross-entropy between two distributions over K = 64
    # prototypes, bounded below by the teacher's entropy.
    assert 0. < losses['csm_teacher_entropy'].item() <= math.log(64) + 1e-5
    assert losses['loss_csm'].item() >= losses['csm_teacher_entropy'].item()
    assert losses['ema_momentum'].item() == pytest.approx(0.004)
    assert losses['csm_teacher_temp'].item() == pytest.approx(0.04)


def test_saip_gradients_student_only(seeded):
    model = build_model()
    total_loss(compute_losses(model)).backward()
    for name, param in model.named_parameters():
        if name.startswith('teacher.'):
            assert not param.requires_grad, name
            assert param.grad is None, name
        else:
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
    assert any(
        param.grad.abs().sum() > 0
        for name, param in model.backbone.named_parameters())


def test_saip_teacher_starts_as_copy(seeded):
    model = build_model()
    student = dict(model.backbone.named_parameters())
    for name, param in model.teacher.module['backbone'].named_parameters():
        assert torch.equal(param, student[name]), name


def test_saip_teacher_update_is_ema(seeded):
    model = build_model()
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1)
    total_loss(compute_losses(model)).backward()
    optimizer.step()

    teacher_before = {
        name: param.detach().clone()
        for name, param in model.teacher.module.named_parameters()
    }
    model.set_train_progress(cur_iter=5, max_iters=10, iters_per_epoch=5)
    momentum = model.update_teacher()
    # Half-way through the cosine from 0.004 to 0.
    assert momentum == pytest.approx(0.002)

    student = dict(model.backbone.named_parameters())
    student.update({
        f'neck.{name}': param
        for name, param in model.neck.named_parameters()
    })
    changed = 0
    for name, param in model.teacher.module.named_parameters():
        key = name[len('backbone.'):] if name.startswith('backbone.') \
            else name
        expected = (1 - momentum) * teacher_before[name] + \
            momentum * student[key]
        assert torch.allclose(param, expected, atol=1e-7), name
        changed += int(not torch.equal(param, teacher_before[name]))
    assert changed > 0


def test_saip_momentum_indexing_switch():
    global_model = build_model()
    legacy_model = build_model(
        teacher=dict(
            momentum=0.004,
            end_momentum=0.,
            momentum_indexing='per_epoch_legacy'))
    for model in (global_model, legacy_model):
        model.set_train_progress(cur_iter=15, max_iters=20,
                                 iters_per_epoch=5)
    expected_global = 0.004 * (math.cos(math.pi * 15 / 20) + 1) / 2
    assert global_model.teacher_momentum == pytest.approx(expected_global)
    # Iteration 15 is the first of epoch 3: the legacy schedule restarts.
    assert legacy_model.teacher_momentum == pytest.approx(0.004)


def test_saip_resize_mode_switch(seeded):
    images = torch.arange(2 * 3 * 32 * 16, dtype=torch.float32).view(
        2, 3, 32, 16)
    nearest = build_model(resize_mode='nearest').rescale(images, 0.75)
    bilinear = build_model(resize_mode='bilinear').rescale(images, 0.75)
    assert nearest.shape == bilinear.shape == (2, 3, 24, 12)
    # Nearest only copies input values; bilinear makes new ones.
    assert set(nearest.unique().tolist()) <= set(images.unique().tolist())
    assert not set(bilinear.unique().tolist()) <= set(
        images.unique().tolist())


@pytest.mark.parametrize('visible_count', ['from_mask', 'legacy_fixed'])
def test_saip_csr_visible_count_switch(seeded, visible_count):
    model = build_model(csr_visible_count=visible_count)
    seen = []
    original = model.backbone.forward_views

    def record(images, **kwargs):
        if kwargs.get('visible_ids') is not None:
            seen.append(kwargs)
        return original(images, **kwargs)

    model.backbone.forward_views = record
    losses = compute_losses(model)
    assert torch.isfinite(losses['loss_csr'])
    assert len(seen) == 1
    visible_ids = seen[0]['visible_ids']
    padding = seen[0]['visible_padding']
    # The CSR view is 80x40 with patch 8: a 10x5 grid of 50 patches.
    if visible_count == 'legacy_fixed':
        assert visible_ids.shape == (2, int(50 * 0.25))
        assert padding is None
    else:
        # 8 of 32 anchors kept; each kept anchor covers 1 or 2 rows and
        # columns of the 10x5 grid after nearest upsampling.
        counts = visible_ids.shape[1] - (padding.sum(1) if padding
                                         is not None else 0)
        assert (torch.as_tensor(counts) >= 8).all()


def test_saip_invalid_switches():
    with pytest.raises(ValueError, match='resize_mode'):
        build_model(resize_mode='area')
    with pytest.raises(ValueError, match='csr_visible_count'):
        build_model(csr_visible_count='all')
    with pytest.raises(ValueError, match='momentum_indexing'):
        build_model(teacher=dict(momentum_indexing='epoch'))


def test_saip_extract_feat_shape(seeded):
    model = build_model()
    model.backbone.out_type = 'cls_token'
    features = model(torch.randn(2, 3, 64, 32), mode='tensor')
    assert features[-1].shape == (2, 32)


def student_gradients(model) -> dict:
    """Clone and clear the gradients of the trainable parameters."""
    grads = {}
    for name, param in model.named_parameters():
        if param.grad is not None:
            grads[name] = param.grad.clone()
            param.grad = None
    return grads


@pytest.mark.parametrize('factors', [(0.75, 0.75), (0.75, 1.25)])
def test_saip_loss_matches_reference(seeded, factors):
    # The model skips work whose result is never read, and it batches the
    # rescaled views when they have one size. Losses and gradients must
    # equal those of the straightforward computation.
    model = build_model()
    inputs = model.data_preprocessor(make_batch(), True)['inputs']
    center = model.csm_head.center.clone()
    draws = iter(factors)
    model.draw_rescale_factor = lambda: next(draws)

    torch.manual_seed(3)
    losses = model.loss(inputs)
    total_loss(losses).backward()
    grads = student_gradients(model)

    model.csm_head.center.copy_(center)
    expected = saip_losses_reference(model, inputs, factors, mask_seed=3)
    total_loss(expected).backward()
    expected_grads = student_gradients(model)

    for key in LOSS_KEYS:
        torch.testing.assert_close(
            losses[key], expected[key], atol=1e-5, rtol=1e-5, msg=key)
    assert set(grads) == set(expected_grads)
    for name, grad in grads.items():
        torch.testing.assert_close(
            grad, expected_grads[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize('factors, num_passes', [((0.75, 0.75), 4),
                                                 ((0.75, 1.25), 5)])
def test_saip_equal_views_share_pass(seeded, factors, num_passes):
    model = build_model()
    draws = iter(factors)
    model.draw_rescale_factor = lambda: next(draws)
    batch_sizes = []
    original = model.backbone.forward_views

    def record(images, **kwargs):
        batch_sizes.append(images.shape[0])
        return original(images, **kwargs)

    model.backbone.forward_views = record
    compute_losses(model)
    # Global (2 views), local (2 views), rescaled views, masked view.
    assert len(batch_sizes) == num_passes
    if num_passes == 4:
        assert batch_sizes == [4, 4, 4, 2]
    else:
        assert batch_sizes == [4, 4, 2, 2, 2]


class ParameterCopyRecorder(TorchDispatchMode):
    """Record copies of whole parameters or buffers and cross-device
    copies."""

    def __init__(self, model) -> None:
        super().__init__()
        self.watched = {
            tensor.data_ptr(): (name, tensor.shape)
            for name, tensor in list(model.named_parameters()) +
            list(model.named_buffers())
        }
        self.copies = []

    def _check_source(self, func, source, target_device=None) -> None:
        if not isinstance(source, torch.Tensor):
            return
        if target_device is not None and \
                torch.device(target_device) != source.device:
            self.copies.append(f'{func}: {source.device} -> {target_device}')
        watched = self.watched.get(source.data_ptr())
        if watched is not None and source.shape == watched[1]:
            self.copies.append(f'{func} of {watched[0]}')

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in (torch.ops.aten._to_copy, torch.ops.aten.clone):
            self._check_source(func, args[0], kwargs.get('device'))
        elif packet is torch.ops.aten.copy_:
            self._check_source(func, args[1], args[0].device)
        return func(*args, **kwargs)


def test_saip_step_copies_no_parameters(seeded):
    model = build_model()
    inputs = model.data_preprocessor(make_batch(), True)['inputs']
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):  # the second step runs with optimizer state
        recorder = ParameterCopyRecorder(model)
        with recorder:
            total_loss(model.loss(inputs)).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.update_teacher()
        assert recorder.copies == []


def test_saip_prepare_views_shapes_and_draws(seeded):
    model = build_model()
    inputs = model.data_preprocessor(make_batch(), True)['inputs']
    torch.manual_seed(5)
    views = model.prepare_views(inputs)

    assert (views.batch_size, views.num_global, views.num_local) == (2, 2, 2)
    assert views.global_flat.shape == (4, 3, 64, 32)
    # View-major: row V * B + b is view V of image b.
    assert torch.equal(views.global_flat[3], inputs['global_views'][1, 1])
    assert views.local_flat.shape == (4, 3, 32, 16)
    assert views.roi_factor in model.rescale_factors
    assert views.region_factor in model.rescale_factors
    assert views.roi_view.shape[-2:] == (round(32 * views.roi_factor),
                                         round(16 * views.roi_factor))
    # Global view 1 upscaled by csr_scale (1.25): 64x32 -> 80x40.
    assert views.csr_view.shape == (2, 3, 80, 40)
    assert views.csr_grid == (10, 5)
    assert views.anchor_mask.hidden.shape == (2, 50)
    assert views.canvas_grid == (7, 7)
    assert views.inst_target.shape == (2, 49)
    assert views.inst_target.sum().item() == 2 * 4 * 2

    # The same generator state gives the same draws, in the same order
    # that SAIP.loss consumes them.
    torch.manual_seed(5)
    again = model.prepare_views(inputs)
    assert (again.roi_factor, again.region_factor) == (views.roi_factor,
                                                        views.region_factor)
    assert torch.equal(again.anchor_mask.hidden, views.anchor_mask.hidden)


def test_saip_loss_missing_input_key(seeded):
    model = build_model()
    inputs = model.data_preprocessor(make_batch(), True)['inputs']
    del inputs['roi_mask']
    with pytest.raises(KeyError, match='roi_mask'):
        model.loss(inputs)
