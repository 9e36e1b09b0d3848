"""Crop sampling and photometric operations on (H, W, 3) numpy images.

These functions reimplement, with cv2 and numpy, the maths of torchvision's
``RandomResizedCrop.get_params`` and of its colour-jitter, grayscale,
Gaussian-blur and solarize operations (read in torchvision 0.29). Colour
values are rounded to the nearest integer where torchvision's uint8 tensor
path truncates. Only ``sample_crop_box`` draws random numbers, from the
generator it is given. The other functions take every parameter from the
caller, so a transform can draw them all in one ``@cache_randomness``
method.

Float images hold values in [0, 255] and uint8 images are RGB, both with
shape (H, W, 3).
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

JITTER_OPS = ('brightness', 'contrast', 'saturation', 'hue')

CV2_INTERPOLATIONS = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
}


@dataclass
class ViewParams:
    """Random parameters of one view, drawn before any pixel is touched."""
    crop_box: Tuple[int, int, int, int]  # (top, left, height, width)
    flip: bool
    jitter_ops: List[Tuple[str, float]]  # empty when jitter is skipped
    grayscale: bool
    blur_sigma: Optional[float]  # None when blur is skipped
    solarize: bool


def sample_crop_box(img_hw: Tuple[int, int], scale: Tuple[float, float],
                    ratio: Tuple[float, float],
                    rng: np.random.RandomState) -> Tuple[int, int, int, int]:
    """Draw a crop box the way ``RandomResizedCrop`` does.

    Up to 10 tries draw an area fraction uniformly from ``scale`` and an
    aspect ratio (width / height) log-uniformly from ``ratio``. The first box
    that fits inside the image is placed uniformly at random. If none fits,
    the fallback is a centred crop: the whole image clamped to the ratio
    range.

    Args:
        img_hw (tuple[int, int]): Image size (H, W) in pixels.
        scale (tuple[float, float]): Range of the crop area as a fraction of
            the image area.
        ratio (tuple[float, float]): Range of the crop width / height.
        rng (np.random.RandomState): Random source, usually the ``np.random``
            module so that global seeding applies.

    Returns:
        tuple[int, int, int, int]: (top, left, height, width) in pixels.
    """
    height, width = img_hw
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.randint(0, height - crop_h + 1))
            left = int(rng.randint(0, width - crop_w + 1))
            return top, left, crop_h, crop_w

    # Fallback: keep as much of the image as the ratio range allows.
    image_ratio = width / height
    if image_ratio < ratio[0]:
        crop_w = width
        crop_h = int(round(crop_w / ratio[0]))
    elif image_ratio > ratio[1]:
        crop_h = height
        crop_w = int(round(crop_h * ratio[1]))
    else:
        crop_h, crop_w = height, width
    # Rounding can exceed the image by one pixel, and a 1-pixel side can
    # round to 0, so clamp to [1, side].
    crop_h = min(max(crop_h, 1), height)
    crop_w = min(max(crop_w, 1), width)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def resized_crop(img: np.ndarray, box: Tuple[int, int, int, int],
                 out_hw: Tuple[int, int], interpolation: str) -> np.ndarray:
    """Crop ``box`` = (top, left, height, width) and resize it to
    ``out_hw`` = (H, W). uint8 input gives uint8 output, saturated by cv2.

    cv2's bicubic kernel (a = -0.75) gave the same values as torchvision's
    tensor bicubic without antialiasing when upsampling a test crop.
    """
    # NOTE: Pillow's bicubic resize, which torchvision applies to PIL
    # images, uses a = -0.5 and widens its kernel when downscaling
    # (antialiasing), but cv2 does neither. In a sample of 478 person crops
    # (44-633 px high), a third of the local views were downscaled, 8 % by
    # more than 1.5x. Pillow was about 10x slower than cv2 on these sizes.
    top, left, crop_h, crop_w = box
    patch = img[top:top + crop_h, left:left + crop_w]
    return cv2.resize(
        patch, (out_hw[1], out_hw[0]),
        interpolation=CV2_INTERPOLATIONS[interpolation])


def nearest_resize(img: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """Resize with the index rule of ``torch.nn.functional.interpolate(...,
    mode='nearest')``: source index = floor(destination index * in / out)."""
    in_h, in_w = img.shape[:2]
    rows = np.minimum(
        np.floor(np.arange(out_hw[0]) * (in_h / out_hw[0])).astype(np.int64),
        in_h - 1)
    cols = np.minimum(
        np.floor(np.arange(out_hw[1]) * (in_w / out_hw[1])).astype(np.int64),
        in_w - 1)
    return img[rows[:, None], cols[None, :]]


def luma(img: np.ndarray) -> np.ndarray:
    """Return the (H, W) ITU-R 601-2 luma of an RGB float32 image.

    cv2 weighs R, G, B by 0.299, 0.587, 0.114, like Pillow's convert('L').
    """
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend a float image with black: ``img * factor``, clipped."""
    return np.clip(img * np.float32(factor), 0, 255)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend a float image with the mean of its luma, clipped."""
    mean = float(luma(img).mean())
    return np.clip(img * np.float32(factor) + np.float32(mean * (1 - factor)),
                   0, 255)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend a float image with its own luma image, clipped."""
    gray = luma(img)[..., None] * np.float32(1 - factor)
    return np.clip(img * np.float32(factor) + gray, 0, 255)


def adjust_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of a float image by ``shift`` turns, in [-0.5, 0.5]."""
    # cv2's float HSV uses H in degrees [0, 360), S and V in [0, 1]: the same
    # hexcone model as torchvision's tensor rgb_to_hsv.
    hsv = cv2.cvtColor(img * np.float32(1 / 255), cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0]
    hue += np.float32(shift * 360.0)
    np.mod(hue, np.float32(360.0), out=hue)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(rgb * np.float32(255), 0, 255)


_JITTER_FUNCTIONS: Dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    'brightness': adjust_brightness,
    'contrast': adjust_contrast,
    'saturation': adjust_saturation,
    'hue': adjust_hue,
}


def color_jitter(img: np.ndarray, ops: Sequence[Tuple[str,
                                                      float]]) -> np.ndarray:
    """Apply colour-jitter operations in the given order.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB image.
        ops (Sequence[tuple[str, float]]): (name, factor) pairs, names from
            ``JITTER_OPS``. Brightness, contrast and saturation factors are
            blend weights (1 keeps the image). The hue factor is a shift in
            turns (0 keeps the image).

    Returns:
        np.ndarray: (H, W, 3) uint8 image. The chain runs in float32 and is
        rounded to the nearest integer once at the end.
    """
    out = img.astype(np.float32)
    for name, factor in ops:
        out = _JITTER_FUNCTIONS[name](out, factor)
    return np.rint(out).astype(np.uint8)


def to_grayscale(img: np.ndarray) -> np.ndarray:
    """Replace a uint8 RGB image by its luma, repeated on three channels."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Blur a uint8 image with an isotropic Gaussian of std ``sigma`` pixels.

    The kernel spans +-3 sigma, i.e. 2 * ceil(3 * sigma) + 1 taps, and the
    border is reflected without repeating the edge pixel (the 'reflect'
    padding of torchvision's ``gaussian_blur``). The blur runs in float32
    and is rounded once, because cv2's uint8 path uses a fixed-point kernel
    (off by 1.3 grey levels at sigma 1.3 in a test with cv2 4.11).
    """
    size = 2 * int(math.ceil(3 * sigma)) + 1
    blurred = cv2.GaussianBlur(
        img.astype(np.float32), (size, size),
        sigmaX=sigma,
        sigmaY=sigma,
        borderType=cv2.BORDER_REFLECT_101)
    return np.rint(blurred).astype(np.uint8)


def solarize(img: np.ndarray, threshold: int) -> np.ndarray:
    """Invert every uint8 value >= ``threshold`` (v becomes 255 - v)."""
    values = np.arange(256, dtype=np.uint8)
    table = np.where(values >= threshold, 255 - values, values)
    return cv2.LUT(img, table.astype(np.uint8))


def render_view(img: np.ndarray, params: ViewParams, out_hw: Tuple[int, int],
                interpolation: str, solarize_threshold: int) -> np.ndarray:
    """Crop, resize, flip, jitter, gray, blur and solarize one view.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB source image.
        params (ViewParams): The drawn parameters of this view.
        out_hw (tuple[int, int]): Output size (H, W).
        interpolation (str): A key of ``CV2_INTERPOLATIONS``.
        solarize_threshold (int): Values >= this are inverted when
            ``params.solarize`` is True.

    Returns:
        np.ndarray: Contiguous (H, W, 3) uint8 view of size ``out_hw``.
    """
    view = resized_crop(img, params.crop_box, out_hw, interpolation)
    if params.flip:
        view = cv2.flip(view, 1)
    if params.jitter_ops:
        view = color_jitter(view, params.jitter_ops)
    if params.grayscale:
        view = to_grayscale(view)
    if params.blur_sigma is not None:
        view = gaussian_blur(view, params.blur_sigma)
    if params.solarize:
        view = solarize(view, solarize_threshold)
    return view


def paste_blend(canvas: np.ndarray, person: np.ndarray,
                top_left: Tuple[int, int], alpha: float) -> np.ndarray:
    """Blend ``person`` into ``canvas`` in place with its top-left corner at
    ``top_left`` = (y, x).

    Each pasted pixel becomes round(alpha * person + (1 - alpha) * canvas).

    Returns:
        np.ndarray: (H_c, W_c) bool mask, True on the pasted pixels.
    """
    top, left = top_left
    height, width = person.shape[:2]
    region = canvas[top:top + height, left:left + width]
    blended = (
        np.float32(alpha) * person.astype(np.float32) +
        np.float32(1 - alpha) * region.astype(np.float32))
    region[...] = np.rint(blended).astype(np.uint8)

    mask = np.zeros(canvas.shape[:2], dtype=bool)
    mask[top:top + height, left:left + width] = True
    return mask
