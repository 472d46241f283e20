"""A tiny test-only chapter (tests/fixtures/tiny/book/tiny.ipynb) for the ``floss`` runner tests.

Its notebook imports no torch and runs in about a second; it squares ``x``, fails when
``x == fail_at``, and when ``x == hold_at`` writes its kernel's pid to ``kernel.pid`` and a
half-finished ``results.json``, then waits while ``hold_file`` exists (at most 120 s), so a test
can interrupt it mid-run, deterministically.

Also the helpers of the tests that signal a real ``floss`` process: :func:`floss_argv` (the
command line of a ``floss`` process using this chapter), :func:`wait_for`, :func:`process_gone`
and :func:`exited_process`; :func:`with_default_signals`, the ``preexec_fn`` that makes such a
process start with SIGHUP and SIGINT at their defaults whatever the test runner inherited (a
runner launched with ``nohup`` or as a background job of a non-interactive shell ignores them,
children inherit that, and ``floss`` rightly leaves an ignored signal ignored).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from floss_utils.book.registry import Param, chapter
from floss_utils.book.runs import Book

TINY_ROOT = Path(__file__).resolve().parent / "fixtures" / "tiny"

TINY = chapter(
    "tiny",
    "A tiny test chapter",
    "nothing (a test fixture)",
    {"smoke": 0.01, "book": 0.01, "paper": 0.01},
    x=Param("float", "the input value", {"smoke": 1.0, "book": 2.0, "paper": 3.0}),
    fail_at=Param("float", "raise an error when x equals this", default=-1.0),
    hold_at=Param("float", "when x equals this, wait while hold_file exists (after writing partial outputs)",
                  default=-1.0),
    hold_file=Param("str", "path of the hold file", default=""),
    die_at=Param("float", "when x equals this, the kernel kills itself (SIGKILL) holding ~200 MB", default=-1.0),
)

BOOK = Book(root=TINY_ROOT, chapters={TINY.id: TINY})


# a `floss` process that uses the tiny test chapter (what a user's shell runs, with BOOK)
_DRIVER = ("import sys; sys.path.insert(0, sys.argv[1]); from tiny_book import BOOK; "
           "from floss_utils.book.cli import main; sys.exit(main(sys.argv[2:], book=BOOK))")


def floss_argv(*args: str) -> list[str]:
    """The command line of ``floss ARGS...`` run on the tiny chapter, in a process of its own."""
    return [sys.executable, "-c", _DRIVER, str(Path(__file__).resolve().parent), *args]


def with_default_signals() -> None:
    """``preexec_fn`` for a signalled ``floss`` process: SIGHUP and SIGINT at their defaults."""
    for signum in (signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds; fail (killing ``proc``, showing its output) if ``proc``
    exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"never {what} (rc {proc.returncode}):\n{stdout}\n{stderr[-3000:]}")
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    """Process ``pid`` no longer runs (gone, or a zombie nobody has reaped yet)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def exited_process() -> tuple[int, float]:
    """The pid and start time of a process that has exited (and been reaped)."""
    import psutil

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    started = psutil.Process(child.pid).create_time()
    child.communicate(b"")
    return child.pid, started
