"""Shared fixtures: the real sample files in ../shared/realdata (skipped, visibly, where absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from medbind_lib import ROOT

REALDATA = Path(os.environ.get("MEDBIND_REALDATA", ROOT.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path to ../shared/realdata; tests using it skip with the reason where it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real sample files not found at {REALDATA} (set MEDBIND_REALDATA or clone beside shared/)")
    return REALDATA


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is fastest and immune to OpenMP spin-waits when another job uses the CPU
    (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
