import random

import numpy as np
import pytest
import torch

import mmsaip  # noqa: F401  (registers the models)


@pytest.fixture(autouse=True)
def fixed_seed() -> None:
    """Seed Python, numpy and torch before every model test."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
