"""Records: results of runs too long for CI, committed with their provenance and the command
that remakes them.

Where a chapter compares with a published value, its headline points are also run at the
source's own configuration (sizes, steps, seeds), usually far beyond the chapter's ``book``
scale. Those runs are **records**: a folder ``records/<name>/`` in the book's checkout holding

* ``record.json`` — what was run and how: ``name``, ``description``, ``command`` (the one
  command that remakes the record, run from the checkout's root), ``parameters``, the run's
  ``results`` (plain JSON numbers), ``provenance`` (git commit and whether the tree was dirty,
  package versions, the machine's fingerprint, host, start and end time, wall time) and the
  names of its ``tables``;
* one CSV per table (tidy data: one row per run or per point).

Chapters read records (:func:`read_record`) and never re-run them; the scripts that make them
live in ``records/`` too (``records/<name>.py``), and call :func:`write_record` at the end.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["RECORDS_DIR", "Record", "Stopwatch", "records_root", "record_script", "write_record", "read_record", "list_records",
           "published_comparison", "parameters_differ", "run_reached",
           "stopped_cell", "section_of", "KeptRun", "kept_run"]

#: the folder of the records, relative to the book's checkout
RECORDS_DIR = "records"


def records_root(root: str | Path | None = None) -> Path:
    """The ``records/`` folder of the checkout ``root`` (default: the checkout this package
    belongs to, ``$FLOSS_BOOK_ROOT``, or the nearest one above the current directory)."""
    if root is None:
        from .runs import _find_root

        found = _find_root()
        if found is None:
            raise FileNotFoundError("records live in a checkout of the book: set FLOSS_BOOK_ROOT or run inside one")
        root = found
    return Path(root) / RECORDS_DIR


class Stopwatch:
    """Start and end time of a record's run (``with Stopwatch() as sw: ...``; then ``sw.started``,
    ``sw.finished`` as ISO strings and ``sw.wall_s`` in seconds)."""

    def __enter__(self) -> "Stopwatch":
        self.started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.wall_s = round(time.perf_counter() - self._t0, 1)

    @classmethod
    def of_earlier_run(cls, provenance: Mapping[str, Any]) -> "Stopwatch":
        """The times of the run that computed a record's results (its ``provenance``), for a
        record rewritten from those results without recomputing them (so that the rewrite does not
        report its own seconds as the cost of the run)."""
        missing = [k for k in ("started", "finished", "wall_s") if k not in provenance]
        if missing:
            raise ValueError(f"the earlier record's provenance lacks {missing}")
        sw = cls()
        sw.started, sw.finished, sw.wall_s = provenance["started"], provenance["finished"], provenance["wall_s"]
        return sw


def record_script(name: str, root: str | Path | None = None):
    """The module of the record script ``records/<name>.py`` of the checkout ``root`` (as
    :func:`records_root` finds it), loaded without running its ``main``: one record's script
    reads another's protocol, grids and published values from it."""
    import importlib.util

    path = records_root(root) / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no record script {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _provenance(root: Path, stopwatch: Stopwatch | None, own_folder: str = "") -> dict[str, Any]:
    """Provenance of a record written now; the files of ``own_folder`` (the record's own outputs,
    relative to ``root``) do not make the checkout dirty."""
    from .reproducibility import machine_fingerprint
    from .runs import git_commit, package_versions

    out: dict[str, Any] = {"git": git_commit(root, ignore=(own_folder,) if own_folder else ()), "versions": package_versions(),
                           "machine": machine_fingerprint(), "host": platform.node(),
                           "threads": os.environ.get("OMP_NUM_THREADS")}
    if stopwatch is not None:
        out.update(started=stopwatch.started, finished=stopwatch.finished, wall_s=stopwatch.wall_s)
    return out


def write_record(name: str, *, description: str, command: str, parameters: Mapping[str, Any],
                 results: Mapping[str, Any], tables: Mapping[str, Any] | None = None,
                 stopwatch: Stopwatch | None = None, root: str | Path | None = None) -> Path:
    """Write ``records/<name>/``: ``record.json`` and one CSV per table (pandas DataFrames).

    Args:
        name: the record's folder name (letters, digits, ``_`` and ``-``).
        description: one sentence: what the record holds.
        command: the command that remakes it, run from the checkout's root.
        parameters: the configuration that was run.
        results: its key numbers (JSON-able: numbers, strings, lists, dicts).
        tables: ``{table name: DataFrame}``.
        stopwatch: the :class:`Stopwatch` that timed the run (its times go into the provenance).
    Returns:
        The folder written.
    """
    from .chapters import _jsonable

    if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise ValueError(f"record name must be letters, digits, '_' and '-', got {name!r}")
    base = records_root(root)
    folder = base / name
    # the checkout's state before this record's own files change: rewriting the tables of a
    # committed record (extending it) must not mark the run's code as modified
    provenance = _provenance(base.parent, stopwatch, own_folder=f"{base.name}/{name}")
    folder.mkdir(parents=True, exist_ok=True)
    tables = dict(tables or {})
    for tname, frame in tables.items():
        frame.to_csv(folder / f"{tname}.csv", index=False)
    payload = {"name": name, "description": description, "command": command,
               "parameters": _jsonable(dict(parameters)), "results": _jsonable(dict(results)),
               "tables": sorted(tables), "provenance": provenance}
    tmp = folder / "record.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(folder / "record.json")  # last, atomically: a half-written record never looks complete
    return folder


@dataclass
class Record:
    """A record read back: its ``record.json`` fields and its folder (tables load on demand)."""

    name: str
    description: str
    command: str
    parameters: dict
    results: dict
    tables: list
    provenance: dict
    folder: Path

    def table(self, name: str):
        """Table ``name`` as a pandas DataFrame."""
        import pandas as pd

        if name not in self.tables:
            raise KeyError(f"record {self.name!r} has no table {name!r}; it has {self.tables}")
        return pd.read_csv(self.folder / f"{name}.csv")

    def summary(self) -> str:
        """One line: name, when, where, commit, wall time and the remaking command."""
        p = self.provenance
        commit = (p.get("git") or {}).get("commit") or "?"
        return (f"record {self.name}: {p.get('finished', '?')} on {(p.get('machine') or {}).get('cpu', '?')}, "
                f"commit {commit[:10]}, {p.get('wall_s', '?')} s; remake: {self.command}")


def read_record(name: str, root: str | Path | None = None) -> Record:
    """Read ``records/<name>/record.json`` (raises ``FileNotFoundError`` naming the command
    that makes it when it is missing)."""
    folder = records_root(root) / name
    path = folder / "record.json"
    if not path.is_file():
        raise FileNotFoundError(f"no record {name!r} at {folder} (make it with the script records/{name}.py)")
    data = json.loads(path.read_text())
    return Record(name=data["name"], description=data["description"], command=data["command"],
                  parameters=data["parameters"], results=data["results"], tables=data.get("tables", []),
                  provenance=data.get("provenance", {}), folder=folder)


@dataclass(frozen=True)
class KeptRun:
    """A chapter's run kept by ``benchmarks/bench_book.py --keep`` in
    ``records/chapter_runs/<chapter>-<scale>/``: its ``run.json`` and the tables it wrote."""

    folder: Path
    run: dict

    @property
    def parameters(self) -> dict:
        """Every parameter the run resolved to (``run.json``'s ``parameters``)."""
        return self.run["parameters"]

    @property
    def date(self) -> str:
        """The day it started, ``YYYY-MM-DD``."""
        return str(self.run.get("started", "?"))[:10]

    @property
    def ok(self) -> bool:
        """Whether it ran to the end with every check holding."""
        return self.run.get("status") == "ok"

    def table(self, name: str):
        """Table ``name`` (``<name>.csv``) as a pandas DataFrame; ``FileNotFoundError`` naming
        the folder when the run did not write it."""
        import pandas as pd

        path = self.folder / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"the kept run at {self.folder} has no table {name!r} "
                                    f"(status {self.run.get('status')!r})")
        return pd.read_csv(path)


def kept_run(chapter_id: str, scale: str = "paper", root: str | Path | None = None) -> KeptRun:
    """The kept run of ``chapter_id`` at ``scale`` (``FileNotFoundError`` with the command that
    makes it when there is none)."""
    folder = records_root(root) / "chapter_runs" / f"{chapter_id}-{scale}"
    path = folder / "run.json"
    if not path.is_file():
        raise FileNotFoundError(f"no kept run at {folder} (make it with `python benchmarks/bench_book.py "
                                f"--scales {scale} --chapters {chapter_id[:2]} --append --keep records/chapter_runs`)")
    return KeptRun(folder=folder, run=json.loads(path.read_text()))


def list_records(root: str | Path | None = None) -> list[str]:
    """The names of the committed records (folders of ``records/`` holding a ``record.json``)."""
    base = records_root(root)
    return sorted(p.parent.name for p in base.glob("*/record.json"))


def parameters_differ(record: Record, chapter: str, scale: str, keys: list[str]) -> dict[str, tuple[Any, Any]]:
    """Where ``record`` was not run at a chapter's preset: ``{key: (record's value, preset)}`` for
    each of ``keys`` whose value in ``record.parameters`` differs from the preset of ``chapter``
    (a registry id) at ``scale`` (empty: the record runs that configuration)."""
    from .registry import CHAPTERS

    if chapter not in CHAPTERS:
        raise ValueError(f"no chapter {chapter!r}")
    params = CHAPTERS[chapter].params
    unknown = [k for k in keys if k not in params or scale not in params[k].presets]
    if unknown:
        raise ValueError(f"{chapter} has no {scale} preset for {unknown}")
    return {k: (record.parameters.get(k), params[k].presets[scale]) for k in keys
            if record.parameters.get(k) != params[k].presets[scale]}


def published_comparison(published: Mapping[str, float], paper: Mapping[str, float],
                         book: Mapping[str, float] | None = None, factor: float = 3.0):
    """One row per point: **published | paper configuration | book scale**.

    Args:
        published: point -> the source's value.
        paper: point -> the value at the source's own configuration (a record); every point of
            ``published`` must be here.
        book: point -> the chapter's own value at its committed scale (optional; missing points
            are NaN).
        factor: the agreement criterion: ``paper`` within ``factor`` of ``published`` either way.
    Returns:
        A pandas DataFrame with columns ``point, published, paper configuration,
        paper / published, within factor, book scale``.
    """
    import math

    import pandas as pd

    if not (isinstance(factor, (int, float)) and factor >= 1):
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    missing = [k for k in published if k not in paper]
    if missing:
        raise KeyError(f"no paper-configuration value for {missing}")
    rows = []
    for k, pub in published.items():
        if not (pub > 0 and paper[k] > 0):
            raise ValueError(f"{k}: values must be positive to compare by ratio, got {pub!r} and {paper[k]!r}")
        ratio = paper[k] / pub
        rows.append({"point": k, "published": pub, "paper configuration": paper[k], "paper / published": ratio,
                     "within factor": bool(1 / factor <= ratio <= factor),
                     "book scale": (book or {}).get(k, math.nan)})
    return pd.DataFrame(rows)


def stopped_cell(run: Mapping[str, Any], notebook: str | Path) -> int | None:
    """The index, in the chapter's committed ``notebook``, of the cell a stopped run was executing.

    ``run`` is the run's ``run.json`` (as kept by ``benchmarks/bench_book.py`` in
    ``records/chapter_runs/``); its ``cell`` holds the ``index`` in the executed notebook, which has
    papermill's injected parameters cell right after the cell tagged ``parameters``, and ``source``,
    the cell's first line. None when no cell is recorded or it cannot be placed (the notebook has
    changed since: the recorded first line does not match)."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    stopped = run.get("cell") or {}
    if "index" not in stopped:
        return None
    params = next((i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    index = stopped["index"] - (1 if params is not None and stopped["index"] > params else 0)
    if not 0 <= index < len(cells):
        return None
    from .runs import _first_line  # how floss run records the cell's first line

    return index if _first_line(cells[index]["source"]) == stopped.get("source") else None


def section_of(notebook: str | Path, cell: int | str) -> str:
    """The heading (without its ``#`` marks) of the last markdown heading of level 2 or 3 at or
    before a cell of ``notebook``, given by its index or its id; '' if none."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    if isinstance(cell, str):
        ids = [c.get("id") for c in cells]
        if cell not in ids:
            raise KeyError(f"no cell with id {cell!r} in {notebook}")
        cell = ids.index(cell)
    for c in reversed(cells[:cell + 1]):
        if c["cell_type"] == "markdown":
            heads = [ln for ln in "".join(c["source"]).splitlines() if ln.startswith(("## ", "### "))]
            if heads:
                return heads[-1].lstrip("#").strip()
    return ""


def run_reached(run: Mapping[str, Any], notebook: str | Path, cell_id: str) -> bool | None:
    """Whether a chapter run got past one cell of its notebook.

    Args:
        run: the run's ``run.json`` (see :func:`stopped_cell`) with its ``status``.
        notebook: the chapter's committed notebook (no injected cell).
        cell_id: the id of the cell asked about.

    Returns:
        True if the run completed, or stopped (timed out, interrupted, or failed: a chapter stops
        at its first failed check) in a cell after ``cell_id``, which then ran to its end; False if
        it stopped in ``cell_id`` or before; None when the stopped cell cannot be placed
        (:func:`stopped_cell`).
    """
    if run.get("status") == "ok":
        return True
    ids = [c.get("id") for c in json.loads(Path(notebook).read_text())["cells"]]
    if cell_id not in ids:
        raise KeyError(f"no cell with id {cell_id!r} in {notebook}")
    index = stopped_cell(run, notebook)
    return None if index is None else index > ids.index(cell_id)
