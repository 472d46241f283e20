"""The chapter registry, parameter validation and run outputs (floss_utils/book/chapters.py, parameters.py).

Each test states what it checks against and why its tolerance (if any) is what it is. The
ground truths are the registry entries themselves (``CHAPTERS[...].params[...]``), the chapter
notebooks' ``parameters`` cells parsed with ``ast``/``tokenize``, plain ``json``/``csv`` readers
and freshly seeded torch generators, never an earlier output of the function under test.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import tokenize
import types

import numpy as np
import pandas as pd
import pytest
import torch

from floss_utils.book.chapters import ChapterCheckError, check, configure, glue_number, write_results, write_table
from floss_utils.book.registry import CHAPTERS, SCALES
from floss_utils.book.parameters import ParameterError

from conftest import registry_notebook

CH1 = "01_lyapunov_spectra"
SPEC1 = CHAPTERS[CH1].params


def notebook_namespace(tmp_path, **params) -> dict:
    """A stand-in for a notebook's ``globals()`` after the imports cell: IPython's own names,
    modules, functions and classes (all of which ``configure`` must ignore) plus ``params``."""

    def helper(x):  # a user function defined in the notebook
        return x

    class Thing:  # a user class
        pass

    ns = {
        "__name__": "__main__",
        "__builtins__": __builtins__,
        "_": "last output",
        "__": [1, 2],
        "_i1": "import numpy as np",
        "_ih": ["", "import numpy as np"],
        "_oh": {},
        "In": ["", "import numpy as np"],
        "Out": {1: 3},
        "get_ipython": lambda: None,
        "exit": object(),
        "quit": object(),
        "np": np,
        "torch": torch,
        "os": os,
        "helper": helper,
        "Thing": Thing,
        "configure": configure,
        "output_dir": str(tmp_path / "out"),
    }
    ns.update(params)
    return ns


# ---------------------------------------------------------------- namespace filtering, unknown names


def test_ipython_names_modules_and_functions_are_ignored(tmp_path):
    # Every non-parameter entry of notebook_namespace is IPython/module/function/class noise;
    # if any of them were taken for a parameter, configure would refuse it as unknown.
    ns = notebook_namespace(tmp_path, scale="smoke")
    assert isinstance(ns["np"], types.ModuleType)
    cfg = configure(CH1, ns)
    assert set(cfg.values) == set(SPEC1)
    assert cfg.scale == "smoke"


def test_unknown_parameter_is_refused_with_closest_name(tmp_path):
    ns = notebook_namespace(tmp_path, stpes=100)
    with pytest.raises(ParameterError, match=r"'stpes'.*did you mean 'steps'\?"):
        configure(CH1, ns)


def test_unknown_parameter_without_close_match_gets_no_suggestion(tmp_path):
    # difflib has nothing close to offer: the error names the variable and where the known ones are.
    ns = notebook_namespace(tmp_path, zzzzzz=1)
    with pytest.raises(ParameterError) as err:
        configure(CH1, ns)
    msg = str(err.value)
    assert "'zzzzzz'" in msg and "did you mean" not in msg
    assert "floss params 01_lyapunov_spectra" in msg  # where the known names are listed


def test_unknown_chapter_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="unknown chapter"):
        configure("99_no_such_chapter", notebook_namespace(tmp_path))


# ---------------------------------------------------------------- type checks


@pytest.mark.parametrize(
    "name, value",
    [
        pytest.param("steps", "200", id="str-for-int"),
        pytest.param("steps", True, id="bool-for-int"),
        pytest.param("steps", 200.0, id="float-for-int"),
        pytest.param("seed", 1.5, id="float-for-int-seed"),
        pytest.param("collapse_gain", "3.0", id="str-for-float"),
        pytest.param("collapse_gain", False, id="bool-for-float"),
        pytest.param("collapse_gain", float("nan"), id="nan-float"),
        pytest.param("collapse_gain", float("inf"), id="inf-float"),
        pytest.param("sizes", 100, id="int-for-list"),
        pytest.param("sizes", "100", id="str-for-list"),
        pytest.param("sizes", {"a": 1}, id="dict-for-list"),
        pytest.param("sizes", [], id="empty-list"),
        pytest.param("sizes", [100, "400"], id="list-with-str"),
        pytest.param("sizes", [100, True], id="list-with-bool"),
        pytest.param("sizes", [100, 400.0], id="list-int-with-float"),
        pytest.param("gains", [0.5, float("nan")], id="list-float-with-nan"),
        pytest.param("device", 0, id="int-for-str"),
    ],
)
def test_wrong_type_is_refused_naming_the_parameter(tmp_path, name, value):
    ns = notebook_namespace(tmp_path, **{name: value})
    with pytest.raises(ParameterError, match=repr(name)):
        configure(CH1, ns)


@pytest.mark.parametrize(
    "name, value",
    [("scale", "huge"), ("scale", "Smoke"), ("dtype", "float16"), ("dtype", "double")],
)
def test_bad_choice_is_refused(tmp_path, name, value):
    with pytest.raises(ParameterError, match=rf"{name!r} must be one of"):
        configure(CH1, notebook_namespace(tmp_path, **{name: value}))


def test_ints_are_accepted_for_floats_and_become_floats(tmp_path):
    cfg = configure(CH1, notebook_namespace(tmp_path, collapse_gain=3, gains=[1, 2.5]))
    assert cfg.collapse_gain == 3.0 and type(cfg.collapse_gain) is float
    assert cfg.gains == [1.0, 2.5] and all(type(g) is float for g in cfg.gains)


@pytest.mark.parametrize(
    "name, value, expected",
    [
        pytest.param("gains", np.array([0.5, 1.0]), [0.5, 1.0], id="numpy-array-for-list"),
        pytest.param("steps", np.int64(100), 100, id="numpy-int-for-int"),
        pytest.param("steps", torch.tensor(100), 100, id="tensor-for-int"),
    ],
)
def test_known_parameter_with_numpy_or_torch_value_is_converted_not_ignored(tmp_path, name, value, expected):
    # a known name is never dropped because of its value's type: it is converted to a plain
    # Python value and type-checked (the scale preset must not silently replace it)
    cfg = configure(CH1, notebook_namespace(tmp_path, scale="smoke", **{name: value}))
    assert cfg.values[name] == expected and type(cfg.values[name]) is type(expected)


def test_known_parameter_with_unconvertible_value_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="'steps'"):
        configure(CH1, notebook_namespace(tmp_path, scale="smoke", steps=np.array([1.5, 2.0])))


# ---------------------------------------------------------------- scale presets, defaults


@pytest.mark.parametrize("chapter_id", list(CHAPTERS))
@pytest.mark.parametrize("scale", SCALES)
def test_none_values_are_filled_from_the_scale_preset(tmp_path, chapter_id, scale):
    # Ground truth: the registry's own preset table. Every parameter is passed as None, so the
    # fixed-default ones (no presets) must take Param.default and the others presets[scale].
    spec = CHAPTERS[chapter_id].params
    params = {name: None for name in spec}
    params["scale"] = scale
    ns = notebook_namespace(tmp_path, **params)
    ns["output_dir"] = str(tmp_path / "o")
    ns["device"] = "cpu"
    cfg = configure(chapter_id, ns)
    for name, p in spec.items():
        if name in ("scale", "output_dir", "device"):
            continue
        expected = p.presets[scale] if p.presets else p.default
        assert cfg.values[name] == expected, name
    assert cfg.scale == scale


def test_explicit_values_override_the_preset(tmp_path):
    ns = notebook_namespace(tmp_path, scale="paper", steps=7, sizes=[3, 5], gains=None)
    cfg = configure(CH1, ns)
    assert cfg.steps == 7 and SPEC1["steps"].presets["paper"] != 7
    assert cfg.sizes == [3, 5]
    assert cfg.gains == SPEC1["gains"].presets["paper"]  # None next to explicit values: preset


def test_scale_defaults_to_book(tmp_path):
    cfg = configure(CH1, notebook_namespace(tmp_path))
    assert cfg.scale == "book"
    assert cfg.steps == SPEC1["steps"].presets["book"]


def test_device_dtype_and_output_dir_are_resolved(tmp_path):
    out = tmp_path / "nested" / "deeper" / "run"
    assert not out.exists()
    cfg = configure(CH1, notebook_namespace(tmp_path, device="auto", dtype="float32", output_dir=str(out)))
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert cfg.device == expected
    assert cfg.dtype is torch.float32
    assert out.is_dir() and cfg.output_dir == out
    cfg64 = configure(CH1, notebook_namespace(tmp_path, device="cpu", dtype="float64"))
    assert cfg64.device == torch.device("cpu") and cfg64.dtype is torch.float64


def test_config_attribute_access(tmp_path):
    cfg = configure(CH1, notebook_namespace(tmp_path, scale="smoke"))
    assert cfg.n_spectrum == cfg.values["n_spectrum"]
    with pytest.raises(AttributeError, match="no parameter 'nope'"):
        cfg.nope
    lines = cfg.summary().splitlines()
    assert len(lines) == len(SPEC1)
    assert any(line.startswith("steps") and line.rstrip().endswith(repr(cfg.steps)) for line in lines)


def test_generator_is_seeded_by_seed_plus_offset(tmp_path):
    # Ground truth: a torch generator seeded by hand with seed + offset.
    cfg = configure(CH1, notebook_namespace(tmp_path, seed=11))
    a = torch.randn(8, dtype=torch.float64, generator=cfg.generator(3))
    b = torch.randn(8, dtype=torch.float64, generator=cfg.generator(3))
    c = torch.randn(8, dtype=torch.float64, generator=cfg.generator(4))
    truth = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(14))
    assert torch.equal(a, b)
    assert torch.equal(a, truth)
    assert not torch.equal(a, c)
    base = torch.randn(8, dtype=torch.float64, generator=cfg.generator())
    assert torch.equal(base, torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(11)))


# ---------------------------------------------------------------- check()


def test_check_prints_true_claims(capsys):
    check(True, "the sky is up")
    check(np.bool_(True), "numpy bools count")
    check(torch.tensor([True, True]), "all of a tensor")
    out = capsys.readouterr().out.splitlines()
    assert out == ["\u2714 the sky is up", "\u2714 numpy bools count", "\u2714 all of a tensor"]


@pytest.mark.parametrize(
    "ok",
    [False, torch.tensor(False), torch.tensor([True, False]), torch.tensor(float("nan")) < 1.0],
    ids=["bool", "tensor-scalar", "tensor-one-false", "nan-comparison"],
)
def test_check_raises_on_false_claims(ok, capsys):
    with pytest.raises(ChapterCheckError, match=r"claim failed: a claim \(the detail\)"):
        check(ok, "a claim", "the detail")
    assert "\u2714" not in capsys.readouterr().out
    assert issubclass(ChapterCheckError, AssertionError)


# ---------------------------------------------------------------- outputs


def _reject_constant(token: str):
    raise AssertionError(f"non-standard JSON constant {token} in results.json")


def test_write_results_writes_strict_json(tmp_path):
    cfg = configure(CH1, notebook_namespace(tmp_path, scale="smoke", device="cpu"))
    results = {
        "tensor": torch.tensor([1.5, float("nan"), float("inf")], dtype=torch.float64),
        "tensor_scalar": torch.tensor(2.25, dtype=torch.float64),
        "int_tensor": torch.tensor([[1, 2], [3, 4]]),
        "array": np.array([[0.5, -np.inf], [2.0, 3.0]]),
        "np_float_nan": np.float64("nan"),
        "np_int": np.int64(7),
        "np_bool": np.bool_(True),
        "inf": float("-inf"),
        "plain": 0.125,
        "nested": {"tuple": (1, float("nan")), 3: [np.float32(0.5)]},
        "text": "ok",
    }
    path = write_results(cfg, results)
    assert path == cfg.output_dir / "results.json"
    data = json.loads(path.read_text(), parse_constant=_reject_constant)
    assert data["chapter"] == CH1
    assert data["parameters"] == cfg.values
    assert data["device"] == "cpu"
    assert data["results"] == {
        "tensor": [1.5, None, None],
        "tensor_scalar": 2.25,
        "int_tensor": [[1, 2], [3, 4]],
        "array": [[0.5, None], [2.0, 3.0]],
        "np_float_nan": None,
        "np_int": 7,
        "np_bool": True,
        "inf": None,
        "plain": 0.125,
        "nested": {"tuple": [1, None], "3": [0.5]},
        "text": "ok",
    }
    assert sorted(p.name for p in cfg.output_dir.iterdir()) == ["results.json"]  # no .tmp left


def test_write_results_replaces_a_previous_file(tmp_path):
    cfg = configure(CH1, notebook_namespace(tmp_path))
    write_results(cfg, {"a": 1, "b": 2})
    write_results(cfg, {"a": 3})
    data = json.loads((cfg.output_dir / "results.json").read_text())
    assert data["results"] == {"a": 3}
    assert not list(cfg.output_dir.glob("*.tmp"))


def test_write_table_writes_csv(tmp_path):
    cfg = configure(CH1, notebook_namespace(tmp_path))
    frame = pd.DataFrame({"g": [0.5, 1.5], "lambda_max": [-0.25, 0.125], "label": ["a", "b"]})
    path = write_table(cfg, "lambda_max", frame)
    assert path == cfg.output_dir / "lambda_max.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows == [["g", "lambda_max", "label"], ["0.5", "-0.25", "a"], ["1.5", "0.125", "b"]]


def test_glue_number_rounds_and_glues(monkeypatch):
    calls = []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    assert glue_number("lam", 0.123456) == 0.123
    assert glue_number("lam5", 2.0 / 3.0, digits=5) == 0.66667
    n = glue_number("count", 41.6, digits=0)
    assert n == 42 and type(n) is int
    x = glue_number("from_tensor", torch.tensor(1.23456, dtype=torch.float64), digits=2)
    assert x == 1.23 and type(x) is float
    assert calls == [("lam", 0.123, False), ("lam5", 0.66667, False), ("count", 42, False),
                     ("from_tensor", 1.23, False)]


def test_sig2_and_glue_sig2(monkeypatch):
    from floss_utils.book.chapters import glue_sig2, sig2

    assert [sig2(v) for v in (0.012345, 3.456, 9.96, 123.4, -0.00071449, 2.6e-5)] == [0.012, 3.5, 10, 120, -0.00071, 2.6e-5]
    assert type(sig2(123.4)) is int and type(sig2(9.96)) is int and type(sig2(9.94)) is float
    calls = []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    assert glue_sig2("ratio", 84.4) == 84 and glue_sig2("loss", 3.04e-6) == 3e-6
    assert calls == [("ratio", 84, False), ("loss", 3e-6, False)]
    with pytest.raises(ValueError, match="cannot glue 'bad'"):
        glue_sig2("bad", float("inf"))


def test_glue_md_glues_markdown_that_keeps_its_markup(monkeypatch):
    import IPython.core.formatters as formatters
    import myst_nb
    from floss_utils.book.chapters import glue_md

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    assert glue_md("verdict", "the moves of $W_s$ are **not** it") == "the moves of $W_s$ are **not** it"
    (name, value, display), = calls
    bundle, _ = formatters.format_display_data(value)
    assert (name, display) == ("verdict", False) and bundle["text/markdown"] == "the moves of $W_s$ are **not** it"
    with pytest.raises(TypeError, match="needs a str"):
        glue_md("bad", 3.0)


def test_glue_number_works_outside_a_kernel():
    # myst_nb.glue only formats and displays; outside IPython it must not raise.
    assert glue_number("outside", 3.14159, digits=2) == 3.14


# ---------------------------------------------------------------- registry vs notebooks


def test_every_preset_has_all_three_scales():
    assert SCALES == ("smoke", "book", "paper")
    for cid, chapter in CHAPTERS.items():
        assert chapter.id == cid
        assert set(chapter.minutes) == set(SCALES), cid
        for name, p in chapter.params.items():
            if p.presets:
                assert set(p.presets) == set(SCALES), f"{cid}.{name}"
                assert p.default is None, f"{cid}.{name}: a preset parameter has no fixed default"
    # (that every preset and default passes its own type check is covered by
    # test_none_values_are_filled_from_the_scale_preset, which configures every chapter at every scale)


def _parameters_cell(nb_path) -> str:
    nb = json.loads(nb_path.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{nb_path.name}: expected one cell tagged 'parameters', found {len(cells)}"
    src = cells[0]["source"]
    return "".join(src) if isinstance(src, list) else src


@pytest.mark.parametrize("chapter_id", list(CHAPTERS))
def test_notebook_parameters_cell_matches_registry(chapter_id):
    chapter = CHAPTERS[chapter_id]
    nb_path = registry_notebook(chapter_id)
    source = _parameters_cell(nb_path)
    tree = ast.parse(source)
    literals: dict[str, object] = {}
    lines: dict[str, int] = {}
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), (
            f"line {stmt.lineno}: only `name = <literal>` belongs in the parameters cell"
        )
        name = stmt.targets[0].id
        literals[name] = ast.literal_eval(stmt.value)
        lines[name] = stmt.lineno

    assert set(literals) == set(chapter.params), (
        f"notebook only: {sorted(set(literals) - set(chapter.params))}; "
        f"registry only: {sorted(set(chapter.params) - set(literals))}"
    )
    for name, p in chapter.params.items():
        if p.presets:
            assert literals[name] is None, f"{name}: implied by scale, must default to None in the notebook"
        else:
            assert literals[name] == p.default and type(literals[name]) is type(p.default), (
                f"{name}: notebook {literals[name]!r} != registry default {p.default!r}"
            )

    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    missing = [name for name, line in lines.items() if not comments.get(line)]
    assert not missing, f"parameters without a `# meaning` comment on their line: {missing}"


@pytest.mark.parametrize("chapter_id", list(CHAPTERS))
def test_papermill_reads_every_parameter(chapter_id, caplog):
    # papermill parses a parameters cell by its own line rules (a line with two "=" signs, e.g.
    # one in the comment, is skipped with a warning); a parameter it cannot read is missing
    # from `papermill --help-notebook` and draws a false "unknown parameter" warning when passed
    import papermill

    chapter = CHAPTERS[chapter_id]
    nb_path = registry_notebook(chapter_id)
    with caplog.at_level("WARNING", logger="papermill"):
        found = papermill.inspect_notebook(str(nb_path))
    assert list(found) == list(chapter.params), f"papermill reads {sorted(set(chapter.params) - set(found))} wrong"
    assert not [r.message for r in caplog.records if "Unable to parse" in r.message]
    for name, p in chapter.params.items():
        assert found[name]["help"].startswith(p.doc), name


def test_check_if_testable_asserts_or_says_why_not(capsys):
    from floss_utils.book.chapters import check_if_testable

    check_if_testable(True, True, "a decided claim", why_not="-")
    check_if_testable(False, False, "an undecidable claim", why_not="2 pairs cannot reach p < 0.05")
    out = capsys.readouterr().out
    assert "\u2714 a decided claim" in out
    assert "not decided at this scale: an undecidable claim (2 pairs cannot reach p < 0.05)" in out
    with pytest.raises(ChapterCheckError):
        check_if_testable(True, False, "a false claim", why_not="-")
