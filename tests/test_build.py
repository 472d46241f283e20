"""The book builds with warnings as errors, from the committed outputs (nothing executes).

Built once per session (the ``built_html`` fixture of conftest.py, shared with the browser test)
into a temporary ``--path-output`` so the user's ``_build`` is untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO_ROOT, chapter_notebooks, chapter_params, toc_entries

pytestmark = [pytest.mark.slow, pytest.mark.book]


@pytest.fixture(scope="module")
def html_dir(built_html: Path) -> Path:
    return built_html


def test_book_builds(html_dir: Path):
    assert (html_dir / "index.html").is_file()


@pytest.mark.parametrize("entry", toc_entries())
def test_page_rendered(html_dir: Path, entry: str):
    assert (html_dir / f"{entry}.html").is_file(), f"{entry} was not rendered"


@pytest.mark.parametrize("nb_path", chapter_params())
def test_chapter_outputs_rendered(html_dir: Path, nb_path: Path):
    """The committed outputs reach the page: at least one figure of each chapter is shown."""
    page = (html_dir / nb_path.relative_to(REPO_ROOT).with_suffix(".html")).read_text()
    assert "<img" in page, f"{nb_path.name}: no figure in the rendered page"
