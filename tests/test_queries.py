"""Which query, which line: memory by SQL statement and the program's line that ran it.

Known answers: tests/programs/two_queries.py loads every row through the ORM in
load_items() (kept) and reads a hundred values through Core in few_labels(); once, in
ten threads, and in a loop whose results accumulate. At least 90% of each row
category's bytes at peak must be charged to load_items' line, and no value the program
filtered on may appear in any output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from sqldiag.capture.probes.queries import mask_literals, normalize

PROGRAMS = Path(__file__).parent / "programs"
ROWS = 8000  # their objects well above what the imports of SQLAlchemy add
SECRETS = ("hunter2-s3cret-bound", "pw-l1teral-s3cret")
ROW_CATEGORIES = ("orm_objects", "driver_rows", "identity_map", "result_lists", "sqlalchemy_rows")


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _run(tmp_path: Path, *argv: str) -> tuple[dict, subprocess.CompletedProcess]:
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--json", *argv],
                         capture_output=True, text=True, check=False, cwd=tmp_path,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout[run.stdout.index("{"):])
    return out, run


def _no_secrets(tmp_path: Path, run: subprocess.CompletedProcess) -> None:
    outputs = [run.stdout, run.stderr]
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file():
            outputs.append(path.read_text(encoding="utf-8", errors="replace"))
    for secret in SECRETS:
        assert not any(secret in text for text in outputs), secret


@pytest.mark.parametrize("mode", ["once", "threads", "loop"])
def test_rows_are_charged_to_the_statement_and_line_that_loaded_them(tmp_path, mode):
    program = PROGRAMS / "two_queries.py"
    out, run = _run(tmp_path, str(program), mode, str(tmp_path / "db.sqlite3"), str(ROWS))
    loaded = ROWS * (10 if mode == "threads" else 1)
    assert run.stdout.startswith(f"{mode} {loaded} 100")
    peak = out["categories"]["peak"]
    assert peak["orm_objects"] > ROWS * 300, peak  # the load was seen alive
    line = _line_of(program, ".all()")
    top = out["queries"][0]
    assert (top["file"].endswith("two_queries.py"), top["line"], top["function"]) == (
        True, line, "load_items"), top
    assert top["statement"].startswith("SELECT items.id") and "?" in top["statement"]
    assert top["executions"] == {"once": 1, "threads": 10, "loop": 5}[mode]
    assert top["source"] == "return (query.filter(Item.id <= high) if high else query).all()"
    core = next(q for q in out["queries"] if q["function"] == "few_labels")
    for category in ROW_CATEGORIES:
        # Both statements make Rows: few_labels' Core rows, and load_items' ORM load
        # while it turns them into objects (a peak census may come in either)
        right = (core, top) if category == "sqlalchemy_rows" else (top,)
        charged = sum(query["categories"].get(category, 0) for query in right)
        if peak[category]:
            assert charged >= 0.9 * peak[category], (
                category, [query["categories"] for query in right], peak)
    assert core["statement"] == "SELECT label FROM items WHERE id <= ? AND label != ?"
    assert core["executions"] == 1 and core["objects"] == 0
    assert core["line"] == _line_of(program, "conn.execute(text(sql))")
    verdict = " ".join(out["verdict"])
    assert f"two_queries.py:{line} in load_items: SELECT ... FROM items WHERE" in verdict
    assert f"Fix at {top['file']}:{line} in load_items" in verdict
    _no_secrets(tmp_path, run)
    html = (Path(out["run_dir"]) / "report.html").read_text(encoding="utf-8")
    assert "<h2>By query</h2>" in html and f"{line} in load_items" in html


def test_asyncio_statement_is_charged_to_the_coroutine_that_awaited_it(request, tmp_path):
    """Under asyncio SQLAlchemy runs the statement in a greenlet: the line is found in
    the coroutine that awaited it."""
    url = make_url(request.getfixturevalue("pg_url")).set(drivername="postgresql+asyncpg")
    program = PROGRAMS / "async_load.py"
    out, _ = _run(tmp_path, str(program), url.render_as_string(hide_password=False), "3000")
    top = out["queries"][0]
    assert (top["function"], top["line"]) == (
        "load", _line_of(program, "(await session.execute(select(Item)))")), top
    assert top["executions"] == 3
    peak = out["categories"]["peak"]
    record = json.loads((Path(out["run_dir"]) / "record.json").read_text())
    seen = (top, peak, record["measurement"]["censuses"])
    assert peak.get("orm_objects", 0) > 0, seen  # a census saw the lists alive
    assert top["categories"].get("orm_objects", 0) >= 0.9 * peak["orm_objects"], seen


def test_terminal_table_names_the_line(tmp_path):
    program = PROGRAMS / "two_queries.py"
    run = subprocess.run([sys.executable, "-m", "sqldiag", "run", str(program), "once",
                          str(tmp_path / "db.sqlite3"), str(ROWS)], capture_output=True,
                         text=True, check=False, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    table = run.stderr[run.stderr.index("by query"):run.stderr.index("verdict")]
    assert "load_items" in table and "SELECT ... FROM items" in table


def test_statements_and_lines_lose_their_literals():
    assert normalize("SELECT a FROM t WHERE b = 'it''s a s3cret' AND c > 42 AND t2.d = 1.5"
                     ) == "SELECT a FROM t WHERE b = ? AND c > ? AND t2.d = ?"
    assert normalize("SELECT " + "x, " * 200 + "y FROM t").endswith("...")
    assert mask_literals('q.filter(User.password == "hunter2", User.id == 7)  # \'x\'') == (
        "q.filter(User.password == ?, User.id == ?)  # ?")
    assert mask_literals("q(f'{a}', rb'\\x00', '''doc''')") == "q(?, ?, ?)"


def test_a_budget_can_name_a_call_site(tmp_path):
    program = PROGRAMS / "two_queries.py"
    argv = [str(program), "once", str(tmp_path / "db.sqlite3"), str(ROWS)]
    line = _line_of(program, ".all()")
    for budget, code in (("programs/two_queries.py:load_items=1MB", 3),
                         (f"two_queries.py:{line}=1GB", 0),
                         ("two_queries.py:no_such_function=1GB", 3)):
        run = subprocess.run([sys.executable, "-m", "sqldiag", "run", "--budget", budget,
                              *argv], capture_output=True, text=True, check=False,
                             cwd=tmp_path, timeout=300)
        assert run.returncode == code, (budget, run.stderr[-500:])
        if code:
            name = budget.partition("=")[0]
            assert name in run.stderr.splitlines()[-1], run.stderr[-300:]


def test_diff_compares_statements(tmp_path):
    """Matched by statement and function: one load (A) against ten in threads (B); the
    loop's statement has one more condition, so it is another statement."""
    program = PROGRAMS / "two_queries.py"
    runs = []
    for mode in ("once", "threads"):
        out, _ = _run(tmp_path, "--name", mode, str(program), mode,
                      str(tmp_path / "db.sqlite3"), str(ROWS))
        runs.append(out["run_dir"])
    diff = subprocess.run([sys.executable, "-m", "sqldiag", "diff", *runs, "--json"],
                          capture_output=True, text=True, check=False, cwd=tmp_path,
                          timeout=120)
    assert diff.returncode == 0, diff.stderr
    changes = json.loads(diff.stdout)["queries"]
    load = next(c for c in changes if c["function"] == "load_items")
    assert (load["executions_a"], load["executions_b"]) == (1, 10)
    assert load["status"] == "grew" and load["b"] > 2 * load["a"] > ROWS * 600
    shown = subprocess.run([sys.executable, "-m", "sqldiag", "diff", *runs],
                           capture_output=True, text=True, check=False, cwd=tmp_path,
                           timeout=120)
    assert "statements that changed" in shown.stdout + shown.stderr


def test_capture_names_the_line_in_the_block(tmp_path):
    """capture() in-process: the statement run inside the block, from this file's line."""
    from sqlalchemy import create_engine, text

    import sqldiag

    engine = create_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        conn.execute(text("INSERT INTO t (id, v) VALUES (:i, :v)"),
                     [{"i": i, "v": "x" * 50} for i in range(2000)])
    with sqldiag.capture(name="block", reports_dir=tmp_path / "reports") as run, \
            engine.connect() as conn:
        rows = conn.execute(text("SELECT v FROM t WHERE v != 'k3y'")).all()  # here
    assert len(rows) == 2000
    here = _line_of(Path(__file__), "# here")
    query = next(q for q in run.analysis.queries if q.function.startswith("test_capture"))
    assert (query.line, query.executions, query.statement) == (
        here, 1, "SELECT v FROM t WHERE v != ?")
    assert "k3y" not in (run.run_dir / "record.json").read_text(encoding="utf-8")


def test_a_program_installed_in_site_packages_is_its_own_code():
    """In a virtual environment the platform stdlib folder holds site-packages: a program
    installed there (and the built-in scenarios, once installed) is still the program's
    own code; the standard library is not."""
    import os
    import sysconfig

    from sqldiag.capture.probes.queries import _own_code, _short

    def frame_of(filename: str):
        namespace: dict = {"__name__": "myapp.jobs"}
        code = compile("import sys\ndef here():\n    return sys._getframe()\n", filename,
                       "exec")
        exec(code, namespace)  # noqa: S102 - a constant snippet, compiled as if from `filename`
        return namespace["here"]()

    paths = sysconfig.get_paths()
    installed = os.path.join(paths["purelib"], "myapp", "jobs.py")
    assert _own_code(frame_of(installed))
    assert _short(installed) == os.path.join("myapp", "jobs.py")  # as the user knows it
    assert not _own_code(frame_of(os.path.join(paths["stdlib"], "json", "decoder.py")))


def test_a_query_run_by_a_library_for_the_program_is_charged_to_the_programs_call(tmp_path):
    """pandas.read_sql (here a stand-in package of that name, beside the program) runs the
    statement in its own code: the line to blame is the program's call of it."""
    library = tmp_path / "pandas" / "io"
    library.mkdir(parents=True)
    (tmp_path / "pandas" / "__init__.py").write_text("")
    (library / "__init__.py").write_text("")
    (library / "sql.py").write_text(
        "from sqlalchemy import text\n\n\ndef read_sql(sql, engine):\n"
        "    with engine.connect() as conn:\n"
        "        return [tuple(row) for row in conn.execute(text(sql))]\n")
    program = tmp_path / "report_job.py"
    program.write_text(
        "from sqlalchemy import create_engine, text\n"
        "from pandas.io.sql import read_sql\n\n"
        "engine = create_engine('sqlite://')\n"
        "with engine.begin() as conn:\n"
        "    conn.execute(text('CREATE TABLE t (v TEXT)'))\n"
        "    conn.execute(text('INSERT INTO t VALUES (:v)'), [{'v': str(i)} for i in range(50)])\n"
        "frame = read_sql('SELECT v FROM t', engine)  # the call\n"
        "print(len(frame))\n")
    out, run = _run(tmp_path, str(program))
    assert run.stdout.startswith("50")
    select = next(q for q in out["queries"] if q["statement"] == "SELECT v FROM t")
    assert (select["file"], select["line"], select["function"]) == (
        "report_job.py", _line_of(program, "# the call"), "<module>"), select
