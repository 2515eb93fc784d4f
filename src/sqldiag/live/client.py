"""Ask a live process for a snapshot over its socket (see server.py)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqldiag.errors import SqldiagError
from sqldiag.live.paths import process_owner, socket_path
from sqldiag.record.parts import Record

MAX_ANSWER = 256 << 20  # a record is a few MB at most; more is not an answer of ours


class Pending:
    """A request sent to a live process; answer() waits for what it says."""

    def __init__(self, pid: int, request: dict, timeout: float,
                 socket_dir: str | Path | None) -> None:
        self.pid = pid
        owner = process_owner(pid)
        if os.getuid() not in (owner, 0):
            raise SqldiagError(f"process {pid} runs as another user (uid {owner}): only its "
                               "own user or root may ask it for a snapshot")
        self.path = path = socket_path(pid, owner, socket_dir)
        try:
            path.lstat()
        except FileNotFoundError:
            raise SqldiagError(
                f"process {pid} has not opted in: no sqldiag socket at {path} (call "
                "sqldiag.install() in it, or start it with `sqldiag run --live`)") from None
        except PermissionError:
            raise SqldiagError(f"not allowed to look in {path.parent}: only the process's "
                               "own user or root may ask it") from None
        self.timeout = timeout
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.settimeout(timeout)
        with self._talking():
            self.conn.connect(str(path))
            self.conn.sendall(json.dumps(request).encode("utf-8") + b"\n")

    @contextmanager
    def _talking(self) -> Iterator[None]:
        """Socket errors as one line for the user; the connection closed on any."""
        pid, path = self.pid, self.path
        try:
            yield
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, PermissionError):
                raise SqldiagError(f"not allowed to open {path}: only the process's own "
                                   "user or root may ask it") from None
            if isinstance(exc, ConnectionRefusedError):
                raise SqldiagError(f"process {pid} is not listening on {path} (it stopped "
                                   "sqldiag, or the socket is left from an earlier "
                                   "process)") from None
            if isinstance(exc, TimeoutError):
                raise SqldiagError(f"process {pid} did not answer within "
                                   f"{self.timeout:g} s") from None
            if isinstance(exc, OSError):
                raise SqldiagError(f"cannot talk to process {pid} at {path}: "
                                   f"{exc.strerror or exc}") from None
            raise

    def answer(self) -> dict:
        pid = self.pid
        chunks, size = [], 0
        with self._talking():
            while chunk := self.conn.recv(1 << 20):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise SqldiagError(f"process {pid} answered more than "
                                       f"{MAX_ANSWER >> 20} MB: not a snapshot")
        self.conn.close()
        try:
            answer = json.loads(b"".join(chunks))
        except ValueError:
            raise SqldiagError(f"process {pid} sent an answer that is not JSON") from None
        if not isinstance(answer, dict):
            raise SqldiagError(f"process {pid} sent an answer that is not a JSON object")
        if not answer.get("ok"):
            raise SqldiagError(f"process {pid}: {answer.get('error', 'no reason given')}")
        return answer

    def record(self) -> Record:
        """The snapshot record (validated as any record: no code runs)."""
        return Record.from_json(self.answer().get("record"),
                                where=f"the snapshot of process {self.pid}")


def ping(pid: int, timeout: float = 5.0, socket_dir: str | Path | None = None) -> dict:
    """The process's pid and sqldiag version, if it listens."""
    return Pending(pid, {"command": "ping"}, timeout, socket_dir).answer()


def start_snapshot(pid: int, holders: bool = False, timeout: float = 120.0,
                   socket_dir: str | Path | None = None) -> Pending:
    """Ask process `pid` for a snapshot; .record() waits for it."""
    return Pending(pid, {"command": "snapshot", "holders": holders}, timeout, socket_dir)


def request_snapshot(pid: int, holders: bool = False, timeout: float = 120.0,
                     socket_dir: str | Path | None = None) -> Record:
    """A snapshot record of process `pid`."""
    return start_snapshot(pid, holders, timeout, socket_dir).record()
