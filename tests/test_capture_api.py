"""`sqldiag.capture()` as a user calls it: more than once in one process, and as a
decorator."""

from __future__ import annotations

import json
import subprocess
import sys


def test_capture_can_be_used_again_in_the_same_process(tmp_path):
    """The function shares its name with a package of sqldiag's: importing a module of
    that package must not replace it (a second capture failed with "'module' object is
    not callable")."""
    code = f"""
import sqldiag

@sqldiag.capture(name="decorated", reports_dir={str(tmp_path)!r})
def job():
    return [str(i) for i in range(1000)]

for name in ("first", "second"):
    with sqldiag.capture(name=name, reports_dir={str(tmp_path)!r}) as run:
        kept = [str(i) * 10 for i in range(20000)]
    print(name, run.analysis.categories["peak"]["other_python"] > 20000 * 40)
job()
print(sorted(p.name.split("-")[0] for p in __import__("pathlib").Path({str(tmp_path)!r}).iterdir()))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["first True", "second True",
                                       "['decorated', 'first', 'second']"]


def test_capture_samples_rss_while_the_program_holds_the_gil(tmp_path):
    """Untraced, RSS is sampled from outside the process: a long call into C that holds
    the GIL (as a census does) leaves no hole in the timeline."""
    code = f"""
import json, time
import sqldiag

with sqldiag.capture(name="busy", reports_dir={str(tmp_path)!r}) as run:
    started = time.monotonic()
    total = sum(range(40_000_000))  # one call into C: no other thread runs meanwhile
    held = time.monotonic() - started
timeline = run.record.timeline
print(json.dumps({{"held": held, "t": list(timeline.t)}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    gaps = [b - a for a, b in zip(out["t"], out["t"][1:])]
    assert out["held"] > 0.3 and max(gaps) < 0.25, (out["held"], gaps)


def test_the_end_census_is_not_taken_twice_when_nothing_was_collected(tmp_path):
    """A capture whose caller still holds the results: gc.collect() frees nothing, so the
    census after it is the end's (a second listing of every object cost 1.5 s at the
    original report's size); with cyclic garbage to collect, a census is taken again."""
    code = f"""
import gc, json
import sqldiag

gc.disable()  # the cycles wait for the capture's own gc.collect()

class Node:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it

out = {{}}
for name in ("held", "garbage"):
    with sqldiag.capture(name=name, reports_dir={str(tmp_path)!r}) as run:
        kept = [str(i) * 10 for i in range(200_000)]
        if name == "garbage":
            nodes = [Node() for _ in range(100_000)]
            del nodes
    labels = [c.label for c in run.record.measurement.censuses]
    end = run.record.breakdowns["end"].categories
    out[name] = [labels.count("after gc.collect()"), end["other_python"]]
    del kept
print(json.dumps(out))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["held"][0] == 0 and out["held"][1] > 200_000 * 50, out  # the end's, reused
    assert out["garbage"][0] == 1 and out["garbage"][1] > 200_000 * 50, out


def test_a_decorated_coroutine_function_is_measured_while_it_runs(tmp_path):
    """@capture on an async def measured only the call that makes the coroutine (2 ms,
    nothing alive); it now measures the coroutine run to its end."""
    code = f"""
import asyncio, json, sqldiag

@sqldiag.capture(name="async_job", reports_dir={str(tmp_path)!r})
async def job(n):
    data = [str(i) * 20 for i in range(n)]
    await asyncio.sleep(0.2)
    return len(data)

print(asyncio.run(job(300_000)), job.__name__)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["300000", "job"]
    record = json.loads(next(tmp_path.glob("async_job-*/record.json")).read_text())
    assert record["wall_time_s"] >= 0.2, record["wall_time_s"]
    assert record["breakdowns"]["peak"]["categories"]["other_python"] > 300_000 * 60


def test_a_decorated_function_that_threads_call_at_once_measures_each_call(tmp_path):
    """A decorated request handler that several threads run at once: each call gets its
    own measurement and record (the calls shared one: the first to end stopped the
    others' probes and they failed in the program's own call); the decorator object holds
    the last finished call's. One capture() entered twice at once is a clear error."""
    code = f"""
import threading, time
import sqldiag

measure = sqldiag.capture(name="handler", reports_dir={str(tmp_path)!r})

@measure
def handler(n):
    data = [str(i) * 10 for i in range(50_000)]
    started.wait(10)
    time.sleep(0.1 * n)
    return len(data)

started = threading.Barrier(3)
results = []
threads = [threading.Thread(target=lambda n=n: results.append(handler(n))) for n in range(3)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(sorted(results), measure.run_dir.name.startswith("handler"))
block = sqldiag.capture(name="block", reports_dir={str(tmp_path)!r})
with block:
    try:
        with block:
            pass
    except RuntimeError as exc:
        print("nested:", exc)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert run.stdout.splitlines() == [
        "[50000, 50000, 50000] True",
        "nested: capture 'block' is already measuring a block: use one capture() per block"]
    folders = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert folders == ["block", "handler", "handler", "handler"], folders
    for folder in tmp_path.glob("handler-*"):
        record = json.loads((folder / "record.json").read_text())
        assert record["status"]["complete"], record["status"]
