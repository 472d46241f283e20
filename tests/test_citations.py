"""No citation a reader cannot open.

The book, its package, tests, benchmarks and README cite only what a reader of this repository
can open: the book's own pages (the models, ground truths, defects of the public codes and the
published values are on ``book/methods_and_reference_values.md``), the papers and the
bibliography (``references.bib``). This test reads every file git tracks — for a notebook its
cell sources, its text outputs (stream, text/plain, text/html, text/markdown, text/latex,
tracebacks) and its metadata; images are skipped — and fails on:

* the specification files the book was written from, which live outside the repository
  (``SCIENCE.md``, ``DESIGN.md``, ``PUBLISHED.md``, ``../shared``, ``../seeds``, "the
  reproduction brief");
* absolute paths of one particular machine (``/work/…``, ``/root/…``, ``/home/<user>/…``,
  ``/tmp/…``, ``/mnt/…``), which no reader has;
* GF figure numbers ("GF Fig. 2", "Fig. 3 of GF"): the book was written from GF's abstract and
  its public code, so it cites GF by the abstract's claims (the methods page lists them);
* repository paths with a file suffix (``tests/….py``, ``book/….ipynb``…) that do not exist.

Sources and committed outputs are separate tests: an output is fixed by re-executing its
chapter, not by editing it.

Excluded, and why: this file (it has to spell the patterns it looks for); binary files (not
text; PNG and friends); ``_extra/mathjax`` (third-party MathJax, vendored unchanged). Nothing
else: ``.ci/run`` and the Makefile are scanned like everything else.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.hygiene

THIS_FILE = Path(__file__).resolve().relative_to(REPO_ROOT).as_posix()
EXCLUDED_PREFIXES = ("_extra/mathjax/",)

RULES: dict[str, re.Pattern[str]] = {
    "spec file outside the repository": re.compile(
        r"\b(?:SCIENCE|DESIGN|PUBLISHED)\.md\b|\bSCIENCE\b|\.\./(?:shared|seeds)\b|\bshared/spec\b"
        r"|\breproduction brief\b", re.IGNORECASE),
    "absolute path of one machine": re.compile(
        r"(?<![\w.\-/:~])(?:/(?:work|root|tmp|mnt)/[\w.\-]|/home/[\w.\-]+/)[\w.\-/]*"),
    "GF figure number (cite GF by its abstract's claims)": re.compile(
        r"\bGF(?:['’]s)?,?\s+[Ff]ig(?:ure)?s?\b"
        r"|\b[Ff]ig(?:ure)?s?\.?\s*\d+\w*(?:\s*[-–,]\s*\d+\w*)*\s+(?:of|in|from)\s+GF\b"
        r"|engelken2023gradient`\s*,?\s*\(?[Ff]ig"
        r"|\bEngelken\s*\(?2023\)?,?\s+[Ff]ig"),
}
# `\bSCIENCE\b` is matched case-insensitively too: "science" alone would be too common, so a
# lower-case hit must be the file name; see _spec_hit.
REPO_PATH = re.compile(
    r"(?<![\w./\-])((?:tests|floss_utils|benchmarks|book|_ext|assets)/[\w./\-]*?"
    r"\.(?:py|ipynb|md|csv|cfg|yml|yaml|bib|txt|json))(?![\w\-])")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")  # e.g. benchmarks/results/NAME.md in a usage line
TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex")


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z"], capture_output=True, text=True)
    assert out.returncode == 0, f"`git ls-files` failed (this test needs a git checkout): {out.stderr.strip()}"
    return [p for p in out.stdout.split("\0") if p and p != THIS_FILE and not p.startswith(EXCLUDED_PREFIXES)]


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def _pieces(rel: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(sources, outputs)``: ``(where, text)`` pairs of one tracked file (empty if binary)."""
    path = REPO_ROOT / rel
    if not path.is_file():  # deleted in the work tree but still tracked: nothing to read
        return [], []
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [], []
    if not rel.endswith(".ipynb"):
        return [(rel, raw)], []
    nb = json.loads(raw)
    sources = [(f"{rel} metadata", json.dumps(nb.get("metadata", {}), ensure_ascii=False))]
    outputs: list[tuple[str, str]] = []
    for i, cell in enumerate(nb.get("cells", [])):
        sources.append((f"{rel} cell {i} ({cell.get('cell_type')}) source", _text(cell.get("source", ""))))
        for j, out in enumerate(cell.get("outputs", [])):
            data = out.get("data", {})
            text = _text(out.get("text", "")) + "".join(_text(data.get(m, "")) for m in TEXT_MIMES)
            text += "\n".join(out.get("traceback", []))
            if text:
                outputs.append((f"{rel} cell {i} output {j}", text))
    return sources, outputs


def _spec_hit(match: re.Match[str]) -> bool:
    """A case-insensitive hit on the bare word counts only in capitals (the file's name)."""
    word = match.group(0)
    return not word.lower() == "science" or word == "SCIENCE"


def problems(pieces: list[tuple[str, str]]) -> list[str]:
    found = []
    for where, text in pieces:
        for rule, pattern in RULES.items():
            for m in pattern.finditer(text):
                if rule.startswith("spec") and not _spec_hit(m):
                    continue
                end = text.find("\n", m.end())
                line = text[text.rfind("\n", 0, m.start()) + 1:end if end >= 0 else len(text)]
                found.append(f"{where}: {rule}: {m.group(0)!r} in {line.strip()[:160]!r}")
        for m in REPO_PATH.finditer(text):
            rel = m.group(1)
            stems = [Path(part).stem for part in Path(rel).parts]
            if not (REPO_ROOT / rel).exists() and not any(PLACEHOLDER.match(s) for s in stems):
                found.append(f"{where}: a repository path that does not exist: {rel!r}")
    return found


@pytest.fixture(scope="module")
def tracked() -> dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    return {rel: _pieces(rel) for rel in _tracked_files()}


def test_sources_cite_only_what_a_reader_can_open(tracked):
    found = [p for sources, _ in tracked.values() for p in problems(sources)]
    assert not found, "citations a reader cannot open (fix the source):\n" + "\n".join(found)


def test_committed_outputs_cite_only_what_a_reader_can_open(tracked):
    found = [p for _, outputs in tracked.values() for p in problems(outputs)]
    assert not found, ("committed outputs with citations a reader cannot open (re-execute the chapter "
                       "after fixing its source):\n" + "\n".join(found))


@pytest.mark.parametrize("text", [
    "see SCIENCE.md, Part II", "as in PUBLISHED.md", "(DESIGN.md)", "../shared/spec/x", "the reproduction brief",
    "open /work/main/book", "/root/.cache/x", "/home/alice/notes", "Reproduces GF Fig. 2", "GF's Figure 3",
    "Figs. 2-3 of GF", "{cite}`engelken2023gradient` Fig. 4", "Engelken (2023) Fig. 1",
    "see `tests/test_no_such_file.py`",
])
def test_the_rules_catch(text):
    assert problems([("example", text)]), f"not caught: {text!r}"


@pytest.mark.parametrize("text", [
    "Engelken, Wolf & Abbott (2023) Figs. 1-4", "ZO Fig. 3A", "science", "re.compile(r\"(/root/|/tmp/)\")",
    "https://example.org/work/x", "--out /shared/runs/ch02", "GF's first claim", "`tests/test_flosser.py`",
    "benchmarks/results/NAME.md", "../benchmarks/results/book_timings.md", "_output/ch08/results.json",
])
def test_the_rules_spare(text):
    assert not problems([("example", text)]), f"wrongly caught: {text!r}: {problems([('example', text)])}"
