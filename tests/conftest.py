import os
import os.path as osp
from typing import List

import pytest

from saip_test_utils import REPO_ROOT


@pytest.fixture(scope='session')
def shared_data_root() -> str:
    """Folder of the shared data sets: $MMSAIP_DATA_ROOT, or ../shared/data
    next to the repository."""
    root = os.environ.get('MMSAIP_DATA_ROOT',
                          osp.join(REPO_ROOT, '..', 'shared', 'data'))
    root = osp.abspath(root)
    if not osp.isdir(root):
        pytest.fail(f'Shared data folder {root!r} not found. Set '
                    'MMSAIP_DATA_ROOT to the folder that contains '
                    'person_crops/.')
    return root


@pytest.fixture(scope='session')
def person_crop_paths(shared_data_root: str) -> List[str]:
    """Six real person crops, three from each source folder, sorted."""
    crops_root = osp.join(shared_data_root, 'person_crops')
    paths = []
    for source in ('coco_train2017', 'peta_towncentre'):
        folder = osp.join(crops_root, source)
        if not osp.isdir(folder):
            pytest.fail(f'Person crop folder {folder!r} not found under '
                        f'{shared_data_root!r}.')
        names = sorted(name for name in os.listdir(folder)
                       if name.lower().endswith('.jpg'))
        paths += [osp.join(folder, name) for name in names[:3]]
    return paths


@pytest.fixture
def seeded() -> None:
    """Seed every random generator the tests touch."""
    from mmengine.runner import set_random_seed
    set_random_seed(0)
