"""The reader in a real Chromium at phone size: no script from books runs, the offline file opens with
no network, preferences work with JavaScript off."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import import_files
from tests.support.browser import follow, phone_page
from tests.web.test_reader import HOSTILE

pytestmark = pytest.mark.browser


@pytest.fixture
def library(settings, make_epub):
    from appliance.books.demo import make_cover_png

    import_files(settings, [make_epub(title="Truyện thử", chapters=[("Chương một", ["Mở đầu câu chuyện."])],
                                      extra_chapter_html=HOSTILE,
                                      images={"pic.png": make_cover_png("x", (200, 30, 30))})])
    return settings


def test_hostile_chapter_runs_nothing_and_loads_nothing_remote(live_server, library):
    requests, dialogs = [], []
    with phone_page() as page:
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(live_server.url + "/books/1/read/1")
        page.wait_for_load_state("networkidle")
        assert page.title() != "pwned"
        assert "Đoạn cuối" in page.inner_text("article")
        width = page.evaluate("document.querySelector('img[alt=\"local picture\"]').naturalWidth")
        assert width > 0  # the book's own picture came from the box
        page.screenshot(path="/tmp/reader-hostile.png")
    assert dialogs == []
    assert all(url.startswith(live_server.url) for url in requests), requests


def test_offline_file_opens_without_the_network(live_server, library, tmp_path):
    with phone_page(java_script_enabled=False) as page:
        data = page.request.get(live_server.url + "/books/1/offline").body()
        path = tmp_path / "book.html"
        path.write_bytes(data)
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.context.set_offline(True)
        page.goto(path.as_uri())
        assert "Mở đầu câu chuyện." in page.inner_text("body")
        assert page.evaluate("[...document.images].filter(i => i.getAttribute('src')).every(i => i.complete && i.naturalWidth > 0)") is True
        page.screenshot(path="/tmp/reader-offline.png")
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []


def test_font_size_and_dark_mode_with_javascript_off(live_server, library):
    with phone_page(java_script_enabled=False) as page:
        page.goto(live_server.url + "/books/1/read/0")
        before = page.evaluate("getComputedStyle(document.querySelector('article p')).fontSize")
        follow(page, "text=A+")
        follow(page, "text=Dark")
        after = page.evaluate("getComputedStyle(document.querySelector('article p')).fontSize")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert float(after.rstrip("px")) > float(before.rstrip("px"))
        assert background == "rgb(22, 22, 22)"
        page.screenshot(path="/tmp/reader-dark.png")


def _read_code(page, locator, path) -> str:
    """What a QR reader (zbar) reads on the screenshot of ``locator``, as a phone's camera would."""
    locator.screenshot(path=str(path))
    done = subprocess.run(["zbarimg", "--quiet", "--raw", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"no code read in {path}: {done.stderr}"
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("zbarimg") is None, reason="zbar-tools is not installed (bash .ci/run installs it)")
def test_the_codes_on_the_pages_read_as_what_they_say(live_server, library, settings, tmp_path):
    """The book page's code opens the book; the poster's join the Wi-Fi and open the library."""
    with phone_page() as page:
        page.goto(live_server.url + "/books/1")
        code = page.locator(".qrbox img")  # loaded when scrolled to
        code.scroll_into_view_if_needed()
        page.wait_for_function("document.querySelector('.qrbox img').complete"
                               " && document.querySelector('.qrbox img').naturalWidth > 0")
        assert code.bounding_box()["width"] >= 150  # big enough to aim a cheap phone at
        assert _read_code(page, code, tmp_path / "book.png") == live_server.url + "/books/1"
        page.goto(live_server.url + "/poster")
        wifi, address = page.locator(".qrbox svg").all()
        assert _read_code(page, wifi, tmp_path / "wifi.png") == f"WIFI:T:nopass;S:{settings.wifi_ssid};;"
        assert _read_code(page, address, tmp_path / "address.png") == f"http://{settings.local_domain}/"
        page.goto(live_server.url + "/books/1")
        page.screenshot(path="/tmp/book-qr.png", full_page=True)


CONTRAST = """() => {
  const lum = (rgb) => {
    const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ground = (el) => {
    for (; el; el = el.parentElement) {
      const bg = getComputedStyle(el).backgroundColor;
      if (bg && !bg.startsWith('rgba(0, 0, 0, 0)') && bg !== 'transparent') return bg;
    }
    return 'rgb(255, 255, 255)';
  };
  return [...document.querySelectorAll('a, button, .button')].filter(e => e.offsetParent && e.innerText.trim())
    .map(e => {
      const [a, b] = [lum(getComputedStyle(e).color), lum(ground(e))];
      return [e.innerText.trim().slice(0, 30), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
    });
}"""


def test_dark_pages_keep_their_text_readable(live_server, library):
    """WCAG AA asks 4.5:1 for text: the light accent of dark pages once stood on white buttons and
    behind white button text at 1.76:1."""
    with phone_page(java_script_enabled=False) as page:
        page.goto(live_server.url + "/books/1/read/0")
        follow(page, "text=Dark")
        for path in ("/", "/books/1", "/books/1/read/0", "/search?q=truyen"):
            page.goto(live_server.url + path)
            low = [(text, round(ratio, 2)) for text, ratio in page.evaluate(CONTRAST) if ratio < 4.5]
            assert low == [], (path, low)
        page.screenshot(path="/tmp/dark-search.png")


def test_right_to_left_pages_point_their_arrows_forward_and_keep_addresses_whole(live_server, library):
    """In Arabic "next" points left; an address or a network name stays one left-to-right run; the
    language choice is at the top of the first screen, each language in its own name."""
    with phone_page(java_script_enabled=False) as page:
        page.context.add_cookies([{"name": "lang", "value": "ar", "url": live_server.url}])
        page.goto(live_server.url + "/books/1/read/0")
        assert page.get_attribute("html", "dir") == "rtl"
        nxt = page.locator("a[rel=next] .arrow")
        assert page.evaluate("e => getComputedStyle(e).transform", nxt.element_handle()).startswith("matrix(-1")
        page.screenshot(path="/tmp/reader-ar.png")
        page.goto(live_server.url + "/poster")
        address = page.locator(".steps bdi").nth(-1)
        assert address.get_attribute("dir") == "ltr" and address.inner_text().startswith("http")
        page.screenshot(path="/tmp/poster-ar.png")
        page.goto(live_server.url + "/")
        names = page.locator("header .langs a")
        assert names.all_inner_texts() == ["Tiếng Việt", "English", "Français", "العربية"]
        assert all(box["y"] + box["height"] < 120 for box in (names.nth(i).bounding_box() for i in range(4)))
        page.screenshot(path="/tmp/home-ar.png")
