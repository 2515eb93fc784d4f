"""`sqldiag run` follows multiprocessing children (fork, spawn, forkserver; Pool and
ProcessPoolExecutor) and reports each process's memory and the total."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_view

PROGRAM = Path(__file__).parent / "programs" / "processes.py"
ROWS = 2000  # programs/processes.py loads this many items in every task


def _run_or_dump(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run `argv` in its own process group; past `timeout`, every process in it is sent
    SIGABRT so that faulthandler prints each one's threads (where a hang waits), and the
    test fails with what they printed."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=cwd, start_new_session=True,
                               env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)
        out, err = process.communicate(timeout=30)
        pytest.fail(f"{argv} did not end in {timeout} s; its threads:\n{err}\n{out}")
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


@pytest.mark.parametrize(("how", "options"), [
    ("pool-fork", ()), ("pool-fork", ("--trace-depth", "4")), ("executor-spawn", ())])
def test_children_are_followed_and_reported(tmp_path, how, options):
    db = str(tmp_path / "items.sqlite3")
    plain = subprocess.run([sys.executable, str(PROGRAM), how, db], capture_output=True,
                           text=True, check=False, cwd=tmp_path, timeout=120)
    run = _run_or_dump([sys.executable, "-m", "sqldiag", "run", *options, str(PROGRAM), how,
                        db], cwd=tmp_path, timeout=300)
    assert plain.returncode == 3 and run.returncode == 3, run.stderr
    assert run.stdout == plain.stdout  # the program's own output, unchanged
    assert f"(3, {ROWS}, " in run.stdout

    run_dir = next((tmp_path / "reports").iterdir())
    record = run_view(run_dir)
    children = record["processes"]["children"]
    method = how.split("-")[1]
    assert len(children) == 2, children
    assert {child["start_method"] for child in children} == {method}
    assert len({child["pid"] for child in children}) == 2
    main_orm = record["categories"]["peak"]["orm_objects"]
    # Untraced, a forked child is only sampled: a census would refer to every object it
    # inherited and copy its parent's pages. Traced, or spawned, it explains itself.
    explained = method != "fork" or bool(options)
    for child in children:
        assert child["peak_rss"] > 0 and child["peak_uss"] > 0
        if how.startswith("executor"):
            assert child["failure"] is None  # the executor stops its workers by message
        if not explained:
            assert not child["categories"], child["categories"]
            continue
        peak = child["categories"]["peak"]
        # each worker loaded all the items through the ORM at least once
        assert peak["orm_objects"] > ROWS * 300, peak
        assert peak["driver_rows"] > ROWS * 100, peak
        assert peak["identity_map"] > 0
        assert main_orm < peak["orm_objects"] / 5  # the parent itself loaded nothing
    if method == "spawn":  # the children's statements, from the line in their own code
        load = next(q for q in record["queries"] if q["function"] == "load")
        assert load["executions"] == 4 and load["categories"]["orm_objects"] > ROWS * 300
        assert load["source"] == "items = session.query(Item).all()"
    assert any("child processes were followed" in line for line in record["verdict"])
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<h2>Processes</h2>" in html
    for child in children:
        assert f'<td class="num">{child["pid"]}</td>' in html
    assert "processes (each at its own peak)" in run.stderr
    _names_are_inert(run_dir)


def _names_are_inert(run_dir) -> None:
    """A child's name is the program's to choose: markup in it is shown, not obeyed."""
    import io
    from dataclasses import replace

    from rich.console import Console

    from sqldiag.analysis.analyse import analyse
    from sqldiag.record.parts import Holder, HoldersAt, Retention, RunParams
    from sqldiag.record.store import load_record
    from sqldiag.reporters.html import render
    from sqldiag.reporters.terminal import print_summary

    name = "[bold red]<img src=x onerror=alert(1)>"
    record = load_record(run_dir)
    children = record.processes.children
    record = replace(
        record,
        processes=replace(record.processes,
                          children=(replace(children[0], name=name), *children[1:])),
        scenario=replace(record.scenario, params=RunParams(rows=1, workers=1)),
        retention=Retention(rows=1, peak=HoldersAt(name, 1, (Holder(name, 1, 1 << 20),))))
    analysis = analyse(record)
    assert analysis.kept_alive_peak is not None
    html = render(record, analysis)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    out = io.StringIO()
    print_summary(record, analysis, Console(file=out, width=400, color_system=None))
    assert name in out.getvalue()


def test_children_are_not_followed_when_asked(tmp_path):
    script = tmp_path / "one_child.py"
    script.write_text("import multiprocessing\n\n\ndef work():\n    pass\n\n\n"
                      "if __name__ == '__main__':\n"
                      "    child = multiprocessing.get_context('spawn').Process(target=work)\n"
                      "    child.start()\n    child.join()\n    print(child.exitcode)\n")
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--no-follow", str(script)],
                         capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and run.stdout == "0\n", run.stderr
    record = run_view(next((tmp_path / "reports").iterdir()))
    assert record["processes"]["children"] == []


def _run_source(tmp_path: Path, name: str, source: str) -> subprocess.CompletedProcess:
    """`sqldiag run` of a program written from `source`; it must succeed."""
    program = tmp_path / name
    program.write_text(source)
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", str(program)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=180,
                         check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


OS_FORK = '''import os, sys, time
pid = os.fork()  # as gunicorn starts its workers: not multiprocessing, not followed
if pid == 0:
    hog = [str(i) * 40 for i in range(1_000_000)]  # about 70 MB in the child
    time.sleep(1.0)
    sys.exit(0)  # unwinds through whatever called the program, as a worker's end does
os.waitpid(pid, 0)
print("parent done")
'''


def test_an_os_fork_child_ends_as_alone_and_its_peak_is_reported(tmp_path):
    """A child forked with os.fork() that leaves the program's code by sys.exit() ends
    there, as it would alone, instead of ending the parent's measurement in its place
    (it wrote over the parent's result); the watcher reports its peak RSS."""
    run = _run_source(tmp_path, "forks.py", OS_FORK)
    assert run.stdout == "parent done\n" and "Traceback" not in run.stderr, run.stderr[-2000:]
    record = run_view(next((tmp_path / "reports").iterdir()))
    assert record["status"]["complete"], record["status"]
    peaks = record["processes"]["children_peak_rss"]
    assert len(peaks) == 1 and max(peaks.values()) > 50 << 20, peaks
    assert "A child process (not followed) peaked at" in run.stderr


KILLED_WORKER = '''import multiprocessing as mp, os, signal
def work(n):
    data = [str(i) * 20 for i in range(300_000)]  # about 25 MB
    if n == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer takes a worker
    return len(data)
if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=work, args=(n,)) for n in range(2)]
    for p in procs: p.start()
    for p in procs: p.join()
    print("exitcodes", [p.exitcode for p in procs])
'''


def test_a_followed_child_killed_before_it_reported_is_still_named(tmp_path):
    """A worker killed outright writes no measurement of its own; its RSS, sampled from
    outside, is reported instead of it vanishing from the record."""
    run = _run_source(tmp_path, "killed.py", KILLED_WORKER)
    assert run.stdout == "exitcodes [0, -9]\n", run.stdout
    record = run_view(next((tmp_path / "reports").iterdir()))
    followed = {str(child["pid"]) for child in record["processes"]["children"]}
    others = {pid: rss for pid, rss in record["processes"]["children_peak_rss"].items()
              if pid not in followed}
    assert len(followed) == 1 and max(others.values()) > 20 << 20, (followed, others)
    text = " ".join(run.stderr.split())
    assert "not measured in itself (killed before it reported" in text or \
        "not measured in themselves (killed before they reported" in text, text[-1500:]


STRAY_SIGTERM = '''import multiprocessing as mp, signal, threading, time
def work(lock):
    def stray():
        time.sleep(0.5)  # the main thread is waiting for the lock by now
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    threading.Thread(target=stray).start()
    lock.acquire()  # held by the parent: waits until the process ends
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    lock = ctx.Lock()
    lock.acquire()
    child = ctx.Process(target=work, args=(lock,))
    child.start()
    child.join(60)
    print("exitcode", child.exitcode)
'''


def test_a_sigterm_that_misses_the_waiting_main_thread_still_ends_the_child(tmp_path):
    """A followed child's SIGTERM handler runs in its main thread only. A signal taken
    while that thread is about to wait (here, by another thread) interrupts nothing and
    the wait never ends: Pool.terminate() then joined such a worker forever (1 run in 60
    under load). Alone, the child dies of the signal at once; followed, it must still
    write its measurement and then die of it."""
    run = _run_source(tmp_path, "stray.py", STRAY_SIGTERM)
    assert run.stdout == "exitcode -15\n", (run.stdout, run.stderr[-2000:])
    record = run_view(next((tmp_path / "reports").iterdir()))
    children = record["processes"]["children"]
    assert len(children) == 1 and "SIGTERM" in (children[0]["failure"] or ""), children


FORKED_GRANDCHILD = '''import multiprocessing as mp, os, signal, time
def work():
    pid = os.fork()
    if pid == 0:  # a grandchild with a SIGTERM handler of its own, as a server's worker
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        time.sleep(5)
        os._exit(1)
    time.sleep(0.3)
    os.kill(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
    time.sleep(0.5)
    print("the child outlived its grandchild's SIGTERM", flush=True)
if __name__ == "__main__":
    child = mp.get_context("fork").Process(target=work)
    child.start()
    child.join(60)
    print("exitcode", child.exitcode)
'''


def test_a_grandchilds_sigterm_does_not_end_the_followed_child(tmp_path):
    """A followed child learns of its signals through a wakeup fd that a child it forks
    inherits: a SIGTERM that grandchild takes must not be sent on to the child."""
    run = _run_source(tmp_path, "grandchild.py", FORKED_GRANDCHILD)
    assert run.stdout == ("the child outlived its grandchild's SIGTERM\nexitcode 0\n"), (
        run.stdout, run.stderr[-2000:])


def test_a_capture_in_the_program_is_not_reported_as_its_child(tmp_path):
    """A capture() in the program (a pytest run with marked tests under `sqldiag run`)
    starts a watcher process of its own: neither run reports the other's watcher as a
    child of the program."""
    script = tmp_path / "nested.py"
    script.write_text("import time\nimport sqldiag\n\n"
                      "with sqldiag.capture(name='inner', reports_dir='inner'):\n"
                      "    keep = [str(i) for i in range(100_000)]\n"
                      "    time.sleep(0.6)\nprint('done')\n")
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", str(script)],
                         capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and run.stdout == "done\n", run.stderr
    assert "child process" not in run.stderr
    outer = run_view(next((tmp_path / "reports").iterdir()))
    inner = run_view(next((tmp_path / "inner").iterdir()))
    assert outer["processes"]["children_peak_rss"] == {}
    assert inner["processes"]["children_peak_rss"] == {}
