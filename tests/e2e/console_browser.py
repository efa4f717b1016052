"""Headless Chromium from Debian's packages (`chromium`, `chromium-driver`), driven by Selenium, for the console's
browser tests. Importable as `console_browser` (pytest puts tests/e2e on sys.path).

Every page visit checks what a person would notice: no dialog opened, nothing logged as an error in the
JavaScript console (CSP violations included), and a screenshot of the page written under the test's tmp dir.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")


def require_chromium() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the console's browser tests need Debian's Chromium "
                    "(`apt-get install -y chromium chromium-driver`; .ci/run installs them)", pytrace=False)


class Browser:
    """One Chromium with a fresh profile; `visit` loads a page and checks it."""

    def __init__(self, profile: Path, screenshots: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        require_chromium()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.set_capability("unhandledPromptBehavior", "ignore")  # a dialog stays open, so a test can see it
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(60)
        self.screenshots = screenshots
        self.shots = 0

    def quit(self) -> None:
        self.driver.quit()

    # -- checks a person would make -----------------------------------------------------------------------------

    def dialog_text(self) -> str | None:
        from selenium.common.exceptions import NoAlertPresentException

        try:
            return self.driver.switch_to.alert.text
        except NoAlertPresentException:
            return None

    def console_errors(self, allow_network: str | None = None) -> list[dict[str, Any]]:
        """Entries logged at SEVERE (script errors, uncaught exceptions, CSP violations, failed loads) since the
        last call. `allow_network`: a regex of URLs whose failed loads are expected (an HTTP status the page
        handles, such as a deploy request's 404 before it is recorded); they are the only entries left out."""
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry.get("level") != "SEVERE":
                continue
            if allow_network and entry.get("source") == "network" and re.search(allow_network, entry["message"]):
                continue
            errors.append(entry)
        return errors

    def assert_clean(self, what: str, allow_network: str | None = None) -> None:
        dialog = self.dialog_text()
        assert dialog is None, f"{what}: a dialog opened: {dialog!r}"
        errors = self.console_errors(allow_network)
        assert errors == [], f"{what}: JavaScript console errors: {json.dumps(errors, indent=1)}"

    def screenshot(self, name: str) -> Path:
        self.shots += 1
        path = self.screenshots / f"{self.shots:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:60]}.png"
        self.driver.save_screenshot(str(path))
        return path

    # -- navigation ---------------------------------------------------------------------------------------------

    def visit(self, url: str, name: str | None = None):
        self.driver.get(url)
        self.wait_ready()
        self.assert_clean(url)
        self.screenshot(name or url.split("//", 1)[-1].split("/", 1)[-1] or "root")
        return self.driver

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.driver.execute_script("return document.readyState") == "complete":
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.driver.current_url} did not finish loading in {timeout:.0f}s")

    def wait_for(self, check, timeout: float = 30, what: str = "", every: float = 0.25,
                 allow_network: str | None = None):
        """Poll `check(driver)` until truthy (dialogs and console errors fail at once). An element the page replaced
        between being found and being read (the page re-renders a row after an action) is read again on the next
        poll, as Selenium's own waits do."""
        from selenium.common.exceptions import StaleElementReferenceException

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = check(self.driver)
            except StaleElementReferenceException as exc:
                last = exc
            else:
                if last:
                    return last
            self.assert_clean(what or "waiting", allow_network)
            time.sleep(every)
        self.screenshot(f"timeout-{what}")
        raise AssertionError(f"not true after {timeout:.0f}s: {what} (last: {last!r})")

    # -- reading ------------------------------------------------------------------------------------------------

    def texts(self, css: str) -> list[str]:
        from selenium.webdriver.common.by import By

        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def attrs(self, css: str, name: str) -> list[str | None]:
        from selenium.webdriver.common.by import By

        return [e.get_attribute(name) for e in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

