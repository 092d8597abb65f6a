"""The report in a real headless browser: Debian's Chromium driven through chromedriver.

`make install` installs Chromium when it is missing and the user is root; elsewhere (a laptop
without it) the test is skipped, except under CI, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from spdnas.report.html import SECTIONS, write_report

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1000")


def _browser() -> tuple[str, str]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and chromedriver:
        return chromium, chromedriver
    reason = ("Debian's chromium and chromium-driver are not installed (`make install` installs them "
              "as root: apt-get install chromium chromium-driver)")
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    chromium, chromedriver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options,
                               service=Service(executable_path=chromedriver, log_output=subprocess.DEVNULL))
    try:
        yield browser
    finally:
        browser.quit()


def _load(driver, path) -> list[dict]:
    """Open ``path`` and return the console messages it produced."""
    driver.get_log("browser")  # drop messages of earlier pages
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    return driver.get_log("browser")


def _images(driver) -> list[dict]:
    return driver.execute_script("return Array.from(document.images)"
                                 ".map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))")


def test_report_renders_with_table_and_figures_and_no_console_errors(driver, experiment_dir, tmp_path):
    path, _ = write_report(experiment_dir, tmp_path / "report.html")
    console = _load(driver, path)
    assert [m for m in console if m["level"] == "SEVERE"] == []
    headings = [e.text for e in driver.find_elements("css selector", "h2")]
    assert headings == [title for _, title in SECTIONS]
    rows = [r.text for r in driver.find_elements("css selector", "section#results table tbody tr")]
    assert any(r.startswith("spdnetnas 6 97.72 ± 0.33") for r in rows)
    assert any(r.startswith("random 2 ") and "±" in r for r in rows)
    images = _images(driver)
    assert len(images) == 6
    assert all(i["complete"] and i["width"] > 0 for i in images), images
    assert all(driver.execute_script("return arguments[0].getBoundingClientRect().height", img) > 100
               for img in driver.find_elements("css selector", "img"))
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0


def test_the_checks_catch_a_broken_page(driver, tmp_path):
    """The console and image checks above do see failures: a page with a missing image."""
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head>'
                      '<body><img src="missing.png" alt="missing"></body></html>')
    console = _load(driver, broken)
    assert any(m["level"] == "SEVERE" and "missing.png" in m["message"] for m in console)
    assert _images(driver) == [{"alt": "missing", "complete": True, "width": 0}]
