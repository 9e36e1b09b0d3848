import io
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Pillow modes that carry an alpha channel, including premultiplied ones.
_ALPHA_MODES = ('RGBA', 'LA', 'PA', 'RGBa', 'La')
# Pillow modes with one channel of more than 8 bits per pixel.
_HIGH_DEPTH_MODES = ('I', 'F', 'I;16', 'I;16L', 'I;16B', 'I;16N')
_EXIF_ORIENTATION_TAG = 0x0112
_ALPHA_MODE_OPTIONS = ('composite', 'drop')


class ImageDecodeError(OSError):
    """Error for an image file that is empty, truncated, corrupt or not an
    image at all.

    Args:
        path (str): Path of the file that failed to decode.
        reason (str): What went wrong, in one line.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f'Failed to decode image {path!r}: {reason}')
        self.filename = path
        self.path = path
        self.reason = reason


@TRANSFORMS.register_module()
class LoadPersonImage(BaseTransform):
    """Load a person image and, if given, a background image as RGB arrays.

    Every file is decoded with Pillow and fully loaded, so a truncated file
    raises instead of being padded with gray. Pillow only detects truncation
    while ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is False, so the transform
    raises ``RuntimeError`` if another module has set it to True.

    Modes other than RGB are converted, not rejected:

    - ``1``, ``L``, ``P`` (without transparency), ``CMYK`` and ``YCbCr`` go
      through Pillow's ``convert('RGB')``; grayscale is repeated on the three
      channels.
    - Images with alpha (``RGBA``, ``LA``, ``PA`` and palette or RGB/L images
      with a ``transparency`` entry) are blended over ``alpha_fill`` when
      ``alpha_mode='composite'``, or lose their alpha channel when
      ``alpha_mode='drop'``.
    - One-channel images of more than 8 bits (``I;16``, ``I``, ``F``, e.g.
      16-bit PNGs) are scaled linearly from their own minimum and maximum to
      [0, 255], so no value is clipped. A constant image becomes all zeros.

    Required keys:

    - img_path
    - background_path (optional)

    Added keys:

    - img (np.ndarray): (H, W, 3) uint8 RGB.
    - img_shape (tuple): (H, W).
    - ori_shape (tuple): (H, W).
    - background (np.ndarray): (H, W, 3) uint8 RGB, only if
      ``background_path`` is present.
    - background_shape (tuple): (H, W), only if ``background_path`` is
      present.

    Args:
        alpha_mode (str): How images with transparency become RGB. Options
            are ``'composite'`` (blend over ``alpha_fill``) and ``'drop'``
            (keep the colour channels unchanged). Defaults to
            ``'composite'``.
        alpha_fill (Sequence[int]): RGB colour, each in [0, 255], shown
            through transparent pixels when ``alpha_mode='composite'``.
            Defaults to (0, 0, 0).
        apply_exif_orientation (bool): Whether to rotate or flip the image
            following its EXIF orientation tag, like ``mmcv.imread``.
            Defaults to True.

    Raises:
        ImageDecodeError: When a file is empty, truncated, corrupt, not an
            image, or in a mode that cannot be converted to RGB. A file that
            cannot be opened at all (missing, permission denied) raises the
            ``OSError`` of ``open`` instead.
    """

    def __init__(self,
                 alpha_mode: str = 'composite',
                 alpha_fill: Sequence[int] = (0, 0, 0),
                 apply_exif_orientation: bool = True) -> None:
        if alpha_mode not in _ALPHA_MODE_OPTIONS:
            raise ValueError(f'Invalid alpha_mode {alpha_mode!r}; expected '
                             f'one of {_ALPHA_MODE_OPTIONS}.')
        alpha_fill = tuple(alpha_fill)
        if len(alpha_fill) != 3 or not all(
                isinstance(v, (int, np.integer)) and 0 <= v <= 255
                for v in alpha_fill):
            raise ValueError('alpha_fill must be three integers in [0, 255], '
                             f'got {alpha_fill!r}.')
        self.alpha_mode = alpha_mode
        self.alpha_fill = tuple(int(v) for v in alpha_fill)
        self.apply_exif_orientation = apply_exif_orientation

    def transform(self, results: Dict) -> Optional[Dict]:
        """Load ``img_path`` and the optional ``background_path``.

        Args:
            results (dict): Result dict with ``img_path`` and optionally
                ``background_path``.

        Returns:
            dict: The result dict with the keys listed in the class
            docstring added.
        """
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            raise RuntimeError(
                'PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so Pillow pads '
                'truncated images with gray instead of raising. Find the '
                'module that sets it and remove that line, because '
                'LoadPersonImage relies on the error to skip broken files.')

        img = self.load_rgb(results['img_path'])
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]

        if results.get('background_path') is not None:
            background = self.load_rgb(results['background_path'])
            results['background'] = background
            results['background_shape'] = background.shape[:2]
        return results

    def load_rgb(self, path: str) -> np.ndarray:
        """Decode one image file into an RGB array.

        Args:
            path (str): Image file path.

        Returns:
            np.ndarray: (H, W, 3) uint8 RGB array.
        """
        with open(path, 'rb') as f:
            data = f.read()
        if not data:
            raise ImageDecodeError(path, 'the file is empty (0 bytes)')

        try:
            image = Image.open(io.BytesIO(data))
            # load() runs the whole decoder, which is where truncation and
            # corrupt entropy-coded data are detected.
            image.load()
            if self.apply_exif_orientation:
                image = self._apply_exif_orientation(image)
            return self._to_rgb_array(image)
        except UnidentifiedImageError as err:
            raise ImageDecodeError(path, 'not a known image format') from err
        except Image.DecompressionBombError as err:
            raise ImageDecodeError(path, str(err)) from err
        # Pillow reports broken data as OSError ("image file is truncated"),
        # SyntaxError (malformed headers in some plugins) or ValueError.
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageDecodeError(path,
                                   f'{type(err).__name__}: {err}') from err

    @staticmethod
    def _apply_exif_orientation(image: Image.Image) -> Image.Image:
        """Rotate or flip ``image`` by its EXIF orientation tag, if any."""
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        if orientation == 1:
            return image
        return ImageOps.exif_transpose(image)

    def _to_rgb_array(self, image: Image.Image) -> np.ndarray:
        """Convert a decoded Pillow image of any mode to (H, W, 3) uint8.

        np.array copies into a writable array, because np.asarray of a Pillow
        image is read-only and later transforms may write in place.
        """
        if image.mode in _HIGH_DEPTH_MODES:
            return self._high_depth_to_rgb(np.asarray(image))

        has_alpha = (
            image.mode in _ALPHA_MODES or 'transparency' in image.info)
        if has_alpha:
            rgba = image.convert('RGBA')
            rgb = rgba.convert('RGB')
            if self.alpha_mode == 'composite':
                # paste() with a mask computes
                # fill * (1 - alpha / 255) + rgb * alpha / 255 in C.
                canvas = Image.new('RGB', rgba.size, self.alpha_fill)
                canvas.paste(rgb, mask=rgba.getchannel('A'))
                rgb = canvas
            return np.array(rgb)

        if image.mode != 'RGB':
            image = image.convert('RGB')
        return np.array(image)

    @staticmethod
    def _high_depth_to_rgb(values: np.ndarray) -> np.ndarray:
        """Scale a (H, W) array of any numeric dtype to (H, W, 3) uint8."""
        values = values.astype(np.float64)
        low, high = values.min(), values.max()
        if high > low:
            scaled = np.rint((values - low) * (255.0 / (high - low)))
        else:
            scaled = np.zeros_like(values)
        gray = scaled.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'alpha_mode={self.alpha_mode!r}, '
                f'alpha_fill={self.alpha_fill}, '
                f'apply_exif_orientation={self.apply_exif_orientation})')
