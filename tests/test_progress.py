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
    monkeypatch.setattr(progress, "_clock", lambda: next(clock))
    report_progress("loop", 0, 10, unit="epochs", detail="here", every_s=5)  # t = 100: the start is written
    assert json.loads(progress_file.read_text()) | {"pid": 0} == {
        "task": "loop", "done": 0, "total": 10, "unit": "epochs", "detail": "here", "partial": False,
        "started": 100.0, "updated": 100.0, "pid": 0}
    report_progress("loop", 1, 10, every_s=5)  # t = 101: within 5 s of the last write, not written
    report_progress("loop", 2, 10, every_s=5)  # t = 103: not written
    assert json.loads(progress_file.read_text())["done"] == 0
    report_progress("loop", 3, 10, every_s=5)  # t = 107: 7 s after the last write
    got = json.loads(progress_file.read_text())
    assert (got["done"], got["started"], got["updated"]) == (3, 100.0, 107.0)
    report_progress("loop", 10, 10, every_s=5, partial=True)  # t = 108: the end is always written
    assert json.loads(progress_file.read_text())["done"] == 10
    assert json.loads(progress_file.read_text())["partial"] is True  # work after the loop is not counted
    assert [p.name for p in progress_file.parent.iterdir()] == ["progress.json"]  # no temporary file left


def test_a_new_loop_restarts_the_clock(progress_file, monkeypatch):
    clock = iter([10.0, 20.0, 30.0, 40.0, 50.0])
    monkeypatch.setattr(progress, "_clock", lambda: next(clock))
    report_progress("a", 0, 4)
    report_progress("a", 4, 4)
    report_progress("b", 1, 8)  # another task, first report mid-way: its start is this report
    got = json.loads(progress_file.read_text())
    assert (got["task"], got["started"], got["done"]) == ("b", 30.0, 1)
    report_progress("b", 0, 8)  # done went back: a new loop of the same task
    assert json.loads(progress_file.read_text())["started"] == 40.0
    report_progress("b", 0, 8)  # a new report of 0: a new loop again (a loop that had done nothing)
    assert json.loads(progress_file.read_text())["started"] == 50.0


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
    assert got["detail"] == "stopped in group 2 of 2: lru, 4 units, 2 members"


def test_train_reports_the_epochs_after_the_first_and_its_end(progress_file, monkeypatch):
    # epoch 1 holds the pre-flossing (costlier than a task epoch): the loop's clock starts after it
    from floss_utils.flossing import trainer
    from floss_utils.flossing.tasks import copy_task
    seen = []
    partial = {}  # task -> the partial flags it was reported with
    monkeypatch.setattr(trainer, "report_progress", lambda *a, **k: (
        seen.append((*a, k.get("detail", ""))), partial.setdefault(a[0], set()).add(k.get("partial", False))))
    cfg = trainer.TrainConfig(epochs=5, batch_size=2, seq_len=12, n_units=6, eval_every=1,
                              flossing=trainer.FlossingConfig(k=2, steps=20, lr=0.01))
    trainer.train([trainer.Member(0, 0, copy_task(2), trainer.schedule("none"))], cfg)
    assert seen == [("train", e, 4, "") for e in range(5)] + [("train", 4, 4, "")]
    # a schedule that also flosses at epochs 2 and 4: the report says those epochs cost more
    seen.clear()
    sched = trainer.Schedule("inter", pre_steps=2, inter_steps=2, inter_every=2, inter_rounds=2)
    trainer.train([trainer.Member(0, 0, copy_task(2), sched)], cfg)
    # the pre-flossing is a loop of its own (flossing steps), then the training epochs after the first
    pre = "1 of 1 members flossed; the 5 training epochs are not counted"
    assert seen[:3] == [("pre-flossing", 0, 2, pre), ("pre-flossing", 1, 2, pre), ("pre-flossing", 2, 2, pre)]
    assert seen[3] == ("train", 0, 4, "2 later epochs also floss (from epoch 2), costing more")
    assert not any(s[0] == "pre-flossing" for s in seen[4:])  # the later flossing rounds are inside the epochs' loop
    # the training epochs follow the pre-flossing in the same call: an estimate from it is a lower bound
    assert partial == {"pre-flossing": {True}, "train": {False}}
    # stopped early (every member succeeded): the loop still ends at its total
    seen.clear()
    easy = trainer.TrainConfig(**{**cfg.__dict__, "success_threshold": 1e-9, "stop_when_done": True})
    res = trainer.train([trainer.Member(0, 0, copy_task(2), trainer.schedule("none"))], easy)
    assert len(res.epochs) == 1 and seen == [("train", 4, 4, "")]  # stopped in epoch 1, before its report


def test_lyapunov_spectrum_calls_on_step_after_every_step_and_is_unchanged_by_it():
    import torch
    from floss_utils.lyapunov import lyapunov_spectrum, random_tanh_networks
    net, h0 = random_tanh_networks(5, [1.5], 2, generator=torch.Generator().manual_seed(0))
    seen = []
    with_hook = lyapunov_spectrum(net, h0, steps=7, transient=3, ons=2, generator=torch.Generator().manual_seed(1),
                                  on_step=lambda done, total: seen.append((done, total)))
    plain = lyapunov_spectrum(net, h0, steps=7, transient=3, ons=2, generator=torch.Generator().manual_seed(1))
    assert seen == [(t, 10) for t in range(1, 11)]  # every step, QR or not, transient included
    assert torch.equal(with_hook.exponents, plain.exponents)


def test_tanh_spectra_and_gaussian_products_report_their_steps(progress_file):
    from floss_utils.lyapunov import gaussian_product_spectra, tanh_spectra
    tanh_spectra(6, [1.5, 2.0], steps=8, transient=2, n_seeds=3, k=4)
    got = json.loads(progress_file.read_text())
    assert (got["task"], got["done"], got["total"], got["unit"]) == ("tanh_spectra", 10, 10, "steps")
    assert got["detail"] == "6 networks of N = 6, k = 4"
    gaussian_product_spectra(4, 1.0, steps=9, n_systems=2)
    got = json.loads(progress_file.read_text())
    assert (got["task"], got["done"], got["total"], got["detail"]) == ("gaussian_product_spectra", 9, 9,
                                                                      "2 products of N = 4")


def test_chapter_12_training_loops_report_their_steps(progress_file):
    # the Adam runs of chapter 12 (the self-teacher run and the diagonal networks on the task) say how
    # far they are; the diagonal one is partial (the chapter trains several versions one after another)
    from floss_utils.flossing.tasks import copy_task
    from floss_utils.flossing.tanh_network import init_gf_networks
    from floss_utils.synthesis import init_diagonal_population
    from floss_utils.synthesis.diagonal_task import train_diagonal_on_task
    from floss_utils.synthesis.self_teacher import adam_self_teacher_run

    adam_self_teacher_run(init_gf_networks([0, 1], 6, 2), [0, 1], steps=7, lr=1e-3, seq_len=12, burn_in=2)
    got = json.loads(progress_file.read_text())
    assert (got["task"], got["done"], got["total"], got["unit"], got["partial"]) == (
        "adam_self_teacher_run", 7, 7, "Adam steps", False)
    train_diagonal_on_task(init_diagonal_population([0, 1], 3, r_min=0.5, r_max=0.9), [0, 1], copy_task(3),
                           parametrization="exp", normalized=True, steps=5, lr=1e-2, seq_len=12, batch=4,
                           lanczos_iters=2)
    got = json.loads(progress_file.read_text())
    assert (got["task"], got["done"], got["total"], got["partial"]) == ("train_diagonal_on_task", 5, 5, True)
