"""Record: ZO's own effective learning rates behind their Figs. 4 and 9 (bottom), as medians per parameter.

ZO's figure notebook ``figures/linear_system_adam_lr.ipynb`` plots four files of their
repository, ``figures/lr_RNN_1.npy``, ``lr_c_diag.npy``, ``lr_LRU.npy`` and ``lr_S4.npy``: the
effective learning rate of every parameter entry (``opt.update(-ones, state)`` after 10 000
constant-lr Adam steps at lr 1e-3, one run per student; the values are negative, the figure plots
``log10(-value)``). This record reads those files and keeps, per student and parameter, the
median of ``|value|`` over the entries — ZO's medians exactly, instead of values read off the
log-scale panels. Parameter names are this book's (``DenseRNN``: A, B, C, D; ``ComplexDiagonalRNN``:
lam_re, lam_im, ...; ``LRU``: lam_mag, lam_ang, gamma_log, ...; ``S4D``: A_re, A_im, delta_raw, ...).

The files are numpy pickles of JAX arrays. They are read with a restricted unpickler that admits
only numpy's array reconstruction and JAX's array wrapper around it (nothing else is executed),
so JAX is not needed.

Run from the repository's root, with a checkout of ZO's repository
(https://github.com/NicolasZucchet/Vanishing-and-exploding-gradients-are-not-the-end-of-the-story):

    .venv/bin/python records/zo_fig4_published_medians.py --zo-repo PATH
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import pickle
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from floss_utils.book.records import Stopwatch, write_record

NAME = "zo_fig4_published_medians"
#: file -> (student, {this book's parameter: path into the file's "params" tree, [index along axis 0]})
FILES = {
    "lr_RNN_1.npy": ("dense RNN", {"A": ("VmapVmapRNNBase_0", "A"), "B": ("VmapVmapRNNBase_0", "B", "kernel"),
                                   "C": ("C", "kernel"), "D": ("D", "kernel")}),
    "lr_c_diag.npy": ("complex diagonal", {"lam_re": ("lambda", 0), "lam_im": ("lambda", 1), "B_re": ("B_re",),
                                           "B_im": ("B_im",), "C_re": ("C_re",), "C_im": ("C_im",), "D": ("D",)}),
    "lr_LRU.npy": ("LRU", {"lam_mag": ("lambda", 0), "lam_ang": ("lambda", 1), "gamma_log": ("gamma",),
                           "B_re": ("B_re",), "B_im": ("B_im",), "C_re": ("C_re",), "C_im": ("C_im",), "D": ("D",)}),
    "lr_S4.npy": ("S4D", {"A_re": ("A", 0), "A_im": ("A", 1), "delta_raw": ("Delta",), "B_re": ("B_re",),
                          "B_im": ("B_im",), "C_re": ("C_re",), "C_im": ("C_im",), "D": ("D",)}),
}


def _reconstruct_jax_array(fun, args, arr_state, aval_state):  # what jax._src.array pickles: a numpy array inside
    array = fun(*args)
    array.__setstate__(arr_state)
    return array


class _NumpyOnly(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) == ("jax._src.array", "_reconstruct_array"):
            return _reconstruct_jax_array
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)


def load_npy_pickle(path: Path):
    raw = path.read_bytes()
    if raw[:6] != b"\x93NUMPY":
        raise ValueError(f"{path} is not a .npy file")
    major = raw[6]
    header = struct.unpack("<H", raw[8:10])[0] if major == 1 else struct.unpack("<I", raw[8:12])[0]
    obj = _NumpyOnly(io.BytesIO(raw[(10 if major == 1 else 12) + header:])).load()
    return obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zo-repo", required=True, type=Path, help="a checkout of ZO's repository")
    a = ap.parse_args()
    figures = a.zo_repo / "figures"
    try:
        commit = subprocess.run(["git", "-C", str(a.zo_repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (not a git checkout)"
    rows, medians, files = [], {}, {}
    with Stopwatch() as sw:
        for file, (student, params) in FILES.items():
            path = figures / file
            files[file] = hashlib.sha256(path.read_bytes()).hexdigest()
            tree = load_npy_pickle(path)["params"]
            medians[student] = {}
            for param, where in params.items():
                node = tree
                for key in where:
                    node = node[key]
                values = np.abs(np.asarray(node, dtype=np.float64)).ravel()
                medians[student][param] = float(np.median(values))
                rows.append({"student": student, "parameter": param, "entries": values.size,
                             "median_effective_lr": medians[student][param], "min": values.min(), "max": values.max()})
    table = pd.DataFrame(rows)
    write_record(NAME, description="ZO's own effective learning rates of Figs. 4 and 9 (bottom), read from the "
                                   "figures/lr_*.npy files of their repository: the median |value| per parameter",
                 command=f"{'.venv/bin/python'} records/{NAME}.py --zo-repo PATH",
                 parameters={"zo_repository_commit": commit, "files_sha256": files, "lr": 1e-3, "steps": 10_000},
                 results={"medians": medians}, tables={"medians": table}, stopwatch=sw)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
