"""The ``floss`` command (floss_utils/book/cli.py): every subcommand, validation, run records, exit codes.

Most tests drive ``floss_utils.book.cli.main`` in-process with the tiny test chapter of
``tests/tiny_book.py`` (its notebook runs in about a second: ``y = x**2 + seed``, an error when
``x == fail_at``, a wait while ``hold_file`` exists when ``x == hold_at``); the signal tests send
SIGINT, SIGTERM and SIGHUP to a real ``floss run`` process held mid-cell; one runs a real chapter
at smoke scale through ``python -m floss_utils``.
Ground truths: the registry entries and notebooks' parameters cells (read here with ``ast``),
``git rev-parse HEAD``, ``importlib.metadata`` versions, the files on disk, and the Makefile.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path

import pytest

import floss_utils
from floss_utils.book import cli, runs as runner
from floss_utils.book.cli import main
from floss_utils.book.registry import CHAPTERS, SCALES, Param, chapter
from floss_utils.book.runs import Book

from conftest import REPO_ROOT, registry_notebook
from tiny_book import BOOK, TINY, TINY_ROOT, exited_process, floss_argv, process_gone, wait_for, with_default_signals

SUBCOMMANDS = ("list", "params", "run", "sweep", "build")


def _record(directory: Path) -> dict:
    return json.loads((directory / "run.json").read_text())


# ---------------------------------------------------------------------------------- help, entry points


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: floss {command}")
    assert len(text.splitlines()) > 4


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert re.search(rf"^\s+{command}\s", text, re.M), command


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_console_script_and_python_m_agree():
    # the installed `floss` script (pyproject [project.scripts]) and `python -m floss_utils`
    floss = Path(sys.executable).with_name("floss")
    assert floss.is_file(), "the floss console script is not installed (pip install -e .)"
    outputs = [subprocess.run(cmd + ["list", "--json"], capture_output=True, text=True, timeout=120)
               for cmd in ([str(floss)], [sys.executable, "-m", "floss_utils"])]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
    assert outputs[0].stdout == outputs[1].stdout
    assert [c["id"] for c in json.loads(outputs[0].stdout)] == list(CHAPTERS)


# ---------------------------------------------------------------------------------- list, params


def test_list_shows_every_chapter(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for c in CHAPTERS.values():
        assert f"{c.id}  {c.title}" in text
        assert c.reproduces.split()[0] in text
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    from dataclasses import asdict

    from floss_utils.book.registry.costs import COSTS

    assert data == [{"id": c.id, "title": c.title, "reproduces": c.reproduces, "minutes": dict(c.minutes),
                     "measured": {s: asdict(v) for s, v in COSTS.get(c.id, {}).items()}}
                    for c in CHAPTERS.values()]


def test_run_warns_when_the_machine_has_less_memory_than_the_scale_needed(monkeypatch):
    from floss_utils.book import runs
    from floss_utils.book.registry.costs import Cost

    monkeypatch.setitem(runs.expected_cost.__globals__["COSTS"], "03_signal_propagation",
                        {"paper": Cost(minutes=2.0, peak_gib=6.0, status="ok", basis="measured 2026-12-02, test")})
    warning = runs.memory_warning("03_signal_propagation", "paper", available=2 << 30)
    assert "needed 6.0 GiB" in warning and "2.0 GiB available" in warning and "n_samples" in warning
    assert runs.memory_warning("03_signal_propagation", "paper", available=8 << 30) is None
    assert runs.memory_warning("03_signal_propagation", "book", available=1) is None  # never measured


_STOPPED = "timed out after 900 s"


def _stopped_tiny(monkeypatch, scale="paper", status=_STOPPED, basis="at least: extrapolated from a run stopped"):
    from floss_utils.book import runs
    from floss_utils.book.registry.costs import Cost

    monkeypatch.setitem(runs.expected_cost.__globals__["COSTS"], "tiny",
                        {scale: Cost(minutes=303.0, peak_gib=7.54, status=status, basis=basis)})


def test_a_cpu_run_that_never_finished_on_the_reference_machine_is_refused_with_its_need(monkeypatch, tmp_path, capsys):
    _stopped_tiny(monkeypatch)
    out = tmp_path / "o"
    assert main(["run", "tiny", "--scale", "paper", "--device", "cpu", "--out", str(out)], book=BOOK) == 2
    err = capsys.readouterr().err
    assert "did not finish on the reference machine" in err and _STOPPED in err
    assert "more than 303 min (a lower bound)" in err and "7.54 GiB" in err and "--accept-cost" in err
    assert not out.exists()  # refused before anything was written
    # the seed and the device do not change the cost: still refused
    assert main(["run", "tiny", "--scale", "paper", "--device", "cpu", "-p", "seed", "3",
                 "--out", str(out)], book=BOOK) == 2
    # asked for: it runs
    assert main(["run", "tiny", "--scale", "paper", "--device", "cpu", "--accept-cost", "-q",
                 "--out", str(out)], book=BOOK) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "ok"


def test_cost_refusal_only_for_the_recorded_configuration_on_a_cpu(monkeypatch):
    from floss_utils.book.runs import cost_refusal

    _stopped_tiny(monkeypatch)
    paper = {"scale": "paper", "device": "cpu"}
    assert cost_refusal(TINY, paper) is not None
    assert cost_refusal(TINY, {"scale": "book", "device": "cpu"}) is None  # that scale was never measured
    assert cost_refusal(TINY, {**paper, "x": 1.0}) is None  # another configuration: the record is not its
    assert cost_refusal(TINY, {**paper, "x": 3.0}) is not None  # the paper value given again: still the recorded run
    assert cost_refusal(TINY, paper, on_accelerator=True) is None  # the record is a CPU's
    assert cost_refusal(TINY, {"scale": "paper", "device": "cuda"}) is None
    assert cost_refusal(TINY, {"scale": "paper", "device": "cuda:1"}) is None
    assert cost_refusal(TINY, {"scale": "paper"}, on_accelerator=False) is not None  # device auto, no GPU
    _stopped_tiny(monkeypatch, status="failed (exit 1)", basis="measured 2026-12-02, test")
    assert cost_refusal(TINY, paper) is None  # a run that failed a check finished: not a matter of cost
    _stopped_tiny(monkeypatch, status="killed", basis="extrapolated from 20 % of the chapter")
    assert "about 303 min (extrapolated)" in cost_refusal(TINY, paper)


def test_a_sweep_of_a_configuration_that_never_finished_is_refused(monkeypatch, tmp_path, capsys):
    _stopped_tiny(monkeypatch)
    out = tmp_path / "s"
    common = ["--scale", "paper", "--device", "cpu", "-q", "--out", str(out)]
    assert main(["sweep", "tiny", "--grid", "seed=1,2", *common], book=BOOK) == 2
    assert "2 of 2 points refused" in capsys.readouterr().err and not out.exists()
    # a grid that changes the configuration is not the recorded run: it runs
    assert main(["sweep", "tiny", "--grid", "x=1.5,2.5", *common], book=BOOK) == 0

    # on a Dask cluster the workers' devices are not known here: an explicit CPU point is refused before connecting,
    # a point left at auto is not (this sweep then fails to reach the made-up scheduler, not on its cost)
    from floss_utils.book import sweeps
    from floss_utils.book.runs import RunError
    from floss_utils.book.sweeps import sweep

    def no_cluster(address):
        raise ConnectionError(f"no cluster at {address} (test)")

    monkeypatch.setattr(sweeps, "_connect", no_cluster)
    with pytest.raises(RunError, match="1 of 2 points refused"):
        sweep(BOOK, "tiny", {"device": ["cpu", "auto"]}, tmp_path / "d", fixed={"scale": "paper"},
              scheduler="tcp://127.0.0.1:9", progress=False)
    with pytest.raises(ConnectionError, match="no cluster"):
        sweep(BOOK, "tiny", {"seed": [1, 2]}, tmp_path / "d2", fixed={"scale": "paper"},
              scheduler="tcp://127.0.0.1:9", progress=False)


def _cell_comments(nb_path: Path) -> dict[str, tuple[object, str]]:
    """Independent parse of a parameters cell: {name: (literal, comment)} via ast + regex."""
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"])
    out = {}
    for line, stmt in zip(source.splitlines(), ast.parse(source).body):
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        out[stmt.targets[0].id] = (ast.literal_eval(stmt.value), comment)
    return out


@pytest.mark.parametrize("chapter_id", list(CHAPTERS))
def test_params_agrees_with_registry_and_parameters_cell(chapter_id, capsys):
    spec = CHAPTERS[chapter_id]
    nb_path = registry_notebook(chapter_id)
    assert main(["params", chapter_id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["problems"] == []
    cell = _cell_comments(nb_path)
    assert [r["name"] for r in data["parameters"]] == list(spec.params) == list(cell)
    for row in data["parameters"]:
        p = spec.params[row["name"]]
        assert row["kind"] == p.kind and row["presets"] == dict(p.presets) and row["choices"] == list(p.choices)
        assert row["default"] == (None if p.presets else p.default)
        assert cell[row["name"]][1].startswith(row["meaning"])  # the notebook's own comment
    # the text form shows every name, its type and its meaning
    assert main(["params", chapter_id]) == 0
    text = capsys.readouterr().out
    for row in data["parameters"]:
        assert f"{row['name']} ({row['kind']})" in text and row["meaning"] in text


def test_params_at_one_scale_shows_the_preset(capsys):
    assert main(["params", "tiny", "--scale", "paper"], book=BOOK) == 0
    text = capsys.readouterr().out
    assert "x (float) = 3.0  [from scale]" in text and "scale (str) = 'paper'" in text


def test_params_reports_a_notebook_registry_disagreement(capsys):
    drifted = chapter("tiny", "t", "r", {s: 0.1 for s in SCALES},
                      x=Param("float", "the input value", {s: 1.0 for s in SCALES}),
                      fail_at=Param("float", "f", default=0.5),  # notebook says -1.0
                      extra=Param("int", "not in the notebook", default=1))
    rc = main(["params", "tiny"], book=Book(TINY_ROOT, {"tiny": drifted}))
    err = capsys.readouterr().err
    assert rc == 1
    assert "'fail_at': notebook default -1.0 != registry 0.5" in err
    assert "'extra' is in the registry but not in the notebook" in err
    assert "'hold_at' is in the notebook's parameters cell but not in the registry" in err


def test_unknown_chapter_suggests_the_closest(capsys):
    assert main(["params", "02_exponent_to_gradients"]) == 2
    assert "did you mean '02_exponents_to_gradients'?" in capsys.readouterr().err
    assert main(["params", "zz"]) == 2
    assert "unknown chapter 'zz'" in capsys.readouterr().err


def test_chapter_prefix_is_accepted(capsys):
    assert main(["params", "ti", "--json"], book=BOOK) == 0
    assert json.loads(capsys.readouterr().out)["chapter"] == "tiny"


# ---------------------------------------------------------------------------------- run: validation


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "xx", "1"], "unknown parameter 'xx' (did you mean 'x'?)"),
        (["-p", "sede", "1"], "unknown parameter 'sede' (did you mean 'seed'?)"),
        (["-p", "seed", "1.5"], "parameter 'seed' must be an int, got float 1.5"),
        (["-p", "x", "'a'"], "parameter 'x' must be a number, got str 'a'"),
        (["-p", "x", "abc"], "parameter 'x': cannot read 'abc' as a float"),
        (["-p", "dtype", "float16"], "'dtype' must be one of ['float32', 'float64']"),
        (["-p", "output_dir", "elsewhere"], "'output_dir' is set by the runner: use --out DIR"),
        (["-p", "scale", "paper", "--scale", "smoke"], "--scale smoke contradicts -p scale paper"),
        (["-p", "seed", "1", "-p", "seed", "2"], "-p seed given twice"),
        (["--device", "gpu0"], "parameter 'device': 'gpu0' is not a torch device"),
    ],
)
def test_run_refuses_bad_parameters_before_running(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["run", "tiny", *args, "--out", str(out)], book=BOOK) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists(), "nothing may be written before validation passes"


def test_run_lists_every_problem_at_once(tmp_path, capsys):
    assert main(["run", "tiny", "-p", "xx", "1", "-p", "seed", "'s'", "--out", str(tmp_path / "o")], book=BOOK) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "'xx'" in err and "'seed' must be an int" in err


def test_list_parameter_hint(tmp_path, capsys):
    assert main(["run", "02_exponents_to_gradients", "-p", "gains", "1", "--out", str(tmp_path / "o")]) == 2
    assert "'gains' must be a list of float, got int 1 (write a list in brackets, e.g. [1])" in capsys.readouterr().err


def test_run_refuses_cuda_where_there_is_none(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["run", "tiny", "--device", "cuda", "--out", str(tmp_path / "o")], book=BOOK) == 2
    assert "CUDA is not available here" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- run: records


@pytest.mark.slow
def test_run_writes_notebook_results_figures_and_run_json(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv(runner.PROGRESS_ENV, str(tmp_path / "outer.json"))  # a caller's own progress file
    assert main(["run", "tiny", "--scale", "smoke", "-p", "seed", "3", "--device", "cpu", "--out", str(out)],
                book=BOOK) == 0
    assert f"ok: tiny (scale smoke, seed 3, device cpu) -> {out}/" in capsys.readouterr().out
    rec = _record(out)
    assert rec["chapter"] == "tiny" and rec["status"] == "ok" and rec["error"] is None
    # the chapter reported an unfinished loop, but the run ended ok: no loop kept; the caller's variable untouched
    assert json.loads((out / "progress.json").read_text())["done"] == 1
    assert "loop" not in rec and os.environ[runner.PROGRESS_ENV] == str(tmp_path / "outer.json")
    assert not (tmp_path / "outer.json").exists()  # the kernel wrote the run's file, not the caller's
    assert rec["overrides"] == {"seed": 3, "scale": "smoke", "device": "cpu"}
    assert rec["scale"] == "smoke" and rec["seed"] == 3 and rec["device"] == "cpu"
    assert rec["parameters"]["x"] == TINY.params["x"].presets["smoke"] == 1.0
    assert rec["parameters"]["output_dir"] == str(out.resolve())
    # versions: what importlib.metadata says is installed
    for name in ("torch", "numpy", "papermill", "floss_utils"):
        assert rec["versions"][name] == metadata.version(name), name
    assert rec["versions"]["floss_utils"] == floss_utils.__version__
    assert rec["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert rec["git"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    started, finished = (dt.datetime.fromisoformat(rec[k]) for k in ("started", "finished"))
    assert started.tzinfo is not None and started <= finished
    assert 0 < rec["wall_s"] <= (finished - started).total_seconds() + 1.0
    # outputs: executed notebook (with papermill's injected parameters), results, figures
    executed = json.loads((out / "tiny.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and f'output_dir = "{out.resolve()}"' in "".join(injected[0]["source"])
    assert rec["outputs"] == {"notebook": "tiny.ipynb", "results": "results.json", "figures": ["figures/dot.png"]}
    assert (out / "figures" / "dot.png").read_bytes().startswith(b"\x89PNG")
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["y"] == 1.0 ** 2 + 3  # the chapter's formula
    # the recorded command repeats the run
    assert shlex.split(rec["command"]) == ["floss", "run", "tiny", "-p", "seed", "3", "--scale", "smoke",
                                           "--device", "cpu", "--out", str(out.resolve())]
    # a rerun of the same chapter into the same directory replaces it
    (out / "figures" / "stale.png").write_bytes(b"old")
    assert main(["run", "tiny", "--scale", "smoke", "-p", "seed", "4", "--out", str(out)], book=BOOK) == 0
    assert _record(out)["seed"] == 4 and not (out / "figures" / "stale.png").exists()


@pytest.mark.slow
def test_failing_chapter_exits_non_zero_with_the_cell_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "tiny", "--scale", "smoke", "-p", "fail_at", "1", "--out", str(out)], book=BOOK) == 1
    err = capsys.readouterr().err
    assert re.search(r"FAILED: tiny: cell \d+: ValueError: tiny: x = 1.0 is the failing value", err), err
    rec = _record(out)
    assert rec["status"] == "failed" and "x = 1.0 is the failing value" in rec["error"]
    assert not runner.is_complete(out)
    assert (out / "tiny.ipynb").is_file()  # the executed notebook shows the error in place


# ---------------------------------------------------------------------------------- run: signals



@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_ends_a_run_with_a_true_record(tmp_path, sig):
    """``timeout``/Slurm/Kubernetes send SIGTERM, a closed terminal SIGHUP, Ctrl-C SIGINT: each to
    the ``floss run`` process alone, while a cell runs (the chapter waits on a hold file)."""
    out, hold = tmp_path / "run", tmp_path / "hold"
    hold.write_text("hold")
    proc = subprocess.Popen(floss_argv("run", "tiny", "--scale", "smoke", "-p", "hold_at", "1", "-p", "hold_file",
                                       str(hold), "--out", str(out)),
                            env={**os.environ, "TQDM_DISABLE": "1"}, start_new_session=True,
                            preexec_fn=with_default_signals,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (out / "results.json").exists(), proc, "reached the held cell")
    running = _record(out)
    assert running["status"] == "running" and running["finished"] is None
    assert (running["host"], running["pid"]) == (platform.node(), proc.pid)
    assert runner.process_state(running)[0] == "alive"
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr  # 143 SIGTERM, 129 SIGHUP, 130 SIGINT
    assert f"floss run: interrupted ({sig.name})" in stderr
    rec = _record(out)
    assert rec["status"] == "interrupted" and rec["signal"] == sig.name
    # the cell that was running: the chapter's code cell, after markdown, parameters, injected parameters
    assert rec["cell"]["index"] == 3 and rec["cell"]["source"].startswith("import base64"), rec["cell"]
    # the cell is named by its execution count, or by its position when the signal came before the client had
    # read the count (the kernel runs ahead of the client's message loop; seen on a loaded machine)
    count = rec["cell"]["execution_count"]
    label = count if count is not None else f"#{rec['cell']['index']}"
    assert rec["error"] == f"interrupted by {sig.name} while cell {label} was running ({rec['cell']['source']})"
    started, finished = (dt.datetime.fromisoformat(rec[k]) for k in ("started", "finished"))
    assert started <= finished and 0 < rec["wall_s"] <= (finished - started).total_seconds() + 1.0
    assert not runner.is_complete(out)
    # the kernel is shut down; the partial outputs stay
    assert process_gone(int((out / "kernel.pid").read_text()))
    assert hold.exists()  # the cell never got past its wait: it was interrupted, not finished
    assert (out / "results.json").read_text().startswith('{"chapter": "tiny", "results": {"y": ')
    assert rec["outputs"]["notebook"] == "tiny.ipynb"
    # the loop the cell was in (its report_progress, through the variable floss run sets for the kernel)
    assert {k: rec["loop"][k] for k in ("task", "done", "total", "unit")} == {"task": "tiny", "done": 1, "total": 4,
                                                                              "unit": "waits"}
    executed = json.loads((out / "tiny.ipynb").read_text())
    cell = executed["cells"][3]
    assert cell["metadata"]["papermill"]["status"] == "failed"  # not "completed", as papermill alone says
    assert any(o.get("ename") == "Interrupted" and sig.name in o.get("evalue", "") for o in cell["outputs"])
    assert not list(out.rglob("*.tmp"))


def test_sigterm_and_sighup_raise_interrupted_inside_the_entry_point_handlers_only():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    with runner.interrupt_on_signals():
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]  # Ctrl-C: Python's own, unchanged
        with pytest.raises(KeyboardInterrupt) as caught:
            signal.raise_signal(signal.SIGTERM)
        assert isinstance(caught.value, runner.Interrupted) and caught.value.signum == signal.SIGTERM
        assert runner.interruption_signal(caught.value) == signal.SIGTERM
        signal.raise_signal(signal.SIGHUP)  # already stopping: a repeat is ignored while cleaning up
    assert {s: signal.getsignal(s) for s in before} == before  # restored
    assert runner.interruption_signal(KeyboardInterrupt()) == signal.SIGINT
    assert [runner.exit_status(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == [130, 143, 129]


def test_a_signal_during_the_final_record_is_raised_after_it():
    with runner.interrupt_on_signals():
        with pytest.raises(runner.Interrupted):
            with runner._signals_deferred():
                signal.raise_signal(signal.SIGTERM)
                finished = True  # not cut short
        assert finished


def test_the_error_of_an_interrupted_run_says_where_it_stopped():
    cell = {"index": 3, "source": "import base64, json", "cell": {"execution_count": 3}}
    assert runner._interruption_error("SIGTERM", {}) == "interrupted by SIGTERM before any cell ran (while starting)"
    assert runner._interruption_error("SIGTERM", cell) == \
        "interrupted by SIGTERM while cell 3 was running (import base64, json)"
    assert runner._interruption_error("SIGHUP", {**cell, "finished": True}) == \
        "interrupted by SIGHUP after cell 3 had finished (between cells, or stopping)"
    assert runner._running_cell({**cell, "finished": True}) is None
    assert runner._running_cell(cell) == {"index": 3, "execution_count": 3, "source": "import base64, json"}


def test_signal_handlers_respect_nohup_and_other_threads():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with runner.interrupt_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        seen = []
        thread = threading.Thread(target=lambda: seen.append(runner.interrupt_on_signals().__enter__() is None))
        thread.start()
        thread.join()
        assert seen == [True] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)



def test_process_state_of_a_running_record():
    import psutil

    here, me = platform.node(), os.getpid()
    mine = psutil.Process(me).create_time()
    assert runner.process_state({"host": here, "pid": me, "pid_started": mine})[0] == "alive"
    pid, started = exited_process()
    state, why = runner.process_state({"host": here, "pid": pid, "pid_started": started})
    assert state == "gone" and f"pid {pid} on {here}) no longer exists" in why
    # pid reuse: the pid exists, but it is another process (it started at another time)
    state, why = runner.process_state({"host": here, "pid": me, "pid_started": mine - 3600})
    assert state == "gone" and "now another process" in why
    state, why = runner.process_state({"host": "another-host.example", "pid": me, "pid_started": mine})
    assert state == "unknown" and "cannot be checked from" in why  # never guessed from a pid of this host
    if runner._pid_namespace():  # Linux: a container sharing the host name has pids of its own
        assert runner.process_state({"host": here, "pid": me, "pid_started": mine,
                                     "pid_namespace": runner._pid_namespace()})[0] == "alive"
        state, why = runner.process_state({"host": here, "pid": me, "pid_started": mine,
                                           "pid_namespace": "pid:[1]"})
        assert state == "unknown" and "another pid namespace" in why
    assert runner.process_state({"status": "running"})[0] == "unknown"  # an older record: no process named
    assert runner.process_state({"host": here, "pid": me})[0] == "unknown"  # no start time: reuse undecidable


def _running_record(directory: Path, **process) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    rec = {"chapter": "tiny", "status": "running", "started": "2026-01-01T00:00:00+00:00", **process}
    (directory / "run.json").write_text(json.dumps(rec))
    (directory / "results.json").write_text('{"partial": ')
    return rec


def test_run_refuses_a_directory_whose_run_is_still_running(tmp_path, capsys):
    import psutil

    out = tmp_path / "run"
    _running_record(out, host=platform.node(), pid=os.getpid(), pid_started=psutil.Process().create_time())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["run", "tiny", "--scale", "smoke", "--out", str(out)], book=BOOK) == 2
    err = capsys.readouterr().err
    assert "a run of tiny is still running there" in err and f"pid {os.getpid()}" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched


@pytest.mark.slow
def test_run_replaces_a_stale_record_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    pid, started = exited_process()
    _running_record(out, host=platform.node(), pid=pid, pid_started=started)
    assert main(["run", "tiny", "--scale", "smoke", "--out", str(out)], book=BOOK) == 0
    err = capsys.readouterr().err
    assert re.search(r"floss run: note: .*run\.json was a stale record: it said \"running\" \(started "
                     rf"2026-01-01T00:00:00\+00:00\) but its process \(pid {pid} on .*\) no longer exists, so that "
                     r"run was interrupted; replacing it", err), err
    assert _record(out)["status"] == "ok"
    # from another host: cannot be checked, and it says so (then replaces it, as any run of the chapter)
    _running_record(out, host="another-host.example", pid=pid, pid_started=started)
    assert main(["run", "tiny", "--scale", "smoke", "--out", str(out)], book=BOOK) == 0
    err = capsys.readouterr().err
    assert "another-host.example, which cannot be checked from" in err and "whether it still runs is unknown" in err
    assert "stale record" not in err and "was interrupted" not in err  # not guessed
    assert _record(out)["status"] == "ok"


def test_run_refuses_foreign_output_directories(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"chapter": "01_lyapunov_spectra", "status": "ok"}))
    (other / "results.json").write_text("{}")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(json.dumps({"chapter": "tiny", "fixed": {}}))
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("precious")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [(other, "holds a run of 01_lyapunov_spectra, not tiny"), (sweep_dir, "holds a sweep of tiny"),
             (stranger, "not empty and not a floss run directory"), (a_file, "not a directory")]
    for target, message in cases:
        before = {p.name: p.read_bytes() for p in target.iterdir()} if target.is_dir() else None
        assert main(["run", "tiny", "--out", str(target)], book=BOOK) == 2
        assert message in capsys.readouterr().err
        after = {p.name: p.read_bytes() for p in target.iterdir()} if target.is_dir() else None
        assert after == before, "a refused directory must be left untouched"


def test_sweep_validates_before_running(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sweep", "tiny", "--grid", "xx=1,2", "--out", str(out)], book=BOOK) == 2
    assert "unknown parameter 'xx' (did you mean 'x'?)" in capsys.readouterr().err
    assert main(["sweep", "tiny", "--grid", "seed=1,a", "--out", str(out)], book=BOOK) == 2
    assert "cannot read 'a' as a int" in capsys.readouterr().err
    assert main(["sweep", "tiny", "--out", str(out)], book=BOOK) == 2
    assert "at least one --grid" in capsys.readouterr().err
    assert main(["sweep", "tiny", "--grid", "x=1", "--workers", "0", "--out", str(out)], book=BOOK) == 2
    assert not out.exists()


# ---------------------------------------------------------------------------------- build


def test_build_runs_the_make_book_command(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_run(cmd, cwd=None, **kw):
        calls.append((cmd, cwd))
        return subprocess.CompletedProcess(cmd, 0 if len(calls) == 1 else 3)

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    assert main(["build"]) == 0
    cmd, cwd = calls[0]
    assert Path(cmd[0]) == Path(sys.executable).with_name("jupyter-book") and Path(cmd[0]).is_file()
    assert cmd[1:3] == ["build", str(Path(cwd))] and Path(cwd) == REPO_ROOT
    # the flags of the Makefile's `book` target, read from the Makefile itself
    make_line = next(line for line in (REPO_ROOT / "Makefile").read_text().splitlines() if "jupyter-book build" in line)
    assert cmd[3:] == make_line.split("jupyter-book build .", 1)[1].split()
    assert main(["build", "--path-output", str(tmp_path)]) == 1  # a failing build fails the command
    assert calls[1][0][-2:] == ["--path-output", str(tmp_path)]


# ---------------------------------------------------------------------------------- the chapter pages


@pytest.mark.parametrize("chapter_id", [c for c in CHAPTERS if re.match(r"^\d\d_", c)])
def test_chapter_page_shows_a_valid_rerun_command(chapter_id):
    """Convention: the first markdown cell has a "Rerun this chapter" admonition showing
    `floss run <id> --scale smoke --out runs/chNN` (NN = the chapter number); it must run as shown."""
    nb_path = REPO_ROOT / CHAPTERS[chapter_id].notebook
    if not nb_path.exists():
        pytest.skip(f"{nb_path.name} not written yet")
    nb = json.loads(nb_path.read_text())
    first = "".join(next(c for c in nb["cells"] if c["cell_type"] == "markdown")["source"])
    assert "Rerun this chapter" in first
    expected = f"floss run {chapter_id} --scale smoke --out runs/ch{chapter_id[:2]}"
    assert f"`{expected}`" in first, f"{nb_path.name}: the first cell must show `{expected}`"
    args = cli.build_parser().parse_args(shlex.split(expected)[1:])
    assert args.chapter == chapter_id and args.scale == "smoke"


@pytest.mark.slow
def test_real_chapter_runs_end_to_end_through_python_m(tmp_path):
    cid = "02_exponents_to_gradients"
    out = tmp_path / "ch02"
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "floss_utils", "run", cid, "--scale", "smoke", "--out", str(out),
                           "-q"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # -q: the result line and nothing else; the kernel's own start-up chatter goes to kernel.log, and over IPC the
    # kernel has no TCP warning to give ("Kernel is running over TCP without encryption")
    assert proc.stdout.startswith(f"ok: {cid}") and len(proc.stdout.splitlines()) == 1, proc.stdout
    assert proc.stderr == "", proc.stderr
    assert "without encryption" not in (out / "kernel.log").read_text()
    rec = _record(out)
    assert rec["status"] == "ok" and rec["chapter"] == cid and rec["scale"] == "smoke"
    smoke = {n: p.presets["smoke"] for n, p in CHAPTERS[cid].params.items() if p.presets}
    assert {n: rec["parameters"][n] for n in smoke} == smoke  # what configure resolved in the kernel
    results = json.loads((out / "results.json").read_text())
    assert results["chapter"] == cid and results["results"]
    assert rec["outputs"]["figures"] and all((out / f).stat().st_size > 0 for f in rec["outputs"]["figures"])


# ---------------------------------------------------------------------------------- without a checkout


def test_the_book_is_found_from_the_package_of_a_checkout_or_not_at_all(monkeypatch, tmp_path):
    # an editable install finds its own checkout from anywhere; FLOSS_BOOK_ROOT names one; a
    # package installed with `pip install .` (site-packages) run outside a checkout finds none
    monkeypatch.delenv("FLOSS_BOOK_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Book.default().root == REPO_ROOT
    monkeypatch.setenv("FLOSS_BOOK_ROOT", str(TINY_ROOT))
    assert Book.default().root == TINY_ROOT
    monkeypatch.delenv("FLOSS_BOOK_ROOT")
    monkeypatch.setattr(runner, "__file__", str(tmp_path / "site-packages" / "floss_utils" / "book" / "runs.py"))
    assert Book.default().root is None
    monkeypatch.chdir(REPO_ROOT / "book")  # inside a checkout: the nearest one above
    assert Book.default().root == REPO_ROOT


def test_params_without_a_checkout_reads_the_registry_alone(capsys):
    spec = CHAPTERS["01_lyapunov_spectra"]
    assert main(["params", "01", "--json"], book=Book(None)) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["notebook"] is None and data["problems"] == []
    assert [r["name"] for r in data["parameters"]] == list(spec.params)
    assert all(r["meaning"] for r in data["parameters"])  # the registry's docs
    assert f"notebook {spec.notebook} not found" in captured.err and "skipped" in captured.err
    assert main(["params", "01"], book=Book(None)) == 0
    assert "01_lyapunov_spectra" in capsys.readouterr().out
    assert main(["params", "01", "--json"]) == 0  # in the checkout: compared, the notebook named
    assert json.loads(capsys.readouterr().out)["notebook"] == str(REPO_ROOT / spec.notebook)


@pytest.mark.parametrize("command", [["run", "tiny"], ["sweep", "tiny", "--grid", "x=1,2"], ["build"]])
def test_run_sweep_and_build_without_a_checkout_are_refused_in_one_line(command, tmp_path, capsys):
    out = tmp_path / "out"
    args = command + (["--out", str(out)] if command[0] != "build" else [])
    assert main(args, book=Book(None, {"tiny": TINY})) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "needs a checkout of the book" in err and "FLOSS_BOOK_ROOT" in err
    assert not out.exists()


@pytest.mark.slow
def test_a_dead_kernel_is_explained_and_the_record_kept(tmp_path, capsys):
    # the kernel kills itself with SIGKILL (what the out-of-memory killer sends) while holding
    # ~200 MB: exit 1, the record says it died, of what, and how much memory it had reached
    out = tmp_path / "died"
    rc = main(["run", "tiny", "-p", "die_at", "2.0", "--out", str(out), "-q"], book=BOOK)
    assert rc == 1
    rec = _record(out)
    assert rec["status"] == "failed"
    assert "the kernel died" in rec["error"] and "SIGKILL" in rec["error"], rec["error"]
    assert rec["peak_memory"]["host_bytes"] > 200 << 20  # the watch saw the ballast
    assert "Run a smaller scale" in rec["error"]
    assert "the kernel died" in capsys.readouterr().err



@pytest.mark.slow
def test_kernels_talk_over_ipc_in_a_folder_of_their_own_and_log_their_stderr(tmp_path):
    # two kernels started at once: each has its own socket folder (no shared port or path to race for); what the
    # kernel process writes to its stderr lands in the log; the folder is gone after shutdown
    import asyncio

    from floss_utils.book.kernel_watch import kernel_manager_class

    log = tmp_path / "kernel.log"
    cls = kernel_manager_class(log)

    async def run_two():
        kms = [cls(kernel_name="python3") for _ in range(2)]
        await asyncio.gather(*(km.start_kernel() for km in kms))
        folders = [os.path.dirname(km.ip) for km in kms]
        clients = [km.client() for km in kms]
        for c in clients:
            c.start_channels()
            await c.wait_for_ready(timeout=60)
        sockets = [sorted(os.listdir(f)) for f in folders]
        kc = clients[0]
        msg_id = kc.execute("import sys; sys.__stderr__.write('floss-stderr-probe\\n'); sys.__stderr__.flush()")
        while True:
            reply = await kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        for c in clients:
            c.stop_channels()
        transports = [km.transport for km in kms]
        await asyncio.gather(*(km.shutdown_kernel(now=True) for km in kms))
        return folders, sockets, transports, reply

    folders, sockets, transports, reply = asyncio.run(run_two())
    assert transports == ["ipc", "ipc"] and folders[0] != folders[1]
    assert all(s and all(name.startswith("ipc-") for name in s) for s in sockets), sockets
    assert reply["content"]["status"] == "ok"
    assert "floss-stderr-probe" in log.read_text()
    assert not any(os.path.exists(f) for f in folders)
