"""benchmarks/bench_book.py keeps a run's record without the path of its temporary folder."""

from __future__ import annotations

import json
import sys

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
    keep_record(out, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["results.json", "run.json", "table.csv"]
    run = json.loads((dest / "run.json").read_text())
    assert run == {"command": f"floss run 02 --out {dest.resolve().as_posix()}", "status": "ok"}
    assert json.loads((dest / "results.json").read_text())["parameters"]["output_dir"] == dest.resolve().as_posix()
    assert (dest / "table.csv").read_text() == "a,b\n1,2\n"


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
