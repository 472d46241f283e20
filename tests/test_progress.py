"""Progress reports of long loops (``floss_utils.progress.report_progress``): what a run stopped at a
timeout is extrapolated from. Ground truth: the file written, read back; the loops' own counts."""

from __future__ import annotations

import json

import pytest

from floss_utils import progress
from floss_utils.progress import PROGRESS_ENV, report_progress


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    progress._progress.clear()
    yield path
    progress._progress.clear()


def test_nothing_is_written_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    report_progress("loop", 0, 10)
    assert not any(tmp_path.iterdir())


def test_start_end_and_rate_limit(progress_file, monkeypatch):
    clock = iter([100.0, 101.0, 103.0, 107.0, 108.0])
    monkeypatch.setattr(progress.time, "time", lambda: next(clock))
    report_progress("loop", 0, 10, unit="epochs", every_s=5)  # t = 100: the start is written
    assert json.loads(progress_file.read_text()) | {"pid": 0} == {
        "task": "loop", "done": 0, "total": 10, "unit": "epochs", "started": 100.0, "updated": 100.0, "pid": 0}
    report_progress("loop", 1, 10, every_s=5)  # t = 101: within 5 s of the last write, not written
    report_progress("loop", 2, 10, every_s=5)  # t = 103: not written
    assert json.loads(progress_file.read_text())["done"] == 0
    report_progress("loop", 3, 10, every_s=5)  # t = 107: 7 s after the last write
    got = json.loads(progress_file.read_text())
    assert (got["done"], got["started"], got["updated"]) == (3, 100.0, 107.0)
    report_progress("loop", 10, 10, every_s=5)  # t = 108: the end is always written
    assert json.loads(progress_file.read_text())["done"] == 10
    assert [p.name for p in progress_file.parent.iterdir()] == ["progress.json"]  # no temporary file left


def test_a_new_loop_restarts_the_clock(progress_file, monkeypatch):
    clock = iter([10.0, 20.0, 30.0, 40.0])
    monkeypatch.setattr(progress.time, "time", lambda: next(clock))
    report_progress("a", 0, 4)
    report_progress("a", 4, 4)
    report_progress("b", 1, 8)  # another task, first report mid-way: its start is this report
    got = json.loads(progress_file.read_text())
    assert (got["task"], got["started"], got["done"]) == ("b", 30.0, 1)
    report_progress("b", 0, 8)  # done went back: a new loop of the same task
    assert json.loads(progress_file.read_text())["started"] == 40.0


def test_run_grid_reports_member_steps_to_the_end(progress_file, monkeypatch):
    # two groups (dense 2 rates x 2 seeds, LRU 1 rate x 2 seeds), 6 steps: 6 members x 6 steps = 36
    from floss_utils.curse_of_memory.student_grids import RunConfig, run_grid
    seen = []
    real = progress.report_progress
    import floss_utils.curse_of_memory.student_grids as grids
    monkeypatch.setattr(grids, "report_progress", lambda *a, **k: (seen.append(a[1:]), real(*a, **k)))
    run_grid([RunConfig("rnn", 0.9, hidden=4), RunConfig("lru", 0.9, hidden=4)], {"rnn": [1e-3, 1e-4], "lru": [1e-2]},
             [0, 1], steps=6, batch_size=2, seq_len=8, final_window=2)
    dense = [(4 * k, 36) for k in range(7)]
    lru = [(24 + 2 * k, 36) for k in range(7)]
    assert seen == dense + lru
    got = json.loads(progress_file.read_text())
    assert (got["task"], got["done"], got["total"], got["unit"]) == ("run_grid", 36, 36, "member-steps")


def test_train_reports_epochs_and_its_end(progress_file, monkeypatch):
    from floss_utils.flossing import trainer
    from floss_utils.flossing.tasks import copy_task
    seen = []
    monkeypatch.setattr(trainer, "report_progress", lambda *a, **k: seen.append(a))
    cfg = trainer.TrainConfig(epochs=5, batch_size=2, seq_len=12, n_units=6, eval_every=1,
                              flossing=trainer.FlossingConfig(k=2, steps=20, lr=0.01))
    trainer.train([trainer.Member(0, 0, copy_task(2), trainer.schedule("none"))], cfg)
    assert seen == [("train", e, 5) for e in range(6)] + [("train", 5, 5)]

