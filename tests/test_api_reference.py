"""The API reference (``book/api/``) documents every public name of the package exactly once, at
the module that defines it, and the chapters link only to names documented there.

The pages document each module with ``.. automodule:: <module>`` and ``:members:``, which renders
every name of the module's ``__all__`` that has documentation (a docstring, or a ``#:`` comment
for a constant) — re-exported names included, unless ``:exclude-members:`` names them. The fast
tests read the pages' directives and the package; the slow one reads the built book's inventory
(``objects.inv``), the ground truth of what Sphinx documented.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import posixpath
import re
from collections import Counter
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

import floss_utils

from conftest import REPO_ROOT, chapter_notebooks

API_DIR = REPO_ROOT / "book" / "api"
#: the registry's per-part data (chapter entries, no API of their own) and the ``python -m`` hook
UNDOCUMENTED = re.compile(r"floss_utils\.(__main__|book\.registry\.(part\d_\w+|tools))$")
DIRECTIVE = re.compile(r"^\.\. automodule:: (\S+)\n((?:   :.*\n)*)", re.M)
#: a MyST cross-reference to Python code: {func}`~pkg.mod.name` or {func}`title <pkg.mod.name>`
ROLE = re.compile(r"\{(func|class|data|mod|meth|attr|exc)\}`(?:[^`<]*<)?~?([\w.]+)>?`")


@cache
def _modules() -> tuple[str, ...]:
    """Every module and package of floss_utils that the reference documents."""
    names = [m.name for m in pkgutil.walk_packages(floss_utils.__path__, "floss_utils.")]
    return tuple(n for n in names if not UNDOCUMENTED.match(n))


@cache
def _automodules() -> tuple[tuple[str, dict[str, str]], ...]:
    """``(module, options)`` of every automodule directive of the API pages, in page order."""
    found = []
    for page in sorted(API_DIR.glob("*.md")):
        for module, opts in DIRECTIVE.findall(page.read_text()):
            found.append((module, dict(re.findall(r"^   :([\w-]+):[ \t]*(.*)$", opts, re.M))))
    return tuple(found)


def _directives() -> dict[str, dict[str, str]]:
    """module -> the options (``members``, ``exclude-members``, ...) of its automodule."""
    return dict(_automodules())


def _excluded(module: str) -> set[str]:
    return {n.strip() for n in _directives()[module].get("exclude-members", "").split(",") if n.strip()}


@cache
def _assigned(module: str) -> frozenset[str]:
    """Names a module's source assigns at top level (``A = ...``, ``A, B = ...``, ``A: T = ...``)."""
    path = Path(importlib.import_module(module).__file__)
    names = set()
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return frozenset(names)


def _defines(module: ModuleType, name: str) -> bool:
    obj = getattr(module, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return obj.__module__ == module.__name__
    return name in _assigned(module.__name__)


@cache
def _exports() -> tuple[tuple[str, str, str], ...]:
    """``(module, name, home)`` for every name of every documented module's ``__all__``; the home
    is the module that defines the name."""
    found = []
    for modname in _modules():
        module = importlib.import_module(modname)
        found += [(modname, name, _home(module, name)) for name in getattr(module, "__all__", [])]
    return tuple(found)


def _public() -> set[str]:
    """Every public name by its canonical (documented) name, ``home.name``."""
    return {f"{home}.{name}" for _, name, home in _exports()}


def _home(module: ModuleType, name: str) -> str:
    obj = getattr(module, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return obj.__module__
    homes = [m for m in _modules() if name in _assigned(m) and getattr(importlib.import_module(m), name, None) is obj]
    assert len(homes) == 1, f"{module.__name__}.{name}: defined in {homes or 'no documented module'}"
    return homes[0]


def _has_doc(qualname: str) -> bool:
    """Whether autodoc's ``:members:`` (no ``:undoc-members:``) renders the name."""
    from sphinx.pycode import ModuleAnalyzer

    modname, name = qualname.rsplit(".", 1)
    obj = getattr(importlib.import_module(modname), name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return bool(inspect.getdoc(obj))
    return ("", name) in ModuleAnalyzer.for_module(modname).find_attr_docs()


def test_every_module_has_one_automodule():
    documented = _directives()
    missing = [m for m in _modules() if m not in documented]
    assert not missing, f"modules missing from book/api/*.md: {missing}"
    twice = sorted(m for m, n in Counter(m for m, _ in _automodules()).items() if n > 1)
    assert not twice, f"modules with more than one automodule: {twice}"
    unknown = [m for m in documented if m not in _modules()]
    assert not unknown, f"API pages document modules that do not exist (or must not be documented): {unknown}"


def test_every_plain_module_lists_its_members():
    # a package of re-exports may show only its docstring; a module's own names need :members:
    plain = [m for m in _modules() if not hasattr(importlib.import_module(m), "__path__")]
    bare = [m for m in plain if "members" not in _directives()[m]]
    assert not bare, f"automodule without :members: for {bare}"


@pytest.mark.parametrize("qualname", sorted(_public()))
def test_public_name_is_documented_at_its_home(qualname: str):
    home, name = qualname.rsplit(".", 1)
    assert home in _directives(), f"{qualname}: its module is not on an API page"
    opts = _directives()[home]
    assert "members" in opts and name not in _excluded(home), f"{qualname}: not rendered by its module's automodule"
    assert _has_doc(qualname), f"{qualname}: no docstring (or #: comment), so autodoc leaves it out"


def test_reexports_are_not_documented_twice():
    # autodoc renders every name of __all__, imported or not: a re-export must be excluded
    twice = []
    for modname, opts in _directives().items():
        module = importlib.import_module(modname)
        if "members" not in opts or opts["members"].strip():
            continue
        twice += [f"{modname}.{n}" for n in getattr(module, "__all__", [])
                  if not _defines(module, n) and n not in _excluded(modname)]
    assert not twice, f"documented again where re-exported (add them to :exclude-members:): {twice}"


def _chapter_roles(nb_path: Path) -> list[tuple[str, str]]:
    cells = json.loads(nb_path.read_text())["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return ROLE.findall(text)


def _linkable(target: str) -> bool:
    """A documented module, a name it documents (its ``__all__``, or without one its documented
    own public names), or a member of a documented class."""
    if target in _directives():
        return True
    if "." not in target:
        return False
    modname, name = target.rsplit(".", 1)
    if modname not in _directives():
        return _linkable(modname)
    module = importlib.import_module(modname)
    if hasattr(module, "__all__"):
        return target in _public()
    return not name.startswith("_") and hasattr(module, name) and _defines(module, name) and _has_doc(target)


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_links_the_code_it_calls(nb_path: Path):
    targets = [t for _, t in _chapter_roles(nb_path)]
    assert targets, f"{nb_path.name}: no markdown cell links the API reference"
    stray = [t for t in targets if not _linkable(t)]
    assert not stray, f"{nb_path.name}: links to names the API reference does not document: {stray}"


@pytest.mark.slow
@pytest.mark.book
def test_built_inventory_holds_every_public_name_once(built_html: Path):
    from sphinx.util.inventory import InventoryFile

    with open(built_html / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", posixpath.join)
    python = {name for domain, entries in inventory.items() if domain.startswith("py:") for name in entries}
    missing = sorted(_public() - python)
    assert not missing, f"public names missing from the built reference: {missing}"
    again = sorted({f"{module}.{name}" for module, name, home in _exports() if module != home} & python)
    assert not again, f"re-exports documented a second time: {again}"
