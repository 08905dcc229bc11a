"""The search page as a person uses it, through Selenium: upload, read the hits, click,
filter, and wait for each search to be answered."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 60  # seconds a search may take on a busy 2-core machine


class Page:
    """The page at ``base`` in ``driver``."""

    def __init__(self, driver: Any, base: str) -> None:  # noqa: ANN401 - a WebDriver
        self.driver = driver
        self.base = base

    def open(self, token: str | None = None) -> Page:
        """Loads the page afresh (no token kept unless ``token``) and waits until it has
        either connected or asked for a token."""
        self.driver.get(self.base + "/")  # the origin's sessionStorage, then a clean load
        self.driver.execute_script("sessionStorage.clear();")
        self.console_errors()  # a 401 of that load (without a token) is not this page's
        if token is not None:
            self.driver.execute_script("sessionStorage.setItem('reidctl.token', arguments[0]);",
                                       token)
        self.driver.get(self.base + "/")
        self.wait(lambda d: self.shown("app") or self.shown("token-panel"))
        return self

    # -- reading ----------------------------------------------------------------------

    def el(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def shown(self, element_id: str) -> bool:
        return self.el(element_id).is_displayed()

    def text(self, element_id: str) -> str:
        return self.el(element_id).text

    def hits(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#results button.hit")

    def hit_ids(self) -> list[str]:
        return [h.get_attribute("data-id") for h in self.hits()]

    def crumbs(self) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, "#trail .crumb")

    def thumbs_loaded(self) -> bool:
        """Whether every hit's thumbnail has been decoded."""
        return bool(self.driver.execute_script(
            "const imgs = [...document.querySelectorAll('#results img.thumb')];"
            "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);"))

    def console_errors(self) -> list[str]:
        """The browser console's errors so far (since the last call)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    # -- acting -----------------------------------------------------------------------

    def wait(self, condition: Any, timeout: float = TIMEOUT) -> Any:  # noqa: ANN401
        return WebDriverWait(self.driver, timeout).until(condition)

    def _answered(self) -> int:
        return int(self.el("main").get_attribute("data-answered") or 0)

    def searching(self, act: Any) -> None:  # noqa: ANN401 - a callable
        """Runs ``act`` and waits until the search it starts is answered."""
        before = self._answered()
        act()
        self.wait(lambda d: self._answered() > before
                  and self.el("main").get_attribute("aria-busy") is None)

    def upload(self, path: Path) -> None:
        """Chooses ``path`` in the file input and waits for the answer."""
        self.searching(lambda: self.el("file").send_keys(str(path)))

    def drop(self, path: Path) -> None:
        """Drops ``path`` onto the drop zone as a file dragged from the desktop would be."""
        data = base64.b64encode(path.read_bytes()).decode()
        self.searching(lambda: self.driver.execute_script(
            "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
            "const dt = new DataTransfer();"
            "dt.items.add(new File([bytes], arguments[1], {type: 'image/jpeg'}));"
            "document.getElementById('drop').dispatchEvent("
            "  new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
            data, path.name))

    def set_field(self, element_id: str, value: str) -> None:
        """Sets a settings field (typed for text; set directly for date and time, whose
        typing depends on the locale)."""
        field = self.el(element_id)
        if field.get_attribute("type") == "datetime-local":
            self.driver.execute_script("arguments[0].value = arguments[1];", field, value)
        else:
            field.clear()
            field.send_keys(value)

    def apply(self) -> None:
        """Presses the settings' Search button and waits for the answer."""
        self.searching(lambda: self.el("apply").click())
