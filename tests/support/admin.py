"""Helpers and fixtures for the librarian pages' tests (imported by tests/web/test_admin*.py)."""
from __future__ import annotations

import re

import pytest

from appliance.storage import accounts as auth
from appliance.storage import db as dbmod

PASSWORD = "long enough 42"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(client, url: str) -> str:
    """The CSRF token of the first form on the page at ``url`` (as a browser would see it)."""
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code)
    found = TOKEN.search(page.get_data(as_text=True))
    assert found, f"no form on {url}"
    return found.group(1)


def make_admin(settings, username: str = "mai", password: str = PASSWORD) -> auth.Admin:
    db = dbmod.connect(settings.db_path)
    try:
        return auth.create_admin(db, username, password)
    finally:
        db.close()


def log_in(client, username: str = "mai", password: str = PASSWORD, **kwargs):
    token = form_token(client, "/admin/login")
    return client.post("/admin/login", data={"csrf_token": token, "username": username, "password": password},
                       **kwargs)


def post_form(client, url: str, data: dict | None = None, *, page: str | None = None, **kwargs):
    """POST like a browser: take the CSRF token from ``page`` (default: the same URL), then send."""
    token = form_token(client, page or url)
    return client.post(url, data={"csrf_token": token, **(data or {})}, **kwargs)


def catalog_db(settings):
    return dbmod.connect(settings.db_path)


@pytest.fixture
def librarian(settings) -> auth.Admin:
    return make_admin(settings)


@pytest.fixture
def admin_client(app, librarian):
    client = app.test_client()
    answer = log_in(client)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/admin/")
    return client
