"""The hub and the sync agent as real processes on 127.0.0.1; downloads over a link that misbehaves."""
from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from functools import partial
from pathlib import Path

import pytest

from appliance.settings import Settings
from appliance.stats import counts as stats
from appliance.storage import db as dbmod
from appliance.web.context import services
from content_sync import publishing
from content_sync.protocol import minisign
from content_sync.protocol import releases as bundles
from content_sync.protocol.registration import sign_registration
from content_sync.sync import apply
from content_sync.sync.transfer import Downloader, HttpReleaseSource, LinkClosed, LinkPolicy
from tests.support.linkproxy import LinkProxy

CHANNEL = "vi-literature"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server stopped"
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


@contextlib.contextmanager
def running_hub(data: Path, *options: str):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "hub", "serve", "--data", str(data),
                                "--port", str(port), *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/api/v1/releases", process)
        yield url, data
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def hub(tmp_path):
    """A hub that takes any box (the enrollment tests use one that does not)."""
    with running_hub(tmp_path / "hub", "--open-enrollment") as running:
        yield running


@pytest.fixture
def publisher(tmp_path):
    secret, public = minisign.write_key_pair(tmp_path / "pubkeys", "publisher")
    return minisign.parse_secret_key(secret.read_text()), public


def box_env(settings: Settings, hub_url: str) -> dict:
    return dict(os.environ, LIBRARY_HOME=str(settings.home), LIBRARY_HUB_URL=hub_url, LIBRARY_DISK_RESERVE_MB="0",
                LIBRARY_STATS_MIN_TERM_COUNT="2")


def agent_once(settings, hub_url) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli.main", "sync", "run", "--once"],
                          env=box_env(settings, hub_url), capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_release_installed_and_statistics_received_exactly_once(hub, publisher, settings, make_epub, tmp_path):
    hub_url, hub_data = hub
    src = tmp_path / "src"
    for n in range(3):
        make_epub(title=f"Truyện {n}", folder=src, name=f"t{n}.epub")
    publishing.build_release(src, CHANNEL, publisher[0], hub_data / "tree")
    # Provision the box: the publisher key, the hub key, a channel to follow.
    (settings.keys_dir / "publishers").mkdir(parents=True)
    shutil.copy(publisher[1], settings.keys_dir / "publishers" / "publisher.pub")
    shutil.copy(hub_data / "keys" / "hub-ed25519.pub", settings.keys_dir / "hub.pub")
    db = dbmod.connect(settings.db_path)
    apply.subscribe(db, CHANNEL)
    db.close()

    first = agent_once(settings, hub_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "installed version 1" in first.stdout and "clock set from the hub" in first.stdout
    db = dbmod.connect(settings.db_path)
    assert apply.installed_version(db, CHANNEL) == 1
    assert db.execute("SELECT count(*) FROM books").fetchone()[0] == 3
    # Readers open a book and search; the agent sends the counts.
    stats.write_events(db, [stats.Event("view", 1, "", -1, time.monotonic())] * 4
                       + [stats.Event("search", 0, "truyen", 1, time.monotonic())] * 3)
    db.close()
    second = agent_once(settings, hub_url)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 batch(es) delivered" in second.stdout
    hub_db = sqlite3.connect(hub_data / "hub.db")
    assert hub_db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    assert hub_db.execute("SELECT sum(count) FROM book_counts WHERE kind = 'view'").fetchone()[0] == 4
    assert hub_db.execute("SELECT sum(count) FROM search_counts").fetchone()[0] == 3
    # The acknowledgement was lost: the same batch goes up again. The hub keeps it once.
    batch = json.loads(hub_db.execute("SELECT payload FROM batches").fetchone()[0])
    assert batch["batch"] == 1
    answer = urllib.request.urlopen(urllib.request.Request(hub_url + "/api/v1/batches", data=_resign(settings, batch)))
    assert json.loads(answer.read())["new"] is False
    assert hub_db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    assert hub_db.execute("SELECT sum(count) FROM book_counts WHERE kind = 'view'").fetchone()[0] == 4
    # The hub knows the box, its channels and disk, and shows them to staff.
    row = hub_db.execute("SELECT name, status FROM boxes").fetchone()
    assert json.loads(row[1])["channels"] == {CHANNEL: 1}
    # No hub table holds anything about a reader or the box's network.
    import re

    for (table,) in hub_db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        dump = json.dumps(hub_db.execute(f"SELECT * FROM {table}").fetchall())
        assert not re.search(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", dump), table
        assert "Mozilla" not in dump and "User-Agent" not in dump
    page = urllib.request.urlopen(hub_url + "/").read().decode()
    assert settings.box_name in page and "<svg" in page
    hub_db.close()
    status = subprocess.run([sys.executable, "-m", "appliance.cli.main", "sync", "status"], env=box_env(settings, hub_url),
                            capture_output=True, text=True)
    assert "last success" in status.stdout and "statistics batches waiting: 0" in status.stdout


def test_the_librarians_sync_now_installs_the_hubs_release_from_a_process_of_its_own(hub, publisher, settings,
                                                                                      make_epub, tmp_path):
    """"Sync now" on the system page runs the agent's jobs once in a process of its own (with the
    server's settings: the hub's address is not in the environment here): the release is installed."""
    from appliance.web.factory import create_app
    from tests.support.admin import log_in, make_admin, post_form

    hub_url, hub_data = hub
    for n in range(2):
        make_epub(title=f"Truyện {n}", folder=tmp_path / "src", name=f"t{n}.epub")
    publishing.build_release(tmp_path / "src", CHANNEL, publisher[0], hub_data / "tree")
    db = trusting_box(settings, publisher)
    db.close()
    shutil.copy(hub_data / "keys" / "hub-ed25519.pub", settings.keys_dir / "hub.pub")
    box = settings.replace(hub_url=hub_url)
    app = create_app(box, TESTING=True)
    try:
        make_admin(box)
        client = app.test_client()
        log_in(client)
        answer = post_form(client, "/admin/sync", page="/admin/system", follow_redirects=True)
        assert "Sync started" in answer.get_data(as_text=True)
        services(app).jobs.join(60)
        page = client.get("/admin/system").get_data(as_text=True)
        assert "last success: never" not in page
        db = dbmod.connect(settings.db_path)
        assert apply.installed_version(db, CHANNEL) == 1
        assert db.execute("SELECT count(*) FROM books").fetchone()[0] == 2
        db.close()
    finally:
        services(app).library.close()


def _resign(settings, payload) -> bytes:
    from content_sync.protocol import batches as statsbatch

    return statsbatch.sign_payload(payload, statsbatch.load_box_key(settings.keys_dir))


def test_hub_refuses_bad_batches_and_unknown_boxes(hub, settings, make_epub):
    hub_url, _ = hub
    from content_sync.protocol import batches as statsbatch

    key = statsbatch.load_box_key(settings.keys_dir)
    payload = {"format": 1, "box": key.public_b64, "batch": 1, "days": [], "books": [], "searches": [], "hours": []}
    for data, code in ((statsbatch.sign_payload(payload, key), 403),
                       (statsbatch.sign_payload(payload, key).replace(b'\\"batch\\":1', b'\\"batch\\":2'), 400),
                       (b"not json", 400)):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(hub_url + "/api/v1/batches", data=data))
        assert caught.value.code == code
        said = json.loads(caught.value.read())  # the API refuses in JSON, as the box's API does
        assert said["status"] == code and said["message"]
    # The box's agent says the hub's reason, not its page: the statistics of a box the hub does
    # not know yet.
    from content_sync.sync.agent import SyncAgent, last_error

    waiting = statsbatch.outbox_folder(settings.outbox_dir, key.public_b64) / f"{1:08d}.json"
    waiting.parent.mkdir(parents=True, exist_ok=True)
    waiting.write_bytes(statsbatch.sign_payload(payload, key))
    agent = SyncAgent(settings.replace(hub_url=hub_url))
    assert not agent.run_job("stats").ok
    assert str(last_error(agent.read_state())) == (
        "stats: the hub answered 403 to /api/v1/batches: this box is not registered with the hub")


def test_hub_refuses_a_signed_batch_whose_counts_are_not_counts(hub, settings):
    """A box signs what it sends; a bug of a box must still get a 400 and leave no trace, not a 500."""
    hub_url, hub_data = hub
    from content_sync.protocol import batches as statsbatch

    key = statsbatch.load_box_key(settings.keys_dir)
    box = sign_registration(key.private, key.public_b64, "Bản Phố", {}, 1)
    urllib.request.urlopen(urllib.request.Request(hub_url + "/api/v1/boxes", data=json.dumps(box).encode(),
                                                  headers={"Content-Type": "application/json"}))
    good_row = {"day": "2026-11-24", "kind": "view", "sha256": "ab" * 32, "title": "Truyện Kiều",
                "language": "vi", "count": 3}
    base = {"format": 1, "box": key.public_b64, "batch": 1, "days": ["2026-11-24"], "books": [good_row],
            "searches": [], "hours": []}
    for change in ({"books": [dict(good_row, count=10**30)]}, {"books": [dict(good_row, count="12")]},
                   {"books": [dict(good_row, count=-4)]}, {"books": ["not a row"]}, {"books": {"a": 1}},
                   {"searches": [{"day": "2026-11-24", "term": ["x"], "found": True, "count": 1}]},
                   {"days": [7]}, {"batch": 10**30}, {"batch": True}):
        data = statsbatch.sign_payload({**base, **change}, key)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(hub_url + "/api/v1/batches", data=data))
        assert caught.value.code == 400, change
    envelope = json.loads(statsbatch.sign_payload(base, key))  # a payload that is no object at all
    envelope["payload"] = "[1, 2]"
    envelope["signature"] = base64.b64encode(key.private.sign(b"[1, 2]")).decode("ascii")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(hub_url + "/api/v1/batches", data=json.dumps(envelope).encode()))
    assert caught.value.code == 400
    db = sqlite3.connect(hub_data / "hub.db")
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0
    # The same batch, well formed, is taken.
    answer = json.loads(urllib.request.urlopen(urllib.request.Request(
        hub_url + "/api/v1/batches", data=statsbatch.sign_payload(base, key))).read())
    assert answer["new"] is True
    assert db.execute("SELECT sum(count) FROM book_counts").fetchone()[0] == 3
    db.close()


def make_big_release(tmp_path, make_epub, publisher, tree: Path, megabytes: int) -> int:
    rng = random.Random(1)
    picture = bytes(rng.getrandbits(8) for _ in range(megabytes * 1024 * 1024))
    make_epub(title="Sách ảnh lớn", folder=tmp_path / "bigsrc", name="big.epub", images={"big.jpg": picture})
    publishing.build_release(tmp_path / "bigsrc", CHANNEL, publisher[0], tree)
    return (tmp_path / "bigsrc" / "big.epub").stat().st_size


@pytest.fixture
def static_tree(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tree))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tree, server.server_port
    server.shutdown()


def trusting_box(settings, publisher):
    (settings.keys_dir / "publishers").mkdir(parents=True, exist_ok=True)
    shutil.copy(publisher[1], settings.keys_dir / "publishers" / "publisher.pub")
    db = dbmod.connect(settings.db_path)
    apply.subscribe(db, CHANNEL)
    return db


@pytest.mark.slow
def test_release_completes_over_a_link_that_drops(hub, publisher, settings, make_epub, tmp_path):
    hub_url, hub_data = hub
    size = make_big_release(tmp_path, make_epub, publisher, hub_data / "tree", 20)
    hub_port = int(hub_url.rsplit(":", 1)[1])
    db = trusting_box(settings, publisher)
    chunk = 256 * 1024
    with LinkProxy(hub_port, latency=0.3, rate=4_000_000, cut_after=1.5) as proxy:
        downloader = Downloader(f"http://127.0.0.1:{proxy.port}/releases/", LinkPolicy(sleep=lambda s: time.sleep(min(s, 0.2))),
                                chunk=chunk, rng=random.Random(2))
        result = apply.apply_release(settings, db, HttpReleaseSource(downloader), CHANNEL)
    assert result.new_version == 1 and result.fetched_blobs == 1
    assert downloader.cuts >= 3, downloader.cuts  # the link really dropped
    manifest = len((hub_data / "tree" / bundles.manifest_path(CHANNEL, 1)).read_bytes())
    overhead_allowed = 1.05 * (size + manifest + 4096) + downloader.cuts * chunk
    assert downloader.bytes_received <= overhead_allowed, (downloader.bytes_received, size, downloader.cuts)
    book = db.execute("SELECT sha256 FROM books").fetchone()[0]
    from appliance.storage.blobs import BlobStore

    assert BlobStore(settings.blobs_dir).verify(book)
    db.close()


def test_daily_budget_and_allowed_hours(hub, publisher, settings, make_epub, tmp_path):
    hub_url, hub_data = hub
    tree = hub_data / "tree"
    size = make_big_release(tmp_path, make_epub, publisher, tree, 3)
    db = trusting_box(settings, publisher)
    now = [1_795_000_000.0 - 1_795_000_000 % 86400 + 12 * 3600]  # noon UTC
    night_only = LinkPolicy(hours=(22, 6), clock=lambda: now[0])
    source = HttpReleaseSource(Downloader(hub_url + "/releases/", night_only))
    with pytest.raises(LinkClosed, match="between 22:00 and 6:00"):
        apply.apply_release(settings, db, source, CHANNEL)
    assert source.downloader.bytes_received == 0
    # One megabyte a day: the download stops when the day's budget is spent and goes on the next day.
    budget = LinkPolicy(budget_bytes_per_day=1024 * 1024, clock=lambda: now[0],
                        state_file=settings.staging_dir / "usage.json")
    downloader = Downloader(hub_url + "/releases/", budget, chunk=64 * 1024)
    days = 0
    while True:
        try:
            apply.apply_release(settings, db, HttpReleaseSource(downloader), CHANNEL)
            break
        except LinkClosed:
            assert budget.used_today() <= 1024 * 1024
            days += 1
            now[0] += 86400
    assert days == 3  # about 3.x MB at 1 MB a day
    assert downloader.bytes_received <= size + 64 * 1024 + 16 * 1024
    assert apply.installed_version(db, CHANNEL) == 1
    db.close()


def test_processes_sharing_the_days_budget_count_each_others_bytes(tmp_path):
    """The agent's service and a sync started from the system page each keep a LinkPolicy on the
    same file: neither overwrites what the other counted, and each sees it."""
    now = lambda: 1_795_000_000.0  # noqa: E731
    usage = tmp_path / "link-usage.json"
    service = LinkPolicy(budget_bytes_per_day=1000, clock=now, state_file=usage)
    sync_now = LinkPolicy(budget_bytes_per_day=1000, clock=now, state_file=usage)
    for _ in range(3):
        service.spent(100)
        sync_now.spent(200)
    assert service.used_today() == sync_now.used_today() == 900
    assert sync_now.allowance(500) == 100
    sync_now.spent(100)
    with pytest.raises(LinkClosed, match="budget"):
        service.check()


def test_what_is_retried_and_how_long_it_waits():
    from content_sync.sync.sources import BlobTooLarge
    from content_sync.sync.transfer import HttpStatusError, is_retryable

    assert is_retryable(ConnectionResetError()) and is_retryable(TimeoutError())
    assert is_retryable(HttpStatusError(503, "busy")) and is_retryable(HttpStatusError(429, "slow down"))
    assert not is_retryable(HttpStatusError(404, "gone")) and not is_retryable(BlobTooLarge("x"))
    assert not is_retryable(LinkClosed("budget"))
    sleeps: list[float] = []
    closed_port = free_port()
    downloader = Downloader(f"http://127.0.0.1:{closed_port}/", LinkPolicy(sleep=sleeps.append), max_attempts=6,
                            rng=random.Random(3))
    with pytest.raises(OSError):
        downloader.get("anything", 100)
    assert len(sleeps) == 5 and sleeps == sorted(sleeps) and sleeps[-1] > 4 * sleeps[0]


def test_the_hub_dashboard_speaks_the_staffs_language(tmp_path):
    from content_sync.hub.factory import create_hub_app

    client = create_hub_app(tmp_path / "hub").test_client()
    english = client.get("/").get_data(as_text=True)
    assert "Boxes (0)" in english and "No statistics yet." in english and 'lang="en"' in english
    vietnamese = client.get("/", headers={"Accept-Language": "vi-VN,vi;q=0.9"}).get_data(as_text=True)
    assert "Máy thư viện (0)" in vietnamese and "Chưa có số liệu thống kê." in vietnamese
    assert "Đã nhận 0 gói thống kê." in vietnamese and "Boxes" not in vietnamese
    arabic = client.get("/", headers={"Accept-Language": "ar"}).get_data(as_text=True)
    assert 'dir="rtl"' in arabic and "الخادم المركزي للمكتبة" in arabic


def test_the_usual_failures_of_a_link_are_named_for_the_librarian():
    import errno
    import urllib.error

    from content_sync.sync.sources import link_failure

    named = {
        "its name cannot be looked up from here": urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
        "the connection was refused": urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
        "no answer in time": TimeoutError("timed out"),
        "the connection was cut": ConnectionResetError(104, "Connection reset by peer"),
        "no network leads there": urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable")),
    }
    for words, error in named.items():
        assert str(link_failure(error)) == words
    assert link_failure(urllib.error.URLError("unknown url type: ftp")) == "unknown url type: ftp"


def register(hub_url: str, body: dict) -> dict:
    request = urllib.request.Request(hub_url + "/api/v1/boxes", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def test_a_replayed_registration_changes_nothing_at_the_hub(hub, settings):
    """Each registration carries the box's counter: one captured and sent again later (or carried
    late by a van) cannot roll the box's reported status back."""
    hub_url, hub_data = hub
    from content_sync.hub.store import SqliteHubStore
    from content_sync.protocol import batches as statsbatch

    key = statsbatch.load_box_key(settings.keys_dir)
    old = sign_registration(key.private, key.public_b64, "Bản Phố", {"disk_free_mb": 900}, 5)
    new = sign_registration(key.private, key.public_b64, "Bản Phố", {"disk_free_mb": 120}, 6)
    assert register(hub_url, old)["stale"] is False
    assert register(hub_url, new)["stale"] is False
    assert register(hub_url, old)["stale"] is True
    [box] = SqliteHubStore(hub_data / "hub.db").boxes()
    assert box["status"]["disk_free_mb"] == 120


@pytest.mark.parametrize("status", [{"disk_free_mb": "x"}, {"disk_free_mb": None}, {"disk_free_mb": 1e308},
                                    {"disk_free_mb": -1}, {"channels": {"vi": "3"}}, {"channels": ["vi"]},
                                    {"role": "king"}, {"pending_batches": True}])
def test_a_registration_with_odd_values_is_refused_and_the_dashboard_stays_up(hub, settings, status):
    hub_url, _hub_data = hub
    from content_sync.protocol import batches as statsbatch

    key = statsbatch.load_box_key(settings.keys_dir)
    with pytest.raises(urllib.error.HTTPError) as caught:
        register(hub_url, sign_registration(key.private, key.public_b64, "Bản Phố", status, 1))
    assert caught.value.code == 403
    with urllib.request.urlopen(hub_url + "/") as page:
        assert page.status == 200


def test_a_box_the_hub_does_not_know_needs_its_own_enrollment_token(tmp_path, settings, runner):
    """The hub takes a new box only with a token issued for it; a token serves one box key; the
    token travels inside the signed registration, so a van carrying it works the same."""
    from content_sync.protocol import batches as statsbatch
    from content_sync.sync.registration import box_registration

    data = tmp_path / "closed-hub"
    issued = subprocess.run([sys.executable, "-m", "appliance.cli.main", "hub", "enroll", "--data", str(data),
                             "--label", "Bản Phố"], capture_output=True, text=True, check=True).stdout.split()
    assert len(issued) == 1 and len(issued[0]) >= 20
    with running_hub(data) as (hub_url, _):
        with pytest.raises(urllib.error.HTTPError) as caught:
            register(hub_url, box_registration(settings))
        assert caught.value.code == 403 and "enroll" in caught.value.read().decode()
        # A made-up token, then the real one (kept with library sync enroll).
        result = runner.invoke(["sync", "enroll", "not-a-token-anyone-issued"])
        assert result.exit_code == 0, result.output
        with pytest.raises(urllib.error.HTTPError):
            register(hub_url, box_registration(settings))
        assert runner.invoke(["sync", "enroll", issued[0]]).exit_code == 0
        assert register(hub_url, box_registration(settings))["registered"] is True
        # Known now: no token needed again; the same token does not serve another key.
        (settings.keys_dir / "hub-enrollment").unlink()
        assert register(hub_url, box_registration(settings))["stale"] is False
        other = statsbatch.load_box_key(tmp_path / "other-keys")
        with pytest.raises(urllib.error.HTTPError) as caught:
            register(hub_url, sign_registration(other.private, other.public_b64, "Kẻ lạ", {}, 1, issued[0]))
        assert caught.value.code == 403


def test_a_carrier_is_recorded_only_when_it_signed_that_it_carried_the_batch(hub, settings, tmp_path):
    """A bare X-Carried-By header counts as nobody; a known box's signature over the batch names it."""
    import sqlite3

    from content_sync.protocol import batches as statsbatch
    from content_sync.sync.registration import box_registration

    hub_url, hub_data = hub
    village = statsbatch.load_box_key(settings.keys_dir)
    register(hub_url, box_registration(settings))
    van_settings = settings.replace(home=tmp_path / "van")
    van = statsbatch.load_box_key(van_settings.keys_dir)
    register(hub_url, box_registration(van_settings))
    stranger = statsbatch.load_box_key(tmp_path / "stranger-keys")

    def post(batch_number: int, headers: dict) -> None:
        payload = {"format": 1, "box": village.public_b64, "batch": batch_number, "days": ["2026-11-24"],
                   "books": [], "searches": [], "hours": []}
        data = statsbatch.sign_payload(payload, village)
        urllib.request.urlopen(urllib.request.Request(hub_url + "/api/v1/batches", data=data,
                                                      headers={"Content-Type": "application/json", **headers(data)}))

    post(1, lambda data: {"X-Carried-By": van.public_b64})  # a bare claim
    post(2, lambda data: {**statsbatch.carrier_headers(van, data)})
    post(3, lambda data: {**statsbatch.carrier_headers(stranger, data)})  # signed, but not a box the hub knows
    forged = statsbatch.carrier_headers(van, b"another batch")
    post(4, lambda data: forged)
    with sqlite3.connect(hub_data / "hub.db") as db:
        via = dict(db.execute("SELECT batch, via FROM batches WHERE box = ?", [village.public_b64]).fetchall())
    assert via == {1: "", 2: van.public_b64, 3: "", 4: ""}
    with urllib.request.urlopen(hub_url + "/") as page:
        assert "1 carried by a van" in page.read().decode()
