import pytest
import torch
from mmengine.dataset import default_collate, pseudo_collate
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmsaip.models.data_preprocessors import SAIPDataPreprocessor

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')

MEAN = (10., 20., 30.)
STD = (2., 4., 5.)


def build_preprocessor(**kwargs) -> SAIPDataPreprocessor:
    cfg = dict(type='SAIPDataPreprocessor', mean=MEAN, std=STD)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def make_sample() -> dict:
    """One packed sample: two global views, a canvas and two masks."""
    return dict(
        inputs=dict(
            global_views=torch.randint(0, 256, (2, 3, 8, 4),
                                       dtype=torch.uint8),
            canvas=torch.randint(0, 256, (3, 6, 6), dtype=torch.uint8),
            inst_mask=torch.rand(6, 6) < 0.5,
            roi_mask=(torch.rand(6, 6) < 0.5).to(torch.uint8)),
        data_samples=DataSample())


def normalise_by_hand(image: torch.Tensor) -> torch.Tensor:
    """Normalise a (..., C, H, W) uint8 image channel by channel."""
    out = torch.empty(image.shape)
    for channel in range(3):
        out[..., channel, :, :] = (image[..., channel, :, :].double() -
                                   MEAN[channel]) / STD[channel]
    return out


def check_batch(batch: dict, samples: list) -> None:
    inputs = batch['inputs']
    assert set(inputs) == {'global_views', 'canvas', 'inst_mask', 'roi_mask'}
    assert inputs['global_views'].shape == (2, 2, 3, 8, 4)
    assert inputs['canvas'].shape == (2, 3, 6, 6)
    assert inputs['inst_mask'].shape == (2, 6, 6)
    assert inputs['global_views'].dtype == torch.float32
    assert inputs['canvas'].dtype == torch.float32
    assert inputs['inst_mask'].dtype == torch.bool
    assert inputs['roi_mask'].dtype == torch.bool
    for index, sample in enumerate(samples):
        raw = sample['inputs']
        torch.testing.assert_close(
            inputs['global_views'][index],
            normalise_by_hand(raw['global_views']),
            atol=1e-5,
            rtol=0)
        torch.testing.assert_close(
            inputs['canvas'][index],
            normalise_by_hand(raw['canvas']),
            atol=1e-5,
            rtol=0)
        assert torch.equal(inputs['inst_mask'][index], raw['inst_mask'])
        assert torch.equal(inputs['roi_mask'][index],
                           raw['roi_mask'].bool())


def test_preprocessor_build_from_registry():
    preprocessor = build_preprocessor()
    assert isinstance(preprocessor, SAIPDataPreprocessor)
    assert preprocessor.mean.shape == (3, 1, 1)
    assert preprocessor.std.flatten().tolist() == list(STD)
    # mean and std are not saved in checkpoints.
    assert 'mean' not in preprocessor.state_dict()


def test_preprocessor_pseudo_collate():
    samples = [make_sample(), make_sample()]
    data = pseudo_collate(samples)
    batch = build_preprocessor()(data)
    check_batch(batch, samples)
    assert batch['data_samples'] is data['data_samples']


def test_preprocessor_list_of_dicts():
    samples = [make_sample(), make_sample()]
    data = dict(
        inputs=[sample['inputs'] for sample in samples],
        data_samples=[sample['data_samples'] for sample in samples])
    check_batch(build_preprocessor()(data, training=True), samples)


def test_preprocessor_default_collate():
    samples = [make_sample(), make_sample()]
    data = dict(inputs=default_collate([s['inputs'] for s in samples]))
    batch = build_preprocessor()(data)
    check_batch(batch, samples)
    assert batch['data_samples'] is None


def test_preprocessor_known_values():
    preprocessor = build_preprocessor(mask_keys=())
    image = torch.zeros(1, 3, 1, 2, dtype=torch.uint8)
    image[0, :, 0, 0] = torch.tensor([10, 20, 30], dtype=torch.uint8)
    image[0, :, 0, 1] = torch.tensor([14, 28, 40], dtype=torch.uint8)
    batch = preprocessor(dict(inputs=dict(view=image)))
    expected = torch.tensor([[0., 2.], [0., 2.], [0., 2.]])
    assert torch.equal(batch['inputs']['view'][0, :, 0], expected)


def test_preprocessor_custom_mask_keys():
    preprocessor = build_preprocessor(mask_keys=('person_mask', ))
    mask = torch.tensor([[[0, 1], [2, 0]]], dtype=torch.uint8)
    batch = preprocessor(dict(inputs=dict(person_mask=[mask[0], mask[0]])))
    assert batch['inputs']['person_mask'].dtype == torch.bool
    assert batch['inputs']['person_mask'][1].tolist() == [[False, True],
                                                          [True, False]]


def test_preprocessor_empty_batch():
    with pytest.raises(ValueError):
        build_preprocessor()(dict(inputs=[]))


def test_preprocessor_mean_std_mismatch():
    with pytest.raises(ValueError):
        build_preprocessor(std=(1., 2.))
