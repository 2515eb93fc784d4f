"""Entry point of a measuring child process: `python -m sqldiag.child SPEC OUT`.

The parent passes the pass spec as a JSON file and the database URL in the
SQLDIAG_CHILD_URL environment variable (never on the command line or on disk). The
child always writes its result to OUT, complete or not, and exits 0 when complete.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from sqldiag.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MEMORY_GUARD,
    EXIT_OK,
    SqldiagError,
)
from sqldiag.measure import Interrupted, MeasuredPass, PassSpec
from sqldiag.record import write_atomic
from sqldiag.redact import scrub

URL_ENV = "SQLDIAG_CHILD_URL"


def _on_sigterm(signum, frame) -> None:
    raise Interrupted()


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = PassSpec(**json.loads(spec_path.read_text(encoding="utf-8")))
    url = make_url(os.environ.pop(URL_ENV, ""))
    password = url.password or ""
    signal.signal(signal.SIGTERM, _on_sigterm)
    measured = MeasuredPass(spec)

    def memory_guard(measured_pass: MeasuredPass) -> None:
        # From the sampler thread: the workload's threads cannot be stopped safely, so
        # the result is written now and the process ends before it takes the machine.
        write_atomic(out_path, json.dumps(measured_pass.result()).encode("utf-8"))
        os._exit(EXIT_MEMORY_GUARD)

    measured.on_memory_guard = memory_guard
    code = EXIT_OK
    try:
        measured.execute(url)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second one must not lose the result
        measured.failure, code = "interrupted by Ctrl-C (SIGINT)", EXIT_INTERRUPTED
    except Interrupted:
        measured.failure, code = "terminated by SIGTERM", EXIT_INTERRUPTED
    except SqldiagError as exc:
        measured.failure, code = str(exc), EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the scenario is user code
        where = "the scenario raised" if measured.in_workload else "setting up the run failed:"
        measured.failure, code = f"{where} {type(exc).__name__}: {exc}", EXIT_ERROR
    if measured.failure:
        measured.failure = scrub(measured.failure, (password,))
    write_atomic(out_path, json.dumps(measured.result()).encode("utf-8"))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
