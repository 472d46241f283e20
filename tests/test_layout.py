"""The package's layout: folders that mirror the book's parts, imports that flow one way, and a
map (package docstring, README) that names every module, so a reader of a chapter finds the
code behind it in one jump.

Ground truth: the import statements of every module, read with ``ast`` (not by importing)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import floss_utils

from conftest import REPO_ROOT

PACKAGE = Path(floss_utils.__file__).parent
#: the book's parts, in reading order; a part may import earlier parts and the shared modules
PARTS = ("lyapunov", "curse_of_memory", "flossing", "synthesis")
SHARED = ("common", "optim", "progress")


def _modules(*, mapped: bool = False) -> list[str]:
    """Every module of the package as a dotted name below ``floss_utils`` (``lyapunov.maps``);
    ``mapped``: those a map must name (the registry's per-part data files are named by the
    registry package itself)."""
    names = sorted(m.name.removeprefix("floss_utils.")
                   for m in pkgutil.walk_packages(floss_utils.__path__, "floss_utils.")
                   if not m.name.rsplit(".", 1)[-1].startswith("_"))
    return [n for n in names if not (mapped and n.startswith("book.registry."))]


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports (top-level names below floss_utils, e.g. 'flossing')."""
    path = PACKAGE.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    here = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = [*base, *(node.module.split(".") if node.module else [])]
                if not target:  # `from .. import x` at the top: counts when x is a module
                    names = [a.name for a in node.names if (PACKAGE / a.name).is_dir()
                             or (PACKAGE / f"{a.name}.py").is_file()]
                    target = names[:1]
            elif node.module and node.module.startswith("floss_utils"):
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                out.add(target[0])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("floss_utils.")}
    return out


def _top(module: str) -> str:
    return module.split(".")[0]


def test_every_module_lives_in_a_part_the_shared_modules_or_the_book():
    allowed = {*PARTS, *SHARED, "book"}
    stray = [m for m in _modules() if _top(m) not in allowed]
    assert not stray, f"modules outside the parts, the shared modules and book/: {stray}"


@pytest.mark.parametrize("module", _modules())
def test_imports_flow_one_way(module):
    # a part imports only earlier parts and the shared modules; the shared modules import nothing
    # of the package; the book's machinery imports only the shared modules and itself
    top = _top(module)
    used = _imports(module) - {top}
    if top in SHARED:
        allowed: set[str] = set()
    elif top == "book":
        allowed = {"common", "progress"}
    else:
        allowed = {*PARTS[: PARTS.index(top)], *SHARED}
    assert used <= allowed, f"floss_utils.{module} imports {sorted(used - allowed)} (allowed: {sorted(allowed)})"


@pytest.mark.parametrize("part", PARTS)
def test_a_part_exports_every_public_name_of_its_modules(part):
    pkg = importlib.import_module(f"floss_utils.{part}")
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"floss_utils.{part}.{info.name}")
        for name in getattr(mod, "__all__", []):
            assert getattr(pkg, name) is getattr(mod, name), f"floss_utils.{part}.{name}"
            assert name in pkg.__all__, f"floss_utils.{part}.__all__ lacks {name}"


def test_no_module_is_shadowed_by_a_name_of_its_package():
    # `from floss_utils.curse_of_memory import dense_scan` must not silently give a function
    # where a module of the same name exists
    for module in _modules():
        if "." not in module:
            continue
        parent, leaf = module.rsplit(".", 1)
        importlib.import_module(f"floss_utils.{module}")
        pkg = importlib.import_module(f"floss_utils.{parent}")
        assert isinstance(getattr(pkg, leaf), type(sys)), f"floss_utils.{module} is shadowed by a name"


def test_package_docstring_names_every_module():
    doc = floss_utils.__doc__
    missing = [m for m in _modules(mapped=True)
               if not re.search(rf"(^|[ ,/]){m.rsplit('.', 1)[-1]}\b", doc, flags=re.M)]
    assert not missing, f"floss_utils/__init__.py's module map lacks {missing}"


def test_readme_table_names_every_module():
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [m for m in _modules(mapped=True) if f"`floss_utils.{m}`" not in readme]
    assert not missing, f"README's package table lacks {missing}"


def test_the_floss_command_starts_without_torch():
    # `floss list/params` and the validation of `floss run` must answer at once: the book's
    # machinery imports no numerics before a chapter runs
    code = ("import sys, floss_utils.book.cli, floss_utils.book.sweeps, floss_utils.book.parameters; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing the floss command loads {out.strip()}"
