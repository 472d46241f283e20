"""The machine stamp of committed notebooks and the nbval plugin that uses it
(floss_utils.book.reproducibility, tests/nbval_machine.py).

The integration test runs nbval, with the plugin, on small notebooks whose stored outputs are
deliberately different from what their cells print: a changed number must fail on the stamped
machine and pass elsewhere; changed words must fail everywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

import nbformat
import pytest

from floss_utils.book.reproducibility import (machine_fingerprint, mask_numbers, notebook_stamp,
                                              same_machine, stamp_notebook)

from conftest import REPO_ROOT, chapter_notebooks

OTHER_MACHINE = {"arch": "x86_64", "cpu": "Some Other CPU", "os": "Linux", "torch": "0.0", "cpu_capability": "DEFAULT",
                 "threads": 1, "accelerator": None}


def test_mask_numbers_hides_values_keeps_words():
    a = "  g   s  sum of exponents\n1.5 0.0         -270.1948  nan  2.75e-10\n20 configurations, 2 diverged"
    b = "  g   s  sum of exponents\n1.5 0.0   -284.1559  NaN  8.2e-11\n20 configurations, 3 diverged"
    assert a != b and mask_numbers(a) == mask_numbers(b)
    assert mask_numbers(a) == " g s sum of exponents\nNUM NUM NUM NUM NUM\nNUM configurations, NUM diverged"
    assert mask_numbers("2 diverged") != mask_numbers("2 converged")
    assert mask_numbers("1 2") != mask_numbers("1")  # the number of values still counts
    assert mask_numbers("✔ the sum rule holds") == "✔ the sum rule holds"  # no number: unchanged


def test_same_machine_needs_every_deciding_field():
    here = machine_fingerprint()
    assert same_machine(here, dict(here))
    assert same_machine(here, {**here, "python": "0.0"})  # informative field only
    for key in ("cpu", "torch", "threads", "cpu_capability", "accelerator"):
        assert not same_machine(here, {**here, key: "changed"}), key
    assert not same_machine(here, None) and not same_machine(None, None)


def test_stamp_round_trip_keeps_the_notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, str(path))
    fp = stamp_notebook(path)
    back = nbformat.read(str(path), as_version=4)
    nbformat.validate(back)
    assert notebook_stamp(back) == fp == json.loads(json.dumps(machine_fingerprint()))
    assert back.cells[0].source == "1 + 1"
    (tmp_path / "b.ipynb").write_text("not json")
    with pytest.raises(ValueError, match="not a Jupyter notebook"):
        stamp_notebook(tmp_path / "b.ipynb")


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.name)
def test_committed_chapters_record_their_machine(path: Path):
    # `make execute` stamps every chapter; a chapter without a stamp is compared numbers-masked
    # everywhere, which would silently lose the exact comparison on the executing machine
    stamp = notebook_stamp(json.loads(path.read_text()))
    assert stamp is not None, f"{path.relative_to(REPO_ROOT)} has no executed_on stamp: run `make execute`"
    assert {"cpu", "torch", "threads", "cpu_capability"} <= set(stamp)


def _notebook(path: Path, source: str, stored: str, stamp: Optional[dict]) -> None:
    """A one-cell notebook whose stored stdout is ``stored``, stamped with ``stamp`` (or not)."""
    cell = nbformat.v4.new_code_cell(source, execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text=stored)])
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": kernel}), str(path))
    if stamp is not None:
        stamp_notebook(path, stamp)


@pytest.mark.slow
def test_plugin_compares_exactly_here_and_masked_elsewhere(tmp_path):
    here = machine_fingerprint()
    src = 'print(f"error {2 ** 0.5:.3f}, 3 runs")'  # prints "error 1.414, 3 runs"
    cases = {  # name: (stored output, stamp, expected outcome)
        "number_here": ("error 1.415, 3 runs\n", here, "failed"),
        "number_elsewhere": ("error 1.415, 3 runs\n", OTHER_MACHINE, "passed"),
        "unstamped": ("error 1.415, 3 runs\n", None, "passed"),
        "words_elsewhere": ("error 1.414, 3 seeds\n", OTHER_MACHINE, "failed"),
        "same_here": ("error 1.414, 3 runs\n", here, "passed"),
    }
    for name, (stored, stamp, _) in cases.items():
        _notebook(tmp_path / f"{name}.ipynb", src, stored, stamp)
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "tests.nbval_machine",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "-p", "no:cacheprovider", "-rA",
         "--junitxml", str(report), *[str(tmp_path / f"{n}.ipynb") for n in cases]],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    # one testcase per notebook (one cell each), in the order given (outside the rootdir the
    # testcases carry no file name)
    got = ["failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
           for case in ET.parse(report).getroot().iter("testcase")]
    assert got == [expected for _, _, expected in cases.values()], f"{list(zip(cases, got))}\n{out[-3000:]}"
    assert "nbval outputs compared exactly for notebooks executed on this machine" in out
    assert "numbers masked (executed on Some Other CPU" in out
    assert "numbers masked (the notebook records no machine)" in out


@pytest.mark.slow
def test_plugin_honours_a_trailing_semicolon_as_jupyter_does(tmp_path):
    """A cell ``f();`` has no Out in a notebook executed by Jupyter/papermill; nbval must not
    invent one (nbval 0.11 alone does: it executes without history, see the plugin). A bare
    ``f()`` still has its Out compared."""
    here = machine_fingerprint()
    cases = {  # name: (source, stored outputs, expected outcome)
        "silenced": ("def f():\n    return 3\nf();", [], "passed"),
        "shown": ("def f():\n    return 3\nf()", [nbformat.v4.new_output("execute_result", data={"text/plain": "3"},
                                                                           execution_count=1)], "passed"),
        "shown_but_stored_silent": ("def f():\n    return 3\nf()", [], "failed"),
    }
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for name, (src, outputs, _) in cases.items():
        cell = nbformat.v4.new_code_cell(src, execution_count=1, outputs=outputs)
        nbformat.write(nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": kernel}), str(tmp_path / f"{name}.ipynb"))
        stamp_notebook(tmp_path / f"{name}.ipynb", here)
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "tests.nbval_machine",
         "-p", "no:cacheprovider", "--junitxml", str(report), *[str(tmp_path / f"{n}.ipynb") for n in cases]],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    got = ["failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
           for case in ET.parse(report).getroot().iter("testcase")]
    assert got == [expected for *_, expected in cases.values()], f"{list(zip(cases, got))}\n{(proc.stdout + proc.stderr)[-3000:]}"
