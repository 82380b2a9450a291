import pytest
import torch

import layerscope as ls

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny():
    """Untrained one-block-per-stage ResNet (torchvision's ResNet code), seed 0."""
    return ls.load_model("resnet10", seed=0)


@pytest.fixture(scope="session")
def image32():
    return ls.load_image("chelsea", 32)


@pytest.fixture(scope="session")
def image48():
    return ls.load_image("chelsea", 48)
