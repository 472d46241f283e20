"""benchmarks/bench_book.py keeps a run's record without the path of its temporary folder."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO_ROOT


def _bench_book():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import bench_book

    return bench_book


def test_kept_record_names_its_kept_folder_not_the_temporary_one(tmp_path):
    keep_record = _bench_book().keep_record
    out = tmp_path / "tmpabc" / "02_exponents_to_gradients"
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"command": f"floss run 02 --out {out}", "status": "ok"}))
    (out / "results.json").write_text(json.dumps({"parameters": {"output_dir": str(out)}}))
    (out / "table.csv").write_text("a,b\n1,2\n")
    (out / "notebook.ipynb").write_text("{}")  # not kept
    dest = tmp_path / "kept" / "02-paper"
    dest.mkdir(parents=True)
    (dest / "older_table.csv").write_text("x\n1\n")  # an earlier run's table, which this run did not write
    (dest / "README.md").write_text("kept")  # not a record file: left alone
    keep_record(out, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "results.json", "run.json", "table.csv"]
    run = json.loads((dest / "run.json").read_text())
    assert run == {"command": f"floss run 02 --out {dest.resolve().as_posix()}", "status": "ok"}
    assert json.loads((dest / "results.json").read_text())["parameters"]["output_dir"] == dest.resolve().as_posix()
    assert (dest / "table.csv").read_text() == "a,b\n1,2\n"


def test_a_kept_kernel_log_names_no_installation_folder(tmp_path):
    bench = _bench_book()
    out = tmp_path / "run"
    out.mkdir()
    (out / "kernel.log").write_text(f'File "{sys.prefix}/lib/python3.11/site-packages/zmq/socket.py", line 7\n'
                                    f'File "{sys.base_prefix}/lib/python3.11/asyncio/events.py", line 8\n')
    bench.keep_record(out, tmp_path / "kept")
    log = (tmp_path / "kept" / "kernel.log").read_text()
    assert log.startswith('File "<venv>/lib/python3.11/site-packages/zmq/socket.py"') and sys.prefix not in log
    assert ('<python>/lib/python3.11/asyncio' in log) == (sys.base_prefix != sys.prefix)


def test_a_folder_inside_the_checkout_is_named_relative_to_it():
    bench = _bench_book()
    dest = bench.ROOT / "records" / "chapter_runs" / "02-paper"
    text = bench.relocate("--out /scratch/run-xyz/02 and /scratch/run-xyz/02/x.csv", bench.Path("/scratch/run-xyz/02"), dest)
    assert text == "--out records/chapter_runs/02-paper and records/chapter_runs/02-paper/x.csv"


def test_a_timed_out_record_does_not_say_running(tmp_path):
    mark = _bench_book().mark_timed_out
    rj = tmp_path / "run.json"
    rj.write_text(json.dumps({"status": "running", "error": None, "wall_s": None}))
    mark(rj, 3600, 3600.4)
    rec = json.loads(rj.read_text())
    assert rec["status"] == "timed out" and "3600 s" in rec["error"] and rec["wall_s"] == 3600.4
    rj.write_text(json.dumps({"status": "failed", "error": "x"}))  # a finished record is left alone
    mark(rj, 3600, 10.0)
    assert json.loads(rj.read_text()) == {"status": "failed", "error": "x"}
    mark(tmp_path / "absent.json", 1, 1.0)  # no record: nothing to do


_FAKE_FLOSS = """#!{python}
import datetime, json, signal, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
start = time.time()
rec = {{"status": "running", "error": None, "signal": None, "cell": None, "wall_s": None,
        "started": datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat()}}
def on_term(signum, frame):  # what floss run records on SIGTERM: the cell, the peak memory, the unfinished loop
    rec.update(status="interrupted", signal="SIGTERM", cell={{"index": 4, "execution_count": 3, "source": "train()"}},
               error="interrupted by SIGTERM while cell 3 was running (train())", wall_s=1.0,
               peak_memory={{"host_bytes": 3 << 30}},
               loop={{"task": "train", "unit": "epochs", "detail": "", "done": 25, "total": 100,
                      "started": start + 0.5, "updated": start + 2.5}})
    (out / "run.json").write_text(json.dumps(rec))
    sys.exit(143)
signal.signal(signal.SIGTERM, {handler})  # before anything else: a stop cannot come before the handler
out.mkdir(parents=True)
(out / "run.json").write_text(json.dumps(rec))
print("started", flush=True)
time.sleep(60)
"""


def _fake_floss(tmp_path, handler="on_term"):
    path = tmp_path / "floss"
    path.write_text(_FAKE_FLOSS.format(python=sys.executable, handler=handler))
    path.chmod(0o755)
    return str(path)


def test_a_run_at_its_timeout_is_stopped_with_sigterm_and_its_record_kept(tmp_path):
    """The runner gets SIGTERM (as from ``timeout``), so the kept record names the cell it stopped in
    and its peak memory, says "timed out" (not "interrupted", not "running"), and the row has the peak."""
    bench = _bench_book()
    row = bench.run_one("99_fake", "paper", _fake_floss(tmp_path), timeout=3, keep=tmp_path / "keep")
    rec = json.loads((tmp_path / "keep" / "99_fake-paper" / "run.json").read_text())
    assert rec["status"] == "timed out" and rec["cell"]["execution_count"] == 3
    assert "timeout of 3 s" in rec["error"] and "while cell 3 was running" in rec["error"]
    assert row["status"].startswith("timed out after 3 s: interrupted by SIGTERM while cell 3")
    assert row["peak_gib"] == 3.0 and 3 <= row["wall_s"] < 3 + 30
    # extrapolated from its loop: 0.5 s before it + 2 s for 25 of 100 epochs = 8.5 s (above the 3 s spent: it stands);
    # the row and the kept record say how it was made
    assert row["extrapolated_s"] == 8.5 and row["done_fraction"] == 0.25
    # the stand-in's notebooks do not pair up with the book's: the share after the loop is unknown, a lower bound
    assert row["share_of"] == ("a lower bound: its train loop alone, in epochs; what follows it in its cell and the "
                               "cells after it not counted")
    assert rec["progress"]["method"] == bench.LOOP_EXTRAPOLATION and rec["progress"]["estimate_s"] == 8.5


def test_ctrl_c_during_a_run_stops_the_run_too(tmp_path, monkeypatch):
    # the runner is in a session of its own (so that its whole group can be killed): a Ctrl-C of
    # bench_book does not reach it, so bench_book stops it before passing the interrupt on
    bench = _bench_book()
    started = []
    real_popen = bench.subprocess.Popen

    class Interrupted(real_popen):
        def communicate(self, *a, **k):
            if k.get("timeout") == 30:  # the run's own wait: interrupted, as by Ctrl-C
                started.append(self)
                self.stdout.readline()  # the stand-in's handler is in place
                raise KeyboardInterrupt
            return super().communicate(*a, **k)

    monkeypatch.setattr(bench.subprocess, "Popen", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench.run_one("99_fake", "paper", _fake_floss(tmp_path), timeout=30)
    assert started and started[0].returncode == 143  # it got SIGTERM and recorded its stop


def test_a_runner_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    bench = _bench_book()
    proc = bench.subprocess.Popen([_fake_floss(tmp_path, handler="signal.SIG_IGN"), "--out", str(tmp_path / "o")],
                                  stdout=bench.subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "started\n"  # its handler is in place
    assert bench.stop(proc, grace=0.5) is False and proc.returncode == -9
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == "running"  # mark_timed_out's case


def _nb(cells):
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _book_cell(src, seconds):
    t1 = f"2026-01-01T00:00:{seconds:09.6f}Z"
    return {"cell_type": "code", "source": src, "metadata": {"execution": {
        "iopub.execute_input": "2026-01-01T00:00:00.000000Z", "shell.execute_reply": t1}}}


def _run_cell(src, seconds=None):
    # a run's output notebook: cells not yet run keep the committed notebook's (stale) timestamps
    pm = {"status": "pending", "duration": None} if seconds is None else {"status": "completed", "duration": seconds}
    stale = _book_cell(src, 1)["metadata"]["execution"]
    return {"cell_type": "code", "source": src, "metadata": {"papermill": pm, "execution": stale}}


def test_partial_progress_by_hand(tmp_path):
    # book-scale cells of 1, 3 and 6 s; the stopped run (papermill's injected parameters first)
    # finished the first two in 2 and 9 s and was stopped in the third: 4/10 of the chapter done,
    # 11 s spent on it, whole run 11 / 0.4 = 27.5 s
    bb = _bench_book()
    book, part = tmp_path / "book.ipynb", tmp_path / "part.ipynb"
    book.write_text(json.dumps(_nb([_book_cell("a = 1", 1), {"cell_type": "markdown", "source": "x", "metadata": {}},
                                    _book_cell("b = 2", 3), _book_cell("c = 3", 6)])))
    injected = {"cell_type": "code", "source": "# Parameters\nscale = 'paper'",
                "metadata": {"tags": ["injected-parameters"], "papermill": {"status": "completed", "duration": 0.01}}}
    part.write_text(json.dumps(_nb([injected, _run_cell("a = 1", 2.0), _run_cell("b = 2", 9.0), _run_cell("c = 3")])))
    got = bb.partial_progress(part, book)
    assert got == {"fraction": 0.4, "done_s": 11.0, "estimate_s": 27.5, "cells_done": 2, "cells": 3}
    # only the 1-s cell done: 10 % is the least share extrapolated from; with a 0.5-s first cell, nothing
    book.write_text(json.dumps(_nb([_book_cell("a = 1", 0.5), _book_cell("b = 2", 3.5), _book_cell("c = 3", 6)])))
    part.write_text(json.dumps(_nb([_run_cell("a = 1", 2.0), _run_cell("b = 2"), _run_cell("c = 3")])))
    assert bb.partial_progress(part, book) is None
    # two identical cells are paired by position, not merged: the second copy's time is its own
    book.write_text(json.dumps(_nb([_book_cell("a = 1", 2), _book_cell("a = 1", 8)])))
    part.write_text(json.dumps(_nb([_run_cell("a = 1", 5.0), _run_cell("a = 1")])))
    assert bb.partial_progress(part, book)["fraction"] == 0.2
    # notebooks whose code cells do not pair up (a changed chapter): no estimate
    part.write_text(json.dumps(_nb([_run_cell("a = 1", 5.0)])))
    assert bb.partial_progress(part, book) is None
    assert bb.partial_progress(tmp_path / "absent.ipynb", book) is None


def _stopped_run(bb, tmp_path, row: list[str]):
    """A one-row ``book_timings.csv`` of a stopped run: its path and the row as a dict."""
    csv_path = tmp_path / "book_timings.csv"
    csv_path.write_text(",".join(bb.HEADER) + "\n" + ",".join(row) + "\n")
    return csv_path, dict(zip(bb.HEADER, row))


def test_registry_and_table_use_the_extrapolation(tmp_path):
    bb = _bench_book()
    csv_path, row = _stopped_run(bb, tmp_path, ["12_x", "paper", "timed out after 600 s", "600.0", "1190", "1.5", "", "-",
                                                "1.0", "2", "2026-12-04", "M", "1500.0", "0.4"])
    cost = bb.registry_entries(csv_path)["12_x"]["paper"]
    assert cost["minutes"] == 25.0 and cost["status"] == "timed out after 600 s"
    assert cost["basis"].startswith("extrapolated from a run stopped after 10 min with 40 % done of the chapter (by book-scale cell times)")
    cell = bb._cell(row)
    assert cell.endswith("whole run ~25 min (extrapolated from 40 % done of the chapter (by book-scale cell times))")


def test_a_clamped_extrapolation_is_a_lower_bound(tmp_path):
    # stopped after 2400 s with 10 % of the chapter done, whose cells extrapolate to 737 s: the estimate
    # was clamped to the time spent (the run sat in one long cell), so it is only a lower bound
    bb = _bench_book()
    csv_path, row = _stopped_run(bb, tmp_path, ["13_x", "paper", "timed out after 2400 s", "2400.1", "nan", "", "", "-",
                                                "1.9", "2", "2026-12-05", "M", "2400.1", "0.104"])
    assert bb.is_lower_bound(row)
    cost = bb.registry_entries(csv_path)["13_x"]["paper"]
    assert cost["minutes"] == 40.0 and cost["basis"].startswith("at least")
    assert bb._cell(row).endswith("whole run > 40 min (stopped inside a cell, 10 % done of the chapter "
                                  "(by book-scale cell times))")
    # an estimate above the time spent stays an extrapolation
    assert not bb.is_lower_bound({"extrapolated wall (s)": "1500.0", "wall (s)": "600.0"})


def test_a_timed_out_run_without_an_extrapolation_is_a_lower_bound(tmp_path):
    bb = _bench_book()
    csv_path, row = _stopped_run(bb, tmp_path, ["01_x", "paper", "timed out after 900 s", "900.0", "nan", "", "", "-",
                                                "1.0", "2", "2026-12-04", "M", "", ""])
    cost = bb.registry_entries(csv_path)["01_x"]["paper"]
    assert cost["minutes"] == 15.0 and cost["basis"].startswith("at least: a run stopped after 15 min, not extrapolated")
    assert bb._cell(row).endswith("whole run > 15 min (not extrapolated)")


def test_a_failed_run_is_a_lower_bound_of_the_chapters_cost(tmp_path):
    # a check failed after 282 s: the chapter's cost is at least that, not that
    bb = _bench_book()
    csv_path, row = _stopped_run(bb, tmp_path, ["12_x", "paper", '"failed (exit 1): cell 5: ChapterCheckError: x"',
                                                "281.7", "542.5", "0.94", "", "-", "1.0", "2", "2026-12-06", "M", "", ""])
    cost = bb.registry_entries(csv_path)["12_x"]["paper"]
    assert cost["status"] == "failed (exit 1)" and cost["minutes"] == round(281.7 / 60, 2)
    assert cost["basis"].startswith("at least: a run that failed (exit 1) after 4.7 min")


def test_a_partial_loop_gives_a_lower_bound(tmp_path):
    # stopped after 600 s in a pre-flossing loop (1/5 of its flossing steps done, started at 100 s): 100 + 500 / 0.2 =
    # 2600 s for the pre-flossing alone; the training after it in the same call is not counted: whole run > 43 min
    bb = _bench_book()
    start = bb.dt.datetime.fromtimestamp(1000, bb.dt.timezone.utc).isoformat()
    rec = {"started": start, "loop": {"task": "pre-flossing", "done": 100, "total": 500, "unit": "flossing steps",
                                      "partial": True, "started": 1100.0, "updated": 1600.0}}
    got = bb.loop_progress(rec, tmp_path / "none.ipynb", tmp_path / "none.ipynb")
    assert (got["partial"], got["estimate_s"]) == (True, 2600.0)
    of = bb.share_of(got)
    assert of == ("a lower bound: its pre-flossing loop alone, in flossing steps; what follows it in its cell and "
                  "the cells after it not counted")
    csv_path, row = _stopped_run(bb, tmp_path, ["11_x", "paper", "timed out after 600 s", "600.0", "1190", "5.6", "",
                                                "-", "1.0", "2", "2026-12-06", "M", "2600.0", "0.2", f'"{of}"'])
    assert bb.is_partial_loop(row | {"share of": of}) and bb.is_lower_bound(row | {"share of": of})
    cost = bb.registry_entries(csv_path)["11_x"]["paper"]
    assert cost["minutes"] == round(2600 / 60, 2) and cost["basis"].startswith(
        "at least: extrapolated from a run stopped after 10 min with 20 % done of its pre-flossing loop alone")
    assert bb._cell(row | {"share of": of}).endswith(
        "whole run > 43 min (extrapolated from 20 % done of its pre-flossing loop alone, in flossing steps; what "
        "follows it in its cell and the cells after it not counted)")
    # the same loop, not partial: an estimate, not a bound
    assert not bb.is_lower_bound(row | {"share of": bb.share_of(dict(got, partial=False))})


def test_loop_progress_by_hand(tmp_path):
    # the run started at t = 1000 s; its loop started at 1060 and had done 30 of 300 epochs at 1160:
    # 60 s before the loop + 100 s / 0.1 = 1060 s; the loop's cell is the second of three code cells
    # (book-scale 1, 3 and 6 s), so the cells after it are 60 % of the chapter
    bb = _bench_book()
    book, part = tmp_path / "book.ipynb", tmp_path / "part.ipynb"
    book.write_text(json.dumps(_nb([_book_cell("a = 1", 1), _book_cell("b = 2", 3), _book_cell("c = 3", 6)])))
    injected = {"cell_type": "code", "source": "# Parameters", "metadata": {"tags": ["injected-parameters"]}}
    part.write_text(json.dumps(_nb([injected, _run_cell("a = 1", 2.0), {"cell_type": "markdown", "source": "x",
                                    "metadata": {}}, _run_cell("b = 2"), _run_cell("c = 3")])))
    start = bb.dt.datetime.fromtimestamp(1000, bb.dt.timezone.utc).isoformat()
    rec = {"started": start, "cell": {"index": 3, "execution_count": 3, "source": "b = 2"},
           "loop": {"task": "train", "done": 30, "total": 300, "unit": "epochs", "started": 1060.0, "updated": 1160.0}}
    got = bb.loop_progress(rec, part, book)
    # the cells after the loop's hold 60 % of the chapter (> MAX_AFTER_SHARE): a lower bound
    assert got == {"task": "train", "unit": "epochs", "detail": "", "partial": True, "done": 30, "total": 300,
                   "loop_fraction": 0.1, "estimate_s": 1060.0, "after_share": 0.6}
    # stopped in the last cell: nothing after it, an estimate of the whole run
    at_end = dict(rec, cell={"index": 4, "execution_count": 4, "source": "c = 3"})
    last = bb.loop_progress(at_end, part, book)
    assert (last["after_share"], last["partial"]) == (0.0, False)
    # the same stop in a loop that reported itself partial (work after it in its call): a lower bound
    flagged = bb.loop_progress(dict(at_end, loop=dict(rec["loop"], partial=True)), part, book)
    assert (flagged["after_share"], flagged["partial"]) == (0.0, True)
    # below 1 % of its loop (a multiplier above 100): no estimate
    assert bb.loop_progress(dict(rec, loop=dict(rec["loop"], done=2)), part, book) is None
    assert bb.share_of(got) == ("a lower bound: its train loop alone, in epochs; what follows it in its cell and "
                                "the cells after it (60 % of the chapter at book scale) not counted")
    assert bb.share_of(dict(last, detail="stopped in group 1 of 2")).startswith(
        "its train loop, in epochs (stopped in group 1 of 2); the rest")
    assert bb.share_of({"fraction": 0.4}) == bb.CHAPTER_SHARE
    # a loop that had done nothing, or no loop: no estimate; a cell that does not pair up: no share
    assert bb.loop_progress(dict(rec, loop=dict(rec["loop"], done=0)), part, book) is None
    assert bb.loop_progress({"started": start}, part, book) is None
    assert bb.loop_progress(dict(rec, cell={"index": 2}), part, book)["after_share"] is None


def test_stop_kills_the_whole_group_of_a_runner_that_ignores_sigterm(tmp_path):
    # A runner that does not end on SIGTERM within the grace period is killed with its whole process
    # group (a kernel it started in its group would otherwise live on); stop says it did not end on SIGTERM
    import os
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    code = ("import os, signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):  # until the grandchild is up
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the stand-in runner did not start its child within 10 s")
        child = int(pid_file.read_text())
        t0 = time.monotonic()
        assert _bench_book().stop(proc, grace=1.0) is False
        assert time.monotonic() - t0 < 15 and proc.returncode == -9
        for _ in range(50):  # the grandchild went with the group (reaped by init once its parent is gone)
            try:
                os.kill(child, 0)
                with open(f"/proc/{child}/stat") as f:  # a zombie waiting for its reaper is dead too
                    if f.read().split(") ")[1].startswith("Z"):
                        break
            except (ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the runner's child {child} outlived stop()")
    finally:  # nothing left behind, whatever failed
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
