"""pytest plugin for ``pytest --nbval``: exact output comparison on the machine that executed a
notebook, numbers masked on any other (see :mod:`floss_utils.book.reproducibility` for why).

Loaded by the Makefile's nbval run with ``-p tests.nbval_machine``. For each notebook collected
by nbval it compares the ``executed_on`` stamp of the committed notebook with this machine's
fingerprint; on a mismatch (or a missing stamp) the notebook's sanitizers get the number masks
of :data:`floss_utils.book.reproducibility.NUMBER_MASKS` appended, so nbval still compares every
output's text, and the check cells still assert the chapter's claims. The report header names
this machine and the summary lists which notebooks were compared which way.
"""

from __future__ import annotations

import types

import pytest
from nbval.kernel import RunningKernel

from floss_utils.book.reproducibility import NUMBER_MASKS, machine_fingerprint, notebook_stamp, same_machine

_MODES: dict[str, str] = {}  # notebook path -> "exact" or "numbers masked (...)"


def _execute_with_history(self, cell_input, allow_stdin=None):
    """nbval 0.11 executes cells with ``store_history=False``; IPython (9.x) then cannot see the
    cell when it decides whether a trailing ``;`` silences the last expression, and every cell
    ending in ``f();`` gains an ``Out`` that ``jupyter execute``/papermill (which store history,
    as Jupyter does) never produced. Executing as Jupyter does keeps the comparison honest."""
    return self.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False)


RunningKernel.execute_cell_input = _execute_with_history


def _describe(fp: dict) -> str:
    return f"{fp.get('cpu')} ({fp.get('arch')}, {fp.get('cpu_capability')}, torch {fp.get('torch')}, " \
           f"{fp.get('threads')} threads{', ' + fp['accelerator'] if fp.get('accelerator') else ''})"


def _mask_on_setup(nb_file) -> None:
    """After nbval loads the sanitizer file for ``nb_file``, append the number masks."""
    load = nb_file.setup_sanitize_files

    def setup_sanitize_files(self):
        load()
        for regex, repl in NUMBER_MASKS:
            self.sanitize_patterns[regex] = repl

    nb_file.setup_sanitize_files = types.MethodType(setup_sanitize_files, nb_file)


def pytest_report_header(config):
    if getattr(config.option, "nbval", False):
        return f"nbval outputs compared exactly for notebooks executed on this machine: {_describe(machine_fingerprint())}"
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    if not getattr(config.option, "nbval", False):
        return
    here = machine_fingerprint()
    seen = set()
    for item in items:
        nb_file = item.parent
        nb = getattr(nb_file, "nb", None)
        if nb is None or id(nb_file) in seen:
            continue
        seen.add(id(nb_file))
        stamp = notebook_stamp(nb)
        name = str(nb_file.fspath.relto(config.rootdir) or nb_file.fspath)
        if same_machine(stamp, here):
            _MODES[name] = "exact"
        else:
            why = f"executed on {_describe(stamp)}" if stamp else "the notebook records no machine"
            _MODES[name] = f"numbers masked ({why})"
            _mask_on_setup(nb_file)


def pytest_terminal_summary(terminalreporter):
    if not _MODES:
        return
    terminalreporter.section("nbval: how committed outputs were compared")
    for name, mode in _MODES.items():
        terminalreporter.write_line(f"{name}: {mode}")
