import sys

import pytest
import torch

import layerscope as ls

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _fault_counts_from_zero():
    """LAYERSCOPE_FAULT counts how often a point was reached in this process: each test that
    sets it in-process starts from zero."""
    from layerscope import faults

    faults.reset()


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


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """``run_cli(*args)`` runs ``layerscope ARGS`` in this process: (exit code, stdout, stderr)."""
    from layerscope import cli

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["layerscope", *args])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
