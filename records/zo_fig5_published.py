"""Record: ZO's own values behind Fig. 5B and 5C, read from the stored outputs of their notebook.

ZO's figure notebook ``figures/signal_propagation.ipynb`` keeps its outputs. Two of them carry the
numbers behind Fig. 5 (deep networks at initialization, memory T in {1, 10^0.5, 10, 10^1.5, 100}):

* **Fig. 5B, printed.** The cell that draws the per-layer panels prints its table (``rnn, time, type,
  layer, mean_grad``): the mean squared gradient of each parameter group ("lambda" / "all_but_lambda"
  for the complex diagonal network; "nu", "theta", "all_but_lambda" for the LRU), per block, averaged
  over ZO's batches. The GRU's table is printed empty (its run is not in the stored outputs). ZO's
  pooled curve of a group is the mean of squares over all its parameters, i.e. the mean of the
  per-block values (the blocks have equal sizes); the growth with memory is that mean at T = 100
  over the mean at T = 1.
* **Fig. 5C, drawn only.** The layer-norm panel is stored as a PNG. Its curves are read pixel by pixel:
  the y axis is calibrated on the image's tick marks (1e11 at row 34.5, 1e-5 at row 221.5, log scale;
  x ticks T = 1, 10, 100 at columns 138.5, 235.5, 331.5), and the curves are found by their colours
  (ZO's "#14A82F" for lambda, "#02741E" for all_but_lambda; solid: no norm, dashed: layer norm). The
  calibration was read off this image (its sha256 is recorded and checked); as a check independent of
  it, the no-norm curves at T = 1 must lie within a factor 2 of the printed Fig. 5B values (the same
  network and memory, another run of ZO's cell), which they do.

Run from the repository's root, with a checkout of ZO's repository
(https://github.com/NicolasZucchet/Vanishing-and-exploding-gradients-are-not-the-end-of-the-story):

    .venv/bin/python records/zo_fig5_published.py --zo-repo PATH
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from floss_utils.book.records import Stopwatch, write_record

NAME = "zo_fig5_published"
NOTEBOOK = "figures/signal_propagation.ipynb"
_ROW = re.compile(r"\s*\d+\s+(\w+)\s+([\d.]+)\s+(\w+)\s+(\d)\s+([-+\d.eE]+)\s*$")
#: Fig. 5C's stored PNG: its sha256 and the calibration read off it (see the module docstring)
PANEL_C_SHA256 = "b9f82cf71abff05db773bf012819689f731a0f5658a893f04866e7b869b7e571"
Y_TICKS = ((34.5, 11.0), (221.5, -5.0))  # (pixel row, log10 value)
X_TICKS = ((138.5, 1.0), (331.5, 100.0))  # (pixel column, memory T)
COLOURS = {"lambda": (0x14, 0xA8, 0x2F), "all_but_lambda": (0x02, 0x74, 0x1E)}


def printed_table(nb: dict) -> pd.DataFrame:
    """Every printed row ``rnn, time, type, layer, mean_grad`` of the notebook's stored outputs."""
    rows = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            for line in "".join(out.get("text", "")).splitlines():
                m = _ROW.match(line)
                if m:
                    rows.append({"rnn": m.group(1), "time": float(m.group(2)), "type": m.group(3),
                                 "layer": int(m.group(4)), "mean_grad": float(m.group(5))})
    if not rows:
        raise ValueError(f"no printed gradient table in {NOTEBOOK}")
    return pd.DataFrame(rows)


def panel_c_image(nb: dict) -> bytes:
    """The stored PNG of the cell that draws Fig. 5C (its source names the norms and 'layer')."""
    for cell in nb["cells"]:
        src = "".join(cell.get("source", ""))
        if 'for norm in ["none", "layer"]' in src:
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    return base64.b64decode(out["data"]["image/png"])
    raise ValueError(f"no stored Fig. 5C image in {NOTEBOOK}")


def read_panel_c(png: bytes) -> pd.DataFrame:
    """The curves of Fig. 5C at T = 1 and T = 100: per colour, the y values of its pixel clusters."""
    import matplotlib.image as mpimg

    im = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    (r1, v1), (r2, v2) = Y_TICKS
    to_value = lambda row: 10 ** (v1 + (row - r1) * (v2 - v1) / (r2 - r1))
    rows = []
    for (col, memory), offset in zip(X_TICKS, (+1, -1)):
        x = int(round(col)) + offset  # one pixel inside the plotted range
        for kind, rgb in COLOURS.items():
            hit = np.nonzero(np.abs(im[:, x] - np.array(rgb) / 255).sum(-1) < 0.15)[0]
            clusters = np.split(hit, np.nonzero(np.diff(hit) > 1)[0] + 1)
            for cl in clusters:
                if len(cl):
                    rows.append({"memory": memory, "type": kind, "row": float(cl.mean()),
                                 "value": to_value(float(cl.mean()))})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zo-repo", required=True, type=Path, help="a checkout of ZO's repository")
    a = ap.parse_args()
    try:
        commit = subprocess.run(["git", "-C", str(a.zo_repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (not a git checkout)"
    raw = (a.zo_repo / NOTEBOOK).read_bytes()
    nb = json.loads(raw)
    with Stopwatch() as sw:
        table = printed_table(nb)
        growth = {}
        for (rnn, kind), sub in table.groupby(["rnn", "type"]):
            means = sub.groupby("time").mean_grad.mean()
            growth.setdefault(rnn, {})[kind] = float(means.iloc[-1] / means.iloc[0])
        png = panel_c_image(nb)
        sha = hashlib.sha256(png).hexdigest()
        if sha != PANEL_C_SHA256:
            raise ValueError(f"Fig. 5C's image changed (sha256 {sha}): re-read its calibration")
        panel = read_panel_c(png)
        # two clusters per colour and memory: solid (no norm) and dashed (layer norm). At T = 1 the no-norm curve
        # is the upper one; check it against the printed complex network at T = 1 (independent of the calibration)
        start = panel[panel.memory == 1.0]
        printed_t1 = {k: float(table[(table.rnn == "complex") & (table.time == 1.0) & (table.type == k)].mean_grad.mean())
                      for k in COLOURS}
        checks, layer_norm = {}, {}
        for kind in COLOURS:
            vals = sorted(start[start.type == kind].value, reverse=True)
            if len(vals) != 2:
                raise ValueError(f"Fig. 5C at T = 1: expected two {kind} curves, found {len(vals)}")
            checks[kind] = vals[0] / printed_t1[kind]
            if not 0.5 <= checks[kind] <= 2.0:
                raise ValueError(f"calibration check failed: {kind} no-norm at T = 1 reads {vals[0]:.3g}, "
                                 f"printed {printed_t1[kind]:.3g}")
            end = panel[(panel.memory == 100.0) & (panel.type == kind)].value
            # at T = 100 the no-norm curves leave the plotted range (above 1e6) or lie far above: the dashed one
            # is the lowest cluster
            layer_norm[kind] = {"T1": vals[1], "T100": float(end.min()), "growth": float(end.min() / vals[1])}
    write_record(NAME, description="ZO's own values behind Fig. 5B (the printed per-block gradient table of "
                                   "figures/signal_propagation.ipynb) and Fig. 5C (its stored layer-norm panel, "
                                   "read pixel by pixel): growth of each gradient group from T = 1 to T = 100",
                 command=".venv/bin/python records/zo_fig5_published.py --zo-repo PATH",
                 parameters={"zo_repository_commit": commit, "notebook": NOTEBOOK,
                             "notebook_sha256": hashlib.sha256(raw).hexdigest(), "panel_c_sha256": sha,
                             "panel_c_y_ticks": [list(t) for t in Y_TICKS], "panel_c_x_ticks": [list(t) for t in X_TICKS]},
                 results={"fig5b_growth": growth, "fig5b_gru_printed": bool((table.rnn == "gru").any()),
                          "fig5c_layer_norm": layer_norm, "fig5c_calibration_check": checks},
                 tables={"fig5b_per_block": table, "fig5c_read": panel}, stopwatch=sw)
    print(json.dumps({"fig5b_growth": growth, "fig5c_layer_norm": layer_norm, "check": checks}, indent=1))


if __name__ == "__main__":
    main()
