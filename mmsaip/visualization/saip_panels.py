"""The four SAIP panels: views, CSS search, CSR reconstruction, attention.

Each ``draw_*_panel`` function takes a :class:`SAIPVisualOutputs` and the
index of one sample and returns an (H, W, 3) uint8 RGB image, which the
``visualize_saip.py`` tool writes to PNG files and
:class:`SAIPVisualizationHook` passes to the runner's visualizer.
"""
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import torch

from mmsaip.models.heads.css_head import mask_iou

from .drawing import (HIDDEN_GREY, Tile, compose_row, denormalize,
                      display_zoom, fill_mask, grid_to_pixels, heatmap_overlay,
                      min_max_scale, outline_mask, stack_rows, zoom_image)
from .saip_visual_pass import SAIPVisualOutputs

# Overlay colours (RGB) of the CSS panel.
INSTANCE_COLOR = (0, 200, 0)
ROI_COLOR = (255, 140, 0)
# Display height that small views are enlarged to, in pixels.
MIN_DISPLAY_HEIGHT = 224
# Epsilon of the per-patch normalisation in CSRHead.loss.
_NORM_PIX_EPS = 1.e-6


def draw_views_panel(outputs: SAIPVisualOutputs, index: int) -> np.ndarray:
    """Draw every view of one sample at one common zoom, so relative sizes
    are kept: the global views, the local views, and the region and ROI
    views after their rescaling (factor in the caption)."""
    mean, std = outputs.pixel_mean, outputs.pixel_std
    tiles = []
    for view, image in enumerate(
            denormalize(outputs.global_views[index], mean, std)):
        tiles.append(Tile(image, f'global {view}'))
    for view, image in enumerate(
            denormalize(outputs.local_views[index], mean, std)):
        tiles.append(Tile(image, f'local {view}'))
    tiles.append(
        Tile(
            denormalize(outputs.region_view[index], mean, std),
            f'region x{outputs.region_factor:g}'))
    tiles.append(
        Tile(
            denormalize(outputs.roi_view[index], mean, std),
            f'ROI x{outputs.roi_factor:g}'))
    zoom = display_zoom(outputs.global_views.shape[-2], MIN_DISPLAY_HEIGHT)
    return stack_rows([compose_row(tiles, zoom)])


def draw_css_panel(outputs: SAIPVisualOutputs, index: int) -> np.ndarray:
    """Draw the CSS canvas plain, with both ground-truth masks filled, and
    with each predicted mask filled and its ground truth outlined.

    A patch is predicted when the sigmoid of its logit exceeds 0.5 (logit
    > 0). Nearest-neighbour resizing turns each patch into a block of
    canvas pixels. The captions give the IoU on the patch grid, the quantity
    logged as ``css_inst_iou`` and ``css_roi_iou`` (there averaged over the
    batch).
    """
    # Overlays are drawn at display size, so outlines stay thin.
    zoom = display_zoom(outputs.canvas.shape[-2], MIN_DISPLAY_HEIGHT)
    canvas = zoom_image(
        denormalize(outputs.canvas[index], outputs.pixel_mean,
                    outputs.pixel_std), zoom)
    inst_true = zoom_image(outputs.inst_mask[index].numpy().astype(bool), zoom)
    roi_true = zoom_image(outputs.roi_mask[index].numpy().astype(bool), zoom)

    truth = fill_mask(canvas, inst_true, INSTANCE_COLOR)
    truth = fill_mask(truth, roi_true, ROI_COLOR)
    tiles = [
        Tile(canvas, 'canvas'),
        Tile(truth, 'truth: inst green, ROI orange')
    ]
    for name, logits, target, target_grid, color in (
        ('inst', outputs.inst_logits, inst_true, outputs.inst_target,
         INSTANCE_COLOR),
        ('ROI', outputs.roi_logits, roi_true, outputs.roi_target, ROI_COLOR),
    ):
        pred_grid = logits[index:index + 1].sigmoid() > 0.5  # (1, H * W)
        iou = float(mask_iou(pred_grid, target_grid[index:index + 1]))
        pred_pixels = grid_to_pixels(
            pred_grid.view(outputs.canvas_grid).float(),
            canvas.shape[:2]) > 0.5
        image = fill_mask(canvas, pred_pixels, color)
        image = outline_mask(image, target, color)
        tiles.append(Tile(image, f'pred {name}, IoU {iou:.2f}'))
    return stack_rows([compose_row(tiles)])


def draw_csr_panel(outputs: SAIPVisualOutputs, index: int) -> np.ndarray:
    """Draw the CSR encoder input, the reconstruction, the reconstruction
    pasted into the visible patches, and the target, in image space.

    The encoder input shows in grey the patches the encoder did not see.
    With ``norm_pix`` the decoder predicts per-patch standardised pixels,
    so each predicted patch is mapped back with the mean and std of the
    corresponding *target* patch, as MAE's visualisations do. The
    reconstruction therefore takes each patch's average colour and contrast
    from the target and shows only what the model predicted about the
    structure inside the patch.
    """
    grid = outputs.csr_grid
    size = outputs.patch_size
    height, width = grid[0] * size, grid[1] * size
    target = outputs.csr_view[index, :, :height, :width]  # (C, H, W)
    channels = target.shape[0]

    target_patches = outputs.csr_target_patches[index]  # (H * W, P*P*C)
    pred = outputs.csr_pred[index]
    if outputs.norm_pix:
        mean = target_patches.mean(dim=-1, keepdim=True)
        var = target_patches.var(dim=-1, keepdim=True)
        pred = pred * (var + _NORM_PIX_EPS)**.5 + mean
    reconstruction = unpatchify(pred, grid, size, channels)

    hidden = outputs.csr_hidden[index].view(grid)
    seen = outputs.csr_encoder_visible[index].view(grid)
    hidden_pixels = _grid_to_patch_pixels(hidden, size)  # (H, W) bool
    seen_pixels = _grid_to_patch_pixels(seen, size)
    pasted = torch.where(
        torch.from_numpy(hidden_pixels)[None], reconstruction, target)

    mean, std = outputs.pixel_mean, outputs.pixel_std
    encoder_input = denormalize(target, mean, std)
    encoder_input[~seen_pixels] = HIDDEN_GREY
    tiles = [
        Tile(encoder_input, 'encoder input'),
        Tile(denormalize(reconstruction, mean, std), 'reconstruction'),
        Tile(denormalize(pasted, mean, std), 'recon. + visible'),
        Tile(denormalize(target, mean, std), 'target'),
    ]
    zoom = display_zoom(height, MIN_DISPLAY_HEIGHT)
    return stack_rows([compose_row(tiles, zoom)])


def draw_attention_panel(outputs: SAIPVisualOutputs, index: int) -> np.ndarray:
    """Draw the last-block class-token attention over each global view.

    One row per global view: the view, then one heat map per head and
    their mean. Each map is the class token's softmax attention to the
    patch tokens, resized bilinearly to the view and scaled to its own
    minimum and maximum, so the colours compare positions within one map,
    not values across maps.
    """
    views = denormalize(outputs.global_views[index], outputs.pixel_mean,
                        outputs.pixel_std)  # (V, H, W, 3)
    attention = outputs.cls_attention[index]  # (V, heads, H, W)
    # Heat maps are resized to display size, so they stay smooth.
    zoom = display_zoom(views.shape[1], MIN_DISPLAY_HEIGHT)
    rows = []
    for view, (image, maps) in enumerate(zip(views, attention)):
        image = zoom_image(image, zoom)
        maps = torch.cat((maps, maps.mean(dim=0, keepdim=True)))
        heat = grid_to_pixels(maps, image.shape[:2], mode='bilinear')
        names = [f'head {head}' for head in range(len(maps) - 1)] + ['mean']
        tiles = [Tile(image, f'global {view} ({outputs.branch})')]
        tiles += [
            Tile(heatmap_overlay(image, min_max_scale(values)), name)
            for values, name in zip(heat, names)
        ]
        rows.append(compose_row(tiles))
    return stack_rows(rows)


PanelFunction = Callable[[SAIPVisualOutputs, int], np.ndarray]
PANEL_FUNCTIONS: Dict[str, PanelFunction] = {
    'views': draw_views_panel,
    'css': draw_css_panel,
    'csr': draw_csr_panel,
    'attention': draw_attention_panel,
}
PANEL_NAMES = tuple(PANEL_FUNCTIONS)


def check_panel_names(panels: Sequence[str]) -> Tuple[str, ...]:
    """Return ``panels`` as a tuple, or raise ``ValueError`` naming the
    unknown entries and the known ones."""
    panels = tuple(panels)
    unknown = [name for name in panels if name not in PANEL_FUNCTIONS]
    if unknown or not panels:
        raise ValueError(f'panels must be a non-empty subset of '
                         f'{PANEL_NAMES}, got {panels!r}')
    return panels


def draw_saip_panels(
        outputs: SAIPVisualOutputs,
        index: int = 0,
        panels: Sequence[str] = PANEL_NAMES) -> Dict[str, np.ndarray]:
    """Draw the requested panels of one sample.

    Args:
        outputs (SAIPVisualOutputs): From :func:`run_saip_visual_pass`.
        index (int): Sample index in the batch. Defaults to 0.
        panels (Sequence[str]): Names from ``PANEL_NAMES``: 'views', 'css',
            'csr', 'attention'. Defaults to all four.

    Returns:
        dict[str, np.ndarray]: Panel name to (H, W, 3) uint8 RGB image, in
        the order of ``panels``.
    """
    panels = check_panel_names(panels)
    if not 0 <= index < outputs.batch_size:
        raise IndexError(f'index {index} is out of range for a batch of '
                         f'{outputs.batch_size} samples')
    return {name: PANEL_FUNCTIONS[name](outputs, index) for name in panels}


def unpatchify(patches: torch.Tensor, grid: Tuple[int, int], patch_size: int,
               channels: int) -> torch.Tensor:
    """Invert ``CSRHead.patchify`` for one image: (H_p * W_p, P * P * C)
    patches, each row-major over (P, P, C), to a (C, H, W) image."""
    rows, cols = grid
    image = patches.reshape(rows, cols, patch_size, patch_size, channels)
    # (H_p, W_p, P, P, C) -> (C, H_p, P, W_p, P)
    image = image.permute(4, 0, 2, 1, 3)
    return image.reshape(channels, rows * patch_size, cols * patch_size)


def _grid_to_patch_pixels(grid_mask: torch.Tensor,
                          patch_size: int) -> np.ndarray:
    """Expand an (H_p, W_p) bool grid to (H_p * P, W_p * P) pixels."""
    array = grid_mask.numpy().astype(bool)
    return np.repeat(np.repeat(array, patch_size, 0), patch_size, 1)
