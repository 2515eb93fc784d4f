"""`sqldiag run`: a user's own program runs as python would run it, and is explained."""

from __future__ import annotations

import json
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
    assert record["measurement"]["method"] == "census"  # untraced unless asked
    # sys.exit(7) at its end is the program's choice, not a run cut short
    assert record["status"] == {"complete": True, "reason": None, "exit_code": 7}
    verdict = " ".join(str(finding) for finding in record["verdict"])
    assert "exited with code 7" in verdict and "INCOMPLETE" not in verdict, verdict
    peak = record["categories"]["peak"]
    assert peak["orm_objects"] > 3 * 3000 * 300
    assert peak["driver_rows"] > 0
    # the program imported SQLAlchemy after sqldiag's start: its compiled modules' pages
    # are mapped files, and the measured parts leave little of the growth unnamed
    after = record["summary"]["parts_end"]
    assert after["mapped_files"] > 1 << 20, after
    assert after["rest"] <= 0.10 * after["growth"], after
    # ... and its code is counted in other_python, though the collector does not list it
    census = record["breakdowns"]["peak"]
    assert census["imported_code"] > 4 << 20 and census["imported_modules"] > 100, census
    assert peak["other_python"] > census["imported_code"]
    # its dicts' tables, classes and long code objects are in glibc's blocks, measured:
    # the split does not call them native memory
    assert census["outside_pymalloc"] > 1 << 20, census
    assert record["summary"]["parts_peak"]["python_outside_pymalloc"] \
        >= census["outside_pymalloc"], record["summary"]["parts_peak"]
    assert f"the code of the {census['imported_modules']:,} modules imported" in verdict
    # what sqldiag's own modules and threads took before the program started is told
    assert 2 << 20 < record["measurement"]["own_rss"] < 60 << 20, record["measurement"]
    # python keeps __main__'s globals until it exits: what `kept` holds stays after the
    # work, and is named by its global (runpy alone would have let it go unnamed)
    held = {h["holder"]: h for h in record["kept_alive"]}
    assert held["results held by __main__.kept"]["objects"] == 3, held
    assert record["categories"]["end"]["orm_objects"] > 3 * 3000 * 300
    assert (run_dir / "report.html").is_file()
    assert "record and report" in run.stderr


def test_trace_depth_traces_the_program_for_allocation_sites(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(PROGRAM)
    db = str(tmp_path / "app.sqlite3")
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--trace-depth", "30",
                          str(script), db], input="\n", capture_output=True, text=True,
                         check=False, cwd=tmp_path)
    assert run.returncode == 7, run.stderr
    record = run_view(next((tmp_path / "reports").iterdir()))
    assert record["measurement"]["method"] == "in-process-trace"
    assert record["measurement"]["trace_depth"] == 30
    # tracemalloc's memory is in this process's RSS: no share of it is given to the
    # categories, nothing of it is called free or native, and the verdict says why
    assert record["summary"]["explained_share"] is None
    assert record["summary"]["parts_peak"] is None and record["summary"]["parts_end"] is None
    assert set(record["categories"]["peak"]) <= {
        "driver_rows", "sqlalchemy_rows", "orm_objects", "identity_map", "result_lists",
        "statement_cache", "other_python"}, record["categories"]["peak"]
    assert any(line.startswith("RSS here is that of the process under tracemalloc")
               for line in record["verdict"]), record["verdict"]
    peak = record["breakdowns"]["peak"]
    assert peak["categories"]["orm_objects"] > 3 * 3000 * 300
    # where the rows were allocated, with the program's own line among the frames (at
    # depth 4 the ORM's loading frames alone fill the traceback: on 3.10 the program's
    # line was then there only when the seeding, not the load, was the traced peak)
    assert any("service.py" in json.dumps(site.get("traceback")) for site in peak["sites"])
    # by query, traced: the bytes allocated below the line that ran the statement
    load = next(q for q in record["queries"] if q["function"] == "worker")
    line = next(n for n, text in enumerate(PROGRAM.splitlines(), 1)
                if "kept.append(session.query" in text)
    assert load["line"] == line and load["executions"] == 3, load
    assert load["statement"].startswith("SELECT items.id"), load
    for category in ("orm_objects", "driver_rows", "identity_map"):
        assert load["categories"][category] >= 0.9 * peak["categories"][category], (
            category, load, peak["categories"])
    # tracing does not count the instances alive: the table says so, not "0"
    assert record["instances_counted"] is False and "tracemalloc" in record["queries_measured"]
    table = run.stderr[run.stderr.index("by query"):]
    cells = {cell.strip() for line in table.splitlines() for cell in line.split("│")}
    assert "-" in cells and "0" not in cells, table
    both = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--census",
                           "--trace-depth", "30", str(script), db], capture_output=True,
                          text=True, check=False, cwd=tmp_path)
    assert both.returncode == 1 and both.stderr.count("\n") == 1, both.stderr


def test_module_runs_with_dash_m(tmp_path):
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "job.py").write_text(
        "import sys\nprint('job', __name__, sys.argv)\nraise SystemExit(0)\n")
    # what follows the module is the module's, options included (gunicorn -w 2 app:app)
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "-m", "myapp.job", "-w",
                          "2", "x", "--json"],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("job __main__ [")
    assert run.stdout.splitlines()[0].endswith("'-w', '2', 'x', '--json']"), run.stdout
    assert "peak RSS" in run.stderr  # the summary, not --json: that was the module's
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


def test_what_a_program_that_raised_keeps_in_its_globals_is_named(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        "from sqlalchemy import create_engine, text\n"
        "QUERY = text('WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < 50000) SELECT i, printf(\"%040d\", i) FROM n')\n"
        "with create_engine('sqlite://').connect() as connection:\n"
        "    rows = connection.execute(QUERY).fetchall()\n"
        "def main():\n    raise RuntimeError('boom')\n\nmain()\n")
    run = _sqldiag_run(tmp_path, str(script))
    assert run.returncode == 1, run.stderr
    record = run_view(next((tmp_path / "reports").iterdir()))
    held = {h["holder"]: h for h in record["kept_alive"]}
    assert held["results held by __main__.rows"]["bytes"] > 50_000 * 100, held


def _sqldiag_run(tmp_path, *args, stdin: str = ""):
    return subprocess.run([sys.executable, "-m", "sqldiag", "run", *args], input=stdin,
                          capture_output=True, text=True, check=False, cwd=tmp_path,
                          timeout=300)


def test_bad_programs_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\ndef f(:\n    pass\n")
    run = _sqldiag_run(tmp_path, str(broken))
    assert run.returncode == 1
    assert run.stderr.strip() == f"sqldiag: error: {broken}:2: invalid syntax"
    run = _sqldiag_run(tmp_path, "-m", "no.such.module")
    assert run.returncode == 1
    assert run.stderr.strip().startswith("sqldiag: error: cannot run module 'no.such.module'")
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reports").exists()


def test_a_program_that_raises_shows_only_its_own_traceback(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("def main():\n    raise ValueError('bad input')\n\nmain()\n")
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           check=False, cwd=tmp_path)
    run = _sqldiag_run(tmp_path, str(script))
    assert run.returncode == plain.returncode == 1
    traceback = run.stderr[:run.stderr.index("ValueError: bad input") + 21]
    assert traceback == plain.stderr.strip()  # python's own, no runpy or sqldiag frames
    assert "sqldiag" in run.stderr[len(traceback):]  # then the summary


def test_the_program_imports_its_own_packages_first(tmp_path):
    """A program that puts its own SQLAlchemy first on sys.path gets it, as alone."""
    fake = tmp_path / "vendored" / "sqlalchemy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("MARK = 'the program own copy'\n")
    script = tmp_path / "app.py"
    script.write_text("import sys\nsys.path.insert(0, sys.argv[1])\nimport sqlalchemy\n"
                      "print(sqlalchemy.MARK, sqlalchemy.__file__)\n"
                      "print(sorted(m for m in sys.modules if m.startswith('pymysql')))\n"
                      "print(sorted(m for m in sys.modules if m.startswith("
                      "('multiprocessing', 'concurrent'))))\n")
    plain = subprocess.run([sys.executable, str(script), str(tmp_path / "vendored")],
                           capture_output=True, text=True, check=False, cwd=tmp_path)
    run = _sqldiag_run(tmp_path, str(script), str(tmp_path / "vendored"))
    assert run.returncode == 0, run.stderr
    assert run.stdout == plain.stdout
    assert run.stdout.startswith("the program own copy ")
    # nor does measuring bring multiprocessing or its pools into the program's memory
    assert run.stdout.endswith("[]\n[]\n"), run.stdout


def test_json_budget_and_guard_have_the_meaning_they_have_for_scenarios(tmp_path):
    script = tmp_path / "grow.py"
    script.write_text("import time\nkeep = [str(i) * 30 for i in range(300_000)]\n"
                      "time.sleep(0.3)\nprint('built', len(keep))\n")
    run = _sqldiag_run(tmp_path, "--json", "--budget", "peak_rss=20GB",
                       str(script))
    assert run.returncode == 0, run.stderr
    first, _, rest = run.stdout.partition("\n")
    assert first == "built 300000"  # the program's own output first, then the JSON
    out = json.loads(rest)
    assert out["summary"]["peak_rss"] > out["summary"]["start_rss"] + (20 << 20)
    assert out["categories"]["peak"]["other_python"] > 300_000 * 40
    run = _sqldiag_run(tmp_path, "--budget", "peak_rss=1MB", str(script))
    assert run.returncode == 3
    assert "peak_rss" in run.stderr and "exceeds its budget of 1.0 MB" in run.stderr
    guarded = tmp_path / "huge.py"
    guarded.write_text("keep = []\nwhile True:\n    keep.append(bytearray(1 << 20))\n")
    run = _sqldiag_run(tmp_path, "--max-rss", "200MB", str(guarded))
    assert run.returncode == 4, run.stderr
    record = run_view(max((tmp_path / "reports").iterdir()))
    assert "memory guard" in record["status"]["reason"]


def test_repeat_tells_a_program_that_leaks(tmp_path):
    script = tmp_path / "leaky.py"
    script.write_text("import json\ncache = json.__dict__.setdefault('_cache', [])\n"
                      "cache.extend({'n': i} for i in range(5000))\nprint(len(cache))\n")
    run = _sqldiag_run(tmp_path, "--repeat", "4", "--json", str(script))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[:4] == ["5000", "10000", "15000", "20000"]
    verdict = json.loads("\n".join(run.stdout.splitlines()[4:]))["verdict"]
    leak = next(line for line in verdict if line.startswith("LEAK:"))
    assert "other_python +" in leak  # 5,000 small dicts a run (untracked by gc: by bytes)
    assert leak.endswith("(the program run 4 times in one process)")  # no rows: a program


def test_a_budget_passed_on_memory_the_categories_did_not_see_is_doubted(tmp_path):
    """64 MB of bytes (no category counts them) at the peak: other_python's budget
    passes on what the categories saw, with a warning that most of the peak went unseen;
    dicts the categories count pass the same budget without one."""
    unseen = tmp_path / "blob.py"
    unseen.write_text("import time\nblob = b'x' * (64 << 20)\ntime.sleep(0.5)\n")
    seen = tmp_path / "dicts.py"
    seen.write_text("import time\nkeep = [{'i': i} for i in range(100_000)]\n"
                    "time.sleep(0.5)\n")
    runs = {script.name: _sqldiag_run(tmp_path, "--budget", "other_python=50MB", str(script))
            for script in (unseen, seen)}
    assert [run.returncode for run in runs.values()] == [0, 0]
    warning = [line for line in runs["blob.py"].stderr.splitlines()
               if line.startswith("sqldiag: warning: other_python")]
    assert len(warning) == 1, runs["blob.py"].stderr
    assert "within its budget of 50 MB, but the categories explain only" in warning[0]
    assert "sqldiag: warning" not in runs["dicts.py"].stderr


ITERATED_LOAD = '''
import sqlite3
import sys
from sqlalchemy import create_engine, select, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    email: Mapped[str] = mapped_column(String(80))


con = sqlite3.connect(sys.argv[1])
con.execute("create table customers (id integer primary key, name text, email text)")
con.executemany("insert into customers values (?, ?, ?)",
                ((i, f"customer {i}", f"c{i}@example.com") for i in range(60_000)))
con.commit()
con.close()
with Session(create_engine("sqlite:///" + sys.argv[1])) as session:
    names = [customer.name.upper() for customer in session.scalars(select(Customer))]
print(len(names))
'''


def test_a_short_load_in_pure_python_is_seen_by_a_census(tmp_path):
    """60,000 ORM instances built and read by iterating, about 0.3 s of pure Python in the
    program's only thread: a census from the census thread waited for the program to
    block and saw none of them (0-14 MB of orm_objects in 5 runs); those in the program's
    own collections (3.12+) saw part of the load (10-34 MB: the last one before the
    loader finished), one as the loader hands the whole chunk over sees it all (44-58 MB
    on 3.10-3.13), the driver's rows beside it."""
    script = tmp_path / "iterated.py"
    script.write_text(ITERATED_LOAD)
    run = _sqldiag_run(tmp_path, "--json", str(script), str(tmp_path / "customers.db"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "60000"
    found = json.loads("\n".join(run.stdout.splitlines()[1:]))
    peak = found["categories"]["peak"]
    assert peak["orm_objects"] > 38 << 20, peak
    assert peak["driver_rows"] > 8 << 20, peak  # 60,000 tuples of three values


CACHE_PROGRAM = '''
import json
import sys
from pympler.asizeof import asizeof

CACHE = {}
for i in range(60_000):  # plain dicts of strings: the collector tracks none of them
    CACHE[i + 1000] = {"name": f"user {i:06d} " + "n" * 20, "address": f"{i} " + "a" * 100}
inside = asizeof(CACHE) - sys.getsizeof(CACHE)
print(json.dumps({"inside": inside, "table": sys.getsizeof(CACHE)}))
'''


def test_a_cache_of_plain_values_is_counted_and_named_after_the_work(tmp_path):
    """A module-level cache of dicts of strings: the GC tracks neither the dicts nor the
    strings, and the census counted only the cache's own table (a 10th of it), leaving
    the rest as "Python memory no category counted". Its untracked values are now
    sized from a sample of the globals' long containers, and the global is named."""
    script = tmp_path / "cache.py"
    script.write_text(CACHE_PROGRAM)
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--json", str(script)],
                         capture_output=True, text=True, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    sizes = json.loads(lines[0])
    out = json.loads("\n".join(lines[1:]))
    expected = sizes["inside"] + sizes["table"]
    end = out["categories"]["end"]
    # the values (asizeof: 60,000 dicts and 120,000 strings) and the cache's table
    assert 0.9 * expected < end["other_python"] < 1.25 * expected, (end, sizes)
    assert end["python_unattributed"] < 0.1 * expected, (end, sizes)
    record = run_view(Path(out["run_dir"]))
    holders = {h["holder"]: h for h in record["retention"]["holders"]}
    held = holders["plain values held by __main__.CACHE"]
    assert held["objects"] == 60_000 and 0.9 * expected < held["bytes"] < 1.1 * expected, held
    verdict = " ".join(str(finding) for finding in record["verdict"])
    assert "plain values held by __main__.CACHE" in verdict, verdict
