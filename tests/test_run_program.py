"""`sqldiag run`: a user's own program runs as python would run it, and is explained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import run_view

PROGRAM = '''
import sys
import threading
from sqlalchemy import create_engine, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50))
    body: Mapped[str] = mapped_column(Text)


engine = create_engine("sqlite:///" + sys.argv[1])
Base.metadata.drop_all(engine)
Base.metadata.create_all(engine)
with Session(engine) as session:
    session.add_all(Item(id=i, label=f"item {i}", body="x" * 50 + str(i)) for i in range(3000))
    session.commit()

kept = []


def worker():
    with Session(engine) as session:
        kept.append(session.query(Item).all())


threads = [threading.Thread(target=worker) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
line = sys.stdin.readline().strip()
print(f"name={__name__} argv={sys.argv[1:]} loaded={sum(map(len, kept))} stdin={line}")
sys.exit(7)
'''


def test_program_runs_as_python_would_and_is_explained(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(PROGRAM)
    db = str(tmp_path / "app.sqlite3")
    plain = subprocess.run([sys.executable, str(script), db, "--flag"], input="hello\n",
                           capture_output=True, text=True, check=False, cwd=tmp_path)
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", str(script), db, "--flag"],
                         input="hello\n", capture_output=True, text=True, check=False,
                         cwd=tmp_path)
    assert plain.returncode == 7 and run.returncode == 7, run.stderr
    assert run.stdout == plain.stdout  # the program's own output, unchanged
    assert "loaded=9000 stdin=hello" in run.stdout
    assert f"argv=['{db}', '--flag']" in run.stdout and "name=__main__" in run.stdout
    run_dir = next((tmp_path / "reports").iterdir())
    record = run_view(run_dir)
    assert record["scenario"]["source"] == "run"
    peak = record["categories"]["peak"]
    assert peak["orm_objects"] > 3 * 3000 * 300
    assert peak["driver_rows"] > 0
    assert (run_dir / "report.html").is_file()
    assert "record and report" in run.stderr


def test_module_runs_with_dash_m(tmp_path):
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "job.py").write_text(
        "import sys\nprint('job', __name__, sys.argv)\nraise SystemExit(0)\n")
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "-m", "myapp.job", "x"],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("job __main__ [")
    assert run.stdout.rstrip().endswith("'x']")
    assert run_view(next((tmp_path / "reports").iterdir()))["status"]["complete"]


def test_missing_script_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "nope.py"],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip() == "sqldiag: error: no such script: nope.py"
    assert not Path(tmp_path / "reports").exists()


def test_program_that_raises_keeps_record_marked_incomplete(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("data = [str(i) for i in range(1000)]\nraise RuntimeError('boom')\n")
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", str(script)],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 1
    assert "RuntimeError: boom" in run.stderr  # the program's own traceback, as python shows
    record = run_view(next((tmp_path / "reports").iterdir()))
    assert record["status"]["complete"] is False
    assert "RuntimeError: boom" in record["status"]["reason"]
