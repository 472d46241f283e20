"""Records (floss_utils/book/records.py): written, read back, refused when malformed; and every
committed record in records/ is complete and names a command that exists."""

from __future__ import annotations

import json
import shlex

import pandas as pd
import pytest

from floss_utils.book.records import (Stopwatch, kept_run, list_records, read_record, records_root,
                                      write_record)

from conftest import REPO_ROOT


def test_a_record_round_trips_with_its_provenance(tmp_path):
    table = pd.DataFrame({"nu0": [0.36, 0.99], "loss": [1e-8, 0.4]})
    with Stopwatch() as sw:
        pass
    folder = write_record("demo_run", description="a demo", command="python records/demo_run.py",
                          parameters={"steps": 10}, results={"ratio": 2.5, "list": [1, 2]},
                          tables={"points": table}, stopwatch=sw, root=tmp_path)
    assert folder == tmp_path / "records" / "demo_run"
    rec = read_record("demo_run", root=tmp_path)
    assert rec.results == {"ratio": 2.5, "list": [1, 2]} and rec.parameters == {"steps": 10}
    pd.testing.assert_frame_equal(rec.table("points"), table)
    prov = rec.provenance
    assert {"git", "versions", "machine", "host", "started", "finished", "wall_s"} <= set(prov)
    assert prov["versions"]["torch"].startswith("2.13")
    assert list_records(tmp_path) == ["demo_run"]
    with pytest.raises(KeyError, match="no table"):
        rec.table("missing")


def test_a_rewritten_record_keeps_the_times_of_the_run_that_computed_it(tmp_path):
    prov = {"started": "2026-12-01T10:00:00+00:00", "finished": "2026-12-01T10:07:00+00:00", "wall_s": 420.0}
    folder = write_record("demo_run", description="a demo", command="python records/demo_run.py", parameters={},
                          results={}, stopwatch=Stopwatch.of_earlier_run(prov), root=tmp_path)
    assert folder.exists()
    got = read_record("demo_run", root=tmp_path).provenance
    assert (got["started"], got["finished"], got["wall_s"]) == (prov["started"], prov["finished"], 420.0)
    with pytest.raises(ValueError, match="lacks"):
        Stopwatch.of_earlier_run({"started": "x"})


def test_bad_names_and_missing_records_are_refused(tmp_path):
    with pytest.raises(ValueError, match="record name"):
        write_record("../escape", description="", command="", parameters={}, results={}, root=tmp_path)
    with pytest.raises(FileNotFoundError, match="records/nothing.py"):
        read_record("nothing", root=tmp_path)


@pytest.mark.parametrize("name", list_records(REPO_ROOT) or ["(none)"])
def test_committed_records_are_complete_and_remakable(name):
    if name == "(none)":
        pytest.skip("no record committed yet")
    rec = read_record(name, root=REPO_ROOT)
    raw = json.loads((rec.folder / "record.json").read_text())
    assert raw["name"] == name and rec.description and rec.command
    for t in rec.tables:
        assert (rec.folder / f"{t}.csv").is_file(), f"{name}: table {t} missing"
    # the remaking command runs a script or module of the repository
    words = shlex.split(rec.command)
    scripts = [w for w in words if w.endswith(".py")]
    assert all((REPO_ROOT / s).is_file() for s in scripts), f"{name}: {rec.command} names a missing script"
    assert scripts or "-m" in words or words[:1] == ["floss"], f"{name}: {rec.command} runs nothing of the repository"
    assert rec.provenance.get("git", {}).get("commit"), f"{name}: no commit in its provenance"


def test_records_root_is_the_checkouts_records_folder():
    assert records_root(REPO_ROOT) == REPO_ROOT / "records"


def test_published_comparison_states_ratio_and_factor():
    from floss_utils.book.records import published_comparison

    t = published_comparison({"a": 1e-5, "b": 0.4}, {"a": 2.9e-5, "b": 1e-3}, {"a": 3e-4}, factor=3)
    assert list(t["point"]) == ["a", "b"]
    assert t["paper / published"].tolist() == pytest.approx([2.9, 0.0025])
    assert t["within factor"].tolist() == [True, False]
    assert t["book scale"].iloc[0] == 3e-4 and t["book scale"].isna().iloc[1]
    # the criterion is symmetric: a third of the published value is within 3x, a quarter is not
    t = published_comparison({"a": 1.0, "b": 1.0}, {"a": 1 / 3, "b": 0.25})
    assert t["within factor"].tolist() == [True, False]
    with pytest.raises(KeyError, match="b"):
        published_comparison({"a": 1.0, "b": 1.0}, {"a": 1.0})
    with pytest.raises(ValueError, match="factor"):
        published_comparison({"a": 1.0}, {"a": 1.0}, factor=0.5)
    with pytest.raises(ValueError, match="positive"):
        published_comparison({"a": 1.0}, {"a": 0.0})


def test_extending_a_committed_record_does_not_mark_the_checkout_dirty(tmp_path):
    # a git checkout with a committed record; rewriting that record's table (an extension) must record
    # the checkout as it was when the run finished: clean
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    write_record("demo_run", description="a demo", command="python records/demo_run.py", parameters={},
                 results={}, tables={"points": pd.DataFrame({"x": [1]})}, root=tmp_path)
    git("add", "-A")
    git("commit", "-qm", "record")
    write_record("demo_run", description="a demo", command="python records/demo_run.py", parameters={},
                 results={}, tables={"points": pd.DataFrame({"x": [1, 2]})}, root=tmp_path)
    git_facts = read_record("demo_run", root=tmp_path).provenance["git"]
    assert git_facts["dirty"] is False and git_facts["modified"] == []
    (tmp_path / "code.py").write_text("x = 1\n")  # an untracked file is not a modification; a tracked change is
    git("add", "code.py")
    git("commit", "-qm", "code")
    (tmp_path / "code.py").write_text("x = 2\n")
    write_record("demo_run", description="a demo", command="python records/demo_run.py", parameters={},
                 results={}, root=tmp_path)
    git_facts = read_record("demo_run", root=tmp_path).provenance["git"]
    # the record's own uncommitted outputs (the second write's) are not counted, the code is
    assert git_facts["dirty"] is True and git_facts["modified"] == ["code.py"]
    (tmp_path / "code.py").write_text("x = 1\n")
    write_record("demo_run", description="a demo", command="python records/demo_run.py", parameters={},
                 results={}, root=tmp_path)  # only the record's own files differ from the commit now
    assert read_record("demo_run", root=tmp_path).provenance["git"] == {
        "commit": git_facts["commit"], "dirty": False, "modified": []}


def test_parameters_differ_names_what_is_not_the_preset(tmp_path):
    # ground truth: chapter 10's paper presets read off the registry by hand (N 80, T 300, 3001 epochs)
    from floss_utils.book.records import parameters_differ

    write_record("preset_check", description="test", command="none", results={},
                 parameters={"n_units": 80, "seq_len": 300, "epochs": 3000}, root=tmp_path)
    rec = read_record("preset_check", root=tmp_path)
    assert parameters_differ(rec, "10_flossing_schedules", "paper", ["n_units", "seq_len"]) == {}
    assert parameters_differ(rec, "10_flossing_schedules", "paper", ["n_units", "epochs"]) == {"epochs": (3000, 3001)}
    assert parameters_differ(rec, "10_flossing_schedules", "paper", ["batch_size"]) == {"batch_size": (None, 16)}
    with pytest.raises(ValueError, match="no paper preset"):
        parameters_differ(rec, "10_flossing_schedules", "paper", ["success_threshold"])
    with pytest.raises(ValueError, match="no chapter"):
        parameters_differ(rec, "99_nothing", "paper", ["n_units"])


def test_run_reached_places_the_stopped_cell_past_the_injected_parameters(tmp_path):
    from floss_utils.book.records import run_reached

    def cell(cid, source, tags=()):
        return {"id": cid, "cell_type": "code", "metadata": {"tags": list(tags)}, "source": source, "outputs": []}

    nb = tmp_path / "ch.ipynb"
    nb.write_text(json.dumps({"cells": [cell("md", "# title"), cell("p", "scale = 'book'", ["parameters"]),
                                        cell("two", "\n# the second step\nx = 2"), cell("three", "# " + "long " * 30)]}))
    # executed notebook: md 0, parameters 1, injected 2, "two" 3, "three" 4
    stopped = lambda index, source: {"status": "timed out", "cell": {"index": index, "source": source}}
    long_first = ("# " + "long " * 30).strip()
    assert run_reached(stopped(4, long_first[:77] + "..."), nb, "two") is True
    assert run_reached(stopped(4, long_first[:77] + "..."), nb, "three") is False
    assert run_reached(stopped(3, "# the second step"), nb, "two") is False
    assert run_reached(stopped(3, "# the second step"), nb, "md") is True
    assert run_reached(stopped(3, "# something else"), nb, "md") is None  # the notebook changed since the run
    assert run_reached(stopped(9, "# the second step"), nb, "md") is None
    assert run_reached({"status": "timed out"}, nb, "two") is None
    assert run_reached({"status": "ok"}, nb, "three") is True
    failed_in_three = {"status": "failed", "cell": {"index": 4, "source": long_first[:77] + "..."}}
    assert run_reached(failed_in_three, nb, "two") is True and run_reached(failed_in_three, nb, "three") is False
    with pytest.raises(KeyError, match="nope"):
        run_reached(stopped(3, "# the second step"), nb, "nope")


def test_stopped_cell_and_its_section(tmp_path):
    from floss_utils.book.records import section_of, stopped_cell

    def cell(kind, source, tags=(), cid=None):
        return {"id": cid, "cell_type": kind, "metadata": {"tags": list(tags)}, "source": source}

    nb = tmp_path / "ch.ipynb"
    nb.write_text(json.dumps({"cells": [cell("markdown", "# 1. Title\n\n## 1.1 First"), cell("code", "x = 1", ["parameters"]),
                                        cell("markdown", "text\n### A control\nmore"), cell("code", "y = 2"),
                                        cell("markdown", "## 1.2 Second"), cell("code", "z = 3", cid="last")]}))
    assert stopped_cell({"cell": {"index": 4, "source": "y = 2"}}, nb) == 3  # after the injected cell
    assert stopped_cell({"cell": {"index": 1, "source": "x = 1"}}, nb) == 1  # the parameters cell itself
    assert stopped_cell({"cell": {"index": 6, "source": "y = 2"}}, nb) is None
    assert [section_of(nb, i) for i in (0, 1, 3, 5)] == ["1.1 First", "1.1 First", "A control", "1.2 Second"]
    assert section_of(nb, "last") == "1.2 Second"
    with pytest.raises(KeyError, match="nope"):
        section_of(nb, "nope")


def test_kept_run_reads_run_json_and_tables_and_names_what_is_missing(tmp_path):
    folder = tmp_path / "records" / "chapter_runs" / "07_x-paper"
    with pytest.raises(FileNotFoundError, match="bench_book.py --scales paper --chapters 07"):
        kept_run("07_x", root=tmp_path)
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "ok", "started": "2026-12-07T10:00:00",
                                                 "parameters": {"d_model": 256}}))
    pd.DataFrame({"a": [1, 2]}).to_csv(folder / "growth.csv", index=False)
    run = kept_run("07_x", root=tmp_path)
    assert run.ok and run.date == "2026-12-07" and run.parameters == {"d_model": 256}
    assert run.table("growth").a.tolist() == [1, 2]
    with pytest.raises(FileNotFoundError, match="no table 'spectra'.*'ok'"):
        run.table("spectra")
    (folder / "run.json").write_text(json.dumps({"status": "failed", "started": "2026-12-08", "parameters": {}}))
    assert not kept_run("07_x", root=tmp_path).ok
    # the committed kept runs read back
    assert kept_run("07_deep_networks_at_init").parameters["d_model"] == 256


def test_record_script_loads_a_scripts_module_without_running_it():
    from floss_utils.book.records import record_script

    mod = record_script("zo_fig3a_paper")
    assert mod.PUBLISHED["rnn"][0.68] == 1.3e-7 and callable(mod.main)  # its constants, its main not run
    with pytest.raises(FileNotFoundError, match="no record script"):
        record_script("no_such_record")
