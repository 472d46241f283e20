"""Every chapter runs end to end at ``scale="smoke"`` through papermill.

This is how a reader reruns a chapter with new parameters, so it is tested the same way: the
run must write ``results.json`` (a non-empty JSON object) and at least one PNG figure into the
``output_dir`` it was given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import papermill
import pytest
from jupyter_client.manager import start_new_kernel

from conftest import BOOK_DIR, chapter_params

KERNEL = "python3"


def test_kernel_runs_in_this_environment():
    """The ``python3`` kernel that papermill starts must be this environment's Python.

    A ``python3`` kernelspec installed elsewhere (e.g. in ~/.local/share/jupyter) would take
    precedence and run the chapters against another environment's packages.
    """
    printed: list[str] = []

    def collect(msg: dict) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            printed.append(msg["content"]["text"])

    km, kc = start_new_kernel(kernel_name=KERNEL)
    try:
        reply = kc.execute_interactive("import sys; print(sys.prefix)", timeout=60, output_hook=collect)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert printed, "the kernel printed nothing"
    assert Path("".join(printed).strip()).resolve() == Path(sys.prefix).resolve()


@pytest.mark.slow
@pytest.mark.smoke
@pytest.mark.parametrize("nb_path", chapter_params())
def test_chapter_smoke(nb_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    output_dir = tmp_path / "output"
    papermill.execute_notebook(
        str(nb_path),
        str(tmp_path / nb_path.name),
        parameters={"scale": "smoke", "output_dir": str(output_dir)},
        kernel_name=KERNEL,
        cwd=str(BOOK_DIR),
        progress_bar=False,
    )
    results_path = output_dir / "results.json"
    assert results_path.is_file(), f"{nb_path.name} wrote no results.json into output_dir"
    results = json.loads(results_path.read_text())
    assert isinstance(results, dict) and results, "results.json must be a non-empty JSON object"
    pngs = sorted((output_dir / "figures").glob("*.png"))
    assert pngs, f"{nb_path.name} wrote no PNG under output_dir/figures"
    assert all(p.stat().st_size > 0 for p in pngs), "an empty PNG was written"
