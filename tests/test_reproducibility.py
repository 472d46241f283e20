"""Same seed, same machine, same numbers — across processes, not only within one.

MKL's AVX-512 kernels with two threads gave two different results in separate processes of the
same flossing program on an Intel Xeon (each deterministic within its process), which made a
chapter's committed outputs unreproducible on the machine that produced them; ``import
floss_utils`` pins MKL's AVX2 branch (``MKL_CBWR``, see :mod:`floss_utils.book.reproducibility`).
These tests run programs in fresh interpreters, so what they see is what a chapter's kernel sees.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

# Chapter 12's flossing at a small size: 40 networks of N = 20 flossed for 20 steps (two threads,
# as the book's CI machine). With MKL's default branch, 2 of 6 such processes disagreed with the
# other 4 on the Intel Xeon CI machine kind (2 of 10 at 150 steps): six processes would all agree by
# chance with p ~ 0.1-0.3, so this test alone is weak evidence; the import-order test below is exact.
# On a machine without MKL the pin does nothing and these tests check only torch's own determinism.
_PROGRAM = """
import torch
from floss_utils.flossing import init_gf_networks, Flosser, FlossingConfig
torch.set_num_threads(2)
members = [(t, s) for t in (None, 0.0, -0.1, -0.3, -1.0) for s in range(8)]
seeds = [s for _, s in members]
net = init_gf_networks(seeds, 20, 4, dtype=torch.float64, device="cpu")
flosser = Flosser(net, FlossingConfig(k=16, steps=55, lr=0.01, ons=3), seeds,
                  targets=[0.0 if t is None else t for t, _ in members])
hist = flosser.run(20, active=[t is not None for t, _ in members])
print(repr(hist["loss"].nansum().item()), repr(net.J.sum().item()))
"""


def _run(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _env_without_cbwr() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    env["OMP_NUM_THREADS"] = "2"
    return env


def test_import_pins_mkl_branch_and_keeps_a_users_choice():
    env = _env_without_cbwr()
    code = "import os, floss_utils; print(os.environ.get('MKL_CBWR'))"
    assert _run(code, env) == "AVX2"
    assert _run(code, {**env, "MKL_CBWR": "COMPATIBLE"}) == "COMPATIBLE"


def test_fingerprint_records_the_mkl_branch():
    code = "from floss_utils.book.reproducibility import machine_fingerprint; print(machine_fingerprint()['mkl_cbwr'])"
    # the branch where torch's BLAS is MKL; nothing to record (None) where it is not
    assert _run(code, _env_without_cbwr()) == ("AVX2" if torch.backends.mkl.is_available() else "None")


@pytest.mark.slow
def test_separate_processes_give_the_same_bits():
    results = [_run("import floss_utils\n" + _PROGRAM, _env_without_cbwr()) for _ in range(6)]
    assert len(set(results)) == 1, f"{len(set(results))} different results in 6 processes: {sorted(set(results))}"


@pytest.mark.slow
def test_pin_holds_when_torch_is_imported_first():
    """The chapters import numpy, pandas and torch before floss_utils: the pin must still reach MKL
    (it reads MKL_CBWR at its first computation, not when torch is loaded). Compared exactly with a
    process that had MKL_CBWR=AVX2 from its start; MKL's other branches give other bits."""
    env = _env_without_cbwr()
    torch_first = "import numpy, pandas, torch\nimport floss_utils\n" + _PROGRAM
    from_start = _PROGRAM
    assert _run(torch_first, env) == _run(from_start, {**env, "MKL_CBWR": "AVX2"})
