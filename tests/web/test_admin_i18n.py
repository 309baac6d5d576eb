"""The librarian's pages in the librarian's language, the command line in English, and catalogs
with nothing left untranslated."""
from __future__ import annotations

import gettext
import io
import json
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.support.admin import PASSWORD, log_in, post_form

TRANSLATIONS = Path(__file__).resolve().parents[2] / "ui" / "translations"
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrs]")


def text(answer) -> str:
    return answer.get_data(as_text=True)


def test_login_page_follows_the_browser_language(client, librarian):
    page = text(client.get("/admin/login", headers={"Accept-Language": "vi"}))
    assert "Đăng nhập thủ thư" in page and "Tên tài khoản" in page and "Mật khẩu" in page
    assert "Librarian login" not in page and "Account name" not in page
    assert 'lang="vi"' in page


def test_dashboard_and_system_page_in_vietnamese(admin_client):
    admin_client.set_cookie("lang", "vi")
    dashboard = text(admin_client.get("/admin/"))
    assert "Tài khoản thủ thư" in dashboard and "Chỉ mục tìm kiếm" in dashboard and "Đăng xuất" in dashboard
    assert "Librarian accounts" not in dashboard and "Search index" not in dashboard
    system = text(admin_client.get("/admin/system"))
    assert "Hệ thống" in system and "Đồng bộ ngay" in system
    assert "lần thành công gần nhất: chưa có" in system  # the sync agent's state, as the view words it
    assert "máy chủ trung tâm: chưa đặt (LIBRARY_HUB_URL)" in system
    assert "Sync now" not in system and "last success" not in system and "Disk" not in system


def test_messages_after_an_action_are_in_vietnamese(admin_client):
    admin_client.set_cookie("lang", "vi")
    added = post_form(admin_client, "/admin/accounts", {"username": "lan", "password": PASSWORD,
                                                         "password2": PASSWORD}, follow_redirects=True)
    assert "Đã thêm tài khoản lan." in text(added) and "is added" not in text(added)
    saved = post_form(admin_client, "/admin/welcome", {"text": "Chào mừng bà con!"}, follow_redirects=True)
    assert "Đã lưu lời chào." in text(saved) and "The welcome text is saved" not in text(saved)
    sync = post_form(admin_client, "/admin/sync", page="/admin/system", follow_redirects=True)
    assert "Chưa đặt địa chỉ máy chủ trung tâm (LIBRARY_HUB_URL)" in text(sync)


def test_account_errors_from_auth_are_translated_on_the_page(admin_client):
    admin_client.set_cookie("lang", "vi")
    answer = post_form(admin_client, "/admin/accounts", {"username": "lan", "password": PASSWORD,
                                                          "password2": PASSWORD + "x"})
    assert answer.status_code == 400
    assert "Hai mật khẩu không giống nhau." in text(answer) and "are not the same" not in text(answer)
    short = post_form(admin_client, "/admin/accounts", {"username": "lan", "password": "short",
                                                         "password2": "short"})
    assert "Mật khẩu cần có ít nhất 8 ký tự." in text(short)


def test_book_form_and_upload_refusals_are_translated(admin_client, settings, make_epub):
    from tests.conftest import import_files

    import_files(settings, [make_epub(title="Sách thử")])
    admin_client.set_cookie("lang", "fr")
    edit = post_form(admin_client, "/admin/books/1", {"title": ""})
    assert edit.status_code == 400 and "Un livre doit avoir un titre." in text(edit)
    refused = post_form(admin_client, "/admin/upload", {"files": (io.BytesIO(b"not a book"), "notes.txt")},
                        content_type="multipart/form-data")
    assert refused.status_code == 400
    assert "« notes.txt » n’est pas un fichier EPUB" in text(refused) and "is not an EPUB" not in text(refused)


def _zip_without_a_package(path: Path) -> Path:
    """A zip an upload takes for an EPUB (its mimetype says so) that holds no package document."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("OEBPS/chapter.xhtml", "<html><body><p>Một trang.</p></body></html>")
    return path


def test_why_an_upload_was_quarantined_is_said_in_the_page_language(admin_client, tmp_path):
    broken = _zip_without_a_package(tmp_path / "hong.epub").read_bytes()
    admin_client.set_cookie("lang", "vi")
    answer = post_form(admin_client, "/admin/upload", {"files": (io.BytesIO(broken), "hong.epub")},
                       content_type="multipart/form-data")
    page = text(answer)
    assert ("không đọc được và được giữ ở khu cách ly: không tìm thấy tài liệu gói OPF "
            "(tệp zip này không phải EPUB)") in page
    assert "no OPF package document" not in page
    # The list of quarantined files says it again, in the language of whoever reads it.
    admin_client.set_cookie("lang", "ar")
    assert "لم يُعثر على مستند حزمة OPF (ملف zip هذا ليس EPUB)" in text(admin_client.get("/admin/system"))
    admin_client.set_cookie("lang", "en")
    assert "no OPF package document found (this zip is not an EPUB)" in text(admin_client.get("/admin/system"))


def test_import_warnings_are_said_in_french_and_kept_in_english_for_the_api(admin_client, client, settings,
                                                                             make_epub):
    from tests.conftest import import_files

    book = make_epub(title="Sans langue", language="x-klingon-unknown",
                     chapters=[("Chương một", ["Ngày xưa có một cô gái nghèo sống cùng mẹ già ở làng bên sông. "
                                               "Hằng ngày cô ra đồng làm việc từ sáng sớm đến tối mịt."] * 8)])
    report = import_files(settings, [book])
    said = [str(w) for _f, w in report.warnings]
    assert any(w.startswith("dc:language is 'x-klingon-unknown', which is not a language tag") for w in said), said
    admin_client.set_cookie("lang", "fr")
    page = text(admin_client.get("/admin/books/1"))
    assert "dc:language vaut &#39;x-klingon-unknown&#39;, qui n’est pas un code de langue" in page
    assert "which is not a language tag" not in page
    # Right to left, a value in Latin letters is a run of its own (else its quotes and dashes are
    # put in Arabic's order around it).
    admin_client.set_cookie("lang", "ar")
    assert "قيمة dc:language هي \u2068&#39;x-klingon-unknown&#39;\u2069" in text(admin_client.get("/admin/books/1"))
    api = client.get("/api/books/1").get_json()
    assert any("which is not a language tag" in w for w in api["warnings"]), api["warnings"]


def test_a_reason_kept_before_messages_had_values_is_still_shown(admin_client, settings):
    from appliance.storage import db as dbmod

    db = dbmod.connect(settings.db_path)
    with db.atomic():
        db.execute("INSERT INTO quarantine (sha256, file_name, reason, seq) VALUES ('ab', 'cu.epub', "
                   "'the file is empty', 1)")
        db.execute("INSERT INTO quarantine (sha256, file_name, reason, seq) VALUES ('cd', 'la.epub', "
                   "'zip entry X would expand 900 times', 2)")
    db.close()
    admin_client.set_cookie("lang", "vi")
    page = text(admin_client.get("/admin/system"))
    assert "cu.epub" in page and "tệp trống" in page  # a text the catalog of translations knows
    assert "la.epub" in page and "zip entry X would expand 900 times" in page  # one it cannot know


def test_why_the_last_sync_failed_is_said_in_the_page_language(admin_client, runner, settings):
    import socket

    from content_sync.sync.agent import SyncAgent

    with socket.socket() as probe:  # a port of this machine nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = SyncAgent(settings.replace(hub_url=closed)).run_job("register")
    assert not result.ok
    admin_client.set_cookie("lang", "vi")
    page = text(admin_client.get("/admin/system"))
    assert (f"lỗi gần nhất: đăng ký với máy chủ trung tâm: không kết nối được máy chủ trung tâm ở {closed}: "
            "kết nối bị từ chối" in page)
    assert "UTC (đăng ký với máy chủ trung tâm)" in page  # the last attempt, and which job it was
    assert "cannot reach the hub" not in page and "register" not in page
    admin_client.set_cookie("lang", "fr")
    assert (f"inscription auprès du serveur central : impossible de joindre le serveur central à {closed} : "
            "la connexion a été refusée" in text(admin_client.get("/admin/system")))
    status = runner.invoke(["sync", "status"])
    assert f"last error: register: cannot reach the hub at {closed}: the connection was refused" in status.output


def test_a_count_in_a_kept_message_takes_the_languages_plural_forms():
    from babel.support import Translations

    from appliance.messages import load, say, say_plural

    arabic = Translations.load(str(TRANSLATIONS), ["ar"])
    french = Translations.load(str(TRANSLATIONS), ["fr"])

    def missing(n: int):
        said = say_plural("none of the book's documents is in the archive (%(num)d file is missing)",
                          "none of the book's documents is in the archive (%(num)d files are missing)", n)
        return load(json.loads(json.dumps(said.as_json())))  # as the catalog keeps it

    assert str(missing(1)).endswith("(1 file is missing)") and str(missing(3)).endswith("(3 files are missing)")
    assert missing(1).translated(arabic).endswith("(ملف واحد مفقود)")
    assert missing(2).translated(arabic).endswith("(ملفان مفقودان)")
    assert missing(5).translated(arabic).endswith("(5 ملفات مفقودة)")
    assert missing(11).translated(arabic).endswith("(11 ملفًا مفقودًا)")
    assert missing(2).translated(french).endswith("(2 fichiers manquent)")
    # A message said inside another is translated with it.
    inner = say("%(name)s is encrypted in the zip", name="OEBPS/c1.xhtml")
    outer = load(json.loads(json.dumps(say("no document of the book can be read: %(detail)s", detail=inner).as_json())))
    assert str(outer) == "no document of the book can be read: OEBPS/c1.xhtml is encrypted in the zip"
    assert outer.translated(french) == "aucun document du livre ne peut être lu : OEBPS/c1.xhtml est chiffré dans le zip"
    # A damaged record (a value missing, or of the wrong kind) is shown as its text, not as an error.
    for damaged in ({"text": "%(name)s is encrypted in the zip", "params": {}},
                    {"text": "%(name)s is encrypted in the zip", "params": {"name": 1, "x": [1]}},
                    {"text": "%(num)d documents", "params": {"num": "many"}, "plural": "%(num)d documents"}):
        said = load(damaged)
        assert str(said) and said.translated(french) and said.translated(arabic, isolate=True)


def test_the_system_page_lists_the_channels_releases_in_the_page_language(admin_client, settings):
    from appliance.storage import db as dbmod

    db = dbmod.connect(settings.db_path)
    with db.atomic():
        db.execute("INSERT INTO channels (name, subscribed, version, manifest_sha256) VALUES ('vi-literature', 1, 3, ?)",
                   ["ab12cd34ef56" + "0" * 52])
        db.execute("INSERT INTO channels (name, subscribed) VALUES ('vi-nong-nghiep', 0)")
    db.close()
    admin_client.set_cookie("lang", "fr")
    page = text(admin_client.get("/admin/system"))
    assert "<th>Chaîne</th><th>Version installée</th><th>Suivie</th>" in page
    assert "vi-literature</td><td>3</td>" in page and "ab12cd34ef56<" in page and "0" * 52 not in page
    assert "vi-nong-nghiep</td><td>aucune pour l’instant</td>" in page
    assert "manifest_sha256" not in page and "installed_seq" not in page


def test_a_refused_channel_name_is_said_in_french(admin_client):
    admin_client.set_cookie("lang", "fr")
    bad = post_form(admin_client, "/admin/channels", {"name": "../etc"})
    assert bad.status_code == 400
    assert "Le nom de chaîne « ../etc » n’est pas permis : utilisez des minuscules" in text(bad)


def test_wrong_password_is_said_in_french(client, librarian):
    answer = log_in(client, password="not the password", headers={"Accept-Language": "fr"})
    assert answer.status_code == 403
    assert "Nom de compte ou mot de passe incorrect." in text(answer)
    assert "Wrong account name or password" not in text(answer)


def test_arabic_pages_are_right_to_left(admin_client, client, librarian):
    login = text(client.get("/admin/login", headers={"Accept-Language": "ar"}))
    assert 'dir="rtl"' in login and "دخول أمين المكتبة" in login
    admin_client.set_cookie("lang", "ar")
    for url in ("/admin/", "/admin/system", "/admin/accounts"):
        page = text(admin_client.get(url))
        assert 'dir="rtl"' in page and 'lang="ar"' in page, url
    assert "أمين المكتبة" in text(admin_client.get("/admin/"))


def test_without_a_language_the_pages_keep_the_default(admin_client):
    assert "Librarian accounts" in text(admin_client.get("/admin/"))  # the tests' default locale is English


def test_the_command_line_stays_in_english(runner, settings):
    bad = runner.invoke(["admin", "create", "bad name!"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert bad.exit_code != 0 and "may only use letters, digits" in bad.output
    short = runner.invoke(["admin", "create", "lan"], input="short\nshort\n")
    assert short.exit_code != 0 and "A password needs at least 8 characters." in short.output


# --- the catalogs ---------------------------------------------------------------------------


def catalogs() -> list[Path]:
    found = sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))
    assert len(found) >= 3
    return found


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def single_number_forms(catalog) -> set[int]:
    """The plural forms the language uses for one number only (Arabic's one and two), which may say
    the number in words rather than with %(num)."""
    rule = gettext.c2py(catalog.plural_expr)
    numbers: dict[int, set[int]] = {}
    for n in range(1001):
        numbers.setdefault(rule(n), set()).add(n)
    return {form for form, ns in numbers.items() if len(ns) == 1}


@pytest.mark.parametrize("path", catalogs(), ids=lambda p: p.parts[-3])
def test_every_entry_is_translated_with_the_same_placeholders(path):
    with open(path, "rb") as f:
        catalog = read_po(f)
    problems = []
    singles = single_number_forms(catalog)
    for message in catalog:
        if not message.id:
            continue
        if message.fuzzy:
            problems.append(("fuzzy", message.id))
        if isinstance(message.id, tuple):
            wanted = placeholders(message.id[1])
            forms = message.string if isinstance(message.string, tuple) else (message.string,)
            if len(forms) != catalog.num_plurals:
                problems.append(("plural forms", message.id))
            for index, form in enumerate(forms):
                found = placeholders(form)
                if not form:
                    problems.append(("untranslated", message.id))
                elif found != wanted and not (index in singles and found == wanted - {"num"}):
                    problems.append(("placeholders", message.id, index))
        elif not message.string:
            problems.append(("untranslated", message.id))
        elif placeholders(message.string) != placeholders(message.id):
            problems.append(("placeholders", message.id))
    problems += [("babel check", message.id, [str(e) for e in errors]) for message, errors in catalog.check()]
    assert problems == []


@pytest.mark.parametrize("path", catalogs(), ids=lambda p: p.parts[-3])
def test_compiled_catalog_matches_its_source(path):
    """The committed .mo file says what its .po file says (else: pybabel compile -d ui/translations)."""
    from babel.messages.mofile import read_mo

    def entries(catalog) -> dict:
        def plain(v):
            return tuple(v) if isinstance(v, list | tuple) else v

        return {plain(m.id): plain(m.string) for m in catalog if m.id}

    with open(path, "rb") as source, open(path.with_suffix(".mo"), "rb") as compiled:
        assert entries(read_mo(compiled)) == entries(read_po(source))


def test_the_catalog_of_texts_holds_every_text_the_code_asks_for(tmp_path, monkeypatch):
    """A text added to a page or a view without extracting the catalog again would stay English in
    every language, with the catalogs above still complete (docs/development.md: Translations says how)."""
    from babel.messages.frontend import CommandLineInterface

    root = TRANSLATIONS.parents[1]
    fresh = tmp_path / "fresh.pot"
    monkeypatch.chdir(root)
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", "babel.cfg", "-k", "_", "-k", "gettext",
                                "-k", "ngettext:1,2", "-k", "lazy_gettext", "-k", "say_plural:1,2", "-o", str(fresh), "."])

    def ids(path: Path) -> set:
        with open(path, "rb") as f:
            return {m.id for m in read_po(f) if m.id}

    assert ids(fresh) - ids(TRANSLATIONS / "messages.pot") == set()


def test_a_label_and_its_colon_follow_the_language(admin_client):
    """French puts a (non-breaking) space before a colon; the label and colon are one text."""
    admin_client.set_cookie("lang", "fr")
    system = text(admin_client.get("/admin/system"))
    assert "État\u00a0: <strong>" in system and "Horloge\u00a0: <a" in system
    admin_client.set_cookie("lang", "vi")
    assert "Trạng thái: <strong>" in text(admin_client.get("/admin/system"))


def test_the_firmware_power_flags_are_read_and_named_in_the_page_language(app):
    from appliance.system.boxstatus import parse_throttled

    assert parse_throttled("no such output") is None and parse_throttled("throttled=zz") is None
    seen = parse_throttled("throttled=0x50005\n")  # under-voltage and throttled now, and both since start
    assert seen.raw == "0x50005" and seen.under_voltage
    assert not parse_throttled("throttled=0x4").under_voltage  # throttled, but the power is good
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        assert seen.flags[:2] == ("baisse de tension en ce moment", "ralenti en ce moment")
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert seen.flags == ("under-voltage now", "throttled now", "under-voltage has happened since start",
                              "throttling has happened since start")
