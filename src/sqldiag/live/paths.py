"""Where a live process's snapshot socket lives, and the checks that keep it private.

Each process that called `sqldiag.install()` listens on `<dir>/<pid>.sock`, where `<dir>`
is `$SQLDIAG_SOCKET_DIR` or `/tmp/sqldiag-<uid>` for the process's own user: a directory
only that user may enter (0700, owned by them), holding sockets only they may open
(0600). `sqldiag snapshot PID` looks in the directory of the process's owner.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqldiag.errors import SqldiagError

ENV_DIR = "SQLDIAG_SOCKET_DIR"


def socket_dir(uid: int | None = None, override: str | Path | None = None) -> Path:
    """The socket directory for processes of `uid` (this process's user by default)."""
    chosen = override or os.environ.get(ENV_DIR)
    if chosen:
        return Path(chosen)
    return Path("/tmp") / f"sqldiag-{os.getuid() if uid is None else uid}"


def socket_path(pid: int, uid: int | None = None, override: str | Path | None = None) -> Path:
    return socket_dir(uid, override) / f"{pid}.sock"


def private_dir(path: Path) -> Path:
    """Create `path` (0700) or check an existing one: a directory owned by this user that
    no one else may write to, so that no other user can put a socket of theirs in it."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise SqldiagError(f"cannot create the socket directory {path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise SqldiagError(f"{path} is not a directory (a symbolic link or a file)")
    if info.st_uid != os.getuid():
        raise SqldiagError(f"{path} belongs to another user (uid {info.st_uid}): "
                           f"set {ENV_DIR} to a directory of your own")
    if info.st_mode & 0o077:
        raise SqldiagError(f"{path} may be opened by other users (mode "
                           f"{stat.S_IMODE(info.st_mode):o}): make it 0700")
    return path


def process_owner(pid: int) -> int:
    """The uid a process runs as; a one-line error when there is no such process."""
    try:
        return Path(f"/proc/{pid}").stat().st_uid
    except FileNotFoundError:
        raise SqldiagError(f"there is no process {pid}") from None
    except OSError as exc:
        raise SqldiagError(f"cannot look at process {pid}: {exc.strerror}") from exc


def alive(pid: int) -> bool:
    """Whether a process `pid` exists (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
