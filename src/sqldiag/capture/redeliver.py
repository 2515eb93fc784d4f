"""Make sure a signal taken by the process reaches its Python handler.

CPython runs a Python signal handler in the main thread only, between bytecodes; its C
handler only marks the signal and interrupts the system call the main thread is in. A
signal that arrives just before the main thread blocks (it has checked for signals and
is giving up the GIL, which under load can take milliseconds) interrupts nothing, and the
wait that follows never ends. A Pool worker waiting for its task queue's lock then never
runs its SIGTERM handler, and `Pool.terminate()` waits for it forever (seen here in 1
`sqldiag run` of 60 with a forked Pool, on a loaded machine). Plain Python has no handler
there and dies of the signal at once, so the hang is ours to prevent.

`Redelivery` learns of each signal the process takes through CPython's wakeup fd; when
its handler has not begun a moment later, it sends the signal again to the main thread
alone. That thread is now blocked, its wait is interrupted, and the handler runs. A
forked child starts without the wakeup fd: its signals written into the parent's pipe
would be sent on to the parent.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

from sqldiag.capture.probes.sampler import leave_signals_to_the_main_thread

GRACE_S = 0.1  # the handler normally runs (and ends the process) well within this
TRIES = 50


_ours: list[int] = []  # [write fd] of the one installed in this process
_hooked: list[bool] = []  # the fork hook is registered once per process


def _forget_in_child() -> None:
    """A forked child must not write its signals into its parent's pipe: a SIGTERM the
    child took would be sent again to the parent's main thread. It starts with no wakeup
    fd (a followed child installs its own)."""
    if _ours:
        try:
            _drop_wakeup_fd(_ours[0])
        except ValueError:  # not the main thread (cannot be after a fork; be safe)
            pass
        _ours.clear()


def _drop_wakeup_fd(ours: int) -> None:
    """The wakeup fd goes back to none if it is still `ours`; the program's (set since)
    stays."""
    current = signal.set_wakeup_fd(-1)
    if current != ours:
        signal.set_wakeup_fd(current)


class Redelivery:
    """Sends `signum` again to the main thread while `begun()` is false and `handler` is
    still the signal's handler (the program may install its own: that one is left alone)."""

    def __init__(self, signum: int, handler: Callable, begun: Callable[[], bool]) -> None:
        self.signum, self.handler, self.begun = signum, handler, begun
        self._write: int | None = None

    def install(self) -> bool:
        """From the main thread. False (and nothing done) when the process already has a
        wakeup fd: it is the program's (asyncio sets one), and it keeps it."""
        read, write = os.pipe()
        os.set_blocking(write, False)
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        if previous != -1:
            signal.set_wakeup_fd(previous)
            os.close(read)
            os.close(write)
            return False
        self._write = write
        if not _hooked:
            os.register_at_fork(after_in_child=_forget_in_child)
            _hooked.append(True)
        _ours[:] = [write]
        threading.Thread(target=self._watch, args=(read, threading.main_thread().ident),
                         name="sqldiag-redeliver", daemon=True).start()
        return True

    def uninstall(self) -> None:
        """From the main thread: the wakeup fd goes back to none, if it is still ours."""
        write, self._write = self._write, None
        if write is None:
            return
        _ours.clear()
        _drop_wakeup_fd(write)
        os.close(write)  # the watcher reads the end of the pipe and stops

    def _watch(self, read: int, main: int | None) -> None:
        leave_signals_to_the_main_thread()
        try:
            while data := os.read(read, 512):
                if self.signum in data:
                    self._until_handled(main)
        except OSError:
            pass
        finally:
            os.close(read)

    def _until_handled(self, main: int | None) -> None:
        for _ in range(TRIES):
            time.sleep(GRACE_S)
            if (main is None or self.begun()
                    or signal.getsignal(self.signum) is not self.handler):
                return
            signal.pthread_kill(main, self.signum)
