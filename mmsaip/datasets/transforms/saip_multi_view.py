from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmpretrain.registry import TRANSFORMS

from . import functional as vf


@dataclass
class _SampleParams:
    """Random parameters of every view of one sample."""
    global_views: List[vf.ViewParams]
    local_views: List[vf.ViewParams]  # the last one is the ROI view
    canvas: vf.ViewParams
    roi_yx: Tuple[int, int]  # top-left of paste A (ROI view)
    region_yx: Tuple[int, int]  # top-left of paste B (region view)


_HW = Tuple[int, int]
_Range = Tuple[float, float]


@TRANSFORMS.register_module()
class SAIPMultiView(BaseTransform):
    """Make the multi-scale views and the synthetic canvas of SAIP.

    SAIP (Scale-Aware Image Pretraining, arXiv 2503.08201) trains on several
    views of one person image at different scales, plus a canvas in which two
    of those views are pasted onto a background image:

    - ``global_views``: random-resized crops (RRC) of ``img`` at
      ``global_size``, one per entry of ``global_blur_probs``.
    - ``local_views``: ``num_local_views`` smaller RRC crops at
      ``local_size``.
    - ``roi_view``: one more crop made exactly like the local views.
    - ``region_view``: global view 0 resized to ``local_size`` with
      nearest-neighbour sampling, i.e. the same content at a smaller scale.
    - ``canvas``: an RRC crop of ``background`` at ``canvas_size``, with
      ``roi_view`` pasted at (y_A, x_A) and ``region_view`` at (y_B, x_B),
      where x_B >= x_A + local width, so the pastes never overlap. Each
      pasted pixel is ``paste_alpha * person + (1 - paste_alpha) * canvas``.
    - ``inst_mask`` / ``roi_mask``: True exactly on the pixels where
      ``region_view`` / ``roi_view`` was pasted.

    Every view then goes through the shared photometric pipeline of
    horizontal flip, colour jitter (brightness, contrast, saturation and hue
    in random order) and grayscale. Then each view gets its own Gaussian blur
    and solarize probabilities.
    The canvas also gets the shared pipeline, because the SAIP recipe
    defines flip, jitter and grayscale for all views and sets only the blur
    and solarize probabilities per view.

    Views stay uint8: ImageNet mean/std normalisation happens later, in the
    model's data preprocessor. Blending uint8 pixels and then normalising
    equals blending normalised values, because normalisation is affine per
    channel. The one difference is the rounding of the blended canvas to
    uint8, at most 0.5 grey levels.

    Required keys:

    - img: (H, W, 3) uint8 RGB person image.
    - background: (H, W, 3) uint8 RGB image for the canvas.

    Added keys (uint8 tensors unless stated; V_g = len(global_blur_probs),
    V_l = num_local_views):

    - global_views: (V_g, 3, H_g, W_g)
    - local_views: (V_l, 3, H_l, W_l)
    - roi_view: (3, H_l, W_l)
    - region_view: (3, H_l, W_l)
    - canvas: (3, H_c, W_c)
    - inst_mask: bool (H_c, W_c)
    - roi_mask: bool (H_c, W_c)

    Args:
        global_size (tuple[int, int]): (H, W) of the global views.
            Defaults to (256, 128).
        local_size (tuple[int, int]): (H, W) of the local, ROI and region
            views, which is also the size of both pastes. Defaults to
            (128, 64).
        canvas_size (tuple[int, int]): (H, W) of the canvas. Defaults to
            (224, 224).
        num_local_views (int): Number of local views, not counting the ROI
            view. Defaults to 6.
        global_crop_scale (tuple[float, float]): RRC area fraction range of
            the global views. Defaults to (0.8, 1.0).
        global_crop_ratio (tuple[float, float]): RRC width / height range of
            the global views. Defaults to (0.4, 0.6).
        local_crop_scale (tuple[float, float]): RRC area fraction range of
            the local and ROI views. Defaults to (0.05, 0.8).
        local_crop_ratio (tuple[float, float]): RRC width / height range of
            the local and ROI views. Defaults to (0.4, 0.6).
        canvas_crop_scale (tuple[float, float]): RRC area fraction range of
            the canvas. Defaults to (0.2, 1.0).
        canvas_crop_ratio (tuple[float, float]): RRC width / height range of
            the canvas. Defaults to (3 / 4, 4 / 3).
        flip_prob (float): Probability of a horizontal flip. Defaults to 0.5.
        brightness (float): Brightness factor range 1 +- brightness.
            Defaults to 0.4.
        contrast (float): Contrast factor range 1 +- contrast. Defaults to
            0.4.
        saturation (float): Saturation factor range 1 +- saturation.
            Defaults to 0.2.
        hue (float): Hue shift range +- hue, in turns, at most 0.5.
            Defaults to 0.1.
        color_jitter_prob (float): Probability of applying colour jitter.
            Defaults to 0.8.
        grayscale_prob (float): Probability of converting to grayscale.
            Defaults to 0.2.
        global_blur_probs (Sequence[float]): Gaussian blur probability of
            each global view. Its length sets the number of global views.
            Defaults to (1.0, 0.1).
        global_solarize_probs (Sequence[float]): Solarize probability of
            each global view, same length as ``global_blur_probs``.
            Defaults to (0.0, 0.2).
        local_blur_prob (float): Gaussian blur probability of the local and
            ROI views. Defaults to 0.5.
        canvas_blur_prob (float): Gaussian blur probability of the canvas.
            Defaults to 0.1.
        canvas_solarize_prob (float): Solarize probability of the canvas.
            Defaults to 0.2.
        blur_sigma (tuple[float, float]): Range of the blur standard
            deviation in pixels, drawn uniformly. Defaults to (0.1, 2.0).
        solarize_threshold (int): Values >= this are inverted. Defaults to
            128.
        paste_alpha (float): Weight of the person pixels in a paste.
            Defaults to 0.7.
        paste_margin (int): Minimum number of canvas pixels left free below
            and right of each paste. 2 gives the official offset ranges
            y_A, y_B, x_A in [0, 95) and x_B in [x_A + 64, 159) for the
            default sizes. Defaults to 2.
        interpolation (str): Resize method of the RRC crops: ``'bicubic'``,
            ``'bilinear'``, ``'area'`` or ``'nearest'`` (cv2 kernels).
            Defaults to ``'bicubic'``.
    """

    def __init__(self,
                 global_size: _HW = (256, 128),
                 local_size: _HW = (128, 64),
                 canvas_size: _HW = (224, 224),
                 num_local_views: int = 6,
                 global_crop_scale: _Range = (0.8, 1.0),
                 global_crop_ratio: _Range = (0.4, 0.6),
                 local_crop_scale: _Range = (0.05, 0.8),
                 local_crop_ratio: _Range = (0.4, 0.6),
                 canvas_crop_scale: _Range = (0.2, 1.0),
                 canvas_crop_ratio: _Range = (3 / 4, 4 / 3),
                 flip_prob: float = 0.5,
                 brightness: float = 0.4,
                 contrast: float = 0.4,
                 saturation: float = 0.2,
                 hue: float = 0.1,
                 color_jitter_prob: float = 0.8,
                 grayscale_prob: float = 0.2,
                 global_blur_probs: Sequence[float] = (1.0, 0.1),
                 global_solarize_probs: Sequence[float] = (0.0, 0.2),
                 local_blur_prob: float = 0.5,
                 canvas_blur_prob: float = 0.1,
                 canvas_solarize_prob: float = 0.2,
                 blur_sigma: _Range = (0.1, 2.0),
                 solarize_threshold: int = 128,
                 paste_alpha: float = 0.7,
                 paste_margin: int = 2,
                 interpolation: str = 'bicubic') -> None:
        self.global_size = _check_size('global_size', global_size)
        self.local_size = _check_size('local_size', local_size)
        self.canvas_size = _check_size('canvas_size', canvas_size)
        if not isinstance(num_local_views, int) or num_local_views < 0:
            raise ValueError('num_local_views must be an int >= 0, got '
                             f'{num_local_views!r}.')
        self.num_local_views = num_local_views

        # Scales are area fractions, so at most 1. Ratios are width / height.
        self.global_crop_scale = _check_range('global_crop_scale',
                                              global_crop_scale, 1.0)
        self.local_crop_scale = _check_range('local_crop_scale',
                                             local_crop_scale, 1.0)
        self.canvas_crop_scale = _check_range('canvas_crop_scale',
                                              canvas_crop_scale, 1.0)
        self.global_crop_ratio = _check_range('global_crop_ratio',
                                              global_crop_ratio)
        self.local_crop_ratio = _check_range('local_crop_ratio',
                                             local_crop_ratio)
        self.canvas_crop_ratio = _check_range('canvas_crop_ratio',
                                              canvas_crop_ratio)
        self.blur_sigma = _check_range('blur_sigma', blur_sigma)

        strengths = dict(
            brightness=brightness, contrast=contrast, saturation=saturation)
        for name, strength in strengths.items():
            if not strength >= 0:
                raise ValueError(f'{name} must be >= 0, got {strength!r}.')
        if not 0 <= hue <= 0.5:
            raise ValueError(f'hue must be in [0, 0.5], got {hue!r}.')
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        # Factor ranges of the enabled jitter operations. As in torchvision,
        # a strength of 0 disables its operation.
        self._jitter_ranges = {
            name: (max(0.0, 1 - strength), 1 + strength)
            for name, strength in strengths.items() if strength > 0
        }
        if hue > 0:
            self._jitter_ranges['hue'] = (-hue, hue)

        self.global_blur_probs = tuple(global_blur_probs)
        self.global_solarize_probs = tuple(global_solarize_probs)
        if not self.global_blur_probs:
            raise ValueError('global_blur_probs must have at least one entry '
                             'because the region view is made from global '
                             'view 0.')
        if len(self.global_solarize_probs) != len(self.global_blur_probs):
            raise ValueError(
                'global_solarize_probs must have one entry per global view, '
                f'like global_blur_probs {self.global_blur_probs}, got '
                f'{self.global_solarize_probs}.')
        probs = dict(
            flip_prob=flip_prob,
            color_jitter_prob=color_jitter_prob,
            grayscale_prob=grayscale_prob,
            local_blur_prob=local_blur_prob,
            canvas_blur_prob=canvas_blur_prob,
            canvas_solarize_prob=canvas_solarize_prob,
            paste_alpha=paste_alpha)
        for index, prob in enumerate(self.global_blur_probs):
            probs[f'global_blur_probs[{index}]'] = prob
        for index, prob in enumerate(self.global_solarize_probs):
            probs[f'global_solarize_probs[{index}]'] = prob
        for name, prob in probs.items():
            if not 0 <= prob <= 1:
                raise ValueError(f'{name} must be in [0, 1], got {prob!r}.')
        self.flip_prob = flip_prob
        self.color_jitter_prob = color_jitter_prob
        self.grayscale_prob = grayscale_prob
        self.local_blur_prob = local_blur_prob
        self.canvas_blur_prob = canvas_blur_prob
        self.canvas_solarize_prob = canvas_solarize_prob
        self.paste_alpha = paste_alpha

        if not 0 <= solarize_threshold <= 256:
            raise ValueError('solarize_threshold must be in [0, 256], got '
                             f'{solarize_threshold!r}.')
        self.solarize_threshold = solarize_threshold
        if interpolation not in vf.CV2_INTERPOLATIONS:
            raise ValueError(f'Invalid interpolation {interpolation!r}; '
                             f'expected one of '
                             f'{tuple(vf.CV2_INTERPOLATIONS)}.')
        self.interpolation = interpolation

        if not isinstance(paste_margin, int) or paste_margin < 0:
            raise ValueError('paste_margin must be an int >= 0, got '
                             f'{paste_margin!r}.')
        self.paste_margin = paste_margin
        # Both pastes are local_size, and paste B starts right of paste A.
        # So the canvas must fit one paste in height and two in width.
        paste_h, paste_w = self.local_size
        canvas_h, canvas_w = self.canvas_size
        if (canvas_h < paste_h + paste_margin
                or canvas_w < 2 * paste_w + paste_margin):
            raise ValueError(
                f'canvas_size {self.canvas_size} is too small for two '
                f'non-overlapping pastes of local_size {self.local_size} with '
                f'paste_margin {paste_margin}: it needs H >= '
                f'{paste_h + paste_margin} and W >= '
                f'{2 * paste_w + paste_margin}.')

    def transform(self, results: Dict) -> Dict:
        """Add the views, canvas and masks listed in the class docstring.

        Args:
            results (dict): Result dict with ``img`` and ``background``.

        Returns:
            dict: The result dict with the view keys added.
        """
        img = _check_image(results, 'img')
        background = _check_image(results, 'background')
        params = self._sample_params(img.shape[:2], background.shape[:2])
        render_args = dict(
            interpolation=self.interpolation,
            solarize_threshold=self.solarize_threshold)

        global_views = [
            vf.render_view(img, view, self.global_size, **render_args)
            for view in params.global_views
        ]
        local_views = [
            vf.render_view(img, view, self.local_size, **render_args)
            for view in params.local_views
        ]
        roi_view = local_views.pop()
        region_view = vf.nearest_resize(global_views[0], self.local_size)

        canvas = vf.render_view(background, params.canvas, self.canvas_size,
                                **render_args)
        roi_mask = vf.paste_blend(canvas, roi_view, params.roi_yx,
                                  self.paste_alpha)
        inst_mask = vf.paste_blend(canvas, region_view, params.region_yx,
                                   self.paste_alpha)

        if local_views:
            local_array = np.stack(local_views)
        else:
            local_array = np.zeros((0, *self.local_size, 3), np.uint8)
        results['global_views'] = _to_tensor(np.stack(global_views))
        results['local_views'] = _to_tensor(local_array)
        results['roi_view'] = _to_tensor(roi_view)
        results['region_view'] = _to_tensor(region_view)
        results['canvas'] = _to_tensor(canvas)
        results['inst_mask'] = torch.from_numpy(inst_mask)
        results['roi_mask'] = torch.from_numpy(roi_mask)
        return results

    @cache_randomness
    def _sample_params(self, img_hw: _HW, background_hw: _HW) -> _SampleParams:
        """Draw every random number of one sample from ``np.random``."""
        global_views = [
            self._sample_view(img_hw, self.global_crop_scale,
                              self.global_crop_ratio, blur_prob, solar_prob)
            for blur_prob, solar_prob in zip(self.global_blur_probs,
                                             self.global_solarize_probs)
        ]
        local_views = [
            self._sample_view(img_hw, self.local_crop_scale,
                              self.local_crop_ratio, self.local_blur_prob, 0.0)
            for _ in range(self.num_local_views + 1)
        ]
        canvas = self._sample_view(background_hw, self.canvas_crop_scale,
                                   self.canvas_crop_ratio,
                                   self.canvas_blur_prob,
                                   self.canvas_solarize_prob)

        # Largest top-left offsets that keep paste_margin pixels free below
        # and right of a paste. Paste A must also leave room for paste B.
        paste_h, paste_w = self.local_size
        canvas_h, canvas_w = self.canvas_size
        max_y = canvas_h - paste_h - self.paste_margin
        max_x_b = canvas_w - paste_w - self.paste_margin
        max_x_a = max_x_b - paste_w
        roi_yx = (np.random.randint(0, max_y + 1),
                  np.random.randint(0, max_x_a + 1))
        region_x = np.random.randint(roi_yx[1] + paste_w, max_x_b + 1)
        region_yx = (np.random.randint(0, max_y + 1), region_x)
        return _SampleParams(global_views, local_views, canvas,
                             (int(roi_yx[0]), int(roi_yx[1])),
                             (int(region_yx[0]), int(region_yx[1])))

    def _sample_view(self, img_hw: _HW, crop_scale: _Range, crop_ratio: _Range,
                     blur_prob: float, solarize_prob: float) -> vf.ViewParams:
        """Draw the crop and photometric parameters of one view."""
        crop_box = vf.sample_crop_box(img_hw, crop_scale, crop_ratio,
                                      np.random)
        flip = np.random.rand() < self.flip_prob

        jitter_ops = []
        if np.random.rand() < self.color_jitter_prob:
            # Like torchvision's ColorJitter: a random order of the enabled
            # operations, each with a factor drawn uniformly from its range.
            order = np.random.permutation(len(vf.JITTER_OPS))
            factors = {
                name: float(np.random.uniform(*factor_range))
                for name, factor_range in self._jitter_ranges.items()
            }
            jitter_ops = [(vf.JITTER_OPS[i], factors[vf.JITTER_OPS[i]])
                          for i in order if vf.JITTER_OPS[i] in factors]

        grayscale = np.random.rand() < self.grayscale_prob
        blur_sigma = None
        if np.random.rand() < blur_prob:
            blur_sigma = float(np.random.uniform(*self.blur_sigma))
        solarize = np.random.rand() < solarize_prob
        return vf.ViewParams(crop_box, bool(flip), jitter_ops, bool(grayscale),
                             blur_sigma, bool(solarize))

    def __repr__(self) -> str:
        arg_names = ('global_size', 'local_size', 'canvas_size',
                     'num_local_views', 'global_crop_scale',
                     'global_crop_ratio', 'local_crop_scale',
                     'local_crop_ratio', 'canvas_crop_scale',
                     'canvas_crop_ratio', 'flip_prob', 'brightness',
                     'contrast', 'saturation', 'hue', 'color_jitter_prob',
                     'grayscale_prob', 'global_blur_probs',
                     'global_solarize_probs', 'local_blur_prob',
                     'canvas_blur_prob', 'canvas_solarize_prob', 'blur_sigma',
                     'solarize_threshold', 'paste_alpha', 'paste_margin',
                     'interpolation')
        args = ', '.join(f'{name}={getattr(self, name)!r}'
                         for name in arg_names)
        return f'{self.__class__.__name__}({args})'


def _check_size(name: str, size: Sequence[int]) -> _HW:
    size = tuple(size)
    if len(size) != 2 or not all(
            isinstance(v, (int, np.integer)) and v > 0 for v in size):
        raise ValueError(f'{name} must be (H, W) with two positive ints, got '
                         f'{size!r}.')
    return int(size[0]), int(size[1])


def _check_range(
    name: str, value: Sequence[float], upper: float = float('inf')) -> _Range:
    value = tuple(value)
    if len(value) != 2 or not 0 < value[0] <= value[1] <= upper:
        raise ValueError(f'{name} must be (low, high) with '
                         f'0 < low <= high <= {upper}, got {value!r}.')
    return float(value[0]), float(value[1])


def _check_image(results: Dict, key: str) -> np.ndarray:
    """Return ``results[key]`` as (H, W, 3) uint8, or raise naming the key.

    A 2-D grayscale array is repeated on three channels.
    """
    if key not in results:
        raise KeyError(f'SAIPMultiView needs results[{key!r}]. Load it with '
                       'LoadPersonImage; the background comes from the '
                       "dataset's background_path.")
    img = results[key]
    if not isinstance(img, np.ndarray):
        raise TypeError(f'results[{key!r}] must be a numpy array, got '
                        f'{type(img).__name__}.')
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f'results[{key!r}] must be an (H, W, 3) uint8 RGB '
                         f'array, got shape {img.shape} and dtype '
                         f'{img.dtype}.')
    return img


def _to_tensor(views: np.ndarray) -> torch.Tensor:
    """Turn (..., H, W, C) uint8 into a contiguous (..., C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(views, -1, -3)))
