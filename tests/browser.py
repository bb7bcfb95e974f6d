"""A real headless Chromium for console tests, driven by Selenium through Debian's chromedriver.

Selenium's calls block, and the control plane under test runs in the test's event loop: every call
goes through `asyncio.to_thread`, so the loop keeps serving the pages the browser asks for.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The flags that make Chromium run headless here without reaching out anywhere.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
REQUIRE_ENV = "MGMT_REQUIRE_BROWSER"
SCREENSHOTS_ENV = "MGMT_CONSOLE_SCREENSHOTS"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is missing (apt-get install -y chromium chromium-driver)"
    return None


def require_browser() -> None:
    """Skip the test (printing why) without a browser; with MGMT_REQUIRE_BROWSER=1 fail instead."""
    problem = missing_browser()
    if problem is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"a browser is required ({REQUIRE_ENV}=1) but {problem}")
    pytest.skip(f"console browser tests skipped: {problem}")


class Browser:
    """One Chromium window; each method runs its Selenium calls in a thread."""

    def __init__(self, driver: Any, screenshots: Path) -> None:
        self.driver = driver
        self.screenshots = screenshots

    async def call(self, work: Callable[[], T]) -> T:
        """Run blocking Selenium work off the event loop."""
        return await asyncio.to_thread(work)

    async def open(self, url: str) -> None:
        """Load a page and wait until its script has run."""
        await self.call(lambda: self.driver.get(url))
        await self.wait_js("return document.readyState === 'complete'")

    async def wait_js(self, script: str, timeout_s: float = 10.0, *args: Any) -> Any:
        """Wait until `script` returns something truthy; returns it."""
        from selenium.webdriver.support.ui import WebDriverWait

        return await self.call(
            lambda: WebDriverWait(self.driver, timeout_s, poll_frequency=0.05).until(
                lambda d: d.execute_script(script, *args)
            )
        )

    async def live(self, timeout_s: float = 10.0) -> None:
        """Wait until the page's live stream has delivered its first patch."""
        await self.wait_js("return ['open', 'ended'].includes(document.body.dataset.liveState)", timeout_s)

    async def js(self, script: str, *args: Any) -> Any:
        """Run a script in the page and return its result."""
        return await self.call(lambda: self.driver.execute_script(script, *args))

    async def texts(self, selector: str) -> list[str]:
        """The visible text of every element matching a CSS selector."""
        script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText)"
        result: list[str] = await self.js(script, selector)
        return result

    async def count(self, selector: str) -> int:
        """How many elements match a CSS selector."""
        result: int = await self.js("return document.querySelectorAll(arguments[0]).length", selector)
        return result

    async def fill(self, selector: str, text: str) -> None:
        """Replace the value of an input or textarea."""
        from selenium.webdriver.common.by import By

        def work() -> None:
            element = self.driver.find_element(By.CSS_SELECTOR, selector)
            element.clear()
            element.send_keys(text)

        await self.call(work)

    async def click(self, selector: str) -> None:
        """Click an element."""
        from selenium.webdriver.common.by import By

        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, selector).click())

    async def accept_confirmation(self, timeout_s: float = 5.0) -> str:
        """Accept the page's confirm() dialog; returns its text."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        def work() -> str:
            alert = WebDriverWait(self.driver, timeout_s).until(expected_conditions.alert_is_present())
            text: str = alert.text
            alert.accept()
            return text

        return await self.call(work)

    async def console_errors(self) -> list[str]:
        """The browser console's errors since the last call."""
        entries = await self.call(lambda: self.driver.get_log("browser"))
        return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]

    async def screenshot(self, name: str) -> Path:
        """Save the whole page (up to 3,000 pixels high) as <screenshots>/<name>.png."""
        path = self.screenshots / f"{name}.png"

        def work() -> None:
            size = self.driver.get_window_size()
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(size["width"], max(size["height"], min(int(height) + 20, 3000)))
            try:
                self.driver.save_screenshot(str(path))
            finally:
                self.driver.set_window_size(size["width"], size["height"])

        await self.call(work)
        return path

    async def forget(self) -> None:
        """Leave the page (closing its live streams) and drop every cookie: a new visitor."""
        await self.call(lambda: self.driver.get("about:blank"))
        await self.call(self.driver.delete_all_cookies)
        await self.console_errors()


@contextmanager
def chromium(screenshots: Path) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile, quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="console-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        # The console's messages (console.error, failed loads) are read back by the tests.
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield Browser(driver, screenshots)
        finally:
            driver.quit()


def screenshot_dir(default: Path) -> Path:
    """Where screenshots go: MGMT_CONSOLE_SCREENSHOTS (docs/console to refresh the README's) or `default`."""
    chosen = Path(os.environ.get(SCREENSHOTS_ENV) or default)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen
