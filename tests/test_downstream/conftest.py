import pytest
import torch
from mmengine.registry import DefaultScope
# A fixture shared with tests/test_utils: imported, pytest registers it here.
from transfer_test_utils import pretraining_checkpoint  # noqa: F401


@pytest.fixture(autouse=True)
def restore_default_scope():
    """Undo the default scope that Runners and registry builds set.

    A leftover 'mmdet' scope would make later tests look up mmpretrain
    components in mmdet's registry. The context manager restores mmengine's
    scope stack on exit.
    """
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture
def single_thread():
    """Run torch on one thread during the test.

    The fine-tuning runs use tiny models, whose ops are too small to gain
    from a second thread. On a shared 2-core machine under load, two
    OpenMP threads made a tiny pose training step about 30 times slower
    (2.4 s against 0.08 s per step) than one.
    """
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(num_threads)
