"""Ask a live process for a snapshot over its socket (see server.py)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from sqldiag.errors import SqldiagError
from sqldiag.live.paths import process_owner, socket_path
from sqldiag.record.parts import Record

MAX_ANSWER = 256 << 20  # a record is a few MB at most; more is not an answer of ours


def _ask(pid: int, request: dict, timeout: float, socket_dir: str | Path | None) -> dict:
    owner = process_owner(pid)
    if os.getuid() not in (owner, 0):
        raise SqldiagError(f"process {pid} runs as another user (uid {owner}): only its "
                           "own user or root may ask it for a snapshot")
    path = socket_path(pid, owner, socket_dir)
    try:
        path.lstat()
    except FileNotFoundError:
        raise SqldiagError(
            f"process {pid} has not opted in: no sqldiag socket at {path} (call "
            "sqldiag.install() in it, or start it with `sqldiag run --live`)") from None
    except PermissionError:
        raise SqldiagError(f"not allowed to look in {path.parent}: only the process's own "
                           "user or root may ask it") from None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
            conn.sendall(json.dumps(request).encode("utf-8") + b"\n")
            chunks, size = [], 0
            while chunk := conn.recv(1 << 20):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise SqldiagError(f"process {pid} answered more than "
                                       f"{MAX_ANSWER >> 20} MB: not a snapshot")
        except PermissionError:
            raise SqldiagError(f"not allowed to open {path}: only the process's own user "
                               "or root may ask it") from None
        except ConnectionRefusedError:
            raise SqldiagError(f"process {pid} is not listening on {path} (it stopped "
                               "sqldiag, or the socket is left from an earlier process)") from None
        except TimeoutError:
            raise SqldiagError(f"process {pid} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise SqldiagError(f"cannot talk to process {pid} at {path}: "
                               f"{exc.strerror or exc}") from None
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise SqldiagError(f"process {pid} sent an answer that is not JSON") from None
    if not isinstance(answer, dict):
        raise SqldiagError(f"process {pid} sent an answer that is not a JSON object")
    if not answer.get("ok"):
        raise SqldiagError(f"process {pid}: {answer.get('error', 'no reason given')}")
    return answer


def ping(pid: int, timeout: float = 5.0, socket_dir: str | Path | None = None) -> dict:
    """The process's pid and sqldiag version, if it listens."""
    return _ask(pid, {"command": "ping"}, timeout, socket_dir)


def request_snapshot(pid: int, holders: bool = False, timeout: float = 120.0,
                     socket_dir: str | Path | None = None) -> Record:
    """A snapshot record of process `pid` (validated as any record: no code runs)."""
    answer = _ask(pid, {"command": "snapshot", "holders": holders}, timeout, socket_dir)
    return Record.from_json(answer.get("record"), where=f"the snapshot of process {pid}")
