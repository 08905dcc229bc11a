"""The search page in headless Chromium over a real server and a real gallery (CUHK03 val,
default model, Milvus Lite): what the page shows is checked against the Python API's
answer to the same search."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reidctl.api import where
from tests.browser.conftest import TOKEN
from tests.browser.site import CAMERA_B_LATER, T0, LiveServer, Site, person, require_selenium

pytestmark = pytest.mark.browser
require_selenium()  # before it is imported: a clear skip (a failure in CI) without it

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.browser.page import Page  # noqa: E402


@pytest.fixture
def page(driver: Any, server: LiveServer) -> Iterator[Page]:  # noqa: ANN401
    """The page freshly loaded; no console error may be left at the end."""
    p = Page(driver, server.base).open()
    assert p.shown("app") and not p.shown("token-panel")
    yield p
    assert p.console_errors() == []


def test_an_upload_shows_the_ranked_hits(page: Page, site: Site) -> None:
    q = site.present
    page.upload(q)
    want = site.gallery.search(q, k=10)[0]
    assert page.hit_ids() == [h.id for h in want.hits]
    cards = page.hits()
    first = cards[0]
    assert first.get_attribute("data-person") == person(q)
    assert "same" in first.get_attribute("class") and "same person" in first.text
    assert "#1" in first.text and f"{want.hits[0].distance:.3f}" in first.text
    assert f"camera {want.hits[0].camera}" in first.text
    assert want.hits[0].time.strftime("%Y-%m-%d %H:%M:%S") in first.text
    # 9 shots of the person are stored: the 10th hit at least is someone else, framed red
    others = [c for c in cards if "other" in c.get_attribute("class")]
    assert others and all("other person" in c.text for c in others)
    assert all((c.get_attribute("data-person") == person(q)) == ("same" in c.get_attribute(
        "class")) for c in cards)
    assert "Match." in page.text("verdict") and "no match" not in page.text("verdict").lower()
    assert page.text("status").startswith(f"10 results for {q.name}")
    assert f"person {person(q)} (from the file name)" in page.text("query-caption")
    page.wait(lambda d: page.thumbs_loaded())
    assert f"beyond distance {site.threshold:.3f}" in page.text("gallery-info")
    assert f"{len(site.images)} images" in page.text("gallery-info")
    # everything the page loaded came from the server itself: no external asset
    loaded = page.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    assert loaded and all(u.startswith(page.base + "/") for u in loaded), loaded


def test_a_dropped_file_is_a_query(page: Page, site: Site) -> None:
    page.drop(site.present)
    assert page.hit_ids() == [h.id for h in site.gallery.search(site.present, k=10)[0].hits]
    assert f"Uploaded: {site.present.name}" in page.text("query-caption")


def test_a_hit_searches_again_along_a_trail(page: Page, site: Site) -> None:
    page.upload(site.present)
    first_results = page.hit_ids()
    hit = page.hits()[0]
    hit_id, hit_name = hit.get_attribute("data-id"), hit.get_attribute("title").split(" · ")[0]
    page.searching(hit.click)
    crumbs = page.crumbs()
    assert len(crumbs) == 2 and crumbs[1].get_attribute("aria-current") == "step"
    assert crumbs[0].tag_name == "button" and site.present.name in crumbs[0].text
    assert hit_name in crumbs[1].text
    want = site.gallery.search_id(hit_id, k=10, exclude_self=True)
    assert page.hit_ids() == [h.id for h in want.hits] and hit_id not in page.hit_ids()
    assert f"Stored image: {hit_name}" in page.text("query-caption")
    assert page.hits()[0].get_attribute("data-person") == person(site.present)

    # the keyboard: Enter on a hit searches from it, and focus lands on the results
    second = page.hits()[1]
    second_id = second.get_attribute("data-id")
    page.searching(lambda: second.send_keys(Keys.ENTER))
    assert len(page.crumbs()) == 3
    assert page.driver.switch_to.active_element.get_attribute("id") == "results-title"
    want = site.gallery.search_id(second_id, k=10, exclude_self=True)
    assert page.hit_ids() == [h.id for h in want.hits]

    # back along the trail: the upload's results again, the later steps gone
    page.searching(page.crumbs()[0].click)
    assert len(page.crumbs()) == 1 and page.hit_ids() == first_results


def test_a_camera_filter_changes_the_hits(page: Page, site: Site) -> None:
    q = site.present
    page.upload(q)
    unfiltered = page.hit_ids()
    page.set_field("camera", "B")
    page.apply()
    want = site.gallery.search(q, k=10, filters=where(camera="B"))[0]
    assert page.hit_ids() == [h.id for h in want.hits] != unfiltered
    assert {h.get_attribute("data-camera") for h in page.hits()} == {"B"}
    assert page.hits()[0].get_attribute("data-person") == person(q)  # across cameras
    page.set_field("k", "3")
    page.apply()
    assert len(page.hit_ids()) == 3


def test_an_absent_person_is_no_match(page: Page, site: Site) -> None:
    page.upload(site.absent)
    verdict = page.el("verdict")
    assert verdict.is_displayed() and "nomatch" in verdict.get_attribute("class")
    assert verdict.text.startswith("No match.") and f"{site.threshold:.3f}" in verdict.text
    assert "not in the gallery" in verdict.text
    cards = page.hits()
    assert cards and all("dimmed" in c.get_attribute("class") for c in cards)
    assert all("other" in c.get_attribute("class") for c in cards)  # its person is not there


def test_time_filters_and_a_filter_that_matches_nothing(page: Page, site: Site) -> None:
    q = site.present
    page.upload(q)
    before = (T0 + CAMERA_B_LATER).strftime("%Y-%m-%dT%H:%M:%S")  # camera A's shots only
    page.set_field("before", before)
    page.apply()
    want = site.gallery.search(q, k=10, filters=where(before=before))[0]
    assert page.hit_ids() == [h.id for h in want.hits]
    assert {h.get_attribute("data-camera") for h in page.hits()} == {"A"}
    page.set_field("after", "2030-01-01T00:00:00")  # after everything stored
    page.apply()
    assert page.hits() == []
    verdict = page.el("verdict")
    assert verdict.is_displayed() and "No stored image passes these filters." in verdict.text
    assert page.text("status").startswith("0 results")
    page.searching(page.el("clear").click)
    assert page.el("after").get_attribute("value") == "" and len(page.hits()) == 10


def test_hits_and_controls_are_reachable_by_keyboard(page: Page, site: Site) -> None:
    page.upload(site.present)
    for element_id in ("k", "camera", "exclude_camera", "source", "after", "before", "file"):
        label = page.driver.find_elements(By.CSS_SELECTOR, f"label[for='{element_id}']")
        assert label and label[0].text.strip(), element_id
    assert page.el("status").get_attribute("aria-live") == "polite"
    hit = page.hits()[0]
    assert hit.tag_name == "button" and hit.get_attribute("aria-label").startswith("Rank 1")
    page.hits()[1].send_keys(Keys.SHIFT, Keys.TAB)  # back one, as a person tabs
    active = page.driver.switch_to.active_element
    assert active.get_attribute("data-id") == page.hit_ids()[0]
    outline = page.driver.execute_script(
        "return getComputedStyle(document.activeElement).outlineStyle;")
    assert outline not in ("", "none")


def test_a_token_is_asked_for_once_and_images_come_as_blobs(driver: Any, site: Site,  # noqa: ANN401
                                                             token_server: LiveServer) -> None:
    page = Page(driver, token_server.base).open()
    assert page.shown("token-panel") and not page.shown("app")
    page.el("token-input").send_keys("wrong-token-0123456789")
    page.el("token-input").send_keys(Keys.ENTER)
    page.wait(lambda d: "refused" in page.text("token-error"))
    assert not page.shown("app")
    page.el("token-input").send_keys(TOKEN + Keys.ENTER)
    page.wait(lambda d: page.shown("app"))
    assert driver.execute_script("return sessionStorage.getItem('reidctl.token');") == TOKEN
    page.upload(site.present)
    assert page.hit_ids() == [h.id for h in site.gallery.search(site.present, k=10)[0].hits]
    page.wait(lambda d: page.thumbs_loaded())
    sources = driver.execute_script(
        "return [...document.querySelectorAll('#results img.thumb')].map(i => i.src);")
    assert sources and all(s.startswith("blob:") for s in sources)
    page.searching(page.hits()[0].click)  # a stored image's thumbnail, with the header too
    page.wait(lambda d: page.thumbs_loaded())
    driver.refresh()  # the token is kept for the tab
    page.wait(lambda d: page.shown("app"))
    errors = [e for e in page.console_errors() if "status of 401" not in e]
    assert errors == []
