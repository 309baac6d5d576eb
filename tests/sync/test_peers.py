"""Vans and neighbours: releases flow between boxes that find each other, statistics ride to the hub."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from appliance.discovery import Peer
from appliance.settings import Settings
from appliance.storage import db as dbmod
from appliance.storage.db import catalog_session
from content_sync import publishing
from content_sync.protocol import minisign
from content_sync.protocol import releases as bundles
from content_sync.sync import apply
from content_sync.sync.peers import exchange
from tests.sync.test_discovery import private_network_available

SCENARIO = Path(__file__).parents[1] / "support" / "peers_scenario.py"
ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "vi-literature"


@pytest.fixture(scope="module")
def meeting(tmp_path_factory) -> dict:
    reason = private_network_available()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("peers") / "boxes"
    done = subprocess.run(["unshare", "-rn", sys.executable, str(SCENARIO), str(work)], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_van_brings_the_release_found_by_zeroconf(meeting):
    assert meeting["boxes_up"]
    van_first, village_first = meeting["steps"][0], meeting["steps"][1]
    assert van_first[1] == 0 and "installed version 1" in van_first[2]
    assert village_first[1] == 0 and "from Xe thư viện: vi-literature: installed version 1" in village_first[2]
    assert meeting["village_version"] == 1 and meeting["village_books"] == 3


@pytest.mark.slow
def test_village_statistics_reach_the_hub_through_the_van_exactly_once(meeting):
    assert meeting["hub_batches_from_village"] == 1
    assert meeting["hub_views_from_village"] == 5
    # The hub knows the batch was carried, and by which van: the van signed that it carried it.
    assert meeting["carried_via"] == [meeting["van_key"]]
    for who, code, output in meeting["steps"]:
        assert code == 0, (who, output)


@pytest.mark.slow
def test_the_hubs_acknowledgement_returns_to_the_village(meeting):
    last = meeting["steps"][-1]
    assert last[0] == "village" and "confirmed by the hub, through Xe thư viện" in last[2]
    assert meeting["village_outbox"] == []
    assert not [p for p in meeting["van_outbox"] if not p.endswith("registration.json")]


@pytest.fixture
def malicious_peer(tmp_path, make_epub):
    """A peer serving a folder: a validly signed v1, then a tampered v2, and a /api/v1/releases that lies."""
    secret, public = minisign.write_key_pair(tmp_path / "keys", "publisher")
    key = minisign.parse_secret_key(secret.read_text())
    src, tree = tmp_path / "src", tmp_path / "peer"
    make_epub(title="Sách thật", folder=src, name="a.epub")
    publishing.build_release(src, CHANNEL, key, tree / "releases")
    make_epub(title="Sách thứ hai", folder=src, name="b.epub")
    publishing.build_release(src, CHANNEL, key, tree / "releases")
    (tree / "api" / "v1").mkdir(parents=True)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tree))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tree, public, Peer(name="Kẻ lạ", addresses=("127.0.0.1",), port=server.server_port, role="van")
    server.shutdown()


def box_with_release_2(settings, public, tree) -> object:
    (settings.keys_dir / "publishers").mkdir(parents=True)
    shutil.copy(public, settings.keys_dir / "publishers" / "publisher.pub")
    db = dbmod.connect(settings.db_path)
    apply.subscribe(db, CHANNEL)
    from content_sync.sync.sources import FolderSource

    apply.apply_release(settings, db, FolderSource(tree / "releases"), CHANNEL)
    return db


def catalog_state(db) -> tuple:
    return (apply.installed_version(db, CHANNEL), db.execute("SELECT sha256, title FROM books ORDER BY id").fetchall())


def test_malicious_peer_offering_a_tampered_release_is_refused(settings, malicious_peer):
    tree, public, peer = malicious_peer
    db = box_with_release_2(settings, public, tree)
    before = catalog_state(db)
    # Version 3, as the peer claims, is version 2 with a changed title: the signature no longer matches.
    manifest = json.loads((tree / "releases" / bundles.manifest_path(CHANNEL, 2)).read_bytes())
    manifest["version"] = 3
    manifest["items"][0]["metadata"]["title"] = "Sách giả"
    folder = tree / "releases" / "channels" / CHANNEL / "3"
    folder.mkdir()
    (folder / bundles.MANIFEST).write_bytes(bundles.canonical(manifest))
    shutil.copy(tree / "releases" / bundles.signature_path(CHANNEL, 2), folder / bundles.SIGNATURE)
    (tree / "releases" / bundles.latest_path(CHANNEL)).write_text("3\n")
    (tree / "api" / "v1" / "releases").write_text(json.dumps({"channels": {CHANNEL: {"version": 3}}}))
    lines = exchange(settings, db, peer)
    assert any("refused vi-literature" in line and "signature" in line for line in lines), lines
    assert catalog_state(db) == before
    db.close()


def test_malicious_peer_offering_an_older_release_is_refused(settings, malicious_peer):
    tree, public, peer = malicious_peer
    db = box_with_release_2(settings, public, tree)
    before = catalog_state(db)
    # The peer says it has version 9 but hands out the validly signed version 1.
    (tree / "releases" / bundles.latest_path(CHANNEL)).write_text("1\n")
    (tree / "api" / "v1" / "releases").write_text(json.dumps({"channels": {CHANNEL: {"version": 9}}}))
    lines = exchange(settings, db, peer)
    assert any("refused vi-literature" in line and "going back is refused" in line for line in lines), lines
    assert catalog_state(db) == before
    db.close()


def test_a_box_serves_what_it_installed_to_peers(client, settings, malicious_peer):
    tree, public, _peer = malicious_peer
    db = box_with_release_2(settings, public, tree)
    db.close()
    assert client.get("/api/v1/releases").get_json()["channels"] == {CHANNEL: {"version": 2}}
    assert client.get(f"/releases/channels/{CHANNEL}/latest").get_data(as_text=True).strip() == "2"
    manifest = client.get(f"/releases/{bundles.manifest_path(CHANNEL, 2)}")
    assert manifest.data == (tree / "releases" / bundles.manifest_path(CHANNEL, 2)).read_bytes()
    item = json.loads(manifest.data)["items"][0]
    blob = client.get(f"/releases/blobs/sha256/{item['sha256']}", headers={"Range": "bytes=0-9"})
    assert blob.status_code == 206 and len(blob.data) == 10
    for bad in ("/releases/blobs/sha256/../../catalog.db", "/releases/channels/x/1/catalog.db",
                f"/releases/channels/{CHANNEL}/2/../../../keys/box-ed25519.key"):
        assert client.get(bad).status_code == 404, bad
    assert client.post("/api/v1/batches", data=b"{}").status_code == 400

    # A book the librarian withdrew (hidden) is no longer offered; nor is a cover, which no manifest names.
    with catalog_session(settings.db_path) as db:
        book = db.execute("SELECT id, cover_sha256 FROM books WHERE sha256 = ?", [item["sha256"]]).fetchone()
        db.execute("UPDATE books SET hidden = 1 WHERE id = ?", [book[0]])
        db.conn.commit()
    assert client.get(f"/releases/blobs/sha256/{item['sha256']}").status_code == 404
    if book[1]:
        assert client.get(f"/releases/blobs/sha256/{book[1]}").status_code == 404


def test_peer_endpoints_refuse_bodies_before_reading_them(live_server, client):
    """A phone on the Wi-Fi may post here: the size is checked on the declared length, before a byte
    of the body is read (a 190 MB post was read whole into memory)."""
    import socket

    for path in ("/api/v1/batches", "/api/v1/boxes"):
        with socket.create_connection(("127.0.0.1", live_server.server.effective_port), timeout=10) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: box\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {500 * 1024 * 1024}\r\n\r\n".encode() + b"{" * 1000)
            answer = sock.recv(200)
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer)
    deep = b"[" * 50_000 + b"]" * 50_000
    assert client.post("/api/v1/boxes", data=deep[:60_000], headers={"Content-Type": "application/json"}).status_code == 403


def test_a_van_known_only_by_address_receives_the_village_statistics(tmp_path, settings):
    """Where multicast is blocked a village knows the van by address (LIBRARY_PEERS): such a peer
    starts as a "village", but the van says what it is, and the village hands it its statistics."""
    from appliance.discovery import parse_peer_addresses
    from appliance.stats import counts as stats
    from appliance.web.factory import create_app
    from content_sync.protocol import batches as statsbatch
    from tests.conftest import LiveServer

    van_settings = Settings(home=tmp_path / "van", box_role="van", disk_reserve_mb=0)
    with LiveServer(create_app(van_settings)) as van:
        village = settings.replace(stats_min_term_count=1, peers=f"127.0.0.1:{van.server.effective_port}")
        with catalog_session(village.db_path) as db:
            stats.write_events(db, [stats.Event("view", 1, "", -1, time.monotonic())] * 3)
            [peer] = parse_peer_addresses(village.peers)
            assert peer.role == "village"
            lines = exchange(village, db, peer)
        assert "1 statistics batch(es) handed to" in " ".join(lines), lines
        village_key = statsbatch.load_box_key(village.keys_dir).public_b64
        carried = statsbatch.outbox_folder(van_settings.outbox_dir, village_key)
        assert (carried / "registration.json").exists()
        assert len(list(carried.glob("*.json"))) == 2  # the registration and one batch


def test_a_village_peer_is_not_handed_statistics_and_says_so(tmp_path, settings):
    from appliance.discovery import parse_peer_addresses
    from appliance.web.factory import create_app
    from tests.conftest import LiveServer

    with LiveServer(create_app(Settings(home=tmp_path / "neighbour"))) as neighbour:
        with catalog_session(settings.db_path) as db:
            [peer] = parse_peer_addresses(f"127.0.0.1:{neighbour.server.effective_port}")
            lines = exchange(settings, db, peer)
    assert any("statistics wait for a van" in line for line in lines), lines
    assert not (tmp_path / "neighbour" / "outbox").exists() or not list((tmp_path / "neighbour" / "outbox").glob("*/*"))


def test_once_mode_keeps_listening_while_boxes_are_still_being_heard():
    """A neighbour answers first and a van 1.5 s later: both are met (the agent stopped listening a
    second after the first answer)."""
    from appliance.discovery import Peer
    from content_sync.sync.agent import listen_for_peers

    now = [0.0]
    neighbour = Peer(name="Bản bên", addresses=("127.0.0.1",), port=1, box_id="a")
    van = Peer(name="Xe", addresses=("127.0.0.1",), port=2, box_id="b", role="van")

    class Heard:
        def peers(self):
            return [p for at, p in ((0.5, neighbour), (2.0, van)) if now[0] >= at]

    def sleep(seconds):
        now[0] += seconds

    heard = listen_for_peers(Heard(), wait=8, quiet=3, clock=lambda: now[0], sleep=sleep)
    assert [p.name for p in heard] == ["Bản bên", "Xe"]
    assert now[0] < 5.5  # and it stops once nothing new comes
