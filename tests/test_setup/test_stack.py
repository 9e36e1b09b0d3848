"""The installed OpenMMLab stack works together with mmsaip."""
import subprocess
import sys

import pytest
import torch


def run_fresh_python(code: str) -> str:
    """Run code in a new interpreter, so earlier imports do not leak in."""
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_stack_imports_without_chumpy():
    # chumpy fails at import on Python 3.11; mmpose only needs it for SMPL.
    output = run_fresh_python(
        'import sys, mmdet, mmpose, mmpretrain, mmseg, mmcv.ops, mmsaip; '
        'import mmsaip.models, mmsaip.datasets, mmsaip.engine; '
        "print('chumpy' in sys.modules)")
    assert output.splitlines()[-1] == 'False'


def test_import_keeps_default_scope():
    output = run_fresh_python(
        'from mmengine.registry import DefaultScope; import mmsaip; '
        'print(DefaultScope.get_current_instance())')
    assert output.splitlines()[-1] == 'None'


def test_mmsaip_modules_registered():
    import mmsaip  # noqa: F401
    from mmpretrain.registry import (DATASETS, HOOKS, MODELS, OPTIM_WRAPPERS,
                                     TRANSFORMS)

    for name in ('SAIP', 'SAIPViT', 'CSMProjector', 'CSMHead', 'CSRHead',
                 'CSSHead', 'AttentionDistillLoss', 'SAIPDataPreprocessor',
                 'CosineMomentumEMA'):
        assert MODELS.get(name) is not None, name
    assert DATASETS.get('PersonImageDataset') is not None
    for name in ('LoadPersonImage', 'SAIPMultiView', 'PackSAIPInputs'):
        assert TRANSFORMS.get(name) is not None, name
    assert HOOKS.get('SAIPTeacherHook') is not None
    assert OPTIM_WRAPPERS.get('SAIPOptimWrapper') is not None
    assert OPTIM_WRAPPERS.get('SAIPAmpOptimWrapper') is not None


def test_deit_tiny_at_256x128_from_registry():
    from mmpretrain.registry import MODELS

    torch.manual_seed(0)
    backbone = MODELS.build(
        dict(
            type='mmpretrain.VisionTransformer',
            arch='deit-tiny',
            img_size=(256, 128),
            patch_size=16,
            out_type='featmap'))
    assert backbone.patch_resolution == (16, 8)
    assert backbone.pos_embed.shape == (1, 16 * 8 + 1, 192)
    num_params = sum(p.numel() for p in backbone.parameters())
    # 147,648 patch embedding + 24,768 positions + 192 class token
    # + 12 x 444,864 blocks + 384 final norm.
    assert num_params == 147648 + 24768 + 192 + 12 * 444864 + 384
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, 256, 128))
    assert features[-1].shape == (2, 192, 16, 8)


def test_mmcv_nms_on_cpu():
    from mmcv.ops import nms

    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                          [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # IoU of the first two boxes is 81 / 119 = 0.68 > 0.5.
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))
    assert torch.equal(dets[:, :4], boxes[[0, 2]])


def test_mmcv_roi_align_on_cpu():
    from mmcv.ops import roi_align

    # A horizontal ramp: the value at (y, x) is x, so bilinear sampling of
    # any bin returns the x coordinate of its sample points.
    feature = torch.arange(8.).repeat(8, 1)[None, None]  # (1, 1, 8, 8)
    rois = torch.tensor([[0., 1., 1., 5., 5.]])
    pooled = roi_align(
        feature, rois, output_size=(2, 2), spatial_scale=1.0,
        sampling_ratio=1, pool_mode='avg', aligned=True)
    # aligned=True shifts by -0.5: the box spans x in [0.5, 4.5], so the
    # bin centres lie at x = 1.5 and 3.5.
    expected = torch.tensor([[[[1.5, 3.5], [1.5, 3.5]]]])
    assert pooled.shape == (1, 1, 2, 2)
    assert torch.allclose(pooled, expected)


def test_mmcv_ops_reject_wrong_shape():
    from mmcv.ops import nms

    with pytest.raises((RuntimeError, AssertionError, IndexError)):
        nms(torch.zeros(3, 3), torch.zeros(3), iou_threshold=0.5)
