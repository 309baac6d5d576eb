"""Boxes find each other with zeroconf; a village box shows readers that the van is nearby."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.discovery import (
    SYNC_TYPE,
    Discovery,
    decode_channels,
    encode_channels,
    parse_peer_addresses,
)

SCENARIO = Path(__file__).parents[1] / "support" / "discovery_scenario.py"
ROOT = Path(__file__).resolve().parents[2]


def private_network_available() -> str | None:
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "multicast", "on"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a private network namespace here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def meeting(tmp_path_factory) -> dict:
    """Run the two-box scenario once, in a network namespace of its own."""
    reason = private_network_available()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("meeting")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(["unshare", "-rn", sys.executable, str(SCENARIO), str(workdir / "boxes")],
                          capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_both_boxes_announce_web_opds_and_sync(meeting):
    assert meeting["village_up"] and meeting["van_up"]
    assert meeting["all_announced"], meeting["services"]
    services = meeting["services"]
    kinds = sorted(entry["type"] for entry in services.values())
    assert kinds.count("_http._tcp.local.") == 2
    assert kinds.count("_opds._tcp.local.") == 2
    assert kinds.count(SYNC_TYPE) == 2
    names = " ".join(services)
    assert "Thư viện Bản Lác" in names and "Xe thư viện Mường Lay" in names
    for entry in services.values():
        assert entry["addresses"] == ["127.0.0.1"]
        assert entry["port"] in (18080, 18081)
        if entry["type"] == "_opds._tcp.local.":
            assert entry["props"]["path"] == "/opds"
        if entry["type"] == SYNC_TYPE:
            assert len(entry["props"]["id"]) == 44  # the box's Ed25519 public key, base64
            assert entry["props"]["v"]
    roles = sorted(entry["peer"]["role"] for entry in services.values() if entry["type"] == SYNC_TYPE)
    assert roles == ["van", "village"]


@pytest.mark.slow
def test_village_page_shows_the_van_nearby_then_not(meeting):
    assert meeting["van_shown"], meeting["village_page"][-2000:]
    assert 'href="http://127.0.0.1:18081/"' in meeting["village_page"]
    assert not meeting["van_page_names_village"]  # a village box is not shown as a van


@pytest.mark.slow
def test_services_disappear_within_seconds_of_a_clean_shutdown(meeting):
    assert meeting["van_exit"] == 0
    assert meeting["van_services_gone"], meeting["services_after"]
    assert meeting["van_gone_after"] < 5
    assert meeting["van_hidden"]
    assert not any("Mường Lay" in name for name in meeting["services_after"])
    assert meeting["village_exit"] == 0


def test_channels_fit_one_txt_record_and_read_back():
    channels = {"vi-literature": 12, "hmong-primary": 3}
    assert decode_channels(encode_channels(channels)) == channels
    many = {f"channel-{i:03d}": i for i in range(100)}
    text = encode_channels(many)
    assert len(text.encode()) <= 200
    assert set(decode_channels(text)) <= set(many)
    assert decode_channels("junk,=3,a=b,ok=7") == {"ok": 7}


def test_peers_configured_by_hand():
    peers = parse_peer_addresses("10.42.0.1:8080, library.lan ,[fd00::1]:81")
    assert [(p.addresses[0], p.port) for p in peers] == [("10.42.0.1", 8080), ("library.lan", 80), ("fd00::1", 81)]
    assert peers[2].base_url == "http://[fd00::1]:81"
    assert all(p.configured for p in peers)
    with pytest.raises(ValueError):
        parse_peer_addresses("host:0")


def test_close_is_safe_twice_and_before_start():
    discovery = Discovery(name="x", port=1, box_id="k")
    discovery.close()
    discovery.close()
    assert discovery.peers() == []
