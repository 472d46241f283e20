"""Tests of floss_utils.book.plotting: the shared theme and figure saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests only; notebooks keep the inline backend

import matplotlib.pyplot as plt
import pytest

from floss_utils.book.plotting import THEME_RC, paper_reference_style, save_figure, set_theme

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _snapshot() -> dict:
    return {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}


def test_set_theme_applies_rcparams():
    set_theme()
    assert matplotlib.rcParams["figure.dpi"] == 110
    assert matplotlib.rcParams["savefig.dpi"] == 150
    assert matplotlib.rcParams["savefig.bbox"] == "tight"
    assert tuple(matplotlib.rcParams["figure.figsize"]) == (6.4, 4.0)
    for key, value in THEME_RC.items():
        current = matplotlib.rcParams[key]
        assert (tuple(current) if isinstance(value, tuple) else current) == value, key


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
