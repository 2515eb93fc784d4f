"""The process that runs a user's program: `python -m sqldiag.capture.program SPEC OUT`.

The program runs here as `python script.py args` (or `python -m module args`) would run
it: the same sys.argv, `__main__`, sys.path[0], stdin, stdout and exit code. Nothing of
the database stack is imported before the program imports it, so the program gets the
SQLAlchemy and driver it would get alone. It runs at full size without tracing: a
watcher process samples RSS, and censuses of live objects at RSS highs give the
categories (probes/live.py). With `trace_depth` > 0 it runs under tracemalloc instead,
for allocation sites, at tracemalloc's cost.

OUT receives the pass result as JSON, or {"error": "..."} when the program could not be
started (no such module, a syntax error): the parent prints that as one line. The
program's own `os._exit(n)` ends the pass first. With a `checkpoints` folder, each census
leaves the result so far there (CHECKPOINT) and the RSS watcher its samples (WATCHED): a
process killed outright (the kernel's OOM killer sends SIGKILL) leaves what it measured.
"""

from __future__ import annotations

# the interpreter's RSS is read before sqldiag's modules are imported
# isort: off
from sqldiag.capture.probes.rss import rss_once

INTERPRETER_RSS = rss_once()  # what the program alone would start from
# isort: on

import dataclasses
import gc
import importlib.util
import json
import os
import runpy
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqldiag.capture.follow import Follower
from sqldiag.capture.measure import MeasuredPass, timeline_of
from sqldiag.capture.plan import PassKind, PassSpec
from sqldiag.capture.probes.census import live_type_counts
from sqldiag.capture.probes.roots import keep_namespace
from sqldiag.capture.probes.sampler import (
    Sample,
    leave_signals_to_the_main_thread,
    read_watched,
)
from sqldiag.capture.probes.watcher import GRACE_S
from sqldiag.capture.results import PassResult
from sqldiag.errors import EXIT_INTERRUPTED, EXIT_MEMORY_GUARD
from sqldiag.record.codec import JsonValue, RecordError
from sqldiag.record.parts import Iteration
from sqldiag.record.store import write_atomic

EXIT_RAISED = 1  # what python exits with when the program raises
CHECKPOINT, WATCHED = "checkpoint.json", "rss.txt"
_real_exit = os._exit


@dataclass(frozen=True)
class ProgramSpec(JsonValue):
    """What to run and how to measure it."""

    name: str
    argv: tuple[str, ...]  # sys.argv of the program: the script and its arguments
    module: str | None = None  # `-m module`: argv then holds the module's arguments
    trace_depth: int = 0  # > 0: tracemalloc in this process instead of censuses
    follow_children: bool = True
    max_rss: int | None = None
    repeat: int = 0  # leak or peak: run the program this many times in this process
    live: bool = False  # sqldiag.install() before the program starts (run --live)
    metrics_port: int | None = None
    checkpoints: str = ""  # a folder for what was measured so far (see above)


class NotStarted(Exception):
    """The program could not be started; the message is one line for the user."""


def _check(spec: ProgramSpec) -> None:
    """Fail as python would before running anything: no such module, a syntax error."""
    if spec.module is not None:
        try:
            found = importlib.util.find_spec(spec.module)
        except (ImportError, ValueError) as exc:
            raise NotStarted(f"cannot run module {spec.module!r}: {exc}") from None
        if found is None:
            raise NotStarted(f"no module named {spec.module!r}")
        return
    path = Path(spec.argv[0])
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise NotStarted(f"cannot read {path}: {exc.strerror}") from None
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise NotStarted(f"{exc.filename}:{exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # null bytes
        raise NotStarted(f"{path}: {exc}") from None


def _own_frame(tb: TracebackType) -> bool:
    """Frames above the program's own: runpy's and this module's."""
    filename = tb.tb_frame.f_code.co_filename
    return filename in (__file__, runpy.__file__) or filename.startswith("<frozen runpy")


def print_program_traceback(exc: BaseException) -> None:
    """The traceback python would print: the program's frames, not the runner's."""
    tb = exc.__traceback__
    while tb is not None and _own_frame(tb):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _program_globals(tb: TracebackType | None) -> dict | None:
    """The globals of the program's __main__ module, from the frames an exception
    passed through."""
    while tb is not None:
        namespace = tb.tb_frame.f_globals
        if not _own_frame(tb) and namespace.get("__name__") == "__main__":
            return namespace
        tb = tb.tb_next
    return None


def _run_once(spec: ProgramSpec) -> tuple[int, str | None]:
    """Run the program once as python would; (exit code, failure or None). Its module's
    globals stay alive after it, as python keeps them until the process exits (runpy
    would let them go): what they hold is part of what the program leaves, and a census
    names it ("__main__.results")."""
    try:
        if spec.module is not None:
            sys.argv = [spec.module, *spec.argv]
            namespace = runpy.run_module(spec.module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(spec.argv)
            namespace = runpy.run_path(spec.argv[0], run_name="__main__")
    except SystemExit as exc:  # its own choice, at its end: a complete run
        _keep_globals(_program_globals(exc.__traceback__))
        return _exit_code(exc), None
    except KeyboardInterrupt as exc:
        _keep_globals(_program_globals(exc.__traceback__))
        print_program_traceback(exc)
        return EXIT_INTERRUPTED, "interrupted by Ctrl-C (SIGINT)"
    except BaseException as exc:  # noqa: BLE001 - the program is the user's
        _keep_globals(_program_globals(exc.__traceback__))
        print_program_traceback(exc)
        return EXIT_RAISED, f"the program raised {type(exc).__name__}: {exc}"
    _keep_globals(namespace)
    return 0, None


def _keep_globals(namespace: dict | None) -> None:
    if namespace is not None:
        keep_namespace("__main__", namespace)


def _pass_spec(spec: ProgramSpec) -> PassSpec:
    traced = spec.trace_depth > 0
    return PassSpec(kind=PassKind.of_program(spec.trace_depth),
                    scenario_name=spec.name, scenario_path="", table="", rows=0, workers=1,
                    trace_depth=spec.trace_depth, census=False,
                    census_at_highs=not traced, follow_children=spec.follow_children,
                    max_rss=spec.max_rss, allocator_highs=True, statements=traced)


def _write(out: Path, data: dict) -> None:
    write_atomic(out, json.dumps(data).encode("utf-8"))


def main(argv: list[str]) -> int:
    spec = ProgramSpec.from_json(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    out = Path(argv[1])
    try:
        _check(spec)
    except NotStarted as exc:
        _write(out, {"error": str(exc)})
        return 1
    # sys.path[0] is the script's folder, as python sets it; -m keeps the current one
    if spec.module is None:
        sys.path[0] = str(Path(spec.argv[0]).resolve().parent)
    follower = (Follower(spec.trace_depth) if spec.follow_children
                else None)
    folder = Path(spec.checkpoints) if spec.checkpoints else None
    measured = MeasuredPass(_pass_spec(spec), follower,
                            watch_file=str(folder / WATCHED) if folder else None)
    measured.interpreter_rss = INTERPRETER_RSS

    def on_guard_signal(signum, frame) -> None:  # SIGUSR1 from the RSS watcher
        measured.failure = "stopped by the memory guard: RSS passed --max-rss"
        measured.sampler.stop()
        _write(out, measured.result().to_json())
        _real_exit(EXIT_MEMORY_GUARD)

    signal.signal(signal.SIGUSR1, on_guard_signal)
    _end_at_os_exit(measured, out)
    measured.begin()
    if folder is not None:
        checkpoint = _Checkpoint(measured, folder / CHECKPOINT)
        checkpoint()
        if measured.censuses is not None:
            measured.censuses.after_census = checkpoint
    if spec.live:
        _install(spec)
    measured.in_workload = True
    started_in = os.getpid()
    code, failure = _run_once(spec)
    if os.getpid() != started_in:
        # a process the program forked (os.fork: gunicorn's workers) left the program's
        # code: it ends as it would alone, without touching the parent's measurement
        return code
    iterations = []
    if spec.repeat > 1 and not failure:
        iterations.append(_iteration(measured, 1))
        for run in range(2, spec.repeat + 1):
            code, failure = _run_once(spec)
            if failure:
                break
            iterations.append(_iteration(measured, run))
    result = measured.end_in_process(failure, trim=spec.trace_depth == 0)
    if iterations:
        result = dataclasses.replace(result, iterations=tuple(iterations))
    sys.stdout.flush()
    _write(out, result.to_json())
    return code


def _end_at_os_exit(measured: MeasuredPass, out: Path) -> None:
    """The program's own os._exit(n) (not a forked child's) ends the pass as its end
    would, its objects still alive, before the process ends."""
    pid = os.getpid()

    def end_then_exit(code: int) -> None:
        if os.getpid() == pid:
            os._exit = _real_exit
            try:
                result = measured.end_in_process(None)
                _write(out, dataclasses.replace(result, exit_code=code).to_json())
            except BaseException as exc:  # noqa: BLE001 - the program's exit comes first
                print(f"sqldiag: could not save the measurement at os._exit: {exc}",
                      file=sys.stderr)
        _real_exit(code)

    os._exit = end_then_exit


class _Checkpoint:
    """Leaves the pass's result so far, with the watcher's clock, in one file, after each
    census: made where it is called (about 2 ms at the original report's size), written
    by a thread of its own, whose waits for the GIL (each system call gives it up, and
    ten busy threads took up to 2 s to give it back) then do not delay the next census."""

    def __init__(self, measured: MeasuredPass, path: Path) -> None:
        self.measured, self.path = measured, path
        self._latest: bytes | None = None
        self._ready = threading.Condition()
        self.failed = False
        threading.Thread(target=self._write, name="sqldiag-checkpoint", daemon=True).start()

    def __call__(self) -> None:
        if self.failed or not self.measured.in_workload:  # its end writes the result
            return
        try:
            data = json.dumps({"t0": self.measured.sampler.t0,
                               "result": self.measured.result().to_json()}).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - never break the program for it
            self._stop(exc)
            return
        with self._ready:
            self._latest = data
            self._ready.notify()

    def _write(self) -> None:
        leave_signals_to_the_main_thread()
        while not self.failed:
            with self._ready:
                while self._latest is None:
                    self._ready.wait()
                data, self._latest = self._latest, None
            try:
                write_atomic(self.path, data, fsync=False)
            except OSError as exc:
                self._stop(exc)

    def _stop(self, exc: Exception) -> None:
        self.failed = True
        print(f"sqldiag: checkpoints stopped: {type(exc).__name__}: {exc}", file=sys.stderr)


def recovered(folder: Path, code: int, max_rss: int | None = None) -> PassResult | None:
    """What a program's process that ended without writing its result (killed outright:
    `code` < 0 is the signal) had measured: its last checkpoint, with the watcher's RSS
    samples to its end; None when it left none. Past `max_rss`, a SIGKILL is the memory
    guard's (the program did not stop at its SIGUSR1: it was inside C code)."""
    try:
        data = json.loads((folder / CHECKPOINT).read_text(encoding="utf-8"))
        result = PassResult.from_json(data["result"])
        t0 = float(data["t0"])
    except (OSError, ValueError, KeyError, TypeError, RecordError):
        return None
    line = result.timeline
    samples = [Sample(*point) for point in zip(line.t, line.rss, line.uss, line.traced,
                                                line.overhead, line.children_rss)]
    samples += read_watched(str(folder / WATCHED), t0).samples
    if not samples:
        return None
    samples.sort(key=lambda sample: sample.t)
    end = round(samples[-1].t, 4)
    last = f" at t={result.censuses[-1].t:.1f} s" if result.censuses else ""
    measured = f"RSS is sampled to its end, the categories are its last census's{last}"
    exit_code = result.exit_code
    if code == -signal.SIGKILL and max_rss and max(s.rss for s in samples) > max_rss:
        failure = (f"stopped by the memory guard: RSS passed --max-rss and the program "
                   f"did not stop within {GRACE_S:.0f} s (inside C code, or deaf to SIGUSR1), "
                   f"so it was killed; {measured}")
        exit_code = EXIT_MEMORY_GUARD
    else:
        try:
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else \
                f"ended with exit code {code}"
        except ValueError:
            how = f"was killed by signal {-code}"
        why = " (the kernel's OOM killer sends SIGKILL)" if code == -signal.SIGKILL else ""
        failure = (f"the program's process {how} at t={end:.1f} s, before sqldiag "
                   f"could end its measurement{why}: {measured}")
    return dataclasses.replace(result, timeline=timeline_of(samples), wall_time_s=end,
                               failure=failure, exit_code=exit_code)


def _install(spec: ProgramSpec) -> None:
    """`run --live`: the program's process answers `sqldiag snapshot` (and serves metrics)."""
    from sqldiag.live.install import install

    installed = install(metrics_port=spec.metrics_port)
    metrics = (f"; metrics on http://127.0.0.1:{spec.metrics_port}/metrics"
               if spec.metrics_port is not None else "")
    print(f"sqldiag: the program is process {os.getpid()}: `sqldiag snapshot {os.getpid()}` "
          f"asks it for a snapshot (socket {installed.socket}){metrics}", file=sys.stderr,
          flush=True)


def _iteration(measured: MeasuredPass, run: int) -> Iteration:
    """After one run of the program, with what it left collected: live categories."""
    gc.collect()
    at = measured.censuses.mark(f"after run {run}") if measured.censuses else None
    categories = dict(at.census.categories) if at else {}
    return Iteration(run=run, types=live_type_counts(), categories=categories,
                     traced=sum(categories.values()) if at else None)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

