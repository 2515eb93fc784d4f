"""Secrets never leave the process; text from outside the tool is inert in HTML."""

from __future__ import annotations

import json
from pathlib import Path

CANARY = "Canary-Pa55word-91bd"
SCRIPT = "<script>document.title='pwned'</script>"


def _all_output(tmp_path: Path, *results) -> str:
    texts = [r.stdout + r.stderr for r in results]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*")
              if p.is_file() and p.suffix in (".json", ".html", ".txt")]
    return "\n".join(texts)


def test_canary_password_appears_in_no_output_of_any_command(cli, pg_url, tmp_path):
    url = pg_url.replace("root@", f"root:{CANARY}@")
    env = {"SQLDIAG_URL": url, "MY_API_TOKEN": CANARY, "MALLOC_ARENA_MAX": "4"}
    run = cli("scenario", "leak_repro", "--rows", "300", "--workers", "2", "--json",
              "--no-census", env=env)
    assert run.code == 0, run.stderr
    run_dir = json.loads(run.stdout)["run_dir"]
    record = json.loads((Path(run_dir) / "record.json").read_text())
    assert record["environment"]["env"] == {"MALLOC_ARENA_MAX": "4"}
    assert "***" in record["database"]["url"] and "***" in record["command"]
    results = [
        run,
        cli("scenario", "leak_repro", "--url", url, "--rows", "300", "--workers", "2",
            "--no-census", "--budget", "peak_rss=1KB", env=env),  # exits 3
        cli("report", run_dir, env=env),
        cli("report", run_dir, "--json", env=env),
        cli("diff", run_dir, run_dir, "--html", str(tmp_path / "diff.html"), env=env),
        cli("diff", run_dir, run_dir, "--json", env=env),
        cli("scenario", "leak_repro", "--url", url.replace("/test", "/no_such_db"), env=env),
        cli("scenario", "leak_repro", "--url", url.replace("/test", "/no_such_db"), "--debug",
            env=env),
        cli("scenario", "nope", "--url", url, env=env),
        cli("scenario", "leak_repro", "--url", url.replace("5432", "1"), env=env),
        cli("compare", "leak_repro", "core_all", "--url", url, "--rows", "300", "--workers",
            "1", "--no-census", "--json", "--html", str(tmp_path / "compare.html"), env=env),
        cli("run", str(tmp_path / "missing.py"), env=env),
    ]
    assert results[-2].code == 0, results[-2].stderr
    assert results[1].code == 3
    assert results[6].code == 1 and "no_such_db" in results[6].stderr
    assert CANARY not in _all_output(tmp_path, *results)


def test_markup_from_table_data_and_names_is_inert(cli, sqlite_url, tmp_path, foreign_users):
    foreign_users(sqlite_url, "markup_users", 20, first_name=SCRIPT)
    scenario = tmp_path / "evil<img src=x onerror=alert(1)>.py"
    scenario.write_text('''"""<b>bold</b> description"""
from sqlalchemy import select

def run(ctx):
    with ctx.engine.connect() as conn:
        name = conn.execute(select(ctx.table.c.name).where(ctx.table.c.id == 1)).scalar()
    ctx.mark(name)
    raise ValueError(name)
''')
    result = cli("scenario", str(scenario), "--url", sqlite_url, "--rows", "20",
                 "--workers", "1", "--table", "markup_users", "--no-census")
    assert result.code == 1
    run_dir = next((tmp_path / "reports").iterdir())
    assert "<" not in run_dir.name
    html = (run_dir / "report.html").read_text()
    assert SCRIPT not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;document.title=" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "default-src 'none'" in html  # CSP: no script runs, nothing is fetched
