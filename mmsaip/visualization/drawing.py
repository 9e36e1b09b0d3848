"""Drawing helpers for the SAIP panels: tiles, captions and overlays.

Every image here is an (H, W, 3) uint8 RGB numpy array, the format that
mmengine's visualizer backends take. Panels are built with numpy and cv2
only, so their pixel size follows from the tile sizes and the layout
constants below.
"""
import math
from typing import NamedTuple, Sequence, Tuple

import cv2
import numpy as np
import torch

# Layout of a panel, in pixels.
PAD = 8
CAPTION_HEIGHT = 18
BACKGROUND_VALUE = 255
# Value of the grey that replaces hidden patches.
HIDDEN_GREY = 128

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.4
_FONT_THICKNESS = 1
_TEXT_COLOR = (0, 0, 0)

RGB = Tuple[int, int, int]


class Tile(NamedTuple):
    """One captioned image of a panel.

    Attributes:
        image (np.ndarray): (H, W, 3) uint8 RGB, before zooming.
        caption (str): Text drawn above the image.
    """
    image: np.ndarray
    caption: str


def denormalize(images: torch.Tensor, mean: torch.Tensor,
                std: torch.Tensor) -> np.ndarray:
    """Undo the data preprocessor's per-channel normalisation.

    Args:
        images (Tensor): Normalised images, shape (C, H, W) or
            (N, C, H, W).
        mean (Tensor): Per-channel mean in the 0-255 range, shape (C, ) or
            broadcastable to (C, 1, 1).
        std (Tensor): Per-channel std in the 0-255 range, same shape rule.

    Returns:
        np.ndarray: uint8 RGB of shape (H, W, 3) or (N, H, W, 3). A
        one-channel input is repeated on three channels.
    """
    channels = images.shape[-3]
    mean = mean.detach().cpu().float().reshape(channels, 1, 1)
    std = std.detach().cpu().float().reshape(channels, 1, 1)
    pixels = images.detach().cpu().float() * std + mean
    pixels = pixels.round().clamp(0, 255).to(torch.uint8)
    array = np.ascontiguousarray(np.moveaxis(pixels.numpy(), -3, -1))
    if channels == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def display_zoom(height: int, min_height: int = 224) -> int:
    """Return the integer zoom that shows ``height`` pixels at least
    ``min_height`` pixels high (1 for images already that high)."""
    return max(1, math.ceil(min_height / max(height, 1)))


def zoom_image(image: np.ndarray, zoom: int) -> np.ndarray:
    """Enlarge an image by an integer factor with nearest-neighbour
    sampling, so that every pixel stays a visible square."""
    if zoom == 1:
        return image
    return np.repeat(np.repeat(image, zoom, axis=0), zoom, axis=1)


def text_width(text: str) -> int:
    """Return the width in pixels of ``text`` in the caption font."""
    (width, _), _ = cv2.getTextSize(text, _FONT, _FONT_SCALE, _FONT_THICKNESS)
    return width


def compose_row(tiles: Sequence[Tile], zoom: int = 1) -> np.ndarray:
    """Place captioned tiles side by side, top-aligned.

    Each column is as wide as its zoomed image or its caption, whichever is
    wider, and columns are ``PAD`` pixels apart. The row is
    ``CAPTION_HEIGHT`` plus the tallest zoomed image high. No outer margin
    is added, because :func:`stack_rows` adds it.

    Args:
        tiles (Sequence[Tile]): The tiles, left to right.
        zoom (int): Integer enlargement of every image. Defaults to 1.

    Returns:
        np.ndarray: The row, (H, W, 3) uint8 RGB.
    """
    if not tiles:
        raise ValueError('compose_row needs at least one tile')
    images = [zoom_image(tile.image, zoom) for tile in tiles]
    widths = [
        max(image.shape[1], text_width(tile.caption))
        for image, tile in zip(images, tiles)
    ]
    height = CAPTION_HEIGHT + max(image.shape[0] for image in images)
    width = sum(widths) + PAD * (len(tiles) - 1)
    row = np.full((height, width, 3), BACKGROUND_VALUE, dtype=np.uint8)

    left = 0
    for image, tile, column_width in zip(images, tiles, widths):
        baseline = CAPTION_HEIGHT - 5
        cv2.putText(row, tile.caption, (left, baseline), _FONT, _FONT_SCALE,
                    _TEXT_COLOR, _FONT_THICKNESS, cv2.LINE_AA)
        image_h, image_w = image.shape[:2]
        row[CAPTION_HEIGHT:CAPTION_HEIGHT + image_h,
            left:left + image_w] = image
        left += column_width + PAD
    return row


def stack_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Stack rows from :func:`compose_row` top to bottom, left-aligned,
    ``PAD`` pixels apart, with a ``PAD`` margin around the panel."""
    if not rows:
        raise ValueError('stack_rows needs at least one row')
    width = max(row.shape[1] for row in rows) + 2 * PAD
    height = sum(row.shape[0] for row in rows) + PAD * (len(rows) + 1)
    panel = np.full((height, width, 3), BACKGROUND_VALUE, dtype=np.uint8)
    top = PAD
    for row in rows:
        panel[top:top + row.shape[0], PAD:PAD + row.shape[1]] = row
        top += row.shape[0] + PAD
    return panel


def fill_mask(image: np.ndarray,
              mask: np.ndarray,
              color: RGB,
              alpha: float = 0.45) -> np.ndarray:
    """Return a copy of ``image`` with ``color`` blended in where the (H, W)
    bool ``mask`` is True, with weight ``alpha``."""
    out = image.astype(np.float32)
    tint = np.asarray(color, dtype=np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * tint
    return np.rint(out).astype(np.uint8)


def outline_mask(image: np.ndarray,
                 mask: np.ndarray,
                 color: RGB,
                 thickness: int = 2) -> np.ndarray:
    """Return a copy of ``image`` with the outer contour of the (H, W)
    bool ``mask`` drawn in ``color``."""
    out = image.copy()
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, color, thickness)
    return out


def heatmap_overlay(image: np.ndarray,
                    heat: np.ndarray,
                    alpha: float = 0.5) -> np.ndarray:
    """Blend a colour-mapped heat map over an image.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB.
        heat (np.ndarray): (H, W) float values in [0, 1]. cv2's inferno
            colour map draws 1 bright yellow and 0 black.
        alpha (float): Weight of the heat map. Defaults to 0.5.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.
    """
    levels = np.rint(np.clip(heat, 0., 1.) * 255).astype(np.uint8)
    colored = cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    blended = ((1 - alpha) * image.astype(np.float32) +
               alpha * colored.astype(np.float32))
    return np.rint(blended).astype(np.uint8)


def min_max_scale(values: np.ndarray) -> np.ndarray:
    """Scale an array linearly to [0, 1], or to all zeros if it is
    constant."""
    values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def grid_to_pixels(grid_values: torch.Tensor,
                   size: Tuple[int, int],
                   mode: str = 'nearest') -> np.ndarray:
    """Resize per-patch values to image pixels.

    Args:
        grid_values (Tensor): Shape (H, W) or (N, H, W) on the patch grid.
        size (tuple[int, int]): Output size (H_img, W_img).
        mode (str): 'nearest' (each patch becomes a block, as the CSS
            targets are made) or 'bilinear'. Defaults to 'nearest'.

    Returns:
        np.ndarray: float32 of shape (H_img, W_img) or (N, H_img, W_img).
    """
    values = grid_values.detach().cpu().float()
    squeeze = values.dim() == 2
    if squeeze:
        values = values[None]
    kwargs = dict(align_corners=False) if mode == 'bilinear' else dict()
    resized = torch.nn.functional.interpolate(
        values[:, None], size=tuple(size), mode=mode, **kwargs)[:, 0]
    array = resized.numpy()
    return array[0] if squeeze else array
