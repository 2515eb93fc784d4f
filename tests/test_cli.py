"""The command line: help, one-line errors with exit codes, no password in any output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CANARY = "Canary-Pa55word-7f3a"


def test_help_explains_commands(cli):
    result = cli("--help")
    assert result.code == 0
    assert "scenario" in result.stdout and "report" in result.stdout
    scenario_help = cli("scenario", "--help")
    assert "--url" in scenario_help.stdout and "--rows" in scenario_help.stdout


def test_nonsense_sizes_are_usage_errors(cli):
    for args in (["--rows", "-5"], ["--workers", "0"], ["--rows", "many"],
                 ["--max-rss", "lots"]):
        result = cli("scenario", "leak_repro", *args)
        assert result.code == 2, args
        assert "Traceback" not in result.stderr
    result = cli("run", "--max-rss", "lots", __file__)
    assert result.code == 2 and "not a size: 'lots'" in result.stderr, result.stderr


def test_unknown_scenario_is_one_line(cli):
    result = cli("scenario", "no_such_thing")
    assert result.code == 1
    assert result.stderr.strip().count("\n") == 0
    assert "no built-in scenario named 'no_such_thing'" in result.stderr


def test_malformed_url_is_one_line(cli):
    result = cli("scenario", "leak_repro", "--url", "not a url")
    assert result.code == 1
    assert result.stderr.startswith("sqldiag: error: not a database URL")
    assert "Traceback" not in result.stderr


def test_missing_driver_names_the_package(cli):
    result = cli("scenario", "leak_repro", "--url", "postgresql+pg8000://root@127.0.0.1/test")
    assert result.code == 1
    assert "pip install pg8000" in result.stderr


def test_wrong_password_never_echoes_it(cli, mysql_url, tmp_path):
    url = mysql_url.replace("root@", f"root:{CANARY}@")
    result = cli("scenario", "leak_repro", "--url", url, "--rows", "100", "--workers", "1")
    assert result.code == 1
    assert "cannot connect" in result.stderr
    assert CANARY not in result.stdout + result.stderr
    assert not (Path(tmp_path) / "reports").exists() or not any(
        CANARY in p.read_text(errors="replace")
        for p in (Path(tmp_path) / "reports").rglob("*") if p.is_file())


def test_password_is_kept_out_of_records_and_reports(cli, pg_url, tmp_path):
    """PostgreSQL with trust auth accepts any password: a real run carries the canary."""
    url = pg_url.replace("root@", f"root:{CANARY}@")
    result = cli("scenario", "leak_repro", "--url", url, "--rows", "300", "--workers", "2",
                 "--no-census")
    assert result.code == 0, result.stderr
    assert CANARY not in result.stdout + result.stderr
    files = [p for p in (Path(tmp_path) / "reports").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"record.json", "report.html"}
    for path in files:
        assert CANARY not in path.read_text(errors="replace"), path
    assert "***" in (files[0].parent / "record.json").read_text()


def test_scenario_that_raises_keeps_a_partial_record(cli, sqlite_url, tmp_path):
    scenario = tmp_path / "broken.py"
    scenario.write_text('def run(ctx):\n    ctx.mark("halfway")\n    raise RuntimeError("boom <b>")\n')
    result = cli("scenario", str(scenario), "--url", sqlite_url, "--rows", "100",
                 "--workers", "1")
    assert result.code == 1
    assert "run incomplete: the scenario raised RuntimeError: boom" in result.stderr
    record_dir = next((Path(tmp_path) / "reports").iterdir())
    html = (record_dir / "report.html").read_text()
    assert "Incomplete run" in html and "boom &lt;b&gt;" in html


def test_run_starts_the_program_before_importing_the_database_stack():
    """`sqldiag run` starts its program first and imports what reports on it (SQLAlchemy
    among them, half a second) while the program runs."""
    probe = ("import sys, sqldiag.cli, sqldiag.commands.run; "
             "print(sorted(m for m in ('sqlalchemy', 'rich', 'jinja2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
