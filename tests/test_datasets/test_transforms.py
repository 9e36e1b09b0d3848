import inspect
import math
import os.path as osp
from typing import Dict, List

import numpy as np
import pytest
import torch
from mmcv.transforms.utils import cache_random_params
from mmpretrain.registry import TRANSFORMS
from mmpretrain.structures import DataSample
from PIL import Image, ImageFile

import mmsaip.datasets  # noqa: F401  (registers the transforms)
from mmsaip.datasets.transforms import (ImageDecodeError, LoadPersonImage,
                                        PackSAIPInputs, SAIPMultiView)
from mmsaip.datasets.transforms import functional as vf

# SAIPMultiView arguments that switch off every photometric operation, so
# that the views are plain crops and the canvas values can be predicted.
NO_PHOTOMETRIC = dict(
    flip_prob=0.0,
    color_jitter_prob=0.0,
    grayscale_prob=0.0,
    global_blur_probs=(0.0, 0.0),
    global_solarize_probs=(0.0, 0.0),
    local_blur_prob=0.0,
    canvas_blur_prob=0.0,
    canvas_solarize_prob=0.0)

VIEW_KEYS = ('global_views', 'local_views', 'roi_view', 'region_view',
             'canvas', 'inst_mask', 'roi_mask')


@pytest.fixture
def crop_results(person_crop_paths: List[str]) -> Dict:
    """LoadPersonImage output for a COCO crop on a PETA crop background."""
    loader = LoadPersonImage()
    return loader(
        dict(
            img_path=person_crop_paths[0],
            background_path=person_crop_paths[3]))


def _bounding_box(mask: torch.Tensor) -> tuple:
    """Return (top, left, height, width) of the True pixels of a mask."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    top, left = int(rows[0]), int(cols[0])
    return top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1


def test_multi_view_shapes_dtypes(crop_results):
    np.random.seed(0)
    transform = TRANSFORMS.build(dict(type='SAIPMultiView'))
    results = transform(crop_results)

    expected = dict(
        global_views=((2, 3, 256, 128), torch.uint8),
        local_views=((6, 3, 128, 64), torch.uint8),
        roi_view=((3, 128, 64), torch.uint8),
        region_view=((3, 128, 64), torch.uint8),
        canvas=((3, 224, 224), torch.uint8),
        inst_mask=((224, 224), torch.bool),
        roi_mask=((224, 224), torch.bool))
    for key, (shape, dtype) in expected.items():
        assert tuple(results[key].shape) == shape, key
        assert results[key].dtype == dtype, key
        assert results[key].is_contiguous(), key


def test_region_view_is_nearest_global(crop_results):
    np.random.seed(1)
    results = SAIPMultiView()(crop_results)
    # A 256x128 -> 128x64 nearest resize keeps the even rows and columns.
    expected = results['global_views'][0][:, ::2, ::2]
    assert torch.equal(results['region_view'], expected)


def test_masks_cover_paste_rectangles(crop_results):
    transform = SAIPMultiView()
    for seed in range(20):
        np.random.seed(seed)
        results = transform(dict(crop_results))
        inst_mask, roi_mask = results['inst_mask'], results['roi_mask']

        assert int(inst_mask.sum()) == 128 * 64
        assert int(roi_mask.sum()) == 128 * 64
        assert not bool((inst_mask & roi_mask).any())
        roi_top, roi_left, roi_h, roi_w = _bounding_box(roi_mask)
        inst_top, inst_left, inst_h, inst_w = _bounding_box(inst_mask)
        assert (roi_h, roi_w) == (128, 64)
        assert (inst_h, inst_w) == (128, 64)
        # The official ranges: y in [0, 95), x_A in [0, 95),
        # x_B in [x_A + 64, 159).
        assert 0 <= roi_top < 95
        assert 0 <= inst_top < 95
        assert 0 <= roi_left < 95
        assert roi_left + 64 <= inst_left < 159


def test_canvas_paste_blend_values():
    rng = np.random.RandomState(0)
    person = rng.randint(0, 256, size=(300, 150, 3), dtype=np.uint8)
    background = rng.randint(0, 256, size=(224, 224, 3), dtype=np.uint8)
    # Scale and ratio 1 on a 224x224 background crop the whole image, and a
    # same-size cv2 resize copies it, so the unpasted canvas is `background`.
    transform = SAIPMultiView(
        canvas_crop_scale=(1.0, 1.0),
        canvas_crop_ratio=(1.0, 1.0),
        **NO_PHOTOMETRIC)
    np.random.seed(3)
    results = transform(dict(img=person, background=background))

    canvas = results['canvas'].permute(1, 2, 0).numpy().astype(np.int64)
    pasted = results['inst_mask'] | results['roi_mask']
    outside = ~pasted.numpy()
    np.testing.assert_array_equal(canvas[outside], background[outside])

    for view_key, mask_key in (('roi_view', 'roi_mask'), ('region_view',
                                                          'inst_mask')):
        top, left, height, width = _bounding_box(results[mask_key])
        person_view = results[view_key].permute(1, 2, 0).numpy()
        below = background[top:top + height, left:left + width]
        expected = np.rint(0.7 * person_view + 0.3 * below)
        actual = canvas[top:top + height, left:left + width]
        assert np.abs(actual - expected).max() <= 1, view_key


def test_paste_alpha_argument_used():
    person = np.full((64, 32, 3), 200, dtype=np.uint8)
    background = np.full((40, 40, 3), 100, dtype=np.uint8)
    transform = SAIPMultiView(paste_alpha=0.25, **NO_PHOTOMETRIC)
    np.random.seed(0)
    results = transform(dict(img=person, background=background))

    canvas = results['canvas']
    roi_values = canvas.permute(1, 2, 0)[results['roi_mask']]
    # Constant images stay constant through crop and bicubic resize.
    assert torch.all(roi_values == 125)  # 0.25 * 200 + 0.75 * 100
    unpasted = canvas.permute(1, 2, 0)[~(results['roi_mask']
                                         | results['inst_mask'])]
    assert torch.all(unpasted == 100)


@pytest.mark.parametrize('img_hw', [(2, 3), (1, 1), (3, 2)])
def test_tiny_image_gives_all_views(img_hw):
    img = np.arange(
        img_hw[0] * img_hw[1] * 3, dtype=np.uint8).reshape(*img_hw, 3)
    np.random.seed(0)
    results = SAIPMultiView()(dict(img=img, background=img.copy()))
    assert tuple(results['global_views'].shape) == (2, 3, 256, 128)
    assert tuple(results['local_views'].shape) == (6, 3, 128, 64)
    assert tuple(results['roi_view'].shape) == (3, 128, 64)
    assert tuple(results['region_view'].shape) == (3, 128, 64)
    assert tuple(results['canvas'].shape) == (3, 224, 224)


def test_custom_sizes_and_counts():
    img = np.random.RandomState(0).randint(
        0, 256, size=(90, 40, 3), dtype=np.uint8)
    transform = SAIPMultiView(
        global_size=(64, 32),
        local_size=(32, 16),
        canvas_size=(48, 40),
        num_local_views=3,
        global_blur_probs=(1.0, 0.0, 0.5),
        global_solarize_probs=(0.0, 0.0, 1.0),
        paste_margin=0)
    np.random.seed(0)
    results = transform(dict(img=img, background=img))
    assert tuple(results['global_views'].shape) == (3, 3, 64, 32)
    assert tuple(results['local_views'].shape) == (3, 3, 32, 16)
    assert tuple(results['canvas'].shape) == (3, 48, 40)
    assert int(results['inst_mask'].sum()) == 32 * 16
    assert int(results['roi_mask'].sum()) == 32 * 16
    assert not bool((results['inst_mask'] & results['roi_mask']).any())


@pytest.mark.parametrize('kwargs, match', [
    (dict(global_size=(256, )), 'global_size'),
    (dict(local_size=(0, 64)), 'local_size'),
    (dict(num_local_views=-1), 'num_local_views'),
    (dict(global_crop_scale=(0.9, 0.8)), 'global_crop_scale'),
    (dict(canvas_crop_scale=(0.2, 1.5)), 'canvas_crop_scale'),
    (dict(local_crop_ratio=(0.0, 0.5)), 'local_crop_ratio'),
    (dict(flip_prob=1.5), 'flip_prob'),
    (dict(brightness=-0.1), 'brightness'),
    (dict(hue=0.6), 'hue'),
    (dict(global_solarize_probs=(0.1, )), 'global_solarize_probs'),
    (dict(global_blur_probs=(),
          global_solarize_probs=()), 'global_blur_probs'),
    (dict(global_blur_probs=(1.0, -0.1)), r'global_blur_probs\[1\]'),
    (dict(blur_sigma=(0.0, 1.0)), 'blur_sigma'),
    (dict(solarize_threshold=300), 'solarize_threshold'),
    (dict(paste_alpha=1.2), 'paste_alpha'),
    (dict(paste_margin=-1), 'paste_margin'),
    (dict(interpolation='lanczos'), "'bicubic'"),
    (dict(canvas_size=(224, 129)), 'too small'),
    (dict(canvas_size=(129, 224)), 'too small'),
])
def test_multi_view_rejects_invalid_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAIPMultiView(**kwargs)


def test_multi_view_smallest_valid_canvas():
    # Two 128x64 pastes side by side plus the default 2-pixel margin.
    transform = SAIPMultiView(canvas_size=(130, 130))
    img = np.zeros((50, 30, 3), dtype=np.uint8)
    np.random.seed(0)
    results = transform(dict(img=img, background=img))
    assert int(results['inst_mask'].sum()) == 128 * 64


def test_multi_view_missing_background(crop_results):
    del crop_results['background']
    with pytest.raises(KeyError, match='background'):
        SAIPMultiView()(crop_results)


def test_multi_view_same_seed_same_views(crop_results):
    transform = SAIPMultiView()
    np.random.seed(7)
    first = transform(dict(crop_results))
    np.random.seed(7)
    second = transform(dict(crop_results))
    third = transform(dict(crop_results))
    for key in VIEW_KEYS:
        assert torch.equal(first[key], second[key]), key
    assert not torch.equal(first['global_views'], third['global_views'])


def test_multi_view_cache_randomness(crop_results):
    transform = SAIPMultiView()
    np.random.seed(0)
    with cache_random_params(transform):
        first = transform(dict(crop_results))
        second = transform(dict(crop_results))
    for key in VIEW_KEYS:
        assert torch.equal(first[key], second[key]), key


def test_multi_view_repr_lists_args():
    transform = SAIPMultiView(num_local_views=4, paste_alpha=0.6)
    text = repr(transform)
    for name in inspect.signature(SAIPMultiView.__init__).parameters:
        if name != 'self':
            assert f'{name}=' in text, name
    assert 'num_local_views=4' in text
    assert 'paste_alpha=0.6' in text


def _fits_range(low_value: float, high_value: float, low: float,
                high: float) -> bool:
    """Whether [low_value, high_value] meets [low, high]."""
    return high_value >= low and low_value <= high


def test_crop_sampling_statistics(person_crop_paths):
    # A tall PETA crop (W / H close to 0.4) fits most local crops, so few
    # draws are rejected and the sample follows the configured ranges.
    img = LoadPersonImage().load_rgb(person_crop_paths[4])
    img_hw = img.shape[:2]
    assert img_hw[1] / img_hw[0] < 0.6
    area = img_hw[0] * img_hw[1]
    transform = SAIPMultiView()
    np.random.seed(0)
    boxes = []
    for _ in range(300):
        params = transform._sample_params(img_hw, img_hw)
        boxes += [view.crop_box for view in params.local_views]
    assert len(boxes) == 300 * 7

    fallback = 0
    fractions, ratios = [], []
    for top, left, height, width in boxes:
        assert top >= 0
        assert left >= 0
        assert top + height <= img_hw[0]
        assert left + width <= img_hw[1]
        # w and h are rounded, so the drawn area and ratio lie within half a
        # pixel of the box in each direction.
        in_scale = _fits_range((height - 0.5) * (width - 0.5) / area,
                               (height + 0.5) * (width + 0.5) / area, 0.05,
                               0.8)
        in_ratio = _fits_range((width - 0.5) / (height + 0.5),
                               (width + 0.5) / (height - 0.5), 0.4, 0.6)
        if not (in_scale and in_ratio):
            fallback += 1
            continue
        fractions.append(height * width / area)
        ratios.append(width / height)

    # A crop of this shape fits most draws: fallbacks are rare.
    assert fallback < 0.05 * len(boxes)
    # Uniform scale in (0.05, 0.8) has mean 0.425; large draws that do not
    # fit are redrawn, which lowers the mean a little.
    assert 0.36 < np.mean(fractions) < 0.45
    assert min(fractions) < 0.1
    assert max(fractions) > 0.7
    # Log-uniform ratio in (0.4, 0.6) has median sqrt(0.24) ~= 0.49.
    assert 0.46 < np.median(ratios) < 0.52


@pytest.mark.parametrize('in_hw, out_hw', [((7, 5), (3, 4)),
                                           ((256, 128), (128, 64)),
                                           ((5, 9), (11, 6))])
def test_nearest_resize_matches_torch(in_hw, out_hw):
    img = np.random.RandomState(0).randint(
        0, 256, size=(*in_hw, 3), dtype=np.uint8)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None].float(),
        size=out_hw,
        mode='nearest')[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(vf.nearest_resize(img, out_hw), expected)


def test_crop_box_fallback_is_centred():
    # A 10x100 (H, W) image cannot hold any width / height in (0.4, 0.6),
    # so all 10 tries fail and the fallback keeps the full height.
    np.random.seed(0)
    box = vf.sample_crop_box((10, 100), (0.8, 1.0), (0.4, 0.6), np.random)
    assert box == (0, 47, 10, 6)


def test_load_person_image_real_crop(person_crop_paths):
    results = LoadPersonImage()(dict(img_path=person_crop_paths[0]))
    expected = np.asarray(Image.open(person_crop_paths[0]).convert('RGB'))
    assert results['img'].dtype == np.uint8
    assert results['img'].flags.writeable
    np.testing.assert_array_equal(results['img'], expected)
    assert results['img_shape'] == expected.shape[:2]
    assert 'background' not in results


def test_load_person_image_modes(tmp_path):
    gray = np.arange(12 * 8, dtype=np.uint8).reshape(12, 8)
    Image.fromarray(gray, 'L').save(tmp_path / 'gray.png')
    values16 = np.linspace(1000, 5000, 12 * 8).reshape(12, 8)
    Image.fromarray(values16.astype(np.uint16)).save(tmp_path / 'deep.png')
    rgba = np.zeros((12, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
    palette = Image.fromarray(gray, 'L').convert('P')
    palette.save(tmp_path / 'palette.png', transparency=0)
    cmyk = Image.new('CMYK', (8, 12), (0, 255, 255, 0))
    cmyk.save(tmp_path / 'cmyk.jpg')

    loader = LoadPersonImage(alpha_fill=(0, 0, 255))
    outputs = {
        name: loader.load_rgb(str(tmp_path / name))
        for name in ('gray.png', 'deep.png', 'rgba.png', 'palette.png',
                     'cmyk.jpg')
    }
    for name, img in outputs.items():
        assert img.shape == (12, 8, 3), name
        assert img.dtype == np.uint8, name

    for channel in range(3):
        np.testing.assert_array_equal(outputs['gray.png'][..., channel], gray)
    # 16-bit values are stretched from their own range, not clipped at 255.
    deep = outputs['deep.png'][..., 0].astype(int)
    assert deep.min() == 0
    assert deep.max() == 255
    assert len(np.unique(deep)) > 50
    # Red 200 at alpha 128 over the blue fill: R = 200 * 128 / 255 ~= 100,
    # B = 255 * 127 / 255 = 127.
    red, green, blue = outputs['rgba.png'][0, 0].tolist()
    assert abs(red - 100) <= 1
    assert green == 0
    assert abs(blue - 127) <= 1
    # Palette index 0 (pixel (0, 0)) is transparent, so it shows the fill.
    assert outputs['palette.png'][0, 0].tolist() == [0, 0, 255]
    np.testing.assert_array_equal(outputs['palette.png'][-1, -1],
                                  [gray[-1, -1]] * 3)
    # C=0, M=255, Y=255, K=0 is red; JPEG compression moves values a little.
    assert outputs['cmyk.jpg'][6, 4, 0] > 230
    assert outputs['cmyk.jpg'][6, 4, 1] < 25

    drop = LoadPersonImage(alpha_mode='drop').load_rgb(
        str(tmp_path / 'rgba.png'))
    assert drop[0, 0].tolist() == [200, 0, 0]


def test_load_person_image_broken_files(tmp_path, person_crop_paths):
    with open(person_crop_paths[3], 'rb') as f:
        jpeg_bytes = f.read()
    broken = {
        'truncated.jpg': jpeg_bytes[:len(jpeg_bytes) // 2],
        'empty.jpg': b'',
        'text.jpg': b'this is not an image\n',
    }
    loader = LoadPersonImage()
    for name, data in broken.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageDecodeError, match=name) as info:
            loader(dict(img_path=str(path)))
        assert info.value.path == str(path)


def test_load_person_image_rejects_truncated_flag(monkeypatch,
                                                  person_crop_paths):
    monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)
    with pytest.raises(RuntimeError, match='LOAD_TRUNCATED_IMAGES'):
        LoadPersonImage()(dict(img_path=person_crop_paths[0]))


def test_load_person_image_args():
    with pytest.raises(ValueError, match="'composite'"):
        LoadPersonImage(alpha_mode='blend')
    with pytest.raises(ValueError, match='alpha_fill'):
        LoadPersonImage(alpha_fill=(0, 0, 300))
    text = repr(LoadPersonImage(alpha_fill=(255, 255, 255)))
    assert "alpha_mode='composite'" in text
    assert 'alpha_fill=(255, 255, 255)' in text
    assert 'apply_exif_orientation=True' in text


def test_pack_saip_inputs(crop_results):
    np.random.seed(0)
    results = SAIPMultiView()(crop_results)
    packed = TRANSFORMS.build(dict(type='PackSAIPInputs'))(results)

    assert set(packed) == {'inputs', 'data_samples'}
    assert set(packed['inputs']) == set(VIEW_KEYS)
    for key in VIEW_KEYS:
        assert packed['inputs'][key] is results[key], key
    data_sample = packed['data_samples']
    assert isinstance(data_sample, DataSample)
    assert data_sample.img_path == crop_results['img_path']
    assert data_sample.background_path == crop_results['background_path']
    assert osp.isabs(data_sample.img_path)


def test_pack_saip_inputs_missing_key(crop_results):
    np.random.seed(0)
    results = SAIPMultiView()(crop_results)
    del results['roi_mask']
    with pytest.raises(KeyError, match='roi_mask'):
        PackSAIPInputs()(dict(results))
    with pytest.raises(KeyError, match='person_id'):
        PackSAIPInputs(meta_keys=('img_path', 'person_id'))(
            dict(results, roi_mask=torch.zeros(2)))
    text = repr(PackSAIPInputs(view_keys=('canvas', ), meta_keys=()))
    assert "view_keys=('canvas',)" in text
    assert 'meta_keys=()' in text


def test_color_jitter_matches_formulas():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, size=(16, 8, 3), dtype=np.uint8)
    as_float = img.astype(np.float64)
    luma = as_float @ np.array([0.299, 0.587, 0.114])

    brightness = vf.color_jitter(img, [('brightness', 1.3)])
    np.testing.assert_allclose(
        brightness, np.clip(np.rint(as_float * 1.3), 0, 255), atol=1)

    # Mostly blue, so the luma mean (~40) is far from the channel mean (~90).
    blue = img.copy()
    blue[..., :2] //= 8
    blue_float = blue.astype(np.float64)
    blue_luma = blue_float @ np.array([0.299, 0.587, 0.114])
    contrast = vf.color_jitter(blue, [('contrast', 0.6)])
    expected = np.clip(blue_float * 0.6 + blue_luma.mean() * 0.4, 0, 255)
    np.testing.assert_allclose(contrast, np.rint(expected), atol=1)

    saturation = vf.color_jitter(img, [('saturation', 0.5)])
    expected = as_float * 0.5 + luma[..., None] * 0.5
    np.testing.assert_allclose(saturation, np.rint(expected), atol=1)

    # A hue shift of half a turn maps pure red to cyan; a full turn of
    # shifts (0.25 four times) returns the input.
    red = np.zeros((2, 2, 3), dtype=np.uint8)
    red[..., 0] = 255
    cyan = vf.color_jitter(red, [('hue', 0.5)])
    assert cyan[0, 0].tolist() == [0, 255, 255]
    round_trip = vf.color_jitter(img, [('hue', 0.25)] * 4)
    np.testing.assert_allclose(round_trip, img, atol=1)

    gray = vf.to_grayscale(img)
    np.testing.assert_allclose(gray[..., 0], np.rint(luma), atol=1)
    assert np.array_equal(gray[..., 0], gray[..., 2])

    solarized = vf.solarize(img, 128)
    expected = np.where(img >= 128, 255 - img, img)
    np.testing.assert_array_equal(solarized, expected)


def test_gaussian_blur_kernel_from_sigma():
    sigma = 2.0
    img = np.zeros((41, 41, 3), dtype=np.uint8)
    img[20, 20] = 255
    blurred = vf.gaussian_blur(img, sigma).astype(np.float64)

    # The kernel spans 2 * ceil(3 * sigma) + 1 = 13 taps: 6 pixels each side.
    offsets = np.arange(-6, 7)
    kernel = np.exp(-offsets**2 / (2 * sigma**2))
    kernel /= kernel.sum()
    expected = np.zeros((41, 41))
    expected[14:27, 14:27] = 255 * np.outer(kernel, kernel)
    for channel in range(3):
        np.testing.assert_allclose(blurred[..., channel], expected, atol=1)
    assert blurred[:14].max() == 0
    assert blurred[27:].max() == 0
