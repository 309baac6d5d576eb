"""Real Chromium for page tests (Debian's chromium, driven by Playwright)."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PHONE = {"width": 360, "height": 640}


@contextmanager
def phone_page(**context_options) -> Iterator:
    """A page in a fresh browser context sized like a cheap phone."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip("chromium is not installed (bash .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport=PHONE, **context_options)
            yield context.new_page()
        finally:
            browser.close()


def follow(page, target) -> None:
    """Click a link or submit button (a selector or a locator) and wait until the page it leads to
    has loaded: a bare click may return while the next page is still arriving, and what is read from
    the page then belongs to neither page."""
    with page.expect_navigation(wait_until="load"):
        if isinstance(target, str):
            page.click(target)
        else:
            target.click()
