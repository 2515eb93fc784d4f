"""`sqldiag.capture()` as a user calls it: more than once in one process, and as a
decorator."""

from __future__ import annotations

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
