"""Follow child processes started by multiprocessing, each measured in the child itself.

Every multiprocessing child (start methods fork, spawn and forkserver; Pool and
concurrent.futures.ProcessPoolExecutor workers are such children) runs
`BaseProcess._bootstrap`. While following is enabled that method is wrapped so that the
child measures itself (traced, or untraced with censuses, as its parent) and writes its
result to a spool folder that the parent reads when its own measurement ends.

How the wrapper reaches the child:
  fork        the child is a copy of the parent, wrapper and all;
  spawn,      the Process object is pickled to the child. `start()` adds a token to it
  forkserver  whose unpickling imports this module in the child and installs the wrapper
              before `_bootstrap` runs.

A Pool's workers are ended with SIGTERM (`Pool.terminate`, which `with Pool()` calls); a
child that has no handler of its own for SIGTERM writes its result first, then dies of
the signal as it would have.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqldiag.capture.measure import MeasuredPass
from sqldiag.capture.plan import PassKind, PassSpec
from sqldiag.capture.processes import child_entry
from sqldiag.capture.program_imports import AfterImport, imported_attribute
from sqldiag.capture.redeliver import Redelivery
from sqldiag.capture.results import PassResult
from sqldiag.record.codec import RecordError
from sqldiag.record.parts import ChildProcess
from sqldiag.record.store import write_atomic

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

SPOOL_PREFIX = "child-"
# A pool task can be over in a tenth of a second, and a child has no phase marks: its
# traced peak is caught only by the sampler, so it samples more often than a scenario.
CHILD_SAMPLE_PERIOD = 0.02

_config: dict[str, Any] | None = None  # {"spool": folder, "depth": frames}
# BaseProcess's own methods, once wrapped. Not before the program imports multiprocessing:
# importing it here would add it to a program that never uses it (1.4 MB alone, 3 MB with
# its pool; 0.4 MB net of the modules sqldiag's process imports anyway).
PROCESS_MODULE = "multiprocessing.process"
_original_start: Any = None
_original_bootstrap: Any = None


class _Token:
    """Rides in a pickled Process object; unpickling it turns following on in the child."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def __reduce__(self):
        return _arrive, (self.config,)


def _arrive(config: dict[str, Any]) -> _Token:
    _install(config)
    return _Token(config)


class Follower:
    """Follows multiprocessing children from start() to stop(), which returns what each
    child measured of itself, reduced for the record."""

    def __init__(self, trace_depth: int) -> None:
        self.trace_depth = trace_depth
        self._spool: Path | None = None

    def start(self) -> None:
        self._spool = Path(tempfile.mkdtemp(prefix="sqldiag-children-"))
        enable(self._spool, self.trace_depth)

    def stop(self) -> tuple[ChildProcess, ...]:
        disable()
        if self._spool is None:
            return ()
        try:
            return tuple(child_entry(result) for result in collect(self._spool))
        finally:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None


def enable(spool: Path, trace_depth: int) -> None:
    """Measure every multiprocessing child started from now on; results go to `spool`."""
    spool.mkdir(parents=True, exist_ok=True)
    _install({"spool": str(spool), "depth": trace_depth})


def disable() -> None:
    global _config
    _config = None
    base = _base_process()
    if base is not None and base.start is _start:
        base.start = _original_start
        base._bootstrap = _original_bootstrap


def _install(config: dict[str, Any]) -> None:
    """Follow children from now on: at once when multiprocessing is imported, else as
    soon as the program imports it."""
    global _config
    _config = config
    if _base_process() is not None:
        _wrap()
    else:
        AfterImport.watch(PROCESS_MODULE, _wrap)


def _base_process() -> Any:
    return imported_attribute(PROCESS_MODULE, "BaseProcess")


def _wrap() -> None:
    """Wrap BaseProcess's start and _bootstrap (once), while following."""
    global _original_start, _original_bootstrap
    base = _base_process()
    if _config is None or base is None or base.start is _start:
        return
    _original_start, _original_bootstrap = base.start, base._bootstrap
    base.start = _start
    base._bootstrap = _bootstrap


def _start(self) -> None:
    if _config is not None:
        self._sqldiag_follow = _Token(_config)
    _original_start(self)


def _bootstrap(self, *args, **kwargs):
    if _config is None:
        return _original_bootstrap(self, *args, **kwargs)
    try:
        child = ChildMeasure(self, _config)
        child.begin()
    except Exception:  # noqa: BLE001 - measuring must never stop the user's child
        return _original_bootstrap(self, *args, **kwargs)
    failure = None
    try:
        code = _original_bootstrap(self, *args, **kwargs)
        if code:
            failure = f"exited with code {code}"
        return code
    finally:
        try:
            child.end(failure)
        except Exception as exc:  # noqa: BLE001 - nor change how it ends
            sys.stderr.write(f"sqldiag: child {os.getpid()} not recorded: "
                             f"{type(exc).__name__}: {exc}\n")


class ChildMeasure:
    """One child's traced pass, from `_bootstrap` to its end (or SIGTERM)."""

    def __init__(self, process: BaseProcess, config: dict[str, Any]) -> None:
        self.process = process
        self.spool = Path(config["spool"])
        depth = int(config["depth"])
        # Untraced, a child takes censuses of its live objects like its parent, unless it
        # was forked: a census refers to every object, which writes to each inherited
        # object's header and would copy the parent's pages into the child (its USS).
        censuses = depth == 0 and not _forked(process)
        self.measured = MeasuredPass(PassSpec(
            kind=PassKind.TRACED, scenario_name=process.name, scenario_path="", table="", rows=0,
            workers=1, trace_depth=depth, follow_children=False,
            sample_period=CHILD_SAMPLE_PERIOD, census_at_highs=censuses,
            statements=depth > 0))
        self._done = threading.Lock()
        self._handles_sigterm = False
        self._redelivery: Redelivery | None = None

    def begin(self) -> None:
        if tracemalloc.is_tracing():
            tracemalloc.stop()  # a forked child starts with its parent's traces: drop them
        # no full collection: in a forked child it would write to every object header
        # inherited from the parent and turn those shared pages into the child's own (USS)
        self.measured.begin(collect=False)
        self.measured.in_workload = True
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            self._handles_sigterm = True
            handler = self._on_sigterm  # one object: Redelivery compares it with getsignal
            signal.signal(signal.SIGTERM, handler)
            self._redelivery = Redelivery(signal.SIGTERM, handler, self._done.locked)
            self._redelivery.install()

    def _on_sigterm(self, signum, frame) -> None:
        if self.end("terminated by SIGTERM (as Pool.terminate() ends its workers)"):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    def end(self, failure: str | None = None) -> bool:
        """Write the result once; False when it was already written or being written."""
        if not self._done.acquire(blocking=False):
            return False
        if self._handles_sigterm and threading.current_thread() is threading.main_thread():
            # Pool.terminate() may signal a worker that is already ending on its own
            # (it sent it the stop sentinel too): let that finish writing first.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if self._redelivery is not None:
                self._redelivery.uninstall()
        result = self.measured.end_in_process(failure)
        result = dataclasses.replace(result, pid=os.getpid(), ppid=os.getppid(),
                                     name=str(self.process.name)[:200],
                                     start_method=_start_method(self.process))
        write_atomic(self.spool / f"{SPOOL_PREFIX}{os.getpid()}.json",
                     json.dumps(result.to_json()).encode("utf-8"))
        return True


def _forked(process: BaseProcess) -> bool:
    """Whether the child is a fork of its parent (not of a forkserver, not spawned)."""
    import multiprocessing

    method = getattr(process, "_start_method", None) or multiprocessing.get_start_method()
    return method == "fork"


def _start_method(process: BaseProcess) -> str:
    import multiprocessing

    return str(getattr(process, "_start_method", None)
               or multiprocessing.get_start_method(allow_none=True) or "default")


def collect(spool: Path) -> list[PassResult]:
    """The results the children wrote, oldest first; unreadable files are skipped."""
    results = []
    for path in sorted(spool.glob(f"{SPOOL_PREFIX}*.json")):
        try:
            results.append(PassResult.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, RecordError):
            continue
    return sorted(results, key=lambda r: r.t0_unix)
