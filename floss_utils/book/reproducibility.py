"""Which machine produced a notebook's outputs, and how nbval compares them elsewhere.

"Same seed, same machine, same numbers" is the book's reproducibility promise. Across machines
it cannot hold digit for digit: a different CPU makes the BLAS library (MKL here) pick other
kernels, so sums are taken in another order and results differ in the last bits. Chaotic
dynamics (a positive Lyapunov exponent is the subject of the book) and training amplify those
bits until the printed numbers differ: measured between the Intel machine that executed the
committed chapters and an AMD EPYC one, e.g. the sum of the exponents of a g = 3 network over
500 steps -284.2 vs -270.2, the number of diverged runs of chapter 5 2 vs 3, while every check
cell (the chapters' claims) held on both.

On one machine, too, the bits held only once MKL's code branch was pinned: with its AVX-512
kernels and two threads, separate processes of the same program on the same Intel Xeon gave two
different results (chapter 12's flossing: 2 of 10 runs differed, every one of them deterministic
within its process), while with the AVX2 branch all 10 agreed. ``import floss_utils`` therefore sets
``MKL_CBWR=AVX2`` unless the user set it (MKL reads it at its first call, so a chapter imports
``floss_utils`` before computing anything), and the fingerprint records the branch.

So each committed notebook records the machine it was executed on (:func:`stamp_notebook`, run
by ``make execute``), and the nbval run of ``make test`` (plugin ``tests/nbval_machine.py``)
compares outputs

- **exactly** (after the sanitizers of ``tests/nbval_sanitize.cfg``) when the current machine
  has the same fingerprint (:func:`machine_fingerprint`) as the stamp;
- otherwise with **numbers masked** (:func:`mask_numbers`): every number becomes ``NUM`` and
  runs of spaces one space, so the text, the check lines and the number of values must still
  match, and the claims are still asserted by the check cells, which fail the run if a claim
  fails on this machine.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["STAMP_KEY", "cpu_model", "machine_fingerprint", "notebook_stamp", "stamp_notebook", "same_machine",
           "NUMBER_MASKS", "mask_numbers"]

#: notebook metadata key; the stamp is ``metadata[STAMP_KEY]["executed_on"]``.
STAMP_KEY = "floss_utils"

# Fields that decide floating-point results (the rest of a stamp is informative).
_DECIDING = ("arch", "cpu", "os", "torch", "cpu_capability", "mkl_cbwr", "threads", "accelerator")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint() -> dict[str, Any]:
    """What decides the bits of a chapter's numbers on this machine, as a JSON-able dict:
    CPU architecture and model, OS, torch version, torch's CPU kernel set (e.g. ``AVX512``),
    MKL's code branch (``MKL_CBWR``, set by ``import floss_utils``; None where torch has no MKL),
    torch's thread count, and the CUDA device a ``device="auto"`` chapter would use (or None)."""
    import torch

    accel = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "os": platform.system(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR") if torch.backends.mkl.is_available() else None,
        "threads": torch.get_num_threads(),
        "accelerator": accel,
        "python": platform.python_version(),
    }


def notebook_stamp(nb: dict) -> Optional[dict[str, Any]]:
    """The ``executed_on`` fingerprint stored in a notebook's metadata (``None`` if absent)."""
    stamp = nb.get("metadata", {}).get(STAMP_KEY, {}).get("executed_on")
    return stamp if isinstance(stamp, dict) else None


def same_machine(a: Optional[dict], b: Optional[dict]) -> bool:
    """Whether two fingerprints agree on every field that decides floating-point results
    (a missing stamp never agrees)."""
    if not a or not b:
        return False
    return all(a.get(k) == b.get(k) for k in _DECIDING)


def stamp_notebook(path: str | Path, fingerprint: Optional[dict] = None) -> dict[str, Any]:
    """Writes ``fingerprint`` (default: this machine's) into the notebook's metadata, in place,
    written back by nbformat (the layout ``jupyter execute`` writes). Returns it."""
    import nbformat

    path = Path(path)
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several types for a file that is not a notebook
        raise ValueError(f"{path} is not a Jupyter notebook: {exc}") from exc
    fp = machine_fingerprint() if fingerprint is None else dict(fingerprint)
    nb.metadata.setdefault(STAMP_KEY, {})["executed_on"] = fp
    nbformat.write(nb, str(path))
    return fp


#: (regex, replacement) pairs, applied in order to numbers (optional sign, decimals, exponent;
#: nan/inf), then to runs of spaces/tabs (column widths follow the numbers' widths).
NUMBER_MASKS: tuple[tuple[str, str], ...] = (
    (r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?", "NUM"),
    (r"(?<![A-Za-z])[-+]?(?:nan|NaN|inf|Infinity)(?![A-Za-z])", "NUM"),
    (r"[ \t]+", " "),
)


def mask_numbers(text: str) -> str:
    """``text`` with every number replaced by ``NUM`` and runs of spaces collapsed, e.g.
    ``"  -270.1948   1e-05 nan"`` -> ``" NUM NUM NUM"``."""
    for regex, repl in NUMBER_MASKS:
        text = re.sub(regex, repl, text)
    return text


def _main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("stamp", "show"):
        print("usage: python -m floss_utils.book.reproducibility stamp|show NOTEBOOK [NOTEBOOK ...]", file=sys.stderr)
        return 2
    for name in argv[1:]:
        if argv[0] == "stamp":
            fp = stamp_notebook(name)
        else:
            fp = notebook_stamp(json.loads(Path(name).read_text()))
        print(f"{name}: {fp}")
    if argv[0] == "show":
        print(f"this machine: {machine_fingerprint()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
