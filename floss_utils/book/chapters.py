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

import json
import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from ..common import resolve_device, resolve_dtype
from .parameters import ParameterError, resolve, validate
from .registry import CHAPTERS, Chapter, Param

__all__ = [
    "Param",
    "Chapter",
    "CHAPTERS",
    "Config",
    "ChapterCheckError",
    "ParameterError",
    "configure",
    "check",
    "check_if_testable",
    "write_results",
    "write_table",
    "glue_number",
    "glue_md",
]


class ChapterCheckError(AssertionError):
    """A chapter's claim did not hold for the computed numbers."""


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

    The same validator as ``floss run`` (:func:`floss_utils.book.parameters.validate`): types,
    choices, bounds and the chapter's cross-parameter constraints, every problem at once.

    Raises:
        ParameterError: unknown name (with the closest known name), wrong type, bad choice,
            value out of bounds, broken constraint.
    """
    if chapter not in CHAPTERS:
        raise ParameterError(f"unknown chapter {chapter!r}; known: {', '.join(CHAPTERS)}")
    spec = CHAPTERS[chapter]
    given = _notebook_parameters(namespace, spec.params)
    typed = validate(spec, given, text=False)
    values = resolve(spec, typed)
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


def check_if_testable(testable: bool, ok: bool | torch.Tensor, claim: str, detail: str = "", *,
                      why_not: str) -> None:
    """Assert a claim when the run's design can decide it (enough seeds, steps...); otherwise
    say so in the output — a claim is never dropped silently.

    Args:
        testable: whether this run can decide the claim (e.g. a sign-flip test over ``n``
            pairs can reach ``p < alpha`` only when ``2^-n < alpha``).
        ok, claim, detail: as for :func:`check`.
        why_not: why this run cannot decide it (printed when ``testable`` is false).
    """
    if testable:
        check(ok, claim, detail)
    else:
        print(f"\u2013 not decided at this scale: {claim} ({why_not})")


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
    if cfg.device.type == "cuda":  # the run's record reports it (the host memory is watched from outside)
        payload["device_peak_bytes"] = int(torch.cuda.max_memory_allocated(cfg.device))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False))
    tmp.replace(path)  # never leave a half-written results.json behind
    return path


def write_table(cfg: Config, name: str, frame: Any) -> Path:
    """Write a tidy table (a pandas DataFrame) as ``<output_dir>/<name>.csv``."""
    path = cfg.output_dir / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def glue_md(name: str, text: str) -> str:
    """Glue a piece of prose that carries markup (``$math$``, ``**bold**``, code) for use in the
    text as ``{glue:md}`name:myst```, which parses it as MyST (``{glue:text}`` would paste the
    markup verbatim). Returns ``text``."""
    from IPython.display import Markdown
    from myst_nb import glue

    if not isinstance(text, str):
        raise TypeError(f"glue_md({name!r}) needs a str, got {type(text).__name__}")
    glue(name, Markdown(text), display=False)
    return text


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


def sig2(value: float) -> float | int:
    """``value`` to two significant digits for the prose: ``0.012345 -> 0.012``,
    ``3.456 -> 3.5``, and a whole number from 10 on (``123.4 -> 120``)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"sig2 needs a finite value, got {value}")
    x = float(f"{value:.2g}")
    return int(x) if abs(x) >= 10 else x


def glue_sig2(name: str, value: float) -> float | int:
    """Glue ``value`` to two significant digits (:func:`sig2`) for the prose as ``{glue:text}`name```."""
    from myst_nb import glue

    try:
        rounded = sig2(value)
    except ValueError as err:
        raise ValueError(f"cannot glue {name!r}: {err}") from None
    glue(name, rounded, display=False)
    return rounded
