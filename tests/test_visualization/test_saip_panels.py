"""SAIP visual pass and panels on real person crops with a tiny model."""
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.runner import set_random_seed
from mmpretrain.registry import MODELS, TRANSFORMS
from saip_test_utils import tiny_saip_model_cfg, tiny_saip_view_cfg

import mmsaip  # noqa: F401
from mmsaip.visualization import (PANEL_NAMES, draw_csr_panel, draw_css_panel,
                                  draw_saip_panels, run_saip_visual_pass)
from mmsaip.visualization.drawing import CAPTION_HEIGHT, PAD
from mmsaip.visualization.saip_panels import unpatchify

BATCH = 2
# Tiny views: global 64x32, local 32x16, canvas 56x56, patch 8 and CSR view
# 80x40. Each panel is enlarged to at least 224 pixels high.
GLOBAL_ZOOM, CANVAS_ZOOM, CSR_ZOOM = 4, 4, 3
# Pixel std below which a panel counts as blank.
MIN_STD = 10.


def panel_size(tile_hw, num_tiles, num_rows=1):
    """(H, W) of a panel of equal tiles whose captions fit the tiles."""
    height = num_rows * (CAPTION_HEIGHT + tile_hw[0]) + (num_rows + 1) * PAD
    width = num_tiles * tile_hw[1] + (num_tiles + 1) * PAD
    return height, width


def build_model(**overrides):
    model = MODELS.build(tiny_saip_model_cfg(**overrides))
    model.init_weights()
    return model.eval()


def make_inputs(model, paths):
    """Views of two real crops, each pasted on the other's background."""
    pipeline = Compose([
        TRANSFORMS.build(dict(type='LoadPersonImage')),
        TRANSFORMS.build(tiny_saip_view_cfg()),
        TRANSFORMS.build(dict(type='PackSAIPInputs')),
    ])
    samples = [
        pipeline(dict(img_path=paths[0], background_path=paths[3])),
        pipeline(dict(img_path=paths[3], background_path=paths[0])),
    ]
    return model.data_preprocessor(pseudo_collate(samples))['inputs']


@pytest.fixture(scope='module')
def model_and_inputs(person_crop_paths):
    set_random_seed(0)
    model = build_model()
    return model, make_inputs(model, person_crop_paths)


@pytest.fixture(scope='module')
def outputs(model_and_inputs):
    set_random_seed(1)
    model, inputs = model_and_inputs
    return run_saip_visual_pass(model, inputs)


def test_visual_pass_shapes(outputs):
    assert outputs.batch_size == BATCH
    assert outputs.global_views.shape == (BATCH, 2, 3, 64, 32)
    assert outputs.local_views.shape == (BATCH, 2, 3, 32, 16)
    assert outputs.canvas_grid == (7, 7)
    assert outputs.inst_logits.shape == (BATCH, 49)
    assert outputs.inst_target.shape == (BATCH, 49)
    assert outputs.csr_grid == (10, 5)
    assert outputs.csr_view.shape == (BATCH, 3, 80, 40)
    assert outputs.csr_pred.shape == (BATCH, 50, 8 * 8 * 3)
    assert outputs.csr_target_patches.shape == (BATCH, 50, 8 * 8 * 3)
    assert outputs.attn_grid == (8, 4)
    assert outputs.cls_attention.shape == (BATCH, 2, 2, 8, 4)
    assert outputs.patch_size == 8
    assert outputs.norm_pix


def test_visual_pass_rescaled_views(outputs):
    for view, factor in ((outputs.roi_view, outputs.roi_factor),
                         (outputs.region_view, outputs.region_factor)):
        assert factor in (0.75, 0.875, 1.125, 1.25)
        assert view.shape[-2:] == (int(32 * factor), int(16 * factor))


def test_visual_pass_csr_mask(outputs):
    # 'from_mask': the encoder gets exactly the patches outside the loss.
    assert torch.equal(outputs.csr_encoder_visible, ~outputs.csr_hidden)
    # 8 of the 32 anchor cells are kept. On the 10x5 grid that is about a
    # quarter of the 50 patches, never none and never all.
    visible = outputs.csr_encoder_visible.sum(dim=1)
    assert (visible > 0).all()
    assert (visible < 50).all()


def test_visual_pass_legacy_visible_count(model_and_inputs):
    model, inputs = model_and_inputs
    legacy = build_model(csr_visible_count='legacy_fixed')
    legacy.load_state_dict(model.state_dict())
    outputs = run_saip_visual_pass(legacy, inputs)
    # A fixed int(50 * 0.25) = 12 patches per sample reach the encoder.
    assert outputs.csr_encoder_visible.sum(dim=1).tolist() == [12, 12]


def test_visual_pass_attention_rows(outputs):
    attention = outputs.cls_attention
    assert (attention > 0).all()
    # Softmax rows also give weight to the class token, so the patch part
    # sums to less than 1.
    row_sums = attention.flatten(-2).sum(-1)
    assert (row_sums < 1).all()
    assert (row_sums > 0.5).all()


def test_visual_pass_branch_choice(model_and_inputs):
    model, inputs = model_and_inputs
    set_random_seed(2)
    teacher = run_saip_visual_pass(model, inputs, branch='teacher')
    set_random_seed(2)
    student = run_saip_visual_pass(model, inputs, branch='student')
    # A fresh model's teacher is a copy of the student.
    assert torch.allclose(teacher.cls_attention, student.cls_attention)

    moved = build_model()
    moved.load_state_dict(model.state_dict())
    with torch.no_grad():
        moved.backbone.layers[-1].attn.qkv.weight.mul_(3.)
    set_random_seed(2)
    after_teacher = run_saip_visual_pass(moved, inputs, branch='teacher')
    set_random_seed(2)
    after_student = run_saip_visual_pass(moved, inputs, branch='student')
    assert torch.allclose(after_teacher.cls_attention, teacher.cls_attention)
    assert not torch.allclose(after_student.cls_attention,
                              student.cls_attention)


def test_visual_pass_rejects_bad_branch(model_and_inputs):
    model, inputs = model_and_inputs
    with pytest.raises(ValueError, match='branch'):
        run_saip_visual_pass(model, inputs, branch='ema')


def test_visual_pass_rejects_missing_key(model_and_inputs):
    model, inputs = model_and_inputs
    partial = {key: value for key, value in inputs.items() if key != 'canvas'}
    with pytest.raises(KeyError, match='canvas'):
        run_saip_visual_pass(model, partial)


@pytest.mark.parametrize('index', [0, 1])
def test_panel_sizes(outputs, index):
    panels = draw_saip_panels(outputs, index)
    assert tuple(panels) == PANEL_NAMES
    for name, image in panels.items():
        assert image.dtype == np.uint8, name
        assert image.ndim == 3, name
        assert image.shape[2] == 3, name
        assert image.std() > MIN_STD, name
    canvas_hw = (56 * CANVAS_ZOOM, 56 * CANVAS_ZOOM)
    assert panels['css'].shape[:2] == panel_size(canvas_hw, 4)
    csr_hw = (80 * CSR_ZOOM, 40 * CSR_ZOOM)
    assert panels['csr'].shape[:2] == panel_size(csr_hw, 4)
    global_hw = (64 * GLOBAL_ZOOM, 32 * GLOBAL_ZOOM)
    # Per row: the view, two heads and their mean.
    assert panels['attention'].shape[:2] == panel_size(global_hw, 4, 2)
    # The views row is as high as a global view, and captions may widen the
    # columns of the small views.
    height, width = panels['views'].shape[:2]
    assert height == panel_size(global_hw, 1)[0]
    min_width = (2 * global_hw[1] + 2 * 16 * GLOBAL_ZOOM +
                 int(16 * outputs.roi_factor) * GLOBAL_ZOOM +
                 int(16 * outputs.region_factor) * GLOBAL_ZOOM + 7 * PAD)
    assert width >= min_width


def tile(panel, column, tile_hw):
    """Crop tile ``column`` of a one-row panel of equal tiles."""
    top = PAD + CAPTION_HEIGHT
    left = PAD + column * (tile_hw[1] + PAD)
    return panel[top:top + tile_hw[0], left:left + tile_hw[1]].astype(int)


def test_css_overlays_differ_from_canvas(outputs):
    panel = draw_css_panel(outputs, 0)
    tile_hw = (56 * CANVAS_ZOOM, 56 * CANVAS_ZOOM)
    canvas, truth = tile(panel, 0, tile_hw), tile(panel, 1, tile_hw)
    assert canvas.std() > MIN_STD
    inst = np.kron(outputs.inst_mask[0].numpy(),
                   np.ones((CANVAS_ZOOM, CANVAS_ZOOM))).astype(bool)
    roi = np.kron(outputs.roi_mask[0].numpy(),
                  np.ones((CANVAS_ZOOM, CANVAS_ZOOM))).astype(bool)
    changed = np.abs(truth - canvas).sum(-1) > 0
    # The truth tile is tinted on both pastes and nowhere else.
    assert changed[inst].mean() > 0.9
    assert changed[roi].mean() > 0.9
    assert not changed[~(inst | roi)].any()


def test_css_prediction_fill(outputs):
    tile_hw = (56 * CANVAS_ZOOM, 56 * CANVAS_ZOOM)
    inst = np.kron(outputs.inst_mask[0].numpy(),
                   np.ones((CANVAS_ZOOM, CANVAS_ZOOM))).astype(bool)
    # Interior of the instance paste, away from its 2-pixel outline.
    interior = np.zeros_like(inst)
    rows, cols = np.nonzero(inst)
    interior[rows.min() + 4:rows.max() - 3, cols.min() + 4:cols.max() - 3] = 1

    def pred_tile(inst_logits):
        panel = draw_css_panel(outputs._replace(inst_logits=inst_logits), 0)
        return (tile(panel, 0, tile_hw), tile(panel, 2, tile_hw))

    # Sure "no": only the ground-truth outline is drawn.
    canvas, empty = pred_tile(torch.full_like(outputs.inst_logits, -10.))
    assert not (np.abs(empty - canvas).sum(-1) > 0)[interior].any()
    # Sure "yes" on the target patches: those patches are filled.
    perfect = outputs.inst_target.float() * 20. - 10.
    canvas, filled = pred_tile(perfect)
    patch_pixels = 8 * CANVAS_ZOOM
    target_cells = np.kron(outputs.inst_target[0].view(7, 7).numpy(),
                           np.ones((patch_pixels, patch_pixels))).astype(bool)
    checked = target_cells & interior
    assert checked.sum() > 1000
    assert (np.abs(filled - canvas).sum(-1) > 0)[checked].all()


def test_csr_perfect_prediction_gives_target(outputs):
    # A prediction equal to the normalised target patches must come back
    # as the target image after the per-patch de-normalisation.
    target = outputs.csr_target_patches
    mean = target.mean(dim=-1, keepdim=True)
    std = (target.var(dim=-1, keepdim=True) + 1e-6)**.5
    perfect = outputs._replace(csr_pred=(target - mean) / std)
    panel = draw_csr_panel(perfect, 0)
    tile_hw = (80 * CSR_ZOOM, 40 * CSR_ZOOM)
    reconstruction = tile(panel, 1, tile_hw)
    pasted = tile(panel, 2, tile_hw)
    target_tile = tile(panel, 3, tile_hw)
    assert np.abs(reconstruction - target_tile).max() <= 1
    assert np.abs(pasted - target_tile).max() <= 1
    # The encoder input is grey exactly on the patches it did not see.
    encoder_input = tile(panel, 0, tile_hw)
    seen = np.kron(outputs.csr_encoder_visible[0].view(10, 5).numpy(),
                   np.ones((8 * CSR_ZOOM, 8 * CSR_ZOOM))).astype(bool)
    assert (encoder_input[~seen] == 128).all()
    assert np.array_equal(encoder_input[seen], target_tile[seen])


def test_unpatchify_inverts_csr_patchify(model_and_inputs):
    model, _ = model_and_inputs
    images = torch.randn(2, 3, 80, 40)
    patches = model.csr_head.patchify(images, (10, 5))
    for index in range(2):
        restored = unpatchify(patches[index], (10, 5), 8, 3)
        assert torch.equal(restored, images[index])


def test_draw_panels_subset_and_errors(outputs):
    panels = draw_saip_panels(outputs, 1, panels=['csr', 'views'])
    assert list(panels) == ['csr', 'views']
    with pytest.raises(ValueError, match='panels'):
        draw_saip_panels(outputs, 0, panels=['heatmap'])
    with pytest.raises(IndexError, match='index 2'):
        draw_saip_panels(outputs, 2)
