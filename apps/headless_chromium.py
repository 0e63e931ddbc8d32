"""A browser for tests and benchmarks: Debian's headless Chromium, driven by Selenium (a
dev dependency) through Debian's ChromeDriver (`apt-get install chromium chromium-driver`;
.ci/run installs them when they are missing). Both programs are given by path, so
Selenium looks for nothing online."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

MISSING = (
    "Debian's chromium and chromium-driver are not installed "
    "(apt-get install chromium chromium-driver; .ci/run installs them)"
)


def installed() -> tuple[str, str] | None:
    """The paths of Debian's chromium and chromedriver, or None when either is missing
    (looked for at each call: CI installs them while the tests run)."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    return (found[0], found[1]) if found[0] and found[1] else None


# Chromium on this closed network: no background connections, no sandbox (tests run as
# root), no GPU; a new profile in the test's folder.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)


@contextmanager
def chromium(folder: Path) -> Iterator[Any]:
    """A Selenium WebDriver of a headless Chromium whose profile and driver log are in
    `folder`; the driver (and with it the browser) is stopped on the way out, by its pid
    if it does not quit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    programs = installed()
    if programs is None:
        raise RuntimeError(MISSING)
    browser, driver_program = programs
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    options.page_load_strategy = "eager"  # a page's endless streams never finish loading
    for flag in (*FLAGS, f"--user-data-dir={folder / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=driver_program, log_output=str(folder / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        with suppress(Exception):
            driver.quit()
        process = service.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
