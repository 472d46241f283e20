"""The one validator of chapter parameters (floss_utils/book/parameters.py) and the registry's
bounds and constraints (floss_utils/book/registry/base.py).

Ground truths: interval arithmetic written out by hand in each test, the registry's own
declarations (every preset must satisfy them), and the exit status and files of a real
``floss run`` process.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from floss_utils.book.chapters import configure
from floss_utils.book.parameters import ParameterError, coerce, validate
from floss_utils.book.registry import CHAPTERS, SCALES, Constraint, Param, chapter


# ------------------------------------------------------------------------ bounds


@pytest.mark.parametrize("bounds, inside, outside, text", [
    ("[1, inf)", [1, 2, 10**9], [0, -3, 0.999], ">= 1"),
    ("(0, inf)", [1e-12, 3.5], [0.0, -1e-12], "> 0"),
    ("[0, 1)", [0.0, 0.5, 0.999999], [1.0, -1e-9, 2.0], "in [0, 1)"),
    ("(-1, 1)", [-0.999, 0.0, 0.999], [-1.0, 1.0], "in (-1, 1)"),
    ("(0.5, 1]", [0.51, 1.0], [0.5, 1.01], "in (0.5, 1]"),
    ("(-inf, 0)", [-5.0, -1e-9], [0.0, 1.0], "< 0"),
])
def test_bounds_are_intervals(bounds, inside, outside, text):
    p = Param("float", "x", default=0.0, bounds=bounds)
    assert all(p.within_bounds(v) for v in inside)
    assert not any(p.within_bounds(v) for v in outside)
    assert p.bounds_text() == text


@pytest.mark.parametrize("bad", ["1, 2", "[2, 1]", "[a, 1)", "(0 inf)"])
def test_malformed_bounds_are_refused_when_the_registry_is_built(bad):
    with pytest.raises(ValueError, match="bounds"):
        Param("int", "x", default=1, bounds=bad)


@pytest.mark.parametrize("cid", list(CHAPTERS))
@pytest.mark.parametrize("scale", SCALES)
def test_every_preset_satisfies_its_bounds_and_the_chapters_constraints(cid, scale):
    # the registry must not declare a scale that its own validator refuses
    validate(CHAPTERS[cid], {"scale": scale})


def test_every_numeric_parameter_but_free_targets_has_bounds():
    # a count, size, rate or probability without bounds lets a typo reach the kernel
    free = {"targets"}  # flossing targets lambda*: any finite real is meaningful
    for c in CHAPTERS.values():
        missing = [n for n, p in c.params.items()
                   if p.kind in ("int", "float", "list[int]", "list[float]") and not p.bounds and n not in free]
        assert not missing, f"{c.id}: parameters without bounds: {missing}"


# ------------------------------------------------------------------------ one chapter of our own


TOY = chapter("toy", "Toy", "nothing", {"smoke": 0.1, "book": 0.1, "paper": 0.1},
              constraints=[Constraint("k is at most n", ("k", "n"), lambda v: v["k"] <= v["n"])],
              n=Param("int", "size", {"smoke": 4, "book": 8, "paper": 16}, bounds="[1, inf)"),
              k=Param("int", "count", {"smoke": 2, "book": 4, "paper": 8}, bounds="[1, inf)"),
              rates=Param("list[float]", "rates", default=[0.1], bounds="(0, 1)"))


def test_coerce_checks_type_then_bounds_and_names_the_parameter():
    assert coerce(TOY, "rates", "[0.5, 0.25]") == [0.5, 0.25]
    assert coerce(TOY, "n", 3) == 3
    with pytest.raises(ParameterError, match=r"parameter 'rates': every value must be in \(0, 1\), got 1\.5"):
        coerce(TOY, "rates", [0.5, 1.5])
    with pytest.raises(ParameterError, match=r"parameter 'n' must be an int"):
        coerce(TOY, "n", 2.5)
    with pytest.raises(ParameterError, match=r"parameter 'n': must be >= 1, got 0"):
        coerce(TOY, "n", "0")


def test_constraints_are_judged_on_resolved_values():
    # k = 6 against the book preset n = 8 holds; against n = 4 (given) it does not
    assert validate(TOY, {"k": 6}) == {"k": 6}
    with pytest.raises(ParameterError, match=r"k is at most n \(got k=6, n=4\)"):
        validate(TOY, {"k": 6, "n": 4})
    # the smoke preset k = 2 with n = 1 given
    with pytest.raises(ParameterError, match=r"got k=2, n=1"):
        validate(TOY, {"scale": "smoke", "n": 1})


def test_chapter12_refuses_a_scored_horizon_shorter_than_an_arrived_networks_memory():
    # targets [0, -0.1, -0.3, -1]: spacing 0.1, tol 0.05, a network arrived at 0 keeps a perturbation > 1/0.05 = 20
    # steps; the self-teacher loss must score at least that many (seq_len - burn_in)
    from floss_utils.book.registry.part4_synthesis import arrival_tolerance

    assert arrival_tolerance([0.0, -0.1, -0.3, -1.0]) == pytest.approx(0.05)
    assert arrival_tolerance([0.0, -0.05, -0.1, -0.3, -1.0]) == pytest.approx(0.025)
    assert arrival_tolerance([0.0, -1.0]) == 0.1  # one target >= -0.3: no spacing
    ch12 = CHAPTERS["12_flossing_meets_curse_of_memory"]
    assert validate(ch12, {"seq_len": 40, "burn_in": 20})  # 20 scored steps: enough
    with pytest.raises(ParameterError, match=r"covers 1/tol.*got seq_len=39, burn_in=20"):
        validate(ch12, {"seq_len": 39, "burn_in": 20})
    with pytest.raises(ParameterError, match=r"covers 1/tol"):  # a finer target grid asks for a longer horizon
        validate(ch12, {"seq_len": 60, "burn_in": 20, "targets": [0.0, -0.02, -1.0]})
    # not asked to arrive (fewer than 100 flossing steps, as at smoke scale) or no target 0: no rule
    assert validate(ch12, {"seq_len": 39, "burn_in": 20, "floss_steps": 99})
    assert validate(ch12, {"seq_len": 39, "burn_in": 20, "targets": [-0.1, -0.3]})


def test_every_problem_is_reported_at_once():
    with pytest.raises(ParameterError) as err:
        validate(TOY, {"nn": 3, "rates": [2.0], "k": 20, "n": 10})
    msg = str(err.value)
    assert "3 problems" in msg
    assert "unknown parameter 'nn' (did you mean 'n'?)" in msg
    assert "'rates'" in msg and "k is at most n (got k=20, n=10)" in msg


def test_a_rule_naming_a_refused_value_is_not_judged():
    # n = 0 is refused by its bounds; "k <= n" with n = 0 would only repeat that problem
    with pytest.raises(ParameterError) as err:
        validate(TOY, {"n": 0})
    assert "k is at most n" not in str(err.value)


def test_the_notebook_side_uses_the_same_validator(tmp_path):
    # configure() (a chapter's first cell) refuses what `floss run` refuses, with the same words
    ns = {"scale": "smoke", "hidden": 6, "heads": [4], "output_dir": str(tmp_path)}
    with pytest.raises(ParameterError) as in_kernel:
        configure("05_linear_rnn_vs_lru", ns)
    with pytest.raises(ParameterError) as before:
        validate(CHAPTERS["05_linear_rnn_vs_lru"], {"scale": "smoke", "hidden": "6", "heads": "[4]"})
    assert str(in_kernel.value) == str(before.value)
    assert "every number of heads divides hidden (got heads=[4], hidden=6)" in str(before.value)


# ------------------------------------------------------------------------ the floss command


BAD_RUNS = [
    (["05", "-p", "hidden", "0"], "parameter 'hidden': must be >= 2, got 0"),
    (["05", "-p", "heads", "[3]"], "every number of heads divides hidden (got heads=[3], hidden=32)"),
    (["01", "-p", "gains", "[0.5,-1]"], "parameter 'gains': every value must be > 0, got -1.0"),
    (["08", "-p", "n_units", "-5"], "parameter 'n_units': must be >= 2, got -5"),
    (["03", "-p", "rhos", "[2.0]"], "parameter 'rhos': every value must be in [0, 1), got 2.0"),
    (["01", "--out", "/proc/floss-test"], "--out /proc/floss-test: cannot be used as an output directory"),
]


@pytest.mark.parametrize("args, message", BAD_RUNS, ids=[" ".join(a) for a, _ in BAD_RUNS])
def test_floss_run_refuses_bad_values_before_any_kernel_starts(tmp_path, args, message):
    # the criterion: exit 2, one clear message, no kernel, in under 5 s
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "floss_utils", "run", *args]
    if "--out" not in args:
        cmd += ["--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and "Kernel" not in proc.stderr
    assert not out.exists(), "a refused run must leave nothing behind"
    assert wall < 5.0, f"refusal took {wall:.1f} s"


def test_chapter_12_refuses_trade_off_targets_without_zero():
    # section 12.6 compares every target with 0: a list without it is refused up front, by name
    with pytest.raises(ParameterError, match="task_targets contains 0.0"):
        configure("12_flossing_meets_curse_of_memory", {"scale": "smoke", "task_targets": [-0.1]})

