"""OPDS for reader apps: every feed reachable from the roots validates; search templates work; downloads."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from collections import deque
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import SHARED, import_files

ATOM = "{http://www.w3.org/2005/Atom}"
OPDS_DIR = SHARED / "opds"


def crawl(client, start: str, limit: int = 2000) -> dict[str, tuple[str, bytes]]:
    """Every feed of the same format reachable from ``start`` by OPDS links: url -> (content type, body)."""
    wanted = "opds+json" if start.startswith("/opds/v2") else "opds-catalog"
    seen: dict[str, tuple[str, bytes]] = {}
    queue = deque([start])
    while queue and len(seen) < limit:
        url = queue.popleft()
        if url in seen:
            continue
        answer = client.get(url)
        assert answer.status_code == 200, (url, answer.status_code, answer.get_data(as_text=True)[:300])
        body = answer.get_data()
        kind = answer.headers["Content-Type"]
        seen[url] = (kind, body)
        for href, link_type in feed_links(kind, body):
            if "{" in href:
                continue
            if wanted in link_type:
                target = urllib.parse.urljoin(url, href)
                parts = urllib.parse.urlsplit(target)
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                if target not in seen:
                    queue.append(target)
    return seen


def feed_links(kind: str, body: bytes) -> list[tuple[str, str]]:
    if "json" in kind:
        feed = json.loads(body)
        links = list(feed.get("links", [])) + list(feed.get("navigation", []))
        for facet in feed.get("facets", []):
            links += facet["links"]
        for group in feed.get("groups", []):
            links += group.get("links", []) + group.get("navigation", [])
        return [(link["href"], link.get("type", "")) for link in links]
    root = etree.fromstring(body)
    return [(e.get("href"), e.get("type") or "") for e in root.iter(f"{ATOM}link")]


def validate(paths: list[Path], script: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, paths)], capture_output=True, text=True,
                          timeout=600)


def check_all_valid(client, tmp_path, start: str, suffix: str, script: Path) -> int:
    feeds = crawl(client, start)
    folder = tmp_path / start.strip("/").replace("/", "-")
    folder.mkdir()
    paths = []
    for n, (_url, (_kind, body)) in enumerate(sorted(feeds.items())):
        path = folder / f"{n:04d}{suffix}"
        path.write_bytes(body)
        paths.append(path)
    done = validate(paths, script)
    invalid = [line for line in done.stdout.splitlines() if "INVALID" in line]
    assert done.returncode == 0 and not invalid, done.stdout[-4000:] + done.stderr[-2000:]
    return len(paths)


@pytest.fixture
def generated(settings, make_epub):
    files = [
        make_epub(title="Đường về bản", authors=["Hà Thị Mai"], subjects=["Tiểu thuyết", "Miền núi"],
                  description="Chuyện <b>một</b> cô giáo & bản làng.",
                  chapters=[("Phần một", ["Tiếng khèn vọng lại từ phía đồi."])]),
        make_epub(title="Thư viện trên núi", authors=["Lò Văn Sáng", "Hà Thị Mai"], subjects=["Thiếu nhi"],
                  chapters=[("Chương một", ["Con đường lên bản quanh co."])]),
        make_epub(title="المكتبة", authors=["أحمد"], language="ar", chapters=[("١", ["نص قصير."])]),
        make_epub(title="Le petit jardin", authors=["Anne Roux"], language="fr", chapters=[("Un", ["Texte."])]),
    ]
    files += [make_epub(title=f"Truyện cổ số {n}", authors=[f"Người kể {n % 7}"], subjects=["Cổ tích"])
              for n in range(45)]
    import_files(settings, files)
    return settings


@pytest.fixture(scope="module")
def shared_validators():
    if not (OPDS_DIR / "validate_opds1.py").is_file():
        pytest.skip("../shared/opds validators are not present")
    return OPDS_DIR


def test_generated_catalog_every_opds1_feed_validates(client, generated, shared_validators, tmp_path):
    count = check_all_valid(client, tmp_path, "/opds", ".xml", shared_validators / "validate_opds1.py")
    assert count > 20  # root, languages, subjects, authors, pages, facets, each author


def test_generated_catalog_every_opds2_feed_validates(client, generated, shared_validators, tmp_path):
    count = check_all_valid(client, tmp_path, "/opds/v2", ".json", shared_validators / "v2" / "validate_opds2.py")
    assert count > 20


def test_empty_box_feeds_validate(client, settings, shared_validators, tmp_path):
    check_all_valid(client, tmp_path, "/opds", ".xml", shared_validators / "validate_opds1.py")
    check_all_valid(client, tmp_path, "/opds/v2", ".json", shared_validators / "v2" / "validate_opds2.py")


@pytest.mark.slow
def test_real_corpus_feed_tree_validates(client, settings, shared_dir, tmp_path):
    corpus = shared_dir / "corpus"
    import_files(settings, [corpus / "epub3-samples", corpus / "vi"])
    v1 = check_all_valid(client, tmp_path, "/opds", ".xml", shared_dir / "opds" / "validate_opds1.py")
    v2 = check_all_valid(client, tmp_path, "/opds/v2", ".json", shared_dir / "opds" / "v2" / "validate_opds2.py")
    assert v1 > 50 and v2 > 50


def root_links(client) -> list[etree._Element]:
    return list(etree.fromstring(client.get("/opds").get_data()).iter(f"{ATOM}link"))


def test_root_links_search_both_ways_and_opds2(client, generated):
    links = root_links(client)
    kinds = {(link.get("rel"), link.get("type")) for link in links}
    assert ("search", "application/opensearchdescription+xml") in kinds
    assert ("alternate", "application/opds+json") in kinds
    direct = [link for link in links if link.get("rel") == "search" and "atom+xml" in link.get("type")]
    assert direct and "{searchTerms}" in direct[0].get("href")


def test_opensearch_template_finds_unaccented_vietnamese(client, generated):
    links = root_links(client)
    description_href = next(link.get("href") for link in links if link.get("type") == "application/opensearchdescription+xml")
    description = etree.fromstring(client.get(description_href).get_data())
    url = description.find("{http://a9.com/-/spec/opensearch/1.1/}Url")
    assert "application/atom+xml" in url.get("type")
    href = url.get("template").replace("{searchTerms}", urllib.parse.quote("thu vien tren nui"))
    titles = [e.text for e in etree.fromstring(client.get(href).get_data()).iter(f"{ATOM}title")]
    assert titles[1] == "Thư viện trên núi"  # titles[0] is the feed's own


def test_direct_template_finds_unaccented_vietnamese(client, generated):
    direct = next(link for link in root_links(client) if link.get("rel") == "search" and "atom+xml" in link.get("type"))
    href = direct.get("href").replace("{searchTerms}", urllib.parse.quote("duong ve ban"))
    feed = etree.fromstring(client.get(href).get_data())
    entries = feed.findall(f"{ATOM}entry")
    assert entries[0].findtext(f"{ATOM}title") == "Đường về bản"
    v2 = client.get("/opds/v2/search?query=" + urllib.parse.quote("duong ve ban")).get_json()
    assert v2["publications"][0]["metadata"]["title"] == "Đường về bản"


def test_acquisition_entries_have_files_covers_and_facets(client, generated):
    feed = etree.fromstring(client.get("/opds/all?lang=vi").get_data())
    entry = feed.find(f"{ATOM}entry")
    rels = {(link.get("rel"), link.get("type")) for link in entry.iter(f"{ATOM}link")}
    assert ("http://opds-spec.org/acquisition/open-access", "application/epub+zip") in rels
    assert any(rel == "http://opds-spec.org/image" for rel, _ in rels)
    assert ("http://opds-spec.org/image/thumbnail", "image/jpeg") in rels
    facets = [link for link in feed.iter(f"{ATOM}link") if link.get("rel") == "http://opds-spec.org/facet"]
    groups = {link.get("{http://opds-spec.org/2010/catalog}facetGroup") for link in facets}
    assert len(groups) == 2
    active = [link for link in facets if link.get("{http://opds-spec.org/2010/catalog}activeFacet") == "true"]
    assert any("lang=vi" in link.get("href") for link in active)
    counts = [int(link.get("{http://purl.org/syndication/thread/1.0}count")) for link in facets
              if link.get("{http://purl.org/syndication/thread/1.0}count")]
    assert 47 in counts  # Vietnamese books


def test_pagination_links(client, generated):
    feed = etree.fromstring(client.get("/opds/all").get_data())
    rels = {link.get("rel"): link.get("href") for link in feed.iter(f"{ATOM}link")}
    assert {"first", "next", "last"} <= set(rels) and "previous" not in rels
    last = etree.fromstring(client.get(rels["last"]).get_data())
    last_rels = {link.get("rel") for link in last.iter(f"{ATOM}link")}
    assert "previous" in last_rels and "next" not in last_rels
    assert len(last.findall(f"{ATOM}entry")) == 49 - 40


def test_etag_and_last_modified_give_304(client, generated, make_epub, settings):
    first = client.get("/opds/new")
    assert first.headers["ETag"] and first.headers["Last-Modified"]
    again = client.get("/opds/new", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    import_files(settings, [make_epub(title="Sách mới nhất")])
    changed = client.get("/opds/new", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200
    assert b"S\xc3\xa1ch m\xe1\xbb\x9bi nh\xe1\xba\xa5t" in changed.get_data()


def test_lists_of_the_catalog_follow_an_import_at_once(client, generated, make_epub, settings):
    """The languages, subjects and authors counts are kept between requests, but not past a change."""
    def languages_feed() -> str:
        return client.get("/opds/languages").get_data(as_text=True)

    assert "Kiswahili" not in languages_feed() and "Kiswahili" not in client.get("/").get_data(as_text=True)
    root = json.loads(client.get("/opds/v2").get_data())
    authors_before = {n["title"]: n.get("properties", {}).get("numberOfItems") for n in root["navigation"]}
    import_files(settings, [make_epub(title="Hadithi za Kale", language="sw", authors=["Mwandishi Mpya"],
                                      subjects=["Hadithi"])])
    assert "Kiswahili" in languages_feed()
    assert "Kiswahili" in client.get("/").get_data(as_text=True)
    assert "Hadithi" in client.get("/opds/subjects").get_data(as_text=True)
    assert "Mwandishi Mpya" in client.get("/authors").get_data(as_text=True)
    root = json.loads(client.get("/opds/v2?again=1").get_data())
    authors_after = {n["title"]: n.get("properties", {}).get("numberOfItems") for n in root["navigation"]}
    assert authors_after != authors_before


def test_download_through_opds_link(client, generated):
    feed = etree.fromstring(client.get("/opds/new").get_data())
    href = next(link.get("href") for link in feed.iter(f"{ATOM}link") if link.get("type") == "application/epub+zip")
    whole = client.get(href)
    assert whole.status_code == 200 and whole.data[:2] == b"PK"
    disposition = whole.headers["Content-Disposition"]
    assert 'filename="' in disposition and "filename*=UTF-8''" in disposition
    plain = disposition.split('filename="')[1].split('"')[0]
    assert plain.isascii() and plain.endswith(".epub")
    part = client.get(href, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.data) == 100


@pytest.mark.parametrize("url", [
    "/opds/all?page=0", "/opds/all?page=abc", "/opds/all?lang=%00", "/opds/all?subject=-1", "/opds/all?subject=99999",
    "/opds/search", "/opds/search?q=" + "a" * 5000, "/opds/authors/999999", "/opds/v2/search",
    "/opds/books/999999/download", "/opds/v2/all?page=99999999999",
])
def test_malformed_feed_requests_are_4xx(client, generated, url):
    assert 400 <= client.get(url).status_code < 500
