"""The chapters' parameters: one registry, validation, scale presets and run outputs.

Every chapter notebook starts with a cell tagged ``parameters`` (plain literals, one per line,
each with a comment), then calls::

    cfg = configure("01_lyapunov_spectra", globals())

which

* refuses any variable in the notebook's namespace that is not one of the chapter's parameters
  (papermill only warns about unknown names; here a misspelling is an error, with the closest
  name suggested),
* type-checks every value (``None`` means "implied by ``scale``"),
* fills the ``None`` values from the chosen scale's preset (``smoke``/``book``/``paper``),
* resolves ``device`` (``"auto"`` is CUDA when present) and ``dtype``,
* creates ``output_dir``.

Chapters write their key numbers with :func:`write_results` (``results.json``) and tidy tables
with :func:`write_table`.
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .dynamics import resolve_device, resolve_dtype

__all__ = [
    "Param",
    "Chapter",
    "CHAPTERS",
    "Config",
    "ChapterCheckError",
    "ParameterError",
    "configure",
    "check",
    "write_results",
    "write_table",
    "glue_number",
]

SCALES = ("smoke", "book", "paper")


class ParameterError(ValueError):
    """An unknown, ill-typed or impossible chapter parameter."""


class ChapterCheckError(AssertionError):
    """A chapter's claim did not hold for the computed numbers."""


@dataclass(frozen=True)
class Param:
    """One chapter parameter.

    Attributes:
        kind: ``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"list[int]"`` or ``"list[float]"``.
        doc: one-line meaning (units included).
        presets: value per scale, for parameters implied by ``scale`` (default ``None`` in the
            notebook); empty for parameters with a fixed default.
        default: the notebook default for parameters not implied by the scale.
        choices: allowed values, if restricted.
    """

    kind: str
    doc: str
    presets: Mapping[str, Any] = field(default_factory=dict)
    default: Any = None
    choices: tuple = ()


def _common(chapter_id: str) -> dict[str, Param]:
    return {
        "scale": Param("str", "smoke (seconds) | book (committed outputs, minutes on 2 CPU cores) | paper (the sources' sizes)",
                       default="book", choices=SCALES),
        "seed": Param("int", "base random seed; every experiment derives its own from it", default=0),
        "device": Param("str", "'auto' (CUDA when present), 'cpu' or 'cuda'", default="auto"),
        "dtype": Param("str", "floating-point precision of the numerics", default="float64",
                       choices=("float32", "float64")),
        "output_dir": Param("str", "directory for results.json, tables and figures",
                            default=f"_output/{chapter_id}"),
    }


@dataclass(frozen=True)
class Chapter:
    """A chapter of the book: its notebook, what it reproduces and its parameters."""

    id: str
    title: str
    reproduces: str
    minutes: Mapping[str, float]
    params: Mapping[str, Param]

    @property
    def notebook(self) -> str:
        return f"book/{self.id}.ipynb"


def _chapter(id: str, title: str, reproduces: str, minutes: Mapping[str, float], **params: Param) -> Chapter:
    return Chapter(id, title, reproduces, minutes, {**_common(id), **params})


CHAPTERS: dict[str, Chapter] = {
    c.id: c
    for c in [
        _chapter(
            "01_lyapunov_spectra",
            "Lyapunov spectra of recurrent networks",
            "Engelken, Wolf & Abbott (2023) Figs. 1-4 (spectra, collapse, dimension, entropy); "
            "mean-field and Newman validations",
            {"smoke": 0.3, "book": 2.0, "paper": 60.0},
            sizes=Param("list[int]", "network sizes N for the mean-field comparison of lambda_max",
                        {"smoke": [30, 60], "book": [100, 400], "paper": [100, 400, 1000, 2000]}),
            gains=Param("list[float]", "coupling gains g swept for lambda_max, dimension and entropy",
                        {"smoke": [0.5, 1.5, 2.5, 4.0],
                         "book": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0],
                         "paper": [round(0.5 + 0.125 * i, 3) for i in range(29)]}),
            steps=Param("int", "steps averaged over per spectrum (after the transient)",
                        {"smoke": 200, "book": 2000, "paper": 10000}),
            transient=Param("int", "steps discarded before averaging",
                            {"smoke": 50, "book": 300, "paper": 1000}),
            n_spectrum=Param("int", "N of the networks whose full spectra are shown",
                             {"smoke": 30, "book": 100, "paper": 400}),
            collapse_sizes=Param("list[int]", "sizes N whose spectra are compared against i/N",
                                 {"smoke": [30, 60], "book": [50, 100, 200], "paper": [100, 200, 400, 800]}),
            collapse_gain=Param("float", "gain g of the collapse figure", {"smoke": 3.0, "book": 3.0, "paper": 3.0}),
            input_stds=Param("list[float]", "std s of the white input drive (per unit, per step)",
                             {"smoke": [0.0, 1.0], "book": [0.0, 0.25, 0.5, 1.0, 1.5, 2.0],
                              "paper": [0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]}),
            input_gain=Param("float", "gain g of the input-fluctuation figure", {"smoke": 3.0, "book": 3.0, "paper": 3.0}),
            newman_n=Param("int", "N of the Gaussian-product check", {"smoke": 10, "book": 40, "paper": 100}),
            newman_steps=Param("int", "steps of the Gaussian-product check",
                               {"smoke": 1000, "book": 20000, "paper": 100000}),
        ),
        _chapter(
            "02_exponents_to_gradients",
            "From exponents to gradients",
            "Oseledets' theorem made visible: long-term Jacobian singular values, gradient norm and "
            "condition number vs horizon (the link GF builds on, GF Fig. 1)",
            {"smoke": 0.2, "book": 1.0, "paper": 10.0},
            n_units=Param("int", "network size N", {"smoke": 40, "book": 64, "paper": 256}),
            gains=Param("list[float]", "gains of the stable, edge-of-chaos and chaotic networks",
                        {"smoke": [0.5, 1.0, 2.5], "book": [0.5, 1.0, 2.5], "paper": [0.5, 1.0, 2.5]}),
            input_std=Param("float", "std s of the white input drive", {"smoke": 0.1, "book": 0.1, "paper": 0.1}),
            horizon=Param("int", "longest horizon t of the long-term Jacobian (steps)",
                          {"smoke": 60, "book": 120, "paper": 300}),
            k=Param("int", "number of tangent directions (exponents, singular values)",
                    {"smoke": 6, "book": 8, "paper": 16}),
            steps=Param("int", "steps of the QR estimate of the exponents", {"smoke": 300, "book": 4000, "paper": 20000}),
            transient=Param("int", "steps discarded before everything else", {"smoke": 50, "book": 200, "paper": 1000}),
            n_seeds=Param("int", "networks (seeds) per gain", {"smoke": 2, "book": 8, "paper": 32}),
        ),
    ]
}


# --------------------------------------------------------------------------------------------


_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_LITERAL_TYPES = (int, float, str, bool, list, tuple, dict, type(None))


def _notebook_parameters(namespace: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """The user variables of a notebook namespace that can be parameters: every literal-valued
    name (what papermill can set), and every known parameter name whatever its value (so that
    ``steps = np.int64(100)`` is converted or refused, never silently ignored)."""
    known = set(known)
    return {
        name: value
        for name, value in namespace.items()
        if name in known
        or (not name.startswith("_")
            and name not in _IPYTHON_NAMES
            and not isinstance(value, types.ModuleType)
            and isinstance(value, _LITERAL_TYPES))
    }


def _plain(value: Any) -> Any:
    """numpy/torch scalars and arrays -> Python numbers and lists (``.tolist()``)."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple, str)):
        return value.tolist()
    return value


def _coerce(chapter: str, name: str, spec: Param, value: Any) -> Any:
    where = f"{chapter}: parameter {name!r}"

    def scalar(kind: str, v: Any) -> Any:
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ParameterError(f"{where} must be an int, got {type(v).__name__} {v!r}")
            return int(v)
        if kind == "float":
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ParameterError(f"{where} must be a number, got {type(v).__name__} {v!r}")
            if not math.isfinite(v):
                raise ParameterError(f"{where} must be finite, got {v!r}")
            return float(v)
        if kind == "str":
            if not isinstance(v, str):
                raise ParameterError(f"{where} must be a string, got {type(v).__name__} {v!r}")
            return v
        if kind == "bool":
            if not isinstance(v, bool):
                raise ParameterError(f"{where} must be True or False, got {v!r}")
            return v
        raise AssertionError(f"unknown parameter kind {kind}")

    value = _plain(value)
    if spec.kind.startswith("list["):
        inner = spec.kind[5:-1]
        if not isinstance(value, (list, tuple)) or isinstance(value, str):
            raise ParameterError(f"{where} must be a list of {inner}, got {type(value).__name__} {value!r}")
        if len(value) == 0:
            raise ParameterError(f"{where} must not be empty")
        out = [scalar(inner, v) for v in value]
    else:
        out = scalar(spec.kind, value)
    if spec.choices and out not in spec.choices:
        raise ParameterError(f"{where} must be one of {list(spec.choices)}, got {out!r}")
    return out


@dataclass
class Config:
    """A chapter's resolved configuration: every parameter with a concrete value.

    Access parameters as attributes (``cfg.steps``); ``cfg.device`` and ``cfg.dtype`` are torch
    objects; ``cfg.values`` holds the plain (JSON-able) values.
    """

    chapter: str
    values: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    output_dir: Path

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"chapter {self.__dict__.get('chapter')!r} has no parameter {name!r}")

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU random generator seeded with ``seed + offset`` (one offset per experiment)."""
        return torch.Generator().manual_seed(self.values["seed"] + offset)

    def summary(self) -> str:
        """One line per parameter, for the notebook's output."""
        width = max(len(k) for k in self.values)
        return "\n".join(f"{k:<{width}} = {v!r}" for k, v in self.values.items())


def configure(chapter: str, namespace: Mapping[str, Any]) -> Config:
    """Validate a chapter's parameters (from the notebook's ``globals()``) and resolve the scale.

    Raises:
        ParameterError: unknown name (with the closest known name), wrong type, bad choice.
    """
    if chapter not in CHAPTERS:
        raise ParameterError(f"unknown chapter {chapter!r}; known: {', '.join(CHAPTERS)}")
    spec = CHAPTERS[chapter]
    given = _notebook_parameters(namespace, spec.params)
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, spec.params, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ParameterError(
            f"{chapter}: unknown parameter(s) {', '.join(hints)}; "
            f"known: {', '.join(spec.params)}"
        )
    scale = given.get("scale")
    scale = _coerce(chapter, "scale", spec.params["scale"], "book" if scale is None else scale)
    values: dict[str, Any] = {}
    for name, p in spec.params.items():
        value = given.get(name, None)
        if value is None:
            value = p.presets[scale] if p.presets else p.default
        values[name] = _coerce(chapter, name, p, value)
    try:
        device = resolve_device(values["device"])
        dtype = resolve_dtype(values["dtype"])
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{chapter}: {exc}") from None
    out = Path(values["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    return Config(chapter=chapter, values=values, device=device, dtype=dtype, output_dir=out)


def check(ok: bool | torch.Tensor, claim: str, detail: str = "") -> None:
    """Assert one of the chapter's claims; print it when it holds, raise when it does not."""
    if isinstance(ok, torch.Tensor):
        ok = bool(ok.all())
    elif hasattr(ok, "all"):  # numpy arrays and scalars
        ok = bool(ok.all())
    if not ok:
        raise ChapterCheckError(f"claim failed: {claim}" + (f" ({detail})" if detail else ""))
    print(f"\u2714 {claim}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple, dict)):
        value = value.tolist()  # numpy arrays and scalars
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(cfg: Config, results: Mapping[str, Any]) -> Path:
    """Write ``results.json``: the chapter id, its resolved parameters and its key numbers."""
    path = cfg.output_dir / "results.json"
    payload = {"chapter": cfg.chapter, "parameters": cfg.values, "device": str(cfg.device),
               "results": _jsonable(dict(results))}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False))
    tmp.replace(path)  # never leave a half-written results.json behind
    return path


def write_table(cfg: Config, name: str, frame: Any) -> Path:
    """Write a tidy table (a pandas DataFrame) as ``<output_dir>/<name>.csv``."""
    path = cfg.output_dir / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def glue_number(name: str, value: float, digits: int = 3) -> float | int:
    """Round ``value`` and glue it (myst-nb) for use in the prose as ``{glue:text}`name```.

    Rounding keeps the stored output identical across machines for nbval; ``digits=0``
    glues an int.
    """
    from myst_nb import glue

    if digits < 0:
        raise ValueError(f"digits must be >= 0, got {digits}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot glue {name!r}: value is {value}")
    rounded: float | int = round(value, digits) if digits > 0 else int(round(value))
    glue(name, rounded, display=False)
    return rounded
