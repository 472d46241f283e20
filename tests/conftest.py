"""Shared fixtures for the test suite.

The chapters are the notebooks listed in ``_toc.yml`` (not a glob of ``book/``): the table of
contents is the single source of truth for what the book contains.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_DIR = REPO_ROOT / "book"
TOC_PATH = REPO_ROOT / "_toc.yml"

# Progress bars differ run to run; keep them out of every output the tests produce.
os.environ.setdefault("TQDM_DISABLE", "1")


def _toc_files(node: object) -> list[str]:
    """Every ``root``/``file`` entry of a jupyter-book ``_toc.yml`` tree, in reading order."""
    found: list[str] = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if key in node:
                found.append(str(node[key]))
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                found.extend(_toc_files(child))
    elif isinstance(node, list):
        for child in node:
            found.extend(_toc_files(child))
    return found


def toc_entries() -> list[str]:
    """The documents of the table of contents, as written there (no suffix)."""
    return _toc_files(yaml.safe_load(TOC_PATH.read_text()))


def chapter_notebooks() -> list[Path]:
    """The chapter notebooks: the ``.ipynb`` files that the ``_toc.yml`` entries refer to."""
    return [
        REPO_ROOT / f"{entry}.ipynb"
        for entry in toc_entries()
        if (REPO_ROOT / f"{entry}.ipynb").exists() or not (REPO_ROOT / f"{entry}.md").exists()
    ]


def registry_notebook(chapter_id: str) -> Path:
    """The notebook the chapter registry names for ``chapter_id``, which must exist."""
    from floss_utils.book.chapters import CHAPTERS

    path = REPO_ROOT / CHAPTERS[chapter_id].notebook
    assert path.exists(), f"the registry names {CHAPTERS[chapter_id].notebook} for {chapter_id}, which does not exist"
    return path


def chapter_params() -> list[pytest.param]:
    """``chapter_notebooks()`` as pytest parameters with readable ids (the file stem)."""
    return [pytest.param(nb, id=nb.stem) for nb in chapter_notebooks()]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def book_dir() -> Path:
    return BOOK_DIR


@pytest.fixture(scope="session")
def built_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built once per session with warnings as errors; returns its ``html`` folder."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book), "build", str(REPO_ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return out / "_build" / "html"


# ---- helpers shared by the numerical tests

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module whose tests are loops of tiny batched ops: a second
    thread only adds synchronization (and makes the run time erratic on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
