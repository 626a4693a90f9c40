"""Report benchmark (issue: analysis and report): the trace viewer on a 200-step trial with
~20 kB outputs per step, in headless Debian Chromium.

Times building the report, opening the trial until all 200 steps are listed, and a search over
every step. Needs `chromium` and `chromium-driver` (scripts/install.sh --test installs them);
says so and exits 0 when they are missing.

Run: .venv/bin/python bench/bench_report.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.analysis.builder import big_trial, write_trial  # noqa: E402
from fixtures.browser import have_chromium, headless_chromium  # noqa: E402

from redline.analysis.report import build_report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    console = Console()
    if not have_chromium():
        console.print("skipped: needs Debian chromium and chromium-driver")
        return
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tb, verdict = big_trial(steps=200, output_chars=20000)
        write_trial(Path(tmp) / "run", "big-000", tb, verdict)
        driver = headless_chromium(Path(tmp) / "profile")
        try:
            for _ in range(args.runs):
                t0 = time.monotonic()
                report = build_report(Path(tmp) / "run")
                built = time.monotonic() - t0
                t0 = time.monotonic()
                driver.get(report.as_uri())
                driver.find_element(By.CSS_SELECTOR, 'nav a[data-trial="big-000"]').click()
                WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(
                    By.CSS_SELECTOR, "#steps .step:not(.hidden)")) == 200)
                opened = time.monotonic() - t0
                box = driver.find_element(By.ID, "search")
                t0 = time.monotonic()
                box.send_keys("needle_42")
                WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(
                    By.CSS_SELECTOR, "#steps .step:not(.hidden)")) == 1)
                searched = time.monotonic() - t0
                box.send_keys(Keys.CONTROL, "a")
                box.send_keys(Keys.BACKSPACE)
                rows.append((built, opened, searched, report.stat().st_size / 1e6))
        finally:
            driver.quit()
    table = Table(title=f"report viewer, 200 steps x 20 kB outputs ({args.runs} runs, median)")
    for col in ("build report s", "open trial s", "search s", "report.html MB"):
        table.add_column(col)
    table.add_row(*[f"{statistics.median(r[i] for r in rows):.2f}" for i in range(4)])
    console.print(table)


if __name__ == "__main__":
    main()
