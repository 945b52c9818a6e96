"""Headless Chromium for the browser tests (the collector's JavaScript tracker, the dashboard).

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) driven through Selenium.
Chromium starts with a new empty profile and without its background networking, which this
machine's closed network would refuse many times over; ``--no-sandbox`` because CI runs as root.
A missing browser fails the test with the command that installs it: a browser test that skips
itself would pass without testing anything.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if missing:
        raise RuntimeError(
            f"browser tests need {', '.join(missing)}: apt-get install -y chromium chromium-driver (.ci/run does)"
        )


@contextmanager
def chromium(**capabilities: Any) -> Iterator[Any]:
    """A headless Chromium WebDriver on a fresh profile, closed (and its profile removed) afterwards.

    ``capabilities`` are set on the options (``goog:loggingPrefs`` to read the console, say).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _require_browser()
    profile = tempfile.mkdtemp(prefix="clickstream-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    for name, value in capabilities.items():
        options.set_capability(name, value)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
