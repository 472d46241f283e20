"""Sphinx extension: drop duplicate <script> entries from every page.

jupyter-book 1.0.4 registers the inline configuration scripts of sphinx-thebe and
sphinx-togglebutton twice, so every page declares ``const THEBE_JS_URL`` twice and the browser
reports "Identifier 'THEBE_JS_URL' has already been declared" (the same happens in a fresh
``jupyter-book create`` template). This keeps the first of identical scripts (same file, same
inline body, same attributes) and leaves everything else untouched.
"""

from __future__ import annotations

from typing import Any


def _key(script: Any) -> tuple:
    """Identity of a script: its file and attributes (inline body included). An inline script's
    file is registered as ``None`` by one extension and ``""`` by another, which is why Sphinx's
    own de-duplication misses these; both mean "no file"."""
    attributes = tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items()))
    return (str(getattr(script, "filename", script) or ""), attributes)


def dedupe(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # in place: the list is the builder's own, to which later handlers (e.g. MathJax's) append
    scripts[:] = unique


def setup(app):
    # early: html-page-context is emitted with emit_firstresult, so a theme handler that returns
    # a template name would stop later handlers from running
    app.connect("html-page-context", dedupe, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
