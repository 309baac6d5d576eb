"""A villager's path in Chromium at 360x640: search without accents, open the book, read two chapters,
come home and continue; the same in the Arabic interface and with JavaScript off."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import import_files
from tests.support.browser import follow, phone_page

pytestmark = pytest.mark.browser
ARTIFACTS = Path("/tmp/library-test-screenshots")


@pytest.fixture
def library(settings, make_epub):
    import_files(settings, [make_epub(
        title="Đường về bản", authors=["Hà Thị Mai"],
        chapters=[("Phần một", ["Tiếng khèn vọng lại từ phía đồi."]), ("Phần hai", ["Mẹ đứng chờ ở đầu ngõ."])])])
    return settings


@pytest.mark.parametrize("locale, javascript", [("vi-VN", True), ("ar", True), ("vi-VN", False)])
def test_search_read_two_chapters_and_continue(live_server, library, locale, javascript):
    ARTIFACTS.mkdir(exist_ok=True)
    tag = f"{locale}-{'js' if javascript else 'nojs'}"
    with phone_page(locale=locale, java_script_enabled=javascript, extra_http_headers={"Accept-Language": locale}) as page:
        page.goto(live_server.url + "/")
        if locale == "ar":
            assert page.get_attribute("html", "dir") == "rtl"
        page.fill("#q", "duong ve ban")
        page.press("#q", "Enter")
        page.wait_for_load_state()
        page.screenshot(path=str(ARTIFACTS / f"{tag}-1-search.png"))
        # A Vietnamese book's title and author read left to right in an Arabic interface too.
        for part in (".card .t", ".card .a"):
            assert page.eval_on_selector(part, "e => getComputedStyle(e).direction") == "ltr", part
        follow(page, "text=Đường về bản")
        page.screenshot(path=str(ARTIFACTS / f"{tag}-2-book.png"))
        follow(page, "a[href$='/read']")
        assert "Tiếng khèn vọng lại" in page.inner_text("article")
        follow(page, "a[rel=next]")
        assert "Mẹ đứng chờ" in page.inner_text("article")
        page.screenshot(path=str(ARTIFACTS / f"{tag}-3-chapter2.png"))
        follow(page, "a.brand")
        resume = page.locator(".resume a")
        assert resume.count() == 1 and "Đường về bản" in resume.inner_text()
        page.screenshot(path=str(ARTIFACTS / f"{tag}-4-home.png"))
        follow(page, resume)
        assert "Mẹ đứng chờ" in page.inner_text("article")
