"""Shared fixtures of the test suite.

The model zoo and the plain-autograd reference live in ``tests/models.py``; the fixtures here
only seed the random number generators and give each test a clean place to write files.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
import torch

# The tests mirror the package (tests/monitor/ for gradmedic/monitor/, ...) and are imported by path
# (--import-mode=importlib); their shared helpers (models.py, sick_models.py, browser.py ...) live here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Vanishing signals make denormal floats, which slow CPU kernels down many times; flush them to
# zero once for the whole session (the monitored and the plain runs see the same setting).
torch.set_flush_denormal(True)
# The test models are tiny: one intra-op thread is faster than two, and much faster when other
# processes share the cores (two spinning threads made an LSTM backward 500x slower here).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state."""
    torch.manual_seed(0)


@pytest.fixture
def collect_garbage():
    """Run the garbage collector before returning, for tests that check references are dropped."""

    def collect() -> None:
        gc.collect()

    return collect
