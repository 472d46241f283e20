"""Sweeps (floss_utils/book/sweeps.py): grid values, point directories, atomic completion, failure,
interruption and resume, locally and on a real Dask ``LocalCluster``.

The integration tests use the tiny test chapter of ``tests/tiny_book.py`` (its notebook runs in
about a second and imports no torch): ``y = x**2 + seed``, an error when ``x == fail_at``, and a
half-written ``results.json`` followed by a wait while ``hold_file`` exists when ``x == hold_at``.
They stop real ``floss sweep`` processes with real signals: Ctrl-C or SIGTERM to the process group
(a terminal, ``timeout``, Slurm), SIGTERM to the sweep process alone (Kubernetes), to one point's
process alone (a Dask worker's shutdown), and SIGKILL to the sweep process.
Ground truths: the chapter's formula, the files on disk read with ``json``/``csv``, the signals
the tests send, and the statuses the fixture is built to produce; never an earlier output of the
runner.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from floss_utils.book import parameters, runs, sweeps
from floss_utils.book.cli import main
from floss_utils.book.parameters import ParameterError
from floss_utils.book.runs import RunError

from tiny_book import BOOK, TINY, exited_process, floss_argv, process_gone, wait_for, with_default_signals

SAFE_NAME = re.compile(r"^[A-Za-z0-9._+,=-]+$")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _record(directory: Path) -> dict:
    return json.loads((directory / "run.json").read_text())


# ------------------------------------------------------------------------------ values


@pytest.mark.parametrize(
    "text, kind, expected",
    [
        ("200", "int", 200),
        (" 0.5 ", "float", 0.5),
        ("1e-3", "float", 0.001),
        ("[1, 2]", "list[int]", [1, 2]),
        ("1,2", "list[int]", [1, 2]),  # a tuple literal becomes a list
        ("cpu", "str", "cpu"),  # bare word: the string itself
        ("'cpu'", "str", "cpu"),
        ("123", "str", "123"),  # a str parameter keeps the text, not the int
        ("None", "int", None),  # None: default / from scale
        ("true", "bool", True),
        ("False", "bool", False),
        ("no", "bool", False),
    ],
)
def test_parse_value(text, kind, expected):
    value = parameters.parse_value(text, kind)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text, kind", [("abc", "int"), ("[1, 2", "list[int]"), ("maybe", "bool")])
def test_parse_value_refuses_unreadable_text_naming_the_parameter(text, kind):
    with pytest.raises(ParameterError, match="'steps'"):
        parameters.parse_value(text, kind, "steps")


@pytest.mark.parametrize(
    "text, parts",
    [("0.5,1.5", ["0.5", "1.5"]), ("[30,60],[100]", ["[30,60]", "[100]"]),
     ("'a,b', c", ["'a,b'", "c"]), ("(1, 2),3", ["(1, 2)", "3"]), ("7", ["7"])],
)
def test_split_values_respects_brackets_and_quotes(text, parts):
    assert parameters.split_values(text) == parts


@pytest.mark.parametrize("text", ["1,,2", "[1,2", "'a,b", "1,"])
def test_split_values_refuses_malformed_lists(text):
    with pytest.raises(ParameterError):
        parameters.split_values(text)


def test_parse_grid():
    assert parameters.parse_grid(["x=1,2", "sizes=[3,4],[5]"]) == {"x": ["1", "2"], "sizes": ["[3,4]", "[5]"]}
    for bad in (["x"], ["=1,2"], ["x="], ["x=1", "x=2"]):
        with pytest.raises(ParameterError):
            parameters.parse_grid(bad)


def test_expand_grid_is_the_typed_cartesian_product():
    points = sweeps.expand_grid(TINY, {"x": ["1", "2.5"], "seed": ["0", "1", "2"]})
    # ground truth: itertools-free enumeration by hand, x outermost (order of --grid)
    assert points == [{"x": x, "seed": s} for x in (1.0, 2.5) for s in (0, 1, 2)]
    assert all(type(p["x"]) is float and type(p["seed"]) is int for p in points)


def test_expand_grid_reports_every_problem_before_anything_runs():
    with pytest.raises(ParameterError) as err:
        sweeps.expand_grid(TINY, {"xx": ["1"], "seed": ["0", "'a'"], "fail_at": ["1", "1.0"]})
    msg = str(err.value)
    assert "unknown parameter 'xx' (did you mean 'x'?)" in msg
    assert "'seed' must be an int, got str 'a'" in msg
    assert "repeated value(s) 1.0" in msg  # 1 and 1.0 are the same float point
    with pytest.raises(RunError, match="at least one --grid"):
        sweeps.expand_grid(TINY, {})


# ------------------------------------------------------------------------------ point names


def test_point_names_are_readable_safe_and_unique():
    assert sweeps.point_name({"x": 1.0, "seed": 2}) == "x=1.0__seed=2"
    assert sweeps.point_name({"sizes": [30, 60], "flag": True}) == "sizes=30,60__flag=True"
    odd = [{"tag": "a/b"}, {"tag": "a b"}, {"tag": "a-b"}, {"tag": "../.."}, {"tag": "x" * 300}, {"tag": "x" * 301}]
    names = [sweeps.point_name(v) for v in odd]
    assert len(set(names)) == len(names), names
    for n in names:
        assert SAFE_NAME.match(n) and len(n) <= 120 and n not in (".", "..") and "/" not in n, n
    assert names[2] == "tag=a-b"  # safe strings are kept verbatim, no hash


# ------------------------------------------------------------------------------ completion


def test_completion_is_run_json_status_ok_only(tmp_path):
    d = tmp_path / "p"
    assert not runs.is_complete(d)  # missing directory
    d.mkdir()
    (d / "results.json").write_text('{"results": {"y": 1}}')
    assert not runs.is_complete(d)  # results without a record
    (d / "run.json").write_text('{"status": "ok", "overrides": {"x"')  # truncated (never written so)
    assert not runs.is_complete(d)
    for status in ("running", "failed", "interrupted"):
        (d / "run.json").write_text(json.dumps({"status": status, "overrides": {"x": 1.0}}))
        assert not runs.is_complete(d), status
    (d / "run.json").write_text(json.dumps({"status": "ok", "overrides": {"x": 1.0}}))
    assert runs.is_complete(d) and runs.is_complete(d, {"x": 1.0})
    assert not runs.is_complete(d, {"x": 2.0})  # a different point is not this one


def test_collect_flattens_scalars_and_short_lists(tmp_path):
    p = tmp_path / "x=1.0"
    p.mkdir()
    (p / "run.json").write_text(json.dumps({"status": "ok", "wall_s": 1.5}))
    (p / "results.json").write_text(json.dumps({"results": {
        "a": 1.5, "d": {"e": 2, "f": {"g": "s"}}, "short": [1, 2], "long": list(range(40)), "nested": [[1], [2]]}}))
    q = tmp_path / "x=2.0"
    q.mkdir()
    table, failures = sweeps.collect(tmp_path, [
        {"point": "x=1.0", "status": "ok", "values": {"x": 1.0}, "error": None},
        {"point": "x=2.0", "status": "failed", "values": {"x": 2.0}, "error": "boom"}], ["x"])
    rows = _rows(table)
    assert list(rows[0]) == ["point", "status", "x", "wall_s", "a", "d.e", "d.f.g", "short.0", "short.1", "error"]
    assert rows[0]["a"] == "1.5" and rows[0]["d.f.g"] == "s" and float(rows[0]["short.1"]) == 2
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "boom" and rows[1]["a"] == ""
    assert _rows(failures) == [{"point": "x=2.0", "status": "failed", "x": "2.0", "error": "boom"}]


# ------------------------------------------------------------------------------ refusals


def test_sweep_refuses_foreign_directories(tmp_path):
    other_sweep = tmp_path / "other"
    other_sweep.mkdir()
    (other_sweep / "sweep.json").write_text(json.dumps({"chapter": "01_lyapunov_spectra", "fixed": {}}))
    single = tmp_path / "single"
    single.mkdir()
    (single / "run.json").write_text(json.dumps({"chapter": "tiny", "status": "ok"}))
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    same_other_fixed = tmp_path / "fixed"
    same_other_fixed.mkdir()
    (same_other_fixed / "sweep.json").write_text(json.dumps({"chapter": "tiny", "fixed": {"scale": "paper"}}))
    cases = [(other_sweep, "holds a sweep of 01_lyapunov_spectra"), (single, "holds a single run of tiny"),
             (stranger, "not a floss sweep directory"), (same_other_fixed, "other fixed settings")]
    for directory, message in cases:
        before = sorted(p.name for p in directory.iterdir())
        with pytest.raises(RunError, match=message):
            sweeps.sweep(BOOK, "tiny", {"x": ["1"]}, directory, fixed={"scale": "smoke"}, progress=False)
        assert sorted(p.name for p in directory.iterdir()) == before  # nothing written


def test_sweep_refuses_a_parameter_both_fixed_and_swept(tmp_path):
    with pytest.raises(ParameterError, match="x both fixed"):
        sweeps.sweep(BOOK, "tiny", {"x": ["1"]}, tmp_path / "s", fixed={"x": "2"}, progress=False)
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------ integration


def _start_sweep(args: list[str]) -> subprocess.Popen:
    """``floss sweep ARGS`` (tiny chapter) in a process group of its own, as a shell starts it."""
    return subprocess.Popen(floss_argv(*args), env={**os.environ, "TQDM_DISABLE": "1"}, start_new_session=True,
                            preexec_fn=with_default_signals,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _mid_run(directory: Path) -> bool:
    """The held point is mid-run: its half-written results.json is there (its kernel.pid too)."""
    return (directory / "results.json").exists()


def _settled(out: Path, names: list[str]) -> bool:
    recs = [runs._read_json(out / name / "run.json") for name in names]
    return all(rec and rec.get("status") in ("ok", "failed") for rec in recs)



def _interrupt_sweep(args: list[str], out: Path, held: str, settled: list[str], sig: int, target: str):
    """Start ``floss sweep`` (tiny chapter) in its own process group, wait until the ``held`` point
    is mid-run and the ``settled`` points are finished, then send ``sig`` to the process group
    (``target="group"``: Ctrl-C in a terminal, ``timeout``, Slurm) or to the sweep process alone
    (``"driver"``: Kubernetes, ``kill PID``)."""
    proc = _start_sweep(args)
    wait_for(lambda: _mid_run(out / held) and _settled(out, settled), proc, "reached the held point")
    (os.killpg if target == "group" else os.kill)(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=90)
    return proc.returncode, stdout, stderr


def _check_failure_interrupt_resume(tmp_path: Path, extra: list[str], capsys, sig: int = signal.SIGINT,
                                    target: str = "group") -> list[dict]:
    out = tmp_path / "sweep"
    hold = tmp_path / "hold"
    hold.write_text("hold")
    args = ["sweep", "tiny", "--grid", "x=1,2,3", "-p", "fail_at", "2", "-p", "hold_at", "3",
            "-p", "hold_file", str(hold), "--scale", "smoke", "--out", str(out), *extra]
    rc, stdout, stderr = _interrupt_sweep(args, out, "x=3.0", ["x=1.0", "x=2.0"], sig, target)
    assert rc == 128 + sig, (stdout, stderr)  # 130 Ctrl-C, 143 SIGTERM
    assert "interrupted: run the same command again to resume" in stderr
    assert "3 points: 1 ok (0 already complete), 1 failed, 1 interrupted" in stdout
    # the interrupted point says so, with the signal (sent to it, or passed on by the sweep), the
    # cell that was running and its end; its kernel is shut down; its partial outputs stay, not taken as done
    held = _record(out / "x=3.0")
    name = signal.Signals(sig).name
    assert held["status"] == "interrupted" and held["signal"] == name, held
    assert held["cell"]["index"] == 3 and held["cell"]["source"].startswith("import base64"), held["cell"]
    assert held["error"].startswith(f"interrupted by {name} while cell ")
    assert held["finished"] and held["wall_s"] > 0
    assert process_gone(int((out / "x=3.0" / "kernel.pid").read_text()))
    assert (out / "x=3.0" / "results.json").read_text().startswith('{"chapter": "tiny", "results": {"y": ')
    assert not runs.is_complete(out / "x=3.0")
    assert _record(out / "x=1.0")["status"] == "ok" and _record(out / "x=2.0")["status"] == "failed"
    statuses = {r["point"]: r["status"] for r in _rows(out / "sweep.csv")}
    assert statuses == {"x=1.0": "ok", "x=2.0": "failed", "x=3.0": "interrupted"}
    first_x1 = _record(out / "x=1.0")

    hold.unlink()
    capsys.readouterr()
    assert main(args, book=BOOK) == 1  # resumed; x = 2 still fails, so the exit status says so
    printed = capsys.readouterr().out
    assert "3 points: 2 ok (1 already complete), 1 failed" in printed
    assert "x=2.0: failed: cell" in printed and "ValueError: tiny: x = 2.0 is the failing value" in printed
    assert _record(out / "x=1.0") == first_x1  # skipped, not rerun
    rows = {r["point"]: r for r in _rows(out / "sweep.csv")}
    assert set(rows) == {"x=1.0", "x=2.0", "x=3.0"}
    for point, x in (("x=1.0", 1.0), ("x=3.0", 3.0)):
        assert rows[point]["status"] == "ok"
        assert float(rows[point]["y"]) == x * x  # the chapter's formula, seed 0
        assert float(rows[point]["x"]) == x
        rec = _record(out / point)
        assert rec["status"] == "ok" and rec["overrides"]["x"] == x and rec["parameters"]["scale"] == "smoke"
    assert rows["x=2.0"]["status"] == "failed" and "x = 2.0 is the failing value" in rows["x=2.0"]["error"]
    failures = _rows(out / "failures.csv")
    assert [f["point"] for f in failures] == ["x=2.0"] and "ValueError" in failures[0]["error"]
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["chapter"] == "tiny" and meta["grid"] == {"x": [1.0, 2.0, 3.0]}
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    return [_record(out / p) for p in ("x=1.0", "x=2.0", "x=3.0")]


@pytest.mark.slow
@pytest.mark.parametrize("sig, target", [pytest.param(signal.SIGINT, "group", id="SIGINT-group"),
                                         pytest.param(signal.SIGTERM, "group", id="SIGTERM-group"),
                                         pytest.param(signal.SIGTERM, "driver", id="SIGTERM-driver")])
def test_local_sweep_failure_interrupt_and_resume(tmp_path, capsys, sig, target):
    records = _check_failure_interrupt_resume(tmp_path, ["--workers", "2"], capsys, sig, target)
    assert all(r["worker"] is None for r in records)  # local worker processes, no Dask


@pytest.mark.slow
@pytest.mark.parametrize("sig, target", [pytest.param(signal.SIGINT, "group", id="SIGINT-group"),
                                         pytest.param(signal.SIGTERM, "driver", id="SIGTERM-driver")])
def test_dask_local_cluster_sweep_failure_interrupt_and_resume(tmp_path, capsys, sig, target):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        workers = set(cluster.scheduler.workers)
        assert len(workers) == 2
        records = _check_failure_interrupt_resume(tmp_path, ["--scheduler", address], capsys, sig, target)
    # every point ran on one of the cluster's workers (recorded by the worker itself)
    assert all(r["worker"] in workers for r in records), [r["worker"] for r in records]


@pytest.mark.slow
def test_sigterm_to_one_point_process_leaves_it_interrupted_and_the_sweep_goes_on(tmp_path, capsys):
    """What a Dask worker's shutdown (or an OOM-minded scheduler) does: SIGTERM to the process
    running one point, not to the sweep. One worker, the held point first: the others run after."""
    out, hold = tmp_path / "sweep", tmp_path / "hold"
    hold.write_text("hold")
    args = ["sweep", "tiny", "--grid", "x=3,1,2", "--workers", "1", "-p", "hold_at", "3", "-p", "hold_file",
            str(hold), "--scale", "smoke", "--out", str(out)]
    proc = _start_sweep(args)
    wait_for(lambda: _mid_run(out / "x=3.0"), proc, "reached the held point")
    point_pid = _record(out / "x=3.0")["pid"]  # the record names the process running the point
    assert point_pid != proc.pid and _record(out / "x=3.0")["host"] == platform.node()
    os.kill(point_pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 1, (stdout, stderr)  # the sweep ran to its end; one point did not complete
    assert "3 points: 2 ok (0 already complete), 0 failed, 1 interrupted" in stdout
    assert re.search(r"x=3\.0: interrupted: interrupted by SIGTERM while cell \d+ was running", stdout), stdout
    assert "some points were interrupted: run the same command again" in stderr
    held = _record(out / "x=3.0")
    assert held["status"] == "interrupted" and held["signal"] == "SIGTERM" and held["finished"]
    assert process_gone(int((out / "x=3.0" / "kernel.pid").read_text()))
    assert {r["point"]: r["status"] for r in _rows(out / "sweep.csv")} == {
        "x=3.0": "interrupted", "x=1.0": "ok", "x=2.0": "ok"}

    hold.unlink()
    capsys.readouterr()
    assert main(args, book=BOOK) == 0  # the same command runs the interrupted point, skips the others
    assert "3 points: 3 ok (2 already complete), 0 failed" in capsys.readouterr().out
    rows = {r["point"]: r for r in _rows(out / "sweep.csv")}
    assert {p: float(r["y"]) for p, r in rows.items()} == {"x=3.0": 9.0, "x=1.0": 1.0, "x=2.0": 4.0}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a point's process asks Linux for SIGTERM "
                    "when its sweep dies (PR_SET_PDEATHSIG)")
def test_a_sweep_killed_outright_leaves_its_point_interrupted_and_resumes(tmp_path, capsys):
    """SIGKILL cannot be caught: the sweep process dies at once. Its point's process gets SIGTERM
    from the kernel (Linux) and records the interruption; the same command then completes."""
    import psutil

    out, hold = tmp_path / "sweep", tmp_path / "hold"
    hold.write_text("hold")
    args = ["sweep", "tiny", "--grid", "x=3,1", "--workers", "1", "-p", "hold_at", "3", "-p", "hold_file",
            str(hold), "--scale", "smoke", "--out", str(out)]
    proc = _start_sweep(args)
    wait_for(lambda: _mid_run(out / "x=3.0"), proc, "reached the held point")
    point = psutil.Process(_record(out / "x=3.0")["pid"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    point.wait(timeout=60)  # not its child: psutil polls
    held = _record(out / "x=3.0")
    assert held["status"] == "interrupted" and held["signal"] == "SIGTERM", held
    assert process_gone(int((out / "x=3.0" / "kernel.pid").read_text()))
    assert not (out / "x=1.0").exists()  # never started

    hold.unlink()
    capsys.readouterr()
    assert main(args, book=BOOK) == 0
    assert "2 points: 2 ok (0 already complete), 0 failed" in capsys.readouterr().out
    assert _record(out / "x=3.0")["status"] == "ok" and _record(out / "x=1.0")["status"] == "ok"



def test_a_point_still_run_by_a_live_process_of_this_host_is_waited_for(tmp_path):
    """Never seen in practice (a point's process holds the point's lock and dies with its sweep),
    but a "running" record whose process is alive is never rerun under it: it is waited for,
    unless the sweep is being stopped."""
    import threading

    import psutil

    helper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    point = tmp_path / "x=1.0"
    point.mkdir()
    (point / "run.json").write_text(json.dumps({
        "status": "running", "started": "2026-01-01T00:00:00+00:00", "host": platform.node(), "pid": helper.pid,
        "pid_started": psutil.Process(helper.pid).create_time(), "pid_namespace": runs._pid_namespace()}))
    assert "not waited for: the sweep is stopping" in sweeps._earlier_run(point, lambda: signal.SIGTERM)
    assert helper.poll() is None
    threading.Timer(0.3, helper.stdin.close).start()
    assert "waited for an earlier run of it" in sweeps._earlier_run(point, lambda: 0)
    assert helper.wait(timeout=5) == 0


@pytest.mark.slow
def test_a_sweep_reruns_stale_points_and_says_so(tmp_path, capsys):
    """Points whose record says "running" with no process behind it (a sweep lost with its
    machine, a record from before this feature...) are rerun; what was found is reported."""
    out = tmp_path / "sweep"
    assert main(["sweep", "tiny", "--grid", "x=1", "--scale", "smoke", "--out", str(out)], book=BOOK) == 0
    first_x1 = _record(out / "x=1.0")
    pid, started = exited_process()
    for point, host in (("x=2.0", platform.node()), ("x=3.0", "another-host.example")):
        (out / point).mkdir()
        rec = {**first_x1, "status": "running", "finished": None, "wall_s": None, "outputs": {}, "point": point,
               "host": host, "pid": pid, "pid_started": started}
        (out / point / "run.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert main(["sweep", "tiny", "--grid", "x=1,2,3", "--scale", "smoke", "--out", str(out)], book=BOOK) == 0
    captured = capsys.readouterr()
    assert "3 points: 3 ok (1 already complete), 0 failed" in captured.out
    assert re.search(rf"note: x=2\.0: stale record: .*pid {pid} on {re.escape(platform.node())}\) no longer "
                     r"exists; it was interrupted, so it was run again", captured.err), captured.err
    assert re.search(r"note: x=3\.0: .*pid \d+ on host another-host\.example, which cannot be checked from "
                     r".*no sweep held the point's lock, so it was run again", captured.err), captured.err
    assert _record(out / "x=1.0") == first_x1  # complete: skipped
    for point in ("x=2.0", "x=3.0"):
        rec = _record(out / point)
        assert rec["status"] == "ok" and rec["pid"] != pid and rec["host"] == platform.node()


def test_unreachable_scheduler_is_a_clear_error(tmp_path, capsys):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        rc = main(["sweep", "tiny", "--grid", "x=1", "--out", str(tmp_path / "s"),
                   "--scheduler", "tcp://127.0.0.1:9"], book=BOOK)
    assert rc == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing was written


def test_local_sweep_staggers_the_first_wave_of_points(monkeypatch):
    # two kernels started at once can race for one TCP port: the first `workers` points start KERNEL_STAGGER_S
    # apart (measured here with a stand-in runner that records when each point starts)
    import threading

    from floss_utils.book import sweeps

    starts: list[float] = []
    lock = threading.Lock()

    def fake_run_point(task, cancel=None):
        with lock:
            starts.append(time.monotonic())
        time.sleep(0.5)
        return {"point": task["point"], "status": "ok", "skipped": False}

    monkeypatch.setattr(sweeps, "run_point", fake_run_point)
    monkeypatch.setattr(sweeps, "KERNEL_STAGGER_S", 0.2)
    got = []
    assert sweeps._sweep_local([{"point": f"p{i}"} for i in range(3)], 2, got.append) is None
    assert sorted(r["point"] for r in got) == ["p0", "p1", "p2"]
    starts.sort()
    assert starts[1] - starts[0] >= 0.2  # the second of the first wave waited
