"""A running service: sqldiag.install(), `sqldiag snapshot PID`, metrics for a fleet.

tests/programs/live_service.py stands for the service: it loads a table into a module
cache (kept for good), calls install() and keeps running until its stdin closes. Each
test asks it the way a user would, from another process.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"
SERVICE = PROGRAMS / "live_service.py"
ROWS = 3000
CATEGORIES = ("orm_objects", "identity_map", "driver_rows", "result_lists")


class Service:
    """The service program, running; ended (stdin closed) by stop()."""

    def __init__(self, tmp_path: Path, *flags: str, env: dict | None = None,
                 rows: int = ROWS) -> None:
        self.env = dict(os.environ, SQLDIAG_SOCKET_DIR=str(tmp_path / "sockets"), **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVICE), str(tmp_path / "service.sqlite3"), str(rows),
             *flags], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=self.env, cwd=tmp_path)
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), line + self.proc.stderr.read()
        self.pids = [int(p) for p in line.split()[1:]]
        self.pid = self.pids[0]

    def send(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def stop(self) -> str:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        return self.proc.stderr.read()


@pytest.fixture
def service(tmp_path):
    started: list[Service] = []

    def start(*flags: str, **kwargs) -> Service:
        running = Service(tmp_path, *flags, **kwargs)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def _snapshot(cli, pid: int, *args: str, env: dict | None = None):
    return cli("snapshot", str(pid), "--json", *args, env=env)


def _line_of(text: str) -> int:
    return next(n for n, line in enumerate(SERVICE.read_text().splitlines(), 1) if text in line)


def test_a_snapshot_says_what_the_service_holds_and_which_line_loaded_it(tmp_path, cli,
                                                                         service):
    running = service("--install")
    done = _snapshot(cli, running.pid, env=running.env)
    assert done.code == 0, done.stderr
    out = done.json()
    peak = out["categories"]["peak"]
    assert peak["orm_objects"] > ROWS * 300, peak
    top = out["queries"][0]
    assert top["file"].endswith("live_service.py") and top["function"] == "load_customers"
    assert top["line"] == _line_of("].query(Customer)")
    assert top["objects"] == ROWS
    for category in CATEGORIES:
        assert top["categories"].get(category, 0) >= 0.9 * peak[category], (category, top)
    live = out["snapshot"]
    assert live["pid"] == running.pid and 0 <= live["paused_s"] <= live["seconds"]
    assert live["census_s"] > 0
    run_dir = Path(out["run_dir"])
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"A snapshot of running process {running.pid}" in html
    assert "s3cret-literal" not in html + (run_dir / "record.json").read_text()
    assert running.send("still there?") == "loaded\n"  # it kept serving
    assert running.stop() == ""  # and nothing of sqldiag's went to its stderr


def test_the_socket_is_private_and_a_process_that_did_not_opt_in_is_left_alone(
        tmp_path, cli, service):
    running = service("--install")
    folder = tmp_path / "sockets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / f"{running.pid}.sock").stat().st_mode) == 0o600
    plain = service()  # never called install()
    done = _snapshot(cli, plain.pid, env=plain.env)
    assert done.code == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"process {plain.pid} has not opted in" in done.stderr
    assert plain.send("x") == "loaded\n"
    gone = _snapshot(cli, 2**22 + 12345)
    assert gone.code == 1 and "there is no process" in gone.stderr
    running.stop()
    assert not (folder / f"{running.pid}.sock").exists()  # removed at exit


def _as_nobody(action) -> int:
    """Run `action()` in a forked child that became user nobody; its exit code: 0 when it
    returned True, 1 when False, 2 when it raised."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = 0 if action() else 1
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to ask as another user")
def test_another_user_is_refused(tmp_path, service):
    from sqldiag.errors import SqldiagError
    from sqldiag.live.client import request_snapshot

    running = service("--install")
    os.chmod(tmp_path, 0o755)

    def refused_by_the_client() -> bool:
        try:
            request_snapshot(running.pid, socket_dir=tmp_path / "sockets")
        except SqldiagError as exc:
            return "runs as another user" in str(exc)
        return False

    def refused_by_the_socket() -> bool:  # past the client's own check
        with socket.socket(socket.AF_UNIX) as raw:
            try:
                raw.connect(str(tmp_path / "sockets" / f"{running.pid}.sock"))
            except PermissionError:
                return True
        return False

    assert _as_nobody(refused_by_the_client) == 0
    assert _as_nobody(refused_by_the_socket) == 0
    assert running.send("x") == "loaded\n"


def test_the_server_refuses_a_peer_of_another_uid(tmp_path, service):
    """SO_PEERCRED: a peer that got hold of the socket is still refused (simulated by a
    server that takes this process's own uid for a stranger's)."""
    from sqldiag.live import server as serving

    class Stranger(serving.SnapshotServer):
        pass

    a, b = socket.socketpair()
    with a, b:
        original = serving.peer_uid
        serving.peer_uid = lambda conn: os.getuid() + 1 if os.getuid() != 0 else 12345
        try:
            b.sendall(b'{"command": "ping"}\n')
            Stranger(None, tmp_path / "x.sock")._answer(a)  # type: ignore[arg-type]
        finally:
            serving.peer_uid = original
        answer = json.loads(b.recv(4096))
    assert answer == {"ok": False, "error": "only the process's own user or root may ask"}


def test_snapshots_of_a_growing_service_diff_to_what_grew(tmp_path, cli, service):
    running = service("--install", "--grow")
    first = _snapshot(cli, running.pid, "--name", "svc", env=running.env)
    assert first.code == 0, first.stderr
    assert running.send("grow") == "loaded\n"
    second = _snapshot(cli, running.pid, "--name", "svc", env=running.env)
    assert second.code == 0, second.stderr
    a, b = first.json()["categories"]["peak"], second.json()["categories"]["peak"]
    assert 1.7 < b["orm_objects"] / a["orm_objects"] < 2.3, (a, b)
    diff = cli("diff", first.json()["run_dir"], second.json()["run_dir"], "--json")
    assert diff.code == 0, diff.stderr
    grown = {row["name"]: row for row in diff.json()["categories"]["peak"]}
    assert grown["orm_objects"]["delta"] > ROWS * 300, grown["orm_objects"]
    query = diff.json()["queries"][0]
    assert query["function"] == "load_customers" and query["delta"] > ROWS * 300, query


def test_every_and_count_take_a_series(tmp_path, cli, service):
    running = service("--install")
    done = cli("snapshot", str(running.pid), "--every", "200ms", "--count", "3",
               "--name", "series", env=running.env)
    assert done.code == 0, done.stderr
    folders = sorted((tmp_path / "reports").glob("series-*"))
    assert len(folders) == 3, folders
    bad = cli("snapshot", str(running.pid), "--count", "2", env=running.env)
    assert bad.code == 1 and "--count above 1 needs --every" in bad.stderr
    assert cli("snapshot", str(running.pid), "--every", "0s").code == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _scrape(port: int, want, timeout: float = 30.0) -> str:
    """/metrics once `want(text)` holds (censuses refresh every 0.3 s)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            text = page.read().decode()
        if want(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"metrics never matched; last:\n{text}")


def _series(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name):]] = float(value)
    return out


def test_metrics_of_pre_fork_workers_each_their_own_series(tmp_path, cli, service):
    port = _free_port()
    running = service("--metrics", str(port), "--forks", "2")
    parent, workers = running.pid, running.pids[1:]

    def all_loaded(text: str) -> bool:
        orm = _series(text, "sqldiag_category_bytes")
        return all(orm.get(f'{{category="orm_objects",pid="{w}"}}', 0) > ROWS * 300
                   for w in workers)

    text = _scrape(port, all_loaded)
    rss = _series(text, "sqldiag_rss_bytes")
    assert {f'{{pid="{p}"}}' for p in [parent, *workers]} <= set(rss), rss
    queries = _series(text, "sqldiag_query_bytes")
    line = _line_of("].query(Customer)")
    for worker in workers:
        held = [value for key, value in queries.items() if f'pid="{worker}"' in key
                and 'function="load_customers"' in key and f'live_service.py:{line}"' in key]
        assert held and held[0] > ROWS * 300, queries
    # the listener is on the loopback only
    with pytest.raises(OSError):
        socket.create_connection((_outside_address(), port), timeout=2).close()
    # a worker answers snapshots as itself
    done = _snapshot(cli, workers[0], env=running.env)
    assert done.code == 0, done.stderr
    assert done.json()["snapshot"]["pid"] == workers[0]
    running.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def _outside_address() -> str:
    """An address of this machine other than the loopback, or skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
        except OSError:
            pytest.skip("no address but the loopback")
        address = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("no address but the loopback")
    return address


def test_run_live_lets_a_program_started_by_sqldiag_run_be_asked(tmp_path, cli):
    env = dict(os.environ, SQLDIAG_SOCKET_DIR=str(tmp_path / "sockets"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqldiag", "run", "--live", "--name", "program", str(SERVICE),
         str(tmp_path / "db.sqlite3"), str(ROWS)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        ready = proc.stdout.readline()
        assert ready.startswith("ready"), ready + proc.stderr.read()
        pid = int(ready.split()[1])
        done = _snapshot(cli, pid, env=env)
        assert done.code == 0, done.stderr
        assert done.json()["categories"]["peak"]["orm_objects"] > ROWS * 300
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
        stderr = proc.stderr.read()
        assert f"`sqldiag snapshot {pid}`" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "reports").glob("program-*")


def test_opentelemetry_gets_the_same_figures(tmp_path):
    code = f"""
import sys
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
sys.argv = ["live_service.py", {str(tmp_path / 'db.sqlite3')!r}, "{ROWS}"]
sys.path.insert(0, {str(PROGRAMS)!r})
import live_service, sqlalchemy, time
engine = sqlalchemy.create_engine("sqlite:///" + sys.argv[1])
live_service.seed(engine, {ROWS})
import sqldiag
sqldiag.install(opentelemetry=True, metrics_interval=0.2)
live_service.load_customers(engine)
deadline = time.monotonic() + 30
seen = {{}}
while time.monotonic() < deadline and seen.get("orm_objects", 0) <= {ROWS * 300}:
    time.sleep(0.3)
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "sqldiag.category.bytes":
                    for point in metric.data.data_points:
                        seen[point.attributes["category"]] = point.value
print(seen.get("orm_objects", 0))
"""
    env = dict(os.environ, SQLDIAG_SOCKET_DIR=str(tmp_path / "sockets"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) > ROWS * 300, done.stdout


def test_install_without_an_sdk_meter_provider_says_so(tmp_path):
    code = "import sqldiag; sqldiag.install(opentelemetry=True)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, SQLDIAG_SOCKET_DIR=str(tmp_path / "s")),
                          timeout=60, check=False)
    assert done.returncode == 1 and "no OpenTelemetry SDK MeterProvider" in done.stderr
