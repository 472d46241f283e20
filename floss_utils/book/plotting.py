"""One shared look for every figure in the book, and a helper to save figures.

Every chapter calls :func:`set_theme` once, draws with matplotlib/seaborn, and saves each
figure with :func:`save_figure` into its run's output directory. Published values drawn for
comparison use :data:`paper_reference_style`, so "ours vs. published" reads the same
everywhere.

Figures are shown inline as PNG: nbval skips PNG outputs but would compare SVG text, and the
book keeps figures PNG (``tests/test_hygiene.py`` refuses SVG outputs). Do not call
``matplotlib.use("Agg")`` in a notebook: it suppresses the inline figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl
import seaborn as sns
from matplotlib.figure import Figure

__all__ = ["THEME_RC", "paper_reference_style", "save_figure", "set_theme"]

#: rcParams applied on top of the seaborn theme.
THEME_RC: dict[str, Any] = {
    "figure.dpi": 110,
    "figure.figsize": (6.4, 4.0),
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "savefig.format": "png",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}

#: Keyword arguments for ``ax.scatter`` to mark a value read from a published paper.
paper_reference_style: dict[str, Any] = {
    "marker": "*",
    "s": 120,
    "color": "black",
    "zorder": 5,
    "label": "published",
}


def _inline_png() -> None:
    """Inside an IPython kernel, make inline figures PNG (never SVG); elsewhere do nothing."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is part of the pinned environment
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("png")


def set_theme() -> None:
    """Apply the book's figure theme (idempotent: calling it again changes nothing).

    Seaborn's ``notebook`` context with a white grid and the colour-blind palette, plus the
    rcParams in :data:`THEME_RC`; inside a Jupyter kernel, inline figures are rendered as PNG.
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update(THEME_RC)
    _inline_png()


def save_figure(fig: Figure, output_dir: str | Path, name: str) -> Path:
    """Write ``fig`` as ``<output_dir>/figures/<name>.png`` and return that path.

    Parent directories are created as needed; an existing file of that name is replaced.
    ``name`` is a bare file stem such as ``"spectrum"`` (no directory, no extension).
    """
    if not name or "/" in name or "\\" in name or name.lower().endswith(".png"):
        raise ValueError(f"figure name must be a bare file stem like 'spectrum', got {name!r}")
    path = Path(output_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
