"""A real dashboard (`streamlit run app.py`) on 127.0.0.1 and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard_env() -> dict:
    """Extra environment for a module's dashboard (a module overrides it: e.g. online, at a stand-in Hub)."""
    return {}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, dashboard_env):
    """Start the dashboard on a free port over an empty workspace; yield (url, workspace)."""
    home = tmp_path_factory.mktemp("journey-ws")
    port = _free_port()
    env = {**os.environ, "TUNELAB_HOME": str(home), "HF_HUB_OFFLINE": "1", **dashboard_env}
    log = open(home / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.ui.launch", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the dashboard did not start: " + (home / "streamlit.log").read_text()[-2000:])
    yield url, home
    proc.terminate()
    proc.wait(timeout=20)
    # Jobs the module started (a run's automatic before/after report, a server) outlive the dashboard:
    # stop them, so they do not slow down the next module's tests.
    subprocess.run([sys.executable, "-c", STOP_JOBS], env=env, cwd=ROOT, timeout=120, check=False)


STOP_JOBS = """
import time
from tunelab import jobs
for j in jobs.active_jobs():
    jobs.stop(j["kind"], j["id"])
for _ in range(60):
    if not jobs.active_jobs():
        break
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


@pytest.fixture
def shot():
    """shot(page, name): save a full-page screenshot as a test artefact in tests/artifacts/."""

    def _shot(page, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return _shot
