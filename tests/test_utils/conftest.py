# A fixture shared with tests/test_downstream: imported, pytest registers it.
from transfer_test_utils import pretraining_checkpoint  # noqa: F401
