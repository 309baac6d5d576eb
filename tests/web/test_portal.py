"""Captive portal: what each phone's connectivity probe gets before and after the welcome page."""
from __future__ import annotations

import http.client

import pytest

from appliance.web.context import services
from appliance.web.views.public.portal import PortalMemory

APPLE_SUCCESS = b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"

# (path, Host header the probe carries, expected status after the welcome page, expected body)
PROBES = [
    ("/generate_204", "connectivitycheck.gstatic.com", 204, b""),
    ("/generate_204", "clients3.google.com", 204, b""),
    ("/gen_204", "www.google.com", 204, b""),
    ("/hotspot-detect.html", "captive.apple.com", 200, APPLE_SUCCESS),
    ("/library/test/success.html", "www.apple.com", 200, APPLE_SUCCESS),
    ("/connecttest.txt", "www.msftconnecttest.com", 200, b"Microsoft Connect Test"),
    ("/ncsi.txt", "www.msftncsi.com", 200, b"Microsoft NCSI"),
    ("/success.txt", "detectportal.firefox.com", 200, b"success\n"),
]

PHONE = "10.42.0.57"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app) -> Clock:
    clock = Clock()
    services(app).portal.clock = clock
    return clock


def probe(client, path: str, host: str, phone: str = PHONE):
    return client.get(path, headers={"Host": host}, environ_base={"REMOTE_ADDR": phone})


def see_welcome_page(client, phone: str = PHONE):
    page = client.get("/portal", headers={"Host": "library.lan"}, environ_base={"REMOTE_ADDR": phone})
    assert page.status_code == 200
    assert "Continue to the library" in page.get_data(as_text=True)
    assert 'href="/portal/continue"' in page.get_data(as_text=True)
    carry_on = client.get("/portal/continue", headers={"Host": "library.lan"}, environ_base={"REMOTE_ADDR": phone})
    assert carry_on.status_code == 303
    assert carry_on.headers["Location"] == "/"
    return carry_on


@pytest.mark.parametrize("path, host, status, body", PROBES)
def test_probe_redirects_to_the_welcome_page_then_answers_success(client, clock, path, host, status, body):
    before = probe(client, path, host)
    assert before.status_code == 302
    assert before.headers["Location"] == "http://library.lan/portal"
    assert "no-store" in before.headers["Cache-Control"]
    assert before.data != body

    see_welcome_page(client)

    after = probe(client, path, host)
    assert after.status_code == status
    assert after.data == body
    assert "no-store" in after.headers["Cache-Control"]


def test_welcome_page_alone_does_not_yet_release_the_phone(client, clock):
    """Showing the page is not enough: the phone's portal window must stay until the reader taps Continue."""
    client.get("/portal", environ_base={"REMOTE_ADDR": PHONE})
    assert probe(client, "/generate_204", "connectivitycheck.gstatic.com").status_code == 302


def test_each_phone_is_remembered_on_its_own(client, clock):
    see_welcome_page(client, phone="10.42.0.57")
    assert probe(client, "/generate_204", "connectivitycheck.gstatic.com", phone="10.42.0.57").status_code == 204
    assert probe(client, "/generate_204", "connectivitycheck.gstatic.com", phone="10.42.0.58").status_code == 302


def test_phone_is_forgotten_after_the_memory_time(app, client, clock):
    minutes = services(app).library.settings.portal_memory_minutes
    assert minutes == 60
    see_welcome_page(client)
    clock.now += minutes * 60 - 1
    assert probe(client, "/hotspot-detect.html", "captive.apple.com").data == APPLE_SUCCESS
    clock.now += 2
    again = probe(client, "/hotspot-detect.html", "captive.apple.com")
    assert again.status_code == 302
    assert len(services(app).portal) == 0


def test_memory_time_is_a_setting(settings):
    from appliance.web.factory import create_app

    app = create_app(settings.replace(portal_memory_minutes=5), TESTING=True)
    try:
        clock = Clock()
        services(app).portal.clock = clock
        client = app.test_client()
        see_welcome_page(client)
        clock.now += 4 * 60
        assert probe(client, "/ncsi.txt", "www.msftncsi.com").data == b"Microsoft NCSI"
        clock.now += 61
        assert probe(client, "/ncsi.txt", "www.msftncsi.com").status_code == 302
    finally:
        services(app).library.close()


def test_redirect_names_the_library_and_its_port(settings):
    from appliance.web.factory import create_app

    app = create_app(settings.replace(local_domain="thuvien.lan"), TESTING=True)
    try:
        response = app.test_client().get("/generate_204", base_url="http://connectivitycheck.gstatic.com:8080")
        assert response.headers["Location"] == "http://thuvien.lan:8080/portal"
    finally:
        services(app).library.close()


def test_windows_portal_page_leads_to_the_welcome_page(client):
    response = client.get("/redirect", headers={"Host": "www.msftconnecttest.com"})
    assert response.status_code == 302
    assert response.headers["Location"] == "http://library.lan/portal"


def test_head_probes_work(client, clock):
    see_welcome_page(client)
    response = client.head("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"},
                           environ_base={"REMOTE_ADDR": PHONE})
    assert response.status_code == 204


def test_phones_are_never_written_to_disk(app, client, settings, clock):
    phone = "10.42.0.213"
    see_welcome_page(client, phone=phone)
    probe(client, "/generate_204", "connectivitycheck.gstatic.com", phone=phone)
    for path in settings.home.rglob("*"):
        if path.is_file():
            assert phone.encode() not in path.read_bytes(), path


def test_memory_is_bounded():
    clock = Clock()
    memory = PortalMemory(60, clock=clock, limit=3)
    for n in range(5):
        memory.welcome(f"10.42.0.{n}")
    assert len(memory) == 3
    assert not memory.has_seen("10.42.0.0") and memory.has_seen("10.42.0.4")


def test_probes_over_real_http_with_the_probe_host(live_server):
    """Through waitress on 127.0.0.1: the phone's address comes from the connection itself."""
    host, port = "127.0.0.1", int(live_server.url.rsplit(":", 1)[1])

    def get(path: str, host_header: str):
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            connection.request("GET", path, headers={"Host": host_header})
            response = connection.getresponse()
            return response.status, response.getheader("Location"), response.read()
        finally:
            connection.close()

    status, location, _ = get("/hotspot-detect.html", "captive.apple.com")
    assert status == 302 and location == f"http://library.lan:{port}/portal"
    status, location, _ = get("/portal/continue", f"library.lan:{port}")
    assert status == 303
    assert get("/hotspot-detect.html", "captive.apple.com") == (200, None, APPLE_SUCCESS)
    assert get("/generate_204", "connectivitycheck.gstatic.com")[0] == 204
    assert get("/connecttest.txt", "www.msftconnecttest.com")[2] == b"Microsoft Connect Test"
