"""The real thing: ``streamlit run dashboard/app.py`` exactly as ``edgemed dashboard`` starts it, visited page by
page in Debian's Chromium through Playwright (never ``playwright install``: it would download a browser).

Skipped only when /usr/bin/chromium or Playwright is missing and CI is not set; under CI a missing browser fails.
Screenshots go to pytest's temporary folder (and to ``$EDGEMED_DASHBOARD_SCREENSHOTS`` when set); their paths
are listed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli.monitor import SERVER_FLAGS, dashboard_command, dashboard_environment, streamlit_command
from tests.dashboard.conftest import BARE_BUNDLE, SCENARIO
from tests.dashboard.fixture_data import DEVICES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STARTUP_TIMEOUT_S = 60  # streamlit's first start imports a lot
PAGE_TIMEOUT_MS = 90_000  # per page: render, then every visible chart and table drawn
DRAWN = """() => {
  const visible = selector => [...document.querySelectorAll(selector)].filter(e => e.offsetParent !== null);
  return document.querySelector('.stApp[data-test-script-state="notRunning"]') !== null
    && visible('[data-testid="stVegaLiteChart"]').every(chart => chart.querySelector('canvas, svg'))
    && visible('[data-testid="stDataFrame"]').every(table => table.querySelector('canvas'))
    && visible('[data-testid="stSkeleton"]').length === 0
    && !document.querySelector('[data-testid="stStatusWidget"]');
}"""
CONTENT_HEIGHT = """() => { const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  return Math.ceil(block.getBoundingClientRect().top + block.scrollHeight); }"""
PAGES = [  # (path, file name, texts that must appear)
    ("", "builds", ["Builds", SCENARIO, BARE_BUNDLE, "Accuracy vs latency", "Training curves", "shipped"]),
    ("benchmarks", "benchmarks", ["Benchmarks", "Batch-1 latency distribution", "Machine"]),
    ("fleet", "fleet", ["Fleet", "Latency p50", "Throughput", "Signal-quality flag rate"]),
    (f"drift?device={DEVICES['drifted']}", "drift", ["Drift", "Predicted classes", "alert"]),
    ("alerts", "alerts", ["Alerts", "latency SLO", "signal quality", "drift", "Latency-SLO burn rates"]),
    (f"device?device={DEVICES['regressed']}", "device",
     ["Device", "Timeline", "Burn rates", "latency SLO", "error budget burning"]),
    ("device?device=0000000000000000", "device-unknown", ["Device", "unknown device"]),
]


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI is set, so the browser test must run)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def outside_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def server(dashboard_fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = dashboard_fixture.settings
    port = free_port()
    environment = dashboard_environment(settings.artifacts, settings.bundles, settings.database, settings.benchmarks,
                                        settings.latency_objective_us)
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(streamlit_command(port), env=environment, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=tmp_path_factory.mktemp("cwd"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start on {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser_page():
    _require(CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed: pip install playwright (never run `playwright install`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 5000})
        finally:
            browser.close()


def test_the_command_line_binds_loopback_without_usage_statistics() -> None:
    command = streamlit_command(8600)
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("dashboard/app.py")
    assert flags["--server.address"] == "127.0.0.1" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.headless"] == "true" and flags["--server.port"] == "8600"
    assert set(SERVER_FLAGS[::2]) <= set(flags)


def test_the_cli_passes_paths_as_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(command: list[str], environment: dict[str, str]) -> int:
        calls.append((command, environment))
        return 0

    monkeypatch.setattr("pipeline.cli.monitor.run_until_signalled", fake_run)
    result = CliRunner().invoke(dashboard_command, ["--bundles", str(tmp_path / "b"), "--database", "t.db",
                                                    "--port", "8123", "--latency-objective-us", "500"])
    assert result.exit_code == 0, result.output
    ((command, environment),) = calls
    assert "8123" in command and "127.0.0.1" in command
    assert environment["EDGEMED_DASHBOARD_BUNDLES"] == str((tmp_path / "b").resolve())
    assert Path(environment["EDGEMED_DASHBOARD_DATABASE"]).is_absolute()
    assert environment["EDGEMED_DASHBOARD_LATENCY_OBJECTIVE_US"] == "500.0"
    assert environment["EDGEMED_DASHBOARD_WARM_UP"] == "1"  # the caches are warmed at start unless --no-warm-up
    CliRunner().invoke(dashboard_command, ["--bundles", str(tmp_path / "b"), "--no-warm-up"])
    assert calls[-1][1]["EDGEMED_DASHBOARD_WARM_UP"] == "0"
    assert CliRunner().invoke(dashboard_command, ["--port", "0"]).exit_code == 2


def test_the_server_answers_on_loopback_only(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    address = outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to try")
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(2)
        probe.connect((address, port))


@pytest.mark.parametrize(("path", "name", "expected"), PAGES, ids=[name for _, name, _ in PAGES])
def test_every_page_renders_in_chromium(server, browser_page, screenshots, path: str, name: str,
                                        expected: list[str]) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 5000})  # tall enough that nothing waits to scroll into view
    page.goto(f"{server}/{path}")
    page.wait_for_selector("h1", timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function(DRAWN, timeout=PAGE_TIMEOUT_MS)
    heights: list[int] = []
    while len(heights) < 3 or len(set(heights[-3:])) > 1:  # fragments fill in after the first paint
        time.sleep(0.5)
        heights.append(page.evaluate(CONTENT_HEIGHT))
        page.wait_for_function(DRAWN, timeout=PAGE_TIMEOUT_MS)
    body = page.inner_text("body")
    assert page.locator('[data-testid="stException"]').count() == 0, body[:2000]
    assert "Traceback" not in body
    for text in expected:
        assert text in body, f"{text!r} is not on /{path}"
    page.set_viewport_size({"width": 1400, "height": min(max(heights[-1] + 20, 800), 5000)})
    page.wait_for_function(DRAWN, timeout=PAGE_TIMEOUT_MS)
    time.sleep(0.5)
    screenshot = screenshots / f"{name}.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 20_000  # a blank page is a few kilobytes
    extra = os.environ.get("EDGEMED_DASHBOARD_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(extra) / screenshot.name)
