"""Every module of floss_utils is named in the package docstring's module map and in the
README's package table, so a reader finds the code behind a chapter in one jump."""

from __future__ import annotations

import pkgutil
import re

import floss_utils

from conftest import REPO_ROOT


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(floss_utils.__path__) if not m.name.startswith("_"))


def test_package_docstring_names_every_module():
    doc = floss_utils.__doc__
    missing = [m for m in _modules() if not re.search(rf"(^|[ ,]){m}\b", doc, flags=re.M)]
    assert not missing, f"floss_utils/__init__.py's module map lacks {missing}"


def test_readme_table_names_every_module():
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [m for m in _modules() if f"`floss_utils.{m}`" not in readme]
    assert not missing, f"README's package table lacks {missing}"
