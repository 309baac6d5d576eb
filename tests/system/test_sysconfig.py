"""The box's system files, rendered from its settings and checked by the tools that will read them."""
from __future__ import annotations

import os
import random
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path, PurePosixPath

import pytest

from appliance.settings import Settings
from appliance.system import ConfigError, ImageLayout, render_all
from appliance.system.dns import PORTAL_PROBE_HOSTS, WINDOWS_DNS_PROBE
from tests.support.system_files import box_layout, box_settings, need, rendered


def key_values(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


# --- the command ---------------------------------------------------------------------------------


def test_render_command_writes_every_file_at_its_path_on_the_box(runner, settings, tmp_path):
    out = tmp_path / "rootfs"
    data_mount = settings.home.parent.as_posix()
    result = runner.invoke(["config", "render", "--out", str(out), "--data-mount", data_mount],
                           env={"LIBRARY_WIFI_SSID": "Thư viện Bản Phố", "LIBRARY_BOX_ADDRESS": "10.50.0.1",
                                "LIBRARY_DHCP_FIRST": "10.50.0.20", "LIBRARY_DHCP_LAST": "10.50.0.200"})
    assert result.exit_code == 0, result.output
    for path in ("etc/hostapd/hostapd.conf", "etc/dnsmasq.d/library-dns.conf", "etc/dnsmasq.d/library-dhcp.conf",
                 "etc/systemd/system/library-web.service", "etc/systemd/system/library-sync.service",
                 "etc/systemd/system/library-first-boot.service", "etc/fstab", "etc/library/library.env",
                 "usr/local/sbin/library-first-boot", "etc/systemd/network/10-library-ap.network"):
        assert (out / path).is_file(), path
    assert "Rendered 13 files" in result.output
    assert "address=/#/10.50.0.1" in (out / "etc/dnsmasq.d/library-dns.conf").read_text()
    assert stat.S_IMODE((out / "usr/local/sbin/library-first-boot").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "etc/library/library.env").stat().st_mode) == 0o640
    assert not list(out.rglob("*.tmp")), "no temp files left behind"


@pytest.mark.parametrize("env, message", [
    ({"LIBRARY_WIFI_SECURITY": "wpa2", "LIBRARY_WIFI_PASSPHRASE": "short"}, "8 to 63"),
    ({"LIBRARY_WIFI_PASSPHRASE": "a secret phrase"}, "set it to wpa2 or clear the passphrase"),
    ({"LIBRARY_WIFI_SECURITY": "wep"}, "open or wpa2"),
    ({"LIBRARY_WIFI_COUNTRY": "Vietnam"}, "two-letter country code"),
    ({"LIBRARY_WIFI_CHANNEL": "0"}, "not a Wi-Fi channel"),
    ({"LIBRARY_WIFI_SSID": "a name much longer than thirty-two bytes"}, "1 to 32 bytes"),
    ({"LIBRARY_DHCP_FIRST": "10.42.0.1"}, "inside the range lent to phones"),
    ({"LIBRARY_DHCP_LAST": "10.43.0.9"}, "outside the box's Wi-Fi network"),
    ({"LIBRARY_BOX_ADDRESS": "library"}, "must be an IPv4 address"),
    ({"LIBRARY_BOX_ADDRESS": "8.8.8.8"}, "not a private address"),
    ({"LIBRARY_LOCAL_DOMAIN": "library"}, "LIBRARY_LOCAL_DOMAIN"),
    ({"LIBRARY_AP_INTERFACE": "wlan0; rm -rf /"}, "LIBRARY_AP_INTERFACE"),
])
def test_render_refuses_settings_that_would_break_the_box(runner, settings, tmp_path, env, message):
    out = tmp_path / "rootfs"
    result = runner.invoke(["config", "render", "--out", str(out), "--data-mount", settings.home.parent.as_posix()],
                           env=env)
    assert result.exit_code != 0
    assert message in result.output
    assert not out.exists(), "nothing is written when a setting is wrong"


def test_render_refuses_a_data_folder_outside_the_data_partition(runner, tmp_path):
    result = runner.invoke(["config", "render", "--out", str(tmp_path / "o"), "--data-mount", "/data"])
    assert result.exit_code != 0
    assert "must be a folder inside the data partition /data" in result.output


# --- Wi-Fi ---------------------------------------------------------------------------------------


def test_hostapd_open_network(tmp_path):
    files = rendered(box_settings(tmp_path, wifi_country="ke", wifi_channel=11), box_layout(tmp_path))
    conf = key_values(files["/etc/hostapd/hostapd.conf"])
    assert conf["interface"] == "wlan0"
    assert conf["ssid"] == "Thu vien"
    assert conf["country_code"] == "KE"
    assert conf["ieee80211d"] == "1"
    assert conf["channel"] == "11"
    assert conf["hw_mode"] == "g"
    assert conf["wpa"] == "0"
    assert "wpa_passphrase" not in conf
    assert conf["ap_isolate"] == "1"


def test_hostapd_wpa2_network_keeps_its_passphrase_private(tmp_path):
    settings = box_settings(tmp_path, wifi_security="wpa2", wifi_passphrase="doc-sach-2024",
                            wifi_channel=36, wifi_country="FR")
    files = {str(f.path): f for f in render_all(settings, box_layout(tmp_path))}
    hostapd = files["/etc/hostapd/hostapd.conf"]
    conf = key_values(hostapd.text)
    assert conf["wpa"] == "2"
    assert conf["wpa_key_mgmt"] == "WPA-PSK"
    assert conf["rsn_pairwise"] == "CCMP"
    assert conf["wpa_passphrase"] == "doc-sach-2024"
    assert conf["hw_mode"] == "a" and conf["channel"] == "36" and conf["country_code"] == "FR"
    assert hostapd.mode == 0o600


def test_hostapd_non_ascii_ssid_is_written_as_utf8_hex(tmp_path):
    name = "Thư viện Bản Phố"
    conf = key_values(rendered(box_settings(tmp_path, wifi_ssid=name), box_layout(tmp_path))["/etc/hostapd/hostapd.conf"])
    assert "ssid" not in conf
    assert bytes.fromhex(conf["ssid2"]).decode("utf-8") == name
    assert conf["utf8_ssid"] == "1"


@pytest.mark.parametrize("changes", [
    {},
    {"wifi_security": "wpa2", "wifi_passphrase": "doc sach moi ngay", "wifi_ssid": "Thư viện Bản Phố"},
    {"wifi_channel": 44, "wifi_country": "DE"},
])
def test_hostapd_reads_the_rendered_file_without_complaint(tmp_path, changes):
    """hostapd itself parses the file; it runs in a private network namespace on an interface that does not exist."""
    hostapd = need("hostapd")
    need("unshare")
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a private network namespace here (unshare -rn)")
    files = rendered(box_settings(tmp_path, ap_interface="libtest0", **changes), box_layout(tmp_path))
    conf = tmp_path / "hostapd.conf"
    conf.write_text(files["/etc/hostapd/hostapd.conf"])
    output = run_hostapd(hostapd, conf)
    assert "errors found in configuration file" not in output, output
    assert "libtest0" in output, output  # got past the file, stopped at the missing radio

    broken = tmp_path / "broken.conf"
    broken.write_text(files["/etc/hostapd/hostapd.conf"] + "wpa=2\nwpa_key_mgmt=WPA-PSK\nwpa_passphrase=short\n")
    assert "errors found in configuration file" in run_hostapd(hostapd, broken)


def run_hostapd(hostapd: str, conf: Path) -> str:
    done = subprocess.run(["unshare", "-rn", hostapd, str(conf)], capture_output=True, text=True, timeout=20)
    return done.stdout + done.stderr


def test_networkd_gives_the_box_its_address(tmp_path):
    files = rendered(box_settings(tmp_path, box_address="192.168.77.1", ap_prefix_length=24,
                                  dhcp_first="192.168.77.50", dhcp_last="192.168.77.99"), box_layout(tmp_path))
    ap = files["/etc/systemd/network/10-library-ap.network"]
    assert "Name=wlan0" in ap
    assert "Address=192.168.77.1/24" in ap
    assert "DHCP=yes" in files["/etc/systemd/network/20-library-uplink.network"]
    assert "ExecStartPre=-/usr/sbin/rfkill unblock wlan" in files["/etc/systemd/system/hostapd.service.d/library.conf"]


# --- DHCP and DNS ----------------------------------------------------------------------------------


def test_dnsmasq_accepts_the_rendered_files(tmp_path):
    dnsmasq = need("dnsmasq")
    settings = box_settings(tmp_path, box_address="10.9.8.1", dhcp_first="10.9.8.100", dhcp_last="10.9.8.150",
                            dhcp_lease_hours=4, local_domain="thuvien.lan")
    files = rendered(settings, box_layout(tmp_path))
    paths = []
    for name in ("library-dns.conf", "library-dhcp.conf"):
        path = tmp_path / name
        path.write_text(files[f"/etc/dnsmasq.d/{name}"])
        paths.append(path)
        check = subprocess.run([dnsmasq, "--test", "-C", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        assert "syntax check OK" in check.stderr
    both = subprocess.run([dnsmasq, "--test", "-C", str(paths[0]), "--conf-file=" + str(paths[1])],
                          capture_output=True, text=True)
    assert both.returncode == 0, both.stderr
    dhcp = key_values(files["/etc/dnsmasq.d/library-dhcp.conf"])
    assert dhcp["interface"] == "wlan0"
    assert dhcp["dhcp-range"] == "10.9.8.100,10.9.8.150,255.255.255.0,4h"
    assert files["/etc/dnsmasq.d/library-dhcp.conf"].count("dhcp-option=") == 2
    assert "dhcp-option=option:dns-server,10.9.8.1" in files["/etc/dnsmasq.d/library-dhcp.conf"]
    # The check can fail: a misspelt option is refused.
    bad = tmp_path / "bad.conf"
    bad.write_text(files["/etc/dnsmasq.d/library-dns.conf"] + "adress=/#/10.9.8.1\n")
    assert subprocess.run([dnsmasq, "--test", "-C", str(bad)], capture_output=True).returncode != 0


def free_dns_port() -> int:
    """A port free on 127.0.0.1 for UDP and for TCP: dnsmasq listens on both."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def dns_query(port: int, name: str, qtype: int = 1, timeout: float = 1.0) -> tuple[int, list[tuple[int, bytes]]]:
    """Ask 127.0.0.1:port one question; returns (rcode, [(type, rdata)])."""
    query_id = random.randrange(65536)
    question = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    answer_id, flags, qdcount, ancount, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    assert answer_id == query_id and flags & 0x8000
    offset = 12
    for _ in range(qdcount):
        offset = skip_name(data, offset) + 4
    records = []
    for _ in range(ancount):
        offset = skip_name(data, offset)
        rtype, _rclass, _ttl, length = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        records.append((rtype, data[offset:offset + length]))
        offset += length
    return flags & 0x000F, records


def skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def a_records(records) -> list[str]:
    return [socket.inet_ntoa(rdata) for rtype, rdata in records if rtype == 1]


def start_dnsmasq(dnsmasq: str, conf: Path, last_try: bool) -> tuple[subprocess.Popen, int] | None:
    """dnsmasq with ``conf`` on a free port of 127.0.0.1, answering: (process, port); None when the
    port was taken before dnsmasq could bind it (unless ``last_try``: then, as any other failure,
    the test fails with dnsmasq's output)."""
    port = free_dns_port()
    process = subprocess.Popen(
        [dnsmasq, "--no-daemon", "--conf-file=" + str(conf), f"--port={port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--pid-file=", "--log-facility=-"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            dns_query(port, "thuvien.lan", timeout=0.2)
            return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                output = process.stdout.read()
                process.stdout.close()
                if "Address already in use" in output and not last_try:
                    return None
                pytest.fail("dnsmasq did not start: " + output)


@pytest.fixture
def running_dnsmasq(tmp_path):
    """dnsmasq serving the rendered answers on 127.0.0.1 only; yields (port, box address)."""
    dnsmasq = need("dnsmasq")
    settings = box_settings(tmp_path, box_address="10.77.0.1", dhcp_first="10.77.0.10", dhcp_last="10.77.0.99",
                            local_domain="thuvien.lan")
    files = rendered(settings, box_layout(tmp_path))
    conf = tmp_path / "library-dns.conf"
    conf.write_text(files["/etc/dnsmasq.d/library-dns.conf"])
    conf.chmod(0o644)
    for attempt in range(3):  # another test may take the port between choosing it and dnsmasq's bind
        started = start_dnsmasq(dnsmasq, conf, last_try=attempt == 2)
        if started is not None:
            break
    process, port = started
    try:
        yield port, "10.77.0.1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def test_dnsmasq_answers_portal_probes_with_the_box_address(running_dnsmasq):
    port, box = running_dnsmasq
    for host in PORTAL_PROBE_HOSTS:
        rcode, records = dns_query(port, host)
        assert rcode == 0, host
        assert a_records(records) == [box], host


def test_dnsmasq_answers_the_library_name_and_every_other_name_with_the_box(running_dnsmasq):
    port, box = running_dnsmasq
    for name in ("thuvien.lan", "www.thuvien.lan", "example.org", "vi.wikipedia.org", "a.b.c.d.example"):
        rcode, records = dns_query(port, name)
        assert (rcode, a_records(records)) == (0, [box]), name


def test_dnsmasq_satisfies_the_windows_dns_probe(running_dnsmasq):
    port, _box = running_dnsmasq
    rcode, records = dns_query(port, WINDOWS_DNS_PROBE[0])
    assert (rcode, a_records(records)) == (0, [WINDOWS_DNS_PROBE[1]])


def test_dnsmasq_gives_an_empty_answer_for_ipv6(running_dnsmasq):
    port, _box = running_dnsmasq
    rcode, records = dns_query(port, "connectivitycheck.gstatic.com", qtype=28)
    assert rcode == 0  # NOERROR, not REFUSED: the phone falls back to the IPv4 answer at once
    assert records == []


# --- systemd ---------------------------------------------------------------------------------------


def write_units_for_verify(tmp_path: Path, settings: Settings) -> tuple[Path, dict[str, str]]:
    """Render against paths that exist on this machine, since systemd-analyze checks every ExecStart."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    library = venv / "bin" / "library"
    library.write_text("#!/bin/sh\nexit 0\n")
    library.chmod(0o755)
    layout = box_layout(tmp_path, venv=PurePosixPath(venv.as_posix()),
                        sbin_dir=PurePosixPath((tmp_path / "sbin").as_posix()))
    units = tmp_path / "units"
    units.mkdir()
    texts = {}
    for f in render_all(settings, layout):
        if str(f.path) == str(layout.first_boot_script):
            script = Path(str(f.path))
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(f.text)
            script.chmod(f.mode)
        if f.path.suffix == ".service" and f.path.parent == PurePosixPath("/etc/systemd/system"):
            (units / f.path.name).write_text(f.text)
            texts[f.path.name] = f.text
    return units, texts


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    analyze = need("systemd-analyze")
    units, texts = write_units_for_verify(tmp_path, box_settings(tmp_path))
    assert set(texts) == {"library-web.service", "library-sync.service", "library-first-boot.service"}
    done = subprocess.run([analyze, "verify", *sorted(str(p) for p in units.iterdir())],
                          capture_output=True, text=True, timeout=60)
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "library-" in line]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr

    # The check can fail: a unit whose program does not exist is refused.
    broken = units / "library-web.service"
    broken.write_text(texts["library-web.service"].replace(str(tmp_path / "venv"), "/nonexistent/venv"))
    done = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def test_systemd_rates_the_long_running_services_well_confined(tmp_path):
    """systemd's own exposure score (0 best, 10 worst): the server and the agent stay at 3.0 or below."""
    analyze = need("systemd-analyze")
    units, _texts = write_units_for_verify(tmp_path, box_settings(tmp_path))

    def exposure_ok(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([analyze, "security", "--offline=true", "--threshold=30", str(units / name)],
                              capture_output=True, text=True, timeout=60)

    probe = exposure_ok("library-web.service")
    if "--offline" in probe.stderr and "unrecognized" in probe.stderr:
        pytest.skip("this systemd-analyze cannot rate unit files offline")
    for name in ("library-web.service", "library-sync.service"):
        done = exposure_ok(name)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    # The first-boot script partitions the card as root: the same check rightly calls it exposed.
    assert exposure_ok("library-first-boot.service").returncode != 0


def test_services_run_unprivileged_hardened_and_restart(tmp_path):
    settings = box_settings(tmp_path)
    files = rendered(settings, box_layout(tmp_path))
    home = settings.home.as_posix()
    for name, command in (("library-web.service", "/opt/library/venv/bin/library serve"),
                          ("library-sync.service", "/opt/library/venv/bin/library sync run")):
        unit = key_values(files[f"/etc/systemd/system/{name}"])
        assert unit["ExecStart"] == command
        assert unit["User"] == "library" and unit["Group"] == "library"
        assert unit["Restart"] == "always"
        assert unit["NoNewPrivileges"] == "yes"
        assert unit["ProtectSystem"] == "strict"
        assert unit["ProtectHome"] == "yes"
        assert unit["PrivateTmp"] == "yes"
        assert f"\nReadWritePaths={home}\n" in files[f"/etc/systemd/system/{name}"]
        assert unit["EnvironmentFile"] == "/etc/library/library.env"
        assert "library-first-boot.service" in unit["After"]
    web = key_values(files["/etc/systemd/system/library-web.service"])
    assert web["AmbientCapabilities"] == web["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert key_values(files["/etc/systemd/system/library-sync.service"])["CapabilityBoundingSet"] == ""
    first = key_values(files["/etc/systemd/system/library-first-boot.service"])
    assert first["Type"] == "oneshot" and first["ExecStart"] == "/usr/local/sbin/library-first-boot"


def test_services_fit_a_pi_of_1_gb_and_go_before_the_network_when_memory_runs_out(tmp_path):
    files = rendered(box_settings(tmp_path), box_layout(tmp_path))
    web = key_values(files["/etc/systemd/system/library-web.service"])
    sync = key_values(files["/etc/systemd/system/library-sync.service"])

    def megabytes(value: str) -> int:
        assert value[-1] == "M", value
        return int(value[:-1])

    assert megabytes(web["MemoryMax"]) + megabytes(sync["MemoryMax"]) <= 1024
    assert megabytes(web["MemoryMax"]) >= 512  # two processes serving 10,000 books and a rebuild (BENCHMARKS.md)
    # hostapd, dnsmasq and sshd keep the kernel's default score (0): the library's processes go first.
    assert 0 < int(web["OOMScoreAdjust"]) < int(sync["OOMScoreAdjust"]) <= 1000
    assert web["OOMPolicy"] == "continue"  # a job or worker ended by the kernel leaves the server serving


def test_environment_file_gives_the_services_the_same_settings(tmp_path):
    """The file is read by systemd and sourced by the first-boot script; a shell must read back every value."""
    tricky = 'Thư viện "Bản $HOME" `x` \\ end'
    settings = box_settings(tmp_path, box_name=tricky, wifi_ssid="Thu vien", port=80)
    env_file = tmp_path / "library.env"
    env_file.write_text(rendered(settings, box_layout(tmp_path))["/etc/library/library.env"])
    done = subprocess.run(["bash", "-c", f"set -a; . {env_file}; set +a; env -0"], capture_output=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=True)
    environ = dict(item.split("=", 1) for item in done.stdout.decode("utf-8").split("\0") if "=" in item)
    assert environ["LIBRARY_BOX_NAME"] == tricky
    back = Settings.from_env({k: v for k, v in environ.items() if k.startswith("LIBRARY_")})
    assert back == settings


def test_environment_file_refuses_line_breaks(tmp_path):
    with pytest.raises(ConfigError, match="line break"):
        render_all(box_settings(tmp_path, box_name="two\nlines"), box_layout(tmp_path))


def test_logs_stay_in_ram(tmp_path):
    journald = rendered(box_settings(tmp_path), box_layout(tmp_path))["/etc/systemd/journald.conf.d/library.conf"]
    assert "Storage=volatile" in journald


# --- mounts ----------------------------------------------------------------------------------------


def fstab_entries(text: str) -> dict[str, list[str]]:
    entries = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            source, target, kind, options, *_ = line.split()
            entries[target] = [source, kind, options]
    return entries


def test_fstab_read_only_root_ram_for_logs_and_a_data_partition(tmp_path):
    files = rendered(box_settings(tmp_path), box_layout(tmp_path))
    entries = fstab_entries(files["/etc/fstab"])
    assert entries["/"][0] == "ROOTDEV" and "ro" in entries["/"][2].split(",")
    assert entries["/boot/firmware"][0] == "BOOTDEV" and "ro" in entries["/boot/firmware"][2].split(",")
    for path in ("/var/log", "/tmp"):
        assert entries[path][:2] == ["tmpfs", "tmpfs"], path
    data = entries[(tmp_path / "data").as_posix()]
    assert data[0] == "LABEL=librarydata" and data[1] == "ext4"
    assert {"rw", "nofail"} <= set(data[2].split(","))


def test_findmnt_parses_the_fstab(tmp_path):
    findmnt = need("findmnt")
    settings = Settings(home=Path("/data/library"))
    text = rendered(settings, ImageLayout())["/etc/fstab"]
    tab = tmp_path / "fstab"
    tab.write_text(text)
    done = subprocess.run([findmnt, "--verify", "--verbose", "--tab-file", str(tab)], capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert "0 parse errors" in output, output
    # Each mount point appears with the options we meant.
    assert "VFS options: ro,noatime" in output
    assert output.count("do not check tmpfs source") == 5


# --- first boot ------------------------------------------------------------------------------------
