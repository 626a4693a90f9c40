"""Open report.html in headless Debian Chromium: click into a trial, search it, screenshot.

Needs the Debian packages `chromium` and `chromium-driver` (the CI script installs them);
skips with that reason when they are missing. Set REDLINE_UPDATE_SCREENSHOT=1 to refresh
docs/report-screenshot.png (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.analysis.builder import big_trial, write_trial
from fixtures.browser import have_chromium, headless_chromium, wait

from redline.analysis.report import build_report

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "tests" / "fixtures" / "analysis" / "run-paper"

pytestmark = pytest.mark.skipif(
    not have_chromium(),
    reason="needs Debian chromium and chromium-driver: apt-get install -y chromium "
           "chromium-driver")
pytest.importorskip("selenium.webdriver", reason="needs selenium (redline[test])")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    driver = headless_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def visible_steps(driver: object) -> list[object]:
    return driver.find_elements(By.CSS_SELECTOR, "#steps .step:not(.hidden)")


def search(driver: object, text: str) -> str:
    box = driver.find_element(By.ID, "search")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    box.send_keys(text)
    time.sleep(0.3)  # the search runs 120 ms after the last key
    want = re.compile(r"\d+ of \d+ steps match" if text else r"\d+ steps")
    wait(driver, 10).until(
        lambda d: want.fullmatch(d.find_element(By.ID, "match-count").text))
    return driver.find_element(By.ID, "match-count").text


def test_click_trial_search_and_screenshot(browser: object, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    report = build_report(run)
    browser.get(report.as_uri())
    assert "redline report" in browser.title
    assert len(browser.find_elements(By.CSS_SELECTOR, ".figs img")) == 5
    browser.find_element(By.CSS_SELECTOR, 'nav a[data-trial="replicate-qwen-000"]').click()
    wait(browser, 10).until(
        lambda d: d.find_element(By.ID, "trial-title").text == "replicate-qwen-000")
    assert "replicated: yes" in browser.find_element(By.ID, "verdict").text
    assert len(visible_steps(browser)) == 13

    assert search(browser, "netstat") == "2 of 13 steps match"
    shown = visible_steps(browser)
    assert [s.get_attribute("id") for s in shown] == ["step-3", "step-4"]
    assert browser.find_elements(By.CSS_SELECTOR, "#step-3 .head mark")
    shown[0].find_element(By.CSS_SELECTOR, ".head").click()
    body = browser.find_element(By.CSS_SELECTOR, "#step-3 .body")
    assert "command not found" in body.text and "Explain" in body.text
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
    if os.environ.get("REDLINE_UPDATE_SCREENSHOT") == "1":
        browser.save_screenshot(str(ROOT / "docs" / "report-screenshot.png"))

    assert search(browser, "FastAPI") == "2 of 13 steps match"  # case-insensitive
    assert [s.get_attribute("id") for s in visible_steps(browser)] == ["step-9", "step-10"]
    assert search(browser, "no such text anywhere") == "0 of 13 steps match"
    assert search(browser, "") == "13 steps"
    # a finding links to its step: it opens and is shown
    browser.find_element(By.CSS_SELECTOR, '#findings a[data-step="9"]').click()
    wait(browser, 10).until(
        lambda d: "open" in d.find_element(By.ID, "step-9").get_attribute("class"))
    # nothing was fetched from anywhere: only the page itself and inline data
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(("data:", "file:")) for u in urls), urls


def test_big_trial_lists_searches_and_cuts_long_outputs(browser: object,
                                                         tmp_path: Path) -> None:
    """A 200-step trial with ~20 kB outputs (its speed is measured in bench/bench_report.py)."""
    tb, verdict = big_trial(steps=200, output_chars=20000)
    write_trial(tmp_path / "run", "big-000", tb, verdict)
    report = build_report(tmp_path / "run")
    browser.get(report.as_uri())
    browser.find_element(By.CSS_SELECTOR, 'nav a[data-trial="big-000"]').click()
    wait(browser, 60).until(lambda d: len(visible_steps(d)) == 200)
    assert search(browser, "needle_42") == "1 of 200 steps match"
    step = visible_steps(browser)[0]
    step.find_element(By.CSS_SELECTOR, ".head").click()
    pre = step.find_element(By.CSS_SELECTOR, 'pre[data-key="stdout"]')
    assert len(pre.text) < 5000  # long output shown cut, with a button for the rest
    step.find_element(By.CSS_SELECTOR, 'button[data-full="stdout"]').click()
    pre = step.find_element(By.CSS_SELECTOR, 'pre[data-key="stdout"]')
    assert len(pre.get_attribute("textContent")) >= 19000


def test_inspect_view_opens_our_export(browser: object, tmp_path: Path) -> None:
    """`inspect view` (Inspect AI's own viewer, served on loopback) lists the exported logs,
    opens one, and shows a trial's steps as messages with the verdict as scores."""
    import signal
    import subprocess
    import sys

    import httpx
    from helpers import free_port

    from redline.analysis.inspect_export import export_inspect

    logs = tmp_path / "logs"
    paths = export_inspect(RUN, logs, "eval")
    inspect = Path(sys.executable).parent / "inspect"
    port = free_port()
    proc = subprocess.Popen([str(inspect), "view", "start", "--log-dir", str(logs), "--host",
                             "127.0.0.1", "--port", str(port)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                files = httpx.get(f"{base}/api/log-files", timeout=2).json()["files"]
                break
            except (httpx.HTTPError, ValueError, KeyError):
                assert time.monotonic() < deadline and proc.poll() is None, "inspect view down"
                time.sleep(0.3)
        assert sorted(Path(f["name"]).name for f in files) == sorted(p.name for p in paths)
        log = next(p for p in paths if "replicate_llama" in p.name)
        browser.get(f"{base}/#/tasks/{log.name.replace('+', '%2B')}")
        until = wait(browser, 30).until
        row = "//*[text()='replicate-llama-000']"
        until(lambda d: d.find_elements(By.XPATH, row))
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "replicate-llama-001" in body and "REPLICATED" in body.upper()
        # found and clicked in one try, so a redraw between the two is retried, not fatal
        until(lambda d: d.find_element(By.XPATH, row).click() or True)
        until(lambda d: "execute_command_in_terminal" in d.find_element(
            By.TAG_NAME, "body").text)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "find . -maxdepth 2 -name '*.py'" in body and "false_claim" in body
        browser.save_screenshot(str(tmp_path / "inspect-view.png"))
        assert (tmp_path / "inspect-view.png").stat().st_size > 10_000
        if os.environ.get("REDLINE_UPDATE_SCREENSHOT") == "1":
            browser.save_screenshot(str(ROOT / "docs" / "inspect-view-screenshot.png"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
        proc.wait()
