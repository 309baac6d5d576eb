"""What a village's first week finds on the reader's and the librarian's pages."""
from __future__ import annotations

import re

from tests.conftest import import_files
from tests.support.admin import post_form


def test_a_books_subjects_link_to_their_lists(settings, make_epub, client):
    import_files(settings, [make_epub(title="Trồng lúa", subjects=["Nông nghiệp", "Sách hướng dẫn"])])
    book = client.get("/books/1").get_data(as_text=True)
    links = re.findall(r'<li><a href="(/subjects/\d+)">([^<]+)</a></li>', book)
    assert [name for _href, name in links] == ["Nông nghiệp", "Sách hướng dẫn"]
    listed = client.get(links[0][0]).get_data(as_text=True)
    assert "Trồng lúa" in listed


def test_the_welcome_text_keeps_its_paragraphs(admin_client):
    text = "Chào mừng bà con đến thư viện.\r\n\r\nThư viện mở cửa từ 7 giờ sáng.\r\nMượn sách miễn phí."
    saved = post_form(admin_client, "/admin/welcome", {"text": text})
    assert saved.status_code == 303
    home = admin_client.get("/").get_data(as_text=True)
    welcome = re.search(r'<section class="welcome">(.*?)</section>', home, re.S).group(1)
    assert re.findall(r"<p>(.*?)</p>", welcome, re.S) == [
        "Chào mừng bà con đến thư viện.", "Thư viện mở cửa từ 7 giờ sáng.\nMượn sách miễn phí."]


def test_a_refused_search_says_why_in_the_pages_language(client):
    client.set_cookie("lang", "vi")
    for path in ("/search?q=" + "a" * 500, "/search?q=sach&page=99999999", "/search?q=sach&page=x"):
        page = client.get(path)
        assert page.status_code == 400, path
        body = page.get_data(as_text=True)
        assert not re.search(r"too long|must be|whole number|between", body), (path, body)
        assert "quá dài" in body or "số nguyên" in body or "phải từ" in body
