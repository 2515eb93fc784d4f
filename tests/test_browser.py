"""The HTML report in a real browser: headless Chromium (Debian's chromium and
chromium-driver) loads a real report with no console errors and no network request, an
injected <script> in table data does not run, and a screenshot is saved."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REQUIRE = os.environ.get("SQLDIAG_REQUIRE_BROWSER") == "1"
PAYLOAD = "<script>window.__pwned = 1; document.title = 'pwned'</script>"


@pytest.fixture(scope="module")
def driver():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        if REQUIRE:
            pytest.fail("chromium and chromedriver are required in CI")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1100,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def report_with_payload(tmp_path_factory, foreign_users) -> Path:
    """A real run whose table data carries a script, marked as a phase name."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{root / 'db.sqlite3'}"
    foreign_users(url, "payload_users", 2000, first_name=PAYLOAD)
    scenario = root / "payload.py"
    scenario.write_text('''"""The post's workload, plus a phase named after the first user."""
from multiprocessing.dummy import Pool

def run(ctx):
    def query_all(worker):
        session = ctx.Session()
        users = session.query(ctx.User).all()
        ctx.mark(users[0].name)
        session.close()
        return users
    with Pool(ctx.workers) as pool:
        return pool.map(query_all, range(ctx.workers))
''')
    proc = subprocess.run([sys.executable, "-m", "sqldiag", "scenario", str(scenario), "--url",
                           url, "--rows", "2000", "--workers", "3", "--table", "payload_users",
                           "--json", "--reports-dir", str(root / "reports")],
                          capture_output=True, text=True, check=False,
                          env=dict(os.environ, XDG_CACHE_HOME=str(root)))
    assert proc.returncode == 0, proc.stderr
    return Path(json.loads(proc.stdout)["run_dir"]) / "report.html"


def test_report_loads_cleanly_offline_and_inert(driver, report_with_payload, tmp_path):
    html = report_with_payload.read_text()
    assert PAYLOAD not in html and "&lt;script&gt;window.__pwned" in html
    assert len(html.encode()) < 2 << 20
    driver.get(report_with_payload.as_uri())
    assert driver.title.startswith("sqldiag report:")
    assert driver.execute_script("return window.__pwned === undefined")
    # the payload is shown as text, in the phase table
    assert PAYLOAD in driver.find_element("tag name", "body").text
    console = [entry for entry in driver.get_log("browser") if entry["level"] != "INFO"]
    assert console == []
    requested = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.append(message["params"]["request"]["url"])
    assert requested and all(url == report_with_payload.as_uri() for url in requested), requested
    assert driver.find_elements("css selector", "svg polyline"), "the RSS chart is drawn"
    shot = tmp_path / "report.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
