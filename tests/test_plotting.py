"""Tests of floss_utils.book.plotting: the shared theme and figure saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests only; notebooks keep the inline backend

import matplotlib.pyplot as plt
import pytest

from floss_utils.book.plotting import paper_reference_style, save_figure, set_theme

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _snapshot() -> dict:
    return {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}


def test_saved_figures_carry_the_themes_resolution_and_size(tmp_path: Path):
    # what a reader gets is the PNG: read its size and resolution back with Pillow (an
    # independent decoder) and hold them to the theme's stated 150 dpi and 6.4 x 4 inches
    from PIL import Image

    set_theme()
    fig = plt.figure()  # the theme's default size
    ax = fig.add_axes((0, 0, 1, 1))
    ax.plot([0, 1], [0, 1])  # corner to corner, no ticks or labels: 'tight' neither crops nor grows
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_axis_off()
    path = save_figure(fig, tmp_path, "size")
    plt.close(fig)
    with Image.open(path) as img:
        dpi = img.info["dpi"]
        width, height = img.size
    assert [round(d) for d in dpi] == [150, 150]
    # a tight bounding box may add at most its 0.1-inch padding on each side
    assert abs(width - 6.4 * 150) <= 2 * 0.1 * 150 + 1 and abs(height - 4.0 * 150) <= 2 * 0.1 * 150 + 1


def test_figures_in_a_notebook_are_png_not_svg():
    # nbval compares SVG text but skips PNGs: the inline format must be PNG. Outside a kernel
    # set_theme leaves the format alone; the committed notebooks are checked for SVG by the
    # hygiene tests, so here: the theme never asks matplotlib for SVG when saving.
    set_theme()
    assert matplotlib.rcParams["savefig.format"] == "png"


def test_set_theme_is_idempotent():
    set_theme()
    first = _snapshot()
    set_theme()
    assert _snapshot() == first


def test_save_figure_writes_png(tmp_path: Path):
    set_theme()
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0, 1, 4])
    ax.scatter([1], [1], **paper_reference_style)
    ax.legend()
    path = save_figure(fig, tmp_path / "run", "curve")
    plt.close(fig)
    assert path == tmp_path / "run" / "figures" / "curve.png"
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_save_figure_overwrites(tmp_path: Path):
    fig, ax = plt.subplots()
    first = save_figure(fig, tmp_path, "f")
    ax.plot([0, 1], [1, 0])
    second = save_figure(fig, tmp_path, "f")
    plt.close(fig)
    assert first == second and second.stat().st_size > 0


@pytest.mark.parametrize("bad", ["", "a/b", "fig.png"])
def test_save_figure_rejects_bad_names(tmp_path: Path, bad: str):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path, bad)
    plt.close(fig)
