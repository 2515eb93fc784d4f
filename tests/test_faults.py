"""Faults mid-run and bad input: one clear line, a documented exit code, and the partial
record written and marked incomplete."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_view

SLOW_SCENARIO = '''"""Marks a phase, then waits to be interrupted."""
import time

def run(ctx):
    ctx.mark("started")
    time.sleep(60)
'''


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sqldiag", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, XDG_CACHE_HOME=str(cwd / "cache")))


@pytest.mark.parametrize(("sig", "reason"), [(signal.SIGINT, "interrupted by Ctrl-C"),
                                             (signal.SIGTERM, "terminated by SIGTERM")])
def test_signal_mid_run_keeps_partial_record(tmp_path, sqlite_url, sig, reason):
    scenario = tmp_path / "slow.py"
    scenario.write_text(SLOW_SCENARIO)
    proc = _start(["scenario", str(scenario), "--url", sqlite_url, "--rows", "100",
                   "--workers", "1"], tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the bare pass runs the scenario
        time.sleep(0.3)
        if any(p.name == "python" or "python" in " ".join(p.cmdline())
               for p in _children(proc.pid)):
            time.sleep(2.0)
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"run incomplete: {reason}" in err
    assert "Traceback" not in err
    run_dir = next((tmp_path / "reports").iterdir())
    record = run_view(run_dir)
    assert record["status"] == {"complete": False, "reason": record["status"]["reason"],
                                "exit_code": 130}
    assert reason in record["status"]["reason"]
    assert "started" in [p["name"] for p in record["phases"]]
    assert "Incomplete run" in (run_dir / "report.html").read_text()


def _children(pid: int):
    import psutil
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_memory_guard_stops_the_workload_and_keeps_the_record(cli, sqlite_url, tmp_path):
    scenario = tmp_path / "hog.py"
    scenario.write_text('''"""Allocates without end."""
def run(ctx):
    ctx.mark("hogging")
    hog = []
    while True:
        hog.append(bytearray(1 << 20))
''')
    result = cli("scenario", str(scenario), "--url", sqlite_url, "--rows", "100",
                 "--workers", "1", "--max-rss", "300MB")
    assert result.code == 4, result.stderr
    assert "stopped by the memory guard" in result.stderr
    record = run_view(next((tmp_path / "reports").iterdir()))
    assert not record["status"]["complete"]
    assert "passed --max-rss 300 MB" in record["status"]["reason"]
    assert max(record["timeline"]["rss"]) < 600 << 20


def test_server_that_never_answers_times_out(cli, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # accepts TCP, never says a word
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    started = time.monotonic()
    result = cli("scenario", "leak_repro", "--url", f"mysql+pymysql://root@127.0.0.1:{port}/test",
                 "--connect-timeout", "2")
    elapsed = time.monotonic() - started
    listener.close()
    assert result.code == 1
    assert result.stderr.strip().startswith("sqldiag: error: cannot connect to mysql+pymysql://")
    assert elapsed < 30


def test_refused_connection_is_one_line(cli):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once closed
    result = cli("scenario", "leak_repro", "--url",
                 f"postgresql+psycopg://root@127.0.0.1:{port}/test")
    assert result.code == 1
    assert "cannot connect" in result.stderr and result.stderr.count("\n") == 1


def test_missing_database_is_one_line(cli, mysql_url):
    result = cli("scenario", "leak_repro", "--url", mysql_url.rsplit("/", 1)[0] + "/no_such_db")
    assert result.code == 1
    assert "cannot connect" in result.stderr and "no_such_db" in result.stderr


def test_read_only_database_is_one_line(cli, sqlite_url, tmp_path):
    path = sqlite_url.split("///", 1)[1]
    result = cli("scenario", "leak_repro", "--url", f"sqlite:///file:{path}?mode=ro&uri=true",
                 "--rows", "777", "--table", "ro_users")
    assert result.code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sqldiag: error: the database refused to prepare table 'ro_users'")
    assert "readonly" in last and "Traceback" not in result.stderr


def test_table_of_another_shape_stops_the_run_untouched(cli, sqlite_url):
    from sqlalchemy import create_engine, text

    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS shop_users (id INTEGER PRIMARY KEY, "
                          "login TEXT)"))
    result = cli("scenario", "leak_repro", "--url", sqlite_url, "--table", "shop_users")
    assert result.code == 1
    assert "exists with another shape" in result.stderr and "--table" in result.stderr
    with engine.connect() as conn:
        columns = [row[1] for row in conn.execute(text("PRAGMA table_info(shop_users)"))]
    assert columns == ["id", "login"]
    engine.dispose()


def test_url_of_an_unknown_dialect_is_one_line(cli):
    out = cli("scenario", "leak_repro", "--url", "nonsense://x@", "--rows", "10")
    assert out.code == 1
    assert out.stderr.strip() == "sqldiag: error: SQLAlchemy has no dialect 'nonsense' (in " \
                                 "'nonsense://x@')"


_ENDS_OUTRIGHT = '''import os, signal, sys, time
kept = [str(i) * 40 for i in range(250_000)]  # ~18 MB of strings, held by a global
time.sleep(1.0)  # a census sees them
print("built", flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer ends a process
os._exit(3)
'''


@pytest.mark.parametrize("how, code", [("kill", 137), ("os_exit", 3)])
def test_a_program_ended_outright_keeps_what_was_measured(tmp_path, how, code):
    """SIGKILL (the OOM killer's) leaves no chance to write a result: the last census and
    the watcher's RSS samples to the end make the record. The program's own os._exit(n)
    ends the measurement first, a complete run with its exit code."""
    program = tmp_path / "ends.py"
    program.write_text(_ENDS_OUTRIGHT)
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--json", str(program),
                          how], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         check=False)
    assert run.returncode == code, run.stderr[-2000:]
    assert run.stdout.startswith("built\n"), run.stdout[:200]
    out = json.loads(run.stdout[run.stdout.index("{"):])
    status = out["status"]
    assert status["exit_code"] == code, status
    assert status["complete"] is (how == "os_exit"), status
    if how == "kill":
        assert "killed by SIGKILL" in status["reason"], status
    summary = out["summary"]
    assert summary["peak_rss"] - summary["start_rss"] > 15 << 20, summary
    assert out["categories"]["peak"]["other_python"] > 15 << 20, out["categories"]["peak"]
    assert (Path(out["run_dir"]) / "report.html").exists()


def test_a_program_deaf_to_the_memory_guard_is_killed_and_kept(tmp_path):
    """The guard asks with SIGUSR1, then kills 5 s later (SIGKILL): the record is made
    from the last census and the RSS to the end, and says it was the guard."""
    program = tmp_path / "deaf.py"
    program.write_text("import signal, time\n"
                       "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
                       "kept = [str(i) * 40 for i in range(1_000_000)]\n"
                       "time.sleep(60)\n")
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--json", "--max-rss",
                          "60MB", str(program)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120, check=False)
    assert run.returncode == 4, run.stderr[-2000:]
    out = json.loads(run.stdout[run.stdout.index("{"):])
    assert out["status"]["exit_code"] == 4 and not out["status"]["complete"], out["status"]
    assert "memory guard" in out["status"]["reason"] and "killed" in out["status"]["reason"]
    assert out["summary"]["peak_rss"] > 60 << 20, out["summary"]
    assert out["categories"]["peak"]["other_python"] > 30 << 20, out["categories"]["peak"]
