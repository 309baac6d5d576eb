"""Signed channel releases: built centrally, refused when anything is wrong, applied in one transaction."""
from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import threading
from functools import partial
from pathlib import Path

import pytest

from appliance.search import upkeep as indexing
from appliance.search.index import SearchIndex
from appliance.storage import catalog
from appliance.storage import db as dbmod
from appliance.storage.atomic import NotEnoughDisk
from appliance.storage.blobs import BlobStore
from content_sync import publishing
from content_sync.protocol import minisign
from content_sync.protocol import releases as bundles
from content_sync.sync import apply
from content_sync.sync.sources import BlobTooLarge, BlobTruncated, FolderSource, HttpSource

CHANNEL = "vi-literature"


@pytest.fixture
def publisher(tmp_path):
    secret, public = minisign.write_key_pair(tmp_path / "keys", "publisher")
    return minisign.parse_secret_key(secret.read_text()), public


@pytest.fixture
def source_books(tmp_path, make_epub):
    folder = tmp_path / "src"
    make_epub(title="Chí Phèo", authors=["Nam Cao"], folder=folder / "nam-cao", name="Chí Phèo.epub",
              chapters=[("Một", ["Hắn vừa đi vừa chửi."])])
    make_epub(title="Lão Hạc", authors=["Nam Cao"], folder=folder / "nam-cao", name="Lão Hạc.epub",
              chapters=[("Một", ["Lão Hạc bán chó."])])
    make_epub(title="Gánh hàng hoa", authors=["Khái Hưng", "Nhất Linh"], folder=folder, name="ganh-hang-hoa.epub",
              chapters=[("Một", ["Hoa thơm ngát phố phường."])])
    return folder


@pytest.fixture
def tree(tmp_path, source_books, publisher):
    out = tmp_path / "tree"
    publishing.build_release(source_books, CHANNEL, publisher[0], out)
    return out


@pytest.fixture
def box(settings, publisher):
    """A box that trusts the publisher and follows the channel."""
    folder = apply.publisher_keys_dir(settings)
    folder.mkdir(parents=True)
    shutil.copy(publisher[1], folder / "publisher.pub")
    db = dbmod.connect(settings.db_path)
    apply.subscribe(db, CHANNEL)
    yield settings, db
    db.close()


def snapshot(settings, db) -> tuple:
    books = db.execute("SELECT id, sha256, title FROM books ORDER BY id").fetchall()
    channels = db.execute("SELECT name, version, manifest_sha256 FROM channels").fetchall()
    items = db.execute("SELECT * FROM channel_items ORDER BY channel, item_id").fetchall()
    blobs = sorted(BlobStore(settings.blobs_dir).all())
    return books, channels, items, blobs


def write_release(tree: Path, manifest: dict, key: minisign.SecretKey, *, comment: str | None = None) -> None:
    """Publish a hand-made manifest (signed validly) as the channel's newest version."""
    version = manifest["version"]
    folder = tree / "channels" / manifest["channel"] / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    data = bundles.canonical(manifest)
    (folder / bundles.MANIFEST).write_bytes(data)
    comment = comment or bundles.trusted_comment(manifest["channel"], version)
    (folder / bundles.SIGNATURE).write_text(minisign.sign(data, key, comment))
    (tree / "channels" / manifest["channel"] / "latest").write_text(f"{version}\n")


def manifest_of(tree: Path, version: int = 1) -> dict:
    return json.loads((tree / bundles.manifest_path(CHANNEL, version)).read_bytes())


def test_signed_release_applies_and_is_searchable(box, tree):
    settings, db = box
    result = apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    assert (result.status, result.new_version, result.added, result.fetched_blobs) == ("installed", 1, 3, 3)
    titles = sorted(r[0] for r in db.execute("SELECT title FROM books"))
    assert titles == ["Chí Phèo", "Gánh hàng hoa", "Lão Hạc"]
    ids = sorted(r[0] for r in db.execute("SELECT item_id FROM channel_items"))
    assert ids == ["ganh-hang-hoa", "nam-cao/chi-pheo", "nam-cao/lao-hac"]
    assert apply.installed_version(db, CHANNEL) == 1
    index = SearchIndex(settings.index_dir)
    indexing.ensure_index(db, index)
    assert index.search("chi pheo").total == 1
    index.close()
    again = apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    assert again.status == "current" and again.fetched_blobs == 0
    # The box keeps the signed files of what it installed, to pass them on to other boxes.
    kept = settings.home / "releases" / bundles.manifest_path(CHANNEL, 1)
    assert kept.read_bytes() == (tree / bundles.manifest_path(CHANNEL, 1)).read_bytes()


def test_one_install_at_a_time_the_other_is_told_and_changes_nothing(box, tree):
    """The sync agent's service fetches a release over a slow link (held here in the middle of a
    blob) while a librarian's "Sync now" asks for the same: the second is told at once and touches
    nothing (both writing the same files in staging/ spoiled them); the first installs it."""
    settings, db = box
    halfway, carry_on = threading.Event(), threading.Event()

    class SlowLink(FolderSource):
        def fetch_blob(self, sha256, size, target):
            halfway.set()
            assert carry_on.wait(30)
            return super().fetch_blob(sha256, size, target)

    outcome = []

    def agent() -> None:
        other = dbmod.connect(settings.db_path)
        try:
            outcome.append(apply.apply_release(settings, other, SlowLink(tree), CHANNEL))
        finally:
            other.close()

    first = threading.Thread(target=agent)
    first.start()
    try:
        assert halfway.wait(30)
        staged = sorted(p.name for p in (settings.staging_dir / "blobs").iterdir())
        refused(box, tree, apply.InstallBusy, "another process of this box")
        assert sorted(p.name for p in (settings.staging_dir / "blobs").iterdir()) == staged
    finally:
        carry_on.set()
        first.join(30)
    assert outcome and outcome[0].status == "installed" and outcome[0].added == 3
    assert apply.apply_release(settings, db, FolderSource(tree), CHANNEL).status == "current"


def test_update_adds_changes_removes_and_collects_old_files(box, tree, source_books, publisher, make_epub):
    settings, db = box
    apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    (source_books / "nam-cao" / "Lão Hạc.epub").unlink()
    make_epub(title="Chí Phèo (in lại)", authors=["Nam Cao"], folder=source_books / "nam-cao", name="Chí Phèo.epub",
              chapters=[("Một", ["Bản in lại có lời tựa."])])
    make_epub(title="Số đỏ", authors=["Vũ Trọng Phụng"], folder=source_books, name="so-do.epub")
    report = publishing.build_release(source_books, CHANNEL, publisher[0], tree)
    assert (report.version, report.added, report.updated, report.removed) == (2, 1, 1, 1)
    assert manifest_of(tree, 2)["removed"] == ["nam-cao/lao-hac"]
    old_blobs = set(BlobStore(settings.blobs_dir).all())
    source = FolderSource(tree)
    result = apply.apply_release(settings, db, source, CHANNEL, gc_grace_seconds=0)
    assert (result.added, result.updated, result.removed, result.fetched_blobs) == (1, 1, 1, 2)
    titles = sorted(r[0] for r in db.execute("SELECT title FROM books"))
    assert titles == ["Chí Phèo (in lại)", "Gánh hàng hoa", "Số đỏ"]
    blobs = BlobStore(settings.blobs_dir)
    referenced = {r[0] for r in db.execute("SELECT sha256 FROM books")}
    assert referenced <= set(blobs.all())
    gone = old_blobs - set(blobs.all())
    assert len(gone) >= 2  # the old Chí Phèo and Lão Hạc files (and their covers) were collected


def test_a_release_that_changes_only_metadata_updates_the_books(box, tree, publisher):
    """The publisher mends a title and an author's name without touching the file: the box installs
    the new release as an update and the catalog says what the release says."""
    settings, db = box
    apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    manifest = manifest_of(tree, 1)
    item = next(i for i in manifest["items"] if i["metadata"]["title"] == "Chí Phèo")
    item["metadata"].update(title="Chí Phèo (bản sửa)", authors=["Nam Cao", "Hội đồng biên tập"])
    manifest.update(version=2, previous=1, removed=[])
    data = bundles.canonical(manifest)
    folder = tree / "channels" / CHANNEL / "2"
    folder.mkdir()
    (folder / bundles.MANIFEST).write_bytes(data)
    (folder / bundles.SIGNATURE).write_text(minisign.sign(data, publisher[0], bundles.trusted_comment(CHANNEL, 2)))
    (tree / bundles.latest_path(CHANNEL)).write_text("2\n")
    result = apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    assert (result.new_version, result.added, result.updated, result.removed, result.fetched_blobs) == (2, 0, 1, 0, 0)
    book_id = db.execute("SELECT id FROM books WHERE sha256 = ?", [item["sha256"]]).fetchone()[0]
    book = catalog.get_book(db, book_id)
    assert book["title"] == "Chí Phèo (bản sửa)"
    assert book["authors"] == ["Nam Cao", "Hội đồng biên tập"]
    assert db.execute("SELECT count(*) FROM index_queue WHERE book_id = ?", [book_id]).fetchone()[0] >= 1


def test_only_changed_files_travel(box, tree, source_books, publisher, make_epub):
    settings, db = box
    apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    make_epub(title="Số đỏ", authors=["Vũ Trọng Phụng"], folder=source_books, name="so-do.epub")
    publishing.build_release(source_books, CHANNEL, publisher[0], tree)
    source = FolderSource(tree)
    apply.apply_release(settings, db, source, CHANNEL)
    manifest_bytes = len((tree / bundles.manifest_path(CHANNEL, 2)).read_bytes())
    signature_bytes = len((tree / bundles.signature_path(CHANNEL, 2)).read_bytes())
    so_do = next(i for i in manifest_of(tree, 2)["items"] if i["id"] == "so-do")
    assert source.bytes_read == so_do["size"] + manifest_bytes + signature_bytes + 2  # + "2\n" of latest


def refused(box, tree, error: type[Exception], match: str | None = None, **kwargs) -> Exception:
    settings, db = box
    before = snapshot(settings, db)
    with pytest.raises(error) as caught:
        apply.apply_release(settings, db, kwargs.pop("source", FolderSource(tree)), CHANNEL, **kwargs)
    assert snapshot(settings, db) == before
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    if match:
        assert match in message
    return caught.value


def test_tampered_manifest_is_refused(box, tree):
    path = tree / bundles.manifest_path(CHANNEL, 1)
    path.write_bytes(path.read_bytes().replace("Chí Phèo".encode(), b"Chi Pheo"))
    refused(box, tree, minisign.SignatureInvalid, "manifest.json")


def test_tampered_blob_is_refused(box, tree):
    item = manifest_of(tree)["items"][0]
    path = tree / bundles.blob_path(item["sha256"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    refused(box, tree, apply.BlobHashMismatch, item["sha256"])


def test_unknown_key_is_refused(box, tree, tmp_path):
    stranger = minisign.generate()
    write_release(tree, {**manifest_of(tree), "version": 2}, stranger)
    refused(box, tree, minisign.UnknownKey, stranger.public.key_id_hex)


def test_older_version_replayed_is_refused(box, tree, source_books, publisher, make_epub):
    settings, db = box
    make_epub(title="Số đỏ", folder=source_books, name="so-do.epub")
    publishing.build_release(source_books, CHANNEL, publisher[0], tree)
    apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    (tree / bundles.latest_path(CHANNEL)).write_text("1\n")  # a mirror replays the old, validly signed release
    refused(box, tree, apply.RollbackRefused, "version 2 is installed")


def test_unknown_format_is_refused(box, tree, publisher):
    write_release(tree, {**manifest_of(tree), "version": 2, "format": 99}, publisher[0])
    refused(box, tree, bundles.UnknownFormat, "format 99")


def test_truncated_blob_is_refused(box, tree):
    item = manifest_of(tree)["items"][1]
    path = tree / bundles.blob_path(item["sha256"])
    path.write_bytes(path.read_bytes()[:-100])
    refused(box, tree, BlobTruncated, "fewer than")


def test_blob_over_its_declared_size_is_refused(box, tree):
    item = manifest_of(tree)["items"][2]
    path = tree / bundles.blob_path(item["sha256"])
    path.write_bytes(path.read_bytes() + b"\0" * 5000)
    refused(box, tree, BlobTooLarge, "larger than")


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "/etc/passwd", "a/../../b", "UPPER", "a\\b", ""])
def test_path_traversal_item_id_is_refused(box, tree, publisher, bad_id):
    manifest = manifest_of(tree)
    manifest["items"][0]["id"] = bad_id
    write_release(tree, {**manifest, "version": 2}, publisher[0])
    refused(box, tree, bundles.UnsafeItemId)


def test_release_needing_more_disk_than_free_is_refused(box, tree):
    settings, db = box
    greedy = settings.replace(disk_reserve_mb=10**9)
    before = snapshot(settings, db)
    with pytest.raises(NotEnoughDisk, match="must stay free"):
        apply.apply_release(greedy, db, FolderSource(tree), CHANNEL)
    assert snapshot(settings, db) == before


def test_signature_moved_to_another_release_is_refused(box, tree, publisher):
    manifest = {**manifest_of(tree), "version": 2}
    write_release(tree, manifest, publisher[0], comment=bundles.trusted_comment(CHANNEL, 1))
    refused(box, tree, bundles.ManifestInvalid, "signed comment")


def test_release_over_http(box, tree):
    settings, db = box
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tree))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = apply.apply_release(settings, db, HttpSource(f"http://127.0.0.1:{server.server_port}"), CHANNEL)
    finally:
        server.shutdown()
    assert result.added == 3


def test_minisign_verifies_what_bundle_build_signs(tree, publisher):
    if shutil.which("minisign") is None:
        pytest.skip("minisign is not installed (bash .ci/run installs it)")
    done = subprocess.run(["minisign", "-Vm", str(tree / bundles.manifest_path(CHANNEL, 1)), "-p", str(publisher[1])],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Signature and comment signature verified" in done.stdout
    assert f"channel:{CHANNEL} version:1" in done.stdout


def test_cli_build_verify_list_subscribe_sync(runner, tmp_path, source_books, settings, make_epub):
    keys = tmp_path / "cli-keys"
    assert runner.invoke(["keygen", "--out", str(keys)]).exit_code == 0
    assert (keys / "publisher.key").stat().st_mode & 0o777 == 0o600
    out = tmp_path / "cli-tree"
    result = runner.invoke(["bundle", "build", str(source_books), "--channel", CHANNEL, "--key",
                            str(keys / "publisher.key"), "--out", str(out)])
    assert result.exit_code == 0 and "version 1: 3 books" in result.output
    assert runner.invoke(["bundle", "verify", str(out), "--channel", CHANNEL, "--pubkey",
                          str(keys / "publisher.pub")]).exit_code == 0
    assert "vi-literature\t1\t3 books" in runner.invoke(["bundle", "list", str(out)]).output
    refused_sync = runner.invoke(["sync", "once", "--from", str(out)])
    assert refused_sync.exit_code != 0 and "follows no channel" in refused_sync.output
    assert runner.invoke(["channels", "subscribe", CHANNEL]).exit_code == 0
    untrusted = runner.invoke(["sync", "once", "--from", str(out)])
    assert untrusted.exit_code != 0 and "trusts no publisher key" in untrusted.output
    assert runner.invoke(["trust", str(keys / "publisher.pub")]).exit_code == 0
    synced = runner.invoke(["sync", "once", "--from", str(out)])
    assert synced.exit_code == 0, synced.output
    assert "installed version 1" in synced.output
    assert "version 1\t3 books\tsubscribed" in runner.invoke(["channels"]).output
    # A tampered next release: the command says which check failed, and the box keeps version 1.
    make_epub(title="Số đỏ", folder=source_books, name="so-do.epub")
    runner.invoke(["bundle", "build", str(source_books), "--channel", CHANNEL, "--key",
                   str(keys / "publisher.key"), "--out", str(out)])
    manifest = out / bundles.manifest_path(CHANNEL, 2)
    manifest.write_bytes(manifest.read_bytes().replace("Số đỏ".encode(), b"So do"))
    bad = runner.invoke(["sync", "once", "--from", str(out)])
    assert bad.exit_code != 0
    assert "signature check failed" in bad.output and "channels/vi-literature/2/manifest.json" in bad.output
    assert "version 1\t3 books" in runner.invoke(["channels"]).output


def test_a_release_can_give_boxes_the_hubs_key(box, source_books, publisher, tmp_path, admin_client):
    """A box set up without keys/hub.pub cannot check the hub's acknowledgements and hands its
    batches to every van forever. The system page says so; a release signed by the publisher can
    name the hub's key, and a box that installs it keeps it."""
    settings, db = box
    hub_key = base64.b64encode(bytes(range(32))).decode("ascii")
    page = admin_client.get("/admin/system").get_data(as_text=True)
    assert "key is missing" in page
    tree = tmp_path / "tree-with-key"
    publishing.build_release(source_books, CHANNEL, publisher[0], tree, hub_key=hub_key)
    apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    assert (settings.keys_dir / "hub.pub").read_text().strip() == hub_key
    assert "key is missing" not in admin_client.get("/admin/system").get_data(as_text=True)
    with pytest.raises(bundles.ManifestInvalid):
        publishing.build_release(source_books, CHANNEL, publisher[0], tmp_path / "other", hub_key="not a key")
