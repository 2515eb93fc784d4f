"""The snapshot socket of a process that called install(): one thread waiting in
accept() (no CPU while nobody asks), answering one request at a time.

A request is one JSON line, `{"command": "snapshot", "holders": false}` or
`{"command": "ping"}`; the answer is one JSON document, `{"ok": true, "record": {...}}`
or `{"ok": false, "error": "..."}`, after which the connection is closed. Only a peer
running as this process's user or as root is answered (SO_PEERCRED), on top of the
socket's 0600 mode inside a 0700 directory.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import threading
from pathlib import Path

from sqldiag._version import __version__
from sqldiag.live.paths import alive, private_dir
from sqldiag.live.snapshot import LiveState, take_snapshot

MAX_REQUEST = 4096
REQUEST_TIMEOUT = 5.0  # s a client has to send its request line
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux), or None."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = conn.getsockopt(socket.SOL_SOCKET, option, _UCRED.size)
    return _UCRED.unpack(raw)[1]


def remove_stale(path: Path) -> None:
    """Remove a socket file left by a process that is gone (the same pid, reused)."""
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass


def sweep(folder: Path) -> None:
    """Remove the sockets of processes that are gone (a child that ended with os._exit
    left its socket behind)."""
    for path in folder.glob("*.sock"):
        if path.stem.isdigit() and not alive(int(path.stem)):
            remove_stale(path)


class SnapshotServer:
    def __init__(self, state: LiveState, path: Path) -> None:
        self.state = state
        self.path = path
        self.pid = os.getpid()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        private_dir(self.path.parent)
        sweep(self.path.parent)
        remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(8)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="sqldiag-snapshots",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and remove the socket (only this process's own)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if os.getpid() == self.pid:
            remove_stale(self.path)

    def close_copy(self) -> None:
        """In a forked child: close this process's copy of the parent's socket."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _serve(self) -> None:
        from sqldiag.capture.probes.sampler import leave_signals_to_the_main_thread

        leave_signals_to_the_main_thread()
        while True:
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed by stop()
            with conn:
                try:
                    self._answer(conn)
                except OSError:
                    pass  # the client went away: nothing to tell it

    def _answer(self, conn: socket.socket) -> None:
        uid = peer_uid(conn)
        if uid is not None and uid not in (os.getuid(), 0):
            _send(conn, {"ok": False, "error": "only the process's own user or root may ask"})
            return
        conn.settimeout(REQUEST_TIMEOUT)
        request = _read_request(conn)
        if request is None:
            _send(conn, {"ok": False, "error": "the request is not one JSON object line"})
            return
        conn.settimeout(None)
        command = request.get("command")
        if command == "ping":
            _send(conn, {"ok": True, "pid": os.getpid(), "version": __version__})
        elif command == "snapshot":
            try:
                record = take_snapshot(self.state, holders=bool(request.get("holders", False)))
            except Exception as exc:  # noqa: BLE001 - the service must not die of a failed snapshot
                _send(conn, {"ok": False,
                             "error": f"the snapshot failed: {type(exc).__name__}: {exc}"})
                return
            _send(conn, {"ok": True, "record": record.to_json()})
        else:
            _send(conn, {"ok": False, "error": f"unknown command {command!r}"})


def _read_request(conn: socket.socket) -> dict | None:
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST:
        chunk = conn.recv(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
    try:
        request = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def _send(conn: socket.socket, answer: dict) -> None:
    conn.sendall(json.dumps(answer).encode("utf-8"))
    conn.shutdown(socket.SHUT_WR)
