"""The kernel of a run, watched: its stderr in a log, its memory sampled, its death explained.

A chapter executes in a Jupyter kernel, a separate process. :func:`kernel_manager_class` gives
papermill a kernel manager that sends that process's own stderr to the run's ``kernel.log``
(cell outputs travel over the kernel's channels, not this stream: what lands in the log is
start-up chatter and what a dying process prints) and tells a :class:`KernelWatch` the kernel's
process. The watch samples the kernel's resident memory (with its child processes) every
half second, so a run's record can say how much memory it peaked at — and, when the kernel
dies, :meth:`KernelWatch.explain_death` says what most likely happened: killed by the
out-of-memory killer (SIGKILL near the machine's memory), another signal, or an exit.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

__all__ = ["KernelWatch", "kernel_manager_class", "gib"]

GIB = 1 << 30


def gib(n_bytes: float | None) -> str:
    """Bytes as ``"3.2 GiB"`` (``"?"`` for None)."""
    return "?" if n_bytes is None else f"{n_bytes / GIB:.1f} GiB"


class KernelWatch:
    """Samples a kernel process's memory in a background thread.

    ``start(process)`` is called by the kernel manager once the kernel runs; ``stop()`` ends the
    sampling. ``peak_bytes`` is the largest resident set size seen (kernel and its children),
    ``returncode`` the kernel's exit status once it has ended (negative: killed by that signal).
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_bytes: int | None = None
        self.process: Any = None  # the kernel's subprocess.Popen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, process: Any) -> None:
        self.process = process
        self._thread = threading.Thread(target=self._sample, name="floss-kernel-watch", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        try:
            proc = psutil.Process(self.process.pid)
        except (psutil.Error, AttributeError):
            return
        while not self._stop.is_set():
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:  # the kernel has ended
                return
            self.peak_bytes = rss if self.peak_bytes is None else max(self.peak_bytes, rss)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def explain_death(self, need_bytes: float | None = None, hint: str = "") -> str:
        """What most likely ended a kernel that died, and what to do about it.

        Args:
            need_bytes: the memory this scale is known to need (the registry's measured peak).
            hint: the parameters that drive the chapter's memory, to suggest lowering.
        """
        import psutil

        total = psutil.virtual_memory().total
        code = self.returncode
        seen = f"its memory peaked at {gib(self.peak_bytes)} of this machine's {gib(total)}"
        if need_bytes:
            seen += f"; this scale needs about {gib(need_bytes)} (measured)"
        lower = f"lower {hint}" if hint else "lower the sizes of the scale"
        if code is not None and code < 0 and -code == signal.SIGKILL:
            near = self.peak_bytes is not None and self.peak_bytes > 0.5 * total
            cause = ("most likely killed by the system's out-of-memory killer" if near or need_bytes and need_bytes > 0.5 * total
                     else "killed by SIGKILL (by the out-of-memory killer, or by hand)")
            return f"the kernel died: {cause}; {seen}. Run a smaller scale (--scale book) or {lower} with -p"
        if code is not None and code < 0:
            return f"the kernel died: killed by {signal.Signals(-code).name}; {seen}"
        if code is not None:
            return f"the kernel died: it exited with status {code} (see kernel.log in the run directory); {seen}"
        return f"the kernel stopped answering; {seen} (see kernel.log in the run directory)"


def kernel_manager_class(log: Path, watch: KernelWatch | None = None, env: dict[str, str] | None = None):
    """A kernel manager class for papermill: nbclient's default, but the kernel process's own
    stderr goes to ``log`` instead of the user's terminal, ``watch`` (if given) samples the
    kernel's memory from its start, ``env`` (if given) is added to the kernel's environment (and
    to no other process's), and the kernel talks over IPC (Unix sockets in a fresh temporary
    folder of its own) instead of TCP: two kernels started at the same moment cannot race for
    one free port, as they can over TCP (jupyter_client frees a port before the kernel binds
    it)."""
    import os
    import shutil
    import tempfile

    from jupyter_client.manager import AsyncKernelManager

    class WatchedKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.transport = "ipc"
            self._ipc_dir: str | None = None

        async def _async_pre_start_kernel(self, **kw):
            if self._ipc_dir is None:  # the socket paths' prefix, unique to this kernel (a restart reuses it)
                self._ipc_dir = tempfile.mkdtemp(prefix="floss-kernel-")
                self.ip = os.path.join(self._ipc_dir, "ipc")
            return await super()._async_pre_start_kernel(**kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart and self._ipc_dir is not None:
                shutil.rmtree(self._ipc_dir, ignore_errors=True)
                self._ipc_dir = None

        async def _async_launch_kernel(self, kernel_cmd, **kw):  # jupyter_client's documented hook
            if env:  # the provisioner has built the kernel's environment by now (os.environ and the kernel spec's)
                kw["env"] = {**kw.get("env", os.environ), **env}
            with open(log, "ab") as stream:  # the child keeps its own copy of the descriptor
                kw["stderr"] = stream
                await super()._async_launch_kernel(kernel_cmd, **kw)
            process = getattr(self.provisioner, "process", None)
            if watch is not None and process is not None:
                watch.start(process)

    return WatchedKernelManager
