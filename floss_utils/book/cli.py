"""The ``floss`` command: list, inspect, run and sweep the book's chapters, and build the book.

::

    floss list                                     chapters, what they reproduce, minutes per scale
    floss params 01_lyapunov_spectra               every parameter: type, default or presets, meaning
    floss run 01_lyapunov_spectra --scale smoke -p seed 1 --out runs/ch01
    floss sweep 02_exponents_to_gradients --scale smoke --grid input_std=0,0.5 --grid seed=0,1
    floss sweep ... --scheduler tcp://host:8786    the same sweep on a Dask cluster
    floss build                                    render the book (as `make book`)

``python -m floss_utils`` is the same command. Exit status: 0 success, 1 a chapter (or a sweep
point) failed or a sweep point was interrupted on its own, 2 bad input (nothing ran), 128 + the
signal's number when stopped by a signal: 130 SIGINT (Ctrl-C), 143 SIGTERM (``timeout``, Slurm,
Kubernetes), 129 SIGHUP. SIGTERM and SIGHUP are handled like Ctrl-C: the kernel is shut down
and the run records say ``"status": "interrupted"`` with the signal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from .parameters import ParameterError, describe, parse_grid
from .registry import SCALES
from .runs import Book, RunError, exit_status, interrupt_on_signals, interruption_signal

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130  # interrupted: 128 + signal (130 SIGINT)


def _fmt(value: Any, width: int = 60) -> str:
    text = repr(value)
    if isinstance(value, list) and len(text) > width:
        head = ", ".join(repr(v) for v in value[:3])
        return f"[{head}, ..., {value[-1]!r}] ({len(value)} values)"
    return text


def _minutes(m: float) -> str:
    return f"{m * 60:.0f} s" if m < 1 else f"{m:g} min"


# ---------------------------------------------------------------------------------- commands


def _cost_line(chapter) -> str:
    """Each scale's measured wall time (and peak memory) on a 2-core CPU, else the estimate."""
    from .registry.costs import expected_cost

    parts = []
    for s in SCALES:
        cost = expected_cost(chapter.id, s)
        if cost is not None:
            mem = f", {cost.peak_gib:.1f} GiB" if cost.peak_gib is not None else ""
            mark = "" if cost.status == "ok" else f" ({cost.status})"
            if cost.basis.startswith("at least"):  # a stopped or failed run whose whole time is not known: a lower bound
                parts.append(f"{s} >{_minutes(cost.minutes)}{mem} ({cost.status}: a lower bound)")
                continue
            if cost.basis.startswith("extrapolated"):  # a stopped run: its whole time is an estimate
                mark = f" (extrapolated: {cost.status}, from the part it had done)"
                parts.append(f"{s} ~{_minutes(cost.minutes)}{mem}{mark}")
            else:
                parts.append(f"{s} {_minutes(cost.minutes)}{mem}{mark}")
        elif s in chapter.minutes:
            parts.append(f"{s} ~{_minutes(chapter.minutes[s])} (estimate" + (", GPU)" if s == "paper" else ")"))
    return "  ".join(parts)


def cmd_list(args: argparse.Namespace, book: Book) -> int:
    from dataclasses import asdict

    from .registry.costs import expected_cost

    chapters = list(book.chapters.values())
    if args.json:
        print(json.dumps([{"id": c.id, "title": c.title, "reproduces": c.reproduces,
                           "minutes": dict(c.minutes),
                           "measured": {s: asdict(cost) for s in SCALES
                                        if (cost := expected_cost(c.id, s)) is not None}}
                          for c in chapters], indent=2))
        return EXIT_OK
    print(f"{len(chapters)} chapters (wall time and peak memory per scale, measured on a 2-core CPU; "
          f"'estimate' where never measured)\n")
    for c in chapters:
        print(f"{c.id}  {c.title}")
        print(textwrap.fill(f"reproduces: {c.reproduces}", width=100, initial_indent="    ",
                            subsequent_indent="      "))
        print(f"    cost: {_cost_line(c)}")
    print("\n`floss params CHAPTER` shows a chapter's parameters; `floss run CHAPTER` reruns it.")
    return EXIT_OK


def cmd_params(args: argparse.Namespace, book: Book) -> int:
    chapter = book.chapter(args.chapter)
    # outside a checkout (an installed package) the registry alone answers: no comparison
    notebook = book.notebook(chapter) if book.root is not None else None
    rows, problems = describe(notebook, chapter)
    if notebook is None:
        print(f"note: notebook {chapter.notebook} not found (no checkout of the book; FLOSS_BOOK_ROOT "
              "names one): meanings from the registry, comparison with its parameters cell skipped",
              file=sys.stderr)
    if args.json:
        print(json.dumps({"chapter": chapter.id, "notebook": str(notebook) if notebook else None, "parameters": rows,
                          "constraints": [c.text for c in chapter.constraints], "problems": problems}, indent=2))
    else:
        print(f"{chapter.id} — {chapter.title}")
        print(f"cost on a 2-core CPU: {_cost_line(chapter)}")
        print(f"parameters (set with -p NAME VALUE, values are Python literals; "
              f"'from scale' ones follow --scale unless set):\n")
        for r in rows:
            if args.scale:
                value = r["presets"][args.scale] if r["presets"] else r["default"]
                value = args.scale if r["name"] == "scale" else value
                head = f"{r['name']} ({r['kind']}) = {_fmt(value)}" + ("  [from scale]" if r["presets"] else "")
            elif r["presets"]:
                head = f"{r['name']} ({r['kind']}), from scale"
            else:
                head = f"{r['name']} ({r['kind']}) = {_fmt(r['default'])}"
            if r["choices"]:
                head += f"   one of: {', '.join(map(str, r['choices']))}"
            if r["bounds"]:
                head += f"   {r['bounds']}"
            print(head)
            print(f"    {r['meaning']}")
            if r["presets"] and not args.scale:
                print("    " + "   ".join(f"{s}: {_fmt(r['presets'][s], 40)}" for s in SCALES))
        if chapter.constraints:
            print("\nrules between parameters (checked before a run):")
            for c in chapter.constraints:
                print(f"    {c.text}")
    if problems:
        print(f"warning: the notebook {chapter.notebook} and the registry disagree:\n  "
              + "\n  ".join(problems), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs plus --scale/--device (refusing contradictions)."""
    out: dict[str, Any] = {}
    for name, value in args.param or []:
        if name in out and out[name] != value:
            raise RunError(f"-p {name} given twice ({out[name]!r} and {value!r})")
        out[name] = value
    for name in ("scale", "device"):
        flag = getattr(args, name)
        if flag is not None:
            if name in out and out[name] != flag:
                raise RunError(f"--{name} {flag} contradicts -p {name} {out[name]}")
            out[name] = flag
    return out


def cmd_run(args: argparse.Namespace, book: Book) -> int:
    from .runs import run

    chapter = book.chapter(args.chapter)
    out = args.out or f"runs/{chapter.id}"
    record = run(book, chapter.id, _overrides(args), out, progress=not args.quiet,
                 notify=lambda note: print(f"floss run: note: {note}", file=sys.stderr),
                 accept_cost=args.accept_cost)
    if record["status"] == "ok":
        print(f"ok: {chapter.id} (scale {record['scale']}, seed {record['seed']}, device {record['device']}) "
              f"-> {out}/ : {record['notebook']}, results.json, {len(record['outputs']['figures'])} figure(s), "
              f"run.json")
        return EXIT_OK
    print(f"FAILED: {chapter.id}: {record['error']}\n  executed notebook (with the error): "
          f"{Path(out) / record['notebook']}; record: {Path(out) / 'run.json'}", file=sys.stderr)
    return EXIT_FAILED


def cmd_sweep(args: argparse.Namespace, book: Book) -> int:
    from .sweeps import sweep

    chapter = book.chapter(args.chapter)
    out = args.out or f"runs/{chapter.id}-sweep"
    grid = parse_grid(args.grid or [])
    result = sweep(book, chapter.id, grid, out, fixed=_overrides(args), workers=args.workers,
                   scheduler=args.scheduler, progress=not args.quiet, accept_cost=args.accept_cost)
    n, skipped = len(result.points), sum(bool(p.get("skipped")) for p in result.points)
    summary = (f"{n} points: {result.count('ok')} ok ({skipped} already complete), "
               f"{result.count('failed')} failed")
    if result.interrupted or result.count("interrupted"):
        summary += f", {result.count('interrupted')} interrupted"
    print(summary)
    for p in result.points:
        if p.get("note"):
            print(f"floss sweep: note: {p['point']}: {p['note']}", file=sys.stderr)
    print(f"table: {Path(out) / 'sweep.csv'}")
    bad = [p for p in result.points if p["status"] != "ok"]
    if bad:
        print(f"failures ({len(bad)}, also in {Path(out) / 'failures.csv'}):")
        for p in bad:
            print(f"  {p['point']}: {p['status']}: {p['error']}")
    if result.interrupted:
        print("interrupted: run the same command again to resume (complete points are skipped)", file=sys.stderr)
        return exit_status(result.signum) if result.signum else EXIT_INTERRUPTED
    if result.count("interrupted"):
        print("some points were interrupted: run the same command again to run them (complete points are "
              "skipped)", file=sys.stderr)
    return EXIT_OK if not bad else EXIT_FAILED


def build_command(book: Book, path_output: str | None = None) -> list[str]:
    """The book build, exactly as ``make book``: jupyter-book 1.x, warnings are errors."""
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(book.checkout()), "-W", "-n", "--keep-going"]
    if path_output:
        cmd += ["--path-output", str(path_output)]
    return cmd


def cmd_build(args: argparse.Namespace, book: Book) -> int:
    cmd = build_command(book, args.path_output)
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=book.root)
    if proc.returncode == 0:
        where = Path(args.path_output or book.root) / "_build" / "html" / "index.html"
        print(f"built: open {where}")
    return EXIT_OK if proc.returncode == 0 else EXIT_FAILED


# ---------------------------------------------------------------------------------- parser


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a parameter; VALUE is a Python literal (200, 0.5, [1, 2], 'x'); "
                        "bare words are strings for str parameters; None = default/from scale")
    p.add_argument("--scale", choices=SCALES, help="smoke (seconds), book (the committed outputs), "
                                                   "paper (the papers' configuration where they give one, else the book's largest; see floss params); default: book")
    p.add_argument("--device", help="'auto' (CUDA when present, the default), 'cpu', 'cuda', 'cuda:1'...")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")


def _add_accept_cost(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accept-cost", action="store_true",
                   help="start a CPU run whose configuration never finished on the reference machine "
                        "(2-core CPU; see floss list), which is otherwise refused with its measured need")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="floss",
        description="List, inspect, run and sweep the chapters of the book 'Gradient stability in "
                    "recurrent networks', and build the book. Exit status: 0 ok, 1 a run failed, "
                    "2 bad input (nothing ran), 128 + the signal when interrupted: 130 Ctrl-C (SIGINT), "
                    "143 SIGTERM, 129 SIGHUP (both handled like Ctrl-C).",
        epilog="`floss COMMAND --help` describes each command. Progress bars obey TQDM_DISABLE=1.")
    parser.add_argument("--version", action="version", version=f"floss_utils {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="the chapters, what they reproduce, rough run time per scale",
                       description="List the chapters: id, title, the paper figures each reproduces and "
                                   "its rough wall time at each scale.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("params", help="a chapter's parameters: type, default or per-scale presets, meaning",
                       description="Every parameter of CHAPTER with its type, its default (or its value at "
                                   "each scale) and its one-line meaning, read from the registry and the "
                                   "notebook's parameters cell (exit 1 if the two disagree; outside a "
                                   "checkout of the book, the registry alone).")
    p.add_argument("chapter", metavar="CHAPTER", help="chapter id (or a unique prefix, e.g. 01)")
    p.add_argument("--scale", choices=SCALES, help="show the values at this scale only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("run", help="run a chapter with new parameters into a directory",
                       description="Validate every parameter (unknown names and wrong types are refused "
                                   "before anything runs), execute CHAPTER through papermill and write into "
                                   "DIR: the executed notebook, results.json, figures/*.png and run.json "
                                   "(parameters, scale, seed, versions, git commit, device, wall time, "
                                   "status). Exits 1 with the failing cell's error if the chapter fails.")
    p.add_argument("chapter", metavar="CHAPTER", help="chapter id (or a unique prefix, e.g. 01)")
    _add_overrides(p)
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/CHAPTER); a directory "
                                                "holding anything but a run of the same chapter is refused")
    _add_accept_cost(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="run a chapter at every point of a parameter grid (local or Dask)",
                       description="Run CHAPTER at every point of the cartesian product of the --grid values, "
                                   "each point in DIR/NAME=VALUE__.../ (a complete `floss run` directory). "
                                   "A failed point is recorded and does not stop the others; rerunning the "
                                   "same sweep skips complete points (interrupted sweeps resume). At the end "
                                   "DIR/sweep.csv holds one row per point (grid values + scalar results) and "
                                   "DIR/failures.csv the failures.")
    p.add_argument("chapter", metavar="CHAPTER", help="chapter id (or a unique prefix, e.g. 02)")
    p.add_argument("--grid", action="append", metavar="NAME=V1,V2,...",
                   help="values of one parameter (repeatable; lists in brackets: sizes=[30,60],[100])")
    _add_overrides(p)
    p.add_argument("--out", metavar="DIR", help="sweep directory (default runs/CHAPTER-sweep)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="local worker processes running points at once (default 2; ignored with --scheduler)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the points on the Dask distributed cluster at ADDRESS (e.g. tcp://host:8786); "
                        "its workers need this environment and DIR on a shared filesystem")
    _add_accept_cost(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("build", help="render the book into _build/html (as `make book`)",
                       description="Build the book from the committed outputs with jupyter-book, warnings "
                                   "as errors (the same command as `make book`).")
    p.add_argument("--path-output", metavar="DIR", help="build into DIR/_build instead of the book root")
    p.set_defaults(func=cmd_build)
    return parser


def main(argv: Sequence[str] | None = None, *, book: Book | None = None) -> int:
    """Entry point of ``floss`` and ``python -m floss_utils``; returns the exit status.

    ``book`` selects the notebooks and registry (default: this checkout's); tests pass their own.
    """
    args = build_parser().parse_args(argv)
    book = book or Book.default()
    try:
        with interrupt_on_signals():  # SIGTERM and SIGHUP: as Ctrl-C (restored on return)
            return args.func(args, book)
    except (RunError, ParameterError) as exc:
        print(f"floss {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        signum = interruption_signal(exc)
        print(f"floss {args.command}: interrupted ({signum.name})", file=sys.stderr)
        return exit_status(signum)
    except BrokenPipeError:  # `floss params X | head`
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
