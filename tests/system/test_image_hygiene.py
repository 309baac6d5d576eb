"""The image recipe carries nothing that every card would share: no password, no key, no machine id, no SSH."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from appliance.settings import Settings
from appliance.system import render_all

REPO = Path(__file__).resolve().parents[2]
IMAGE_BUILD = REPO / "image-build"
STAGE = IMAGE_BUILD / "stage-library"

PROBLEMS = [
    ("private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("OpenSSH private key", re.compile(r"-----BEGIN OPENSSH PRIVATE KEY-----")),
    ("password for the first user", re.compile(r"^\s*(export\s+)?FIRST_USER_PASS\s*=\s*['\"]?[^'\"\s#]", re.M)),
    ("password set with chpasswd", re.compile(r"\bchpasswd\b")),
    ("password set with usermod/useradd", re.compile(r"\buse?r(mod|add)\b[^\n]*\s(-p|--password)\s")),
    ("password hashed into the image", re.compile(r"\b(openssl\s+passwd|mkpasswd)\b")),
    ("password given to passwd", re.compile(r"\|\s*passwd\b|\bpasswd\s+(?!--lock\b|-l\b)[a-z_][\w-]*\s*<")),
    ("the old default password", re.compile(r"\braspberry\b(?!\s*pi)", re.I)),
    ("Wi-Fi passphrase", re.compile(r"^\s*LIBRARY_WIFI_PASSPHRASE\s*=\s*['\"]?[^'\"\s#]", re.M)),
    ("SSH enabled", re.compile(r"^\s*ENABLE_SSH\s*=\s*['\"]?1", re.M)),
    ("SSH enabled", re.compile(r"systemctl\s+(--\S+\s+)*(enable|unmask)\s+[^\n]*\bssh(d)?(\.service|\.socket)?\b")),
    ("SSH key for the first user", re.compile(r"^\s*PUBKEY_SSH_FIRST_USER\s*=\s*['\"]?[^'\"\s#]", re.M)),
    ("authorized SSH key", re.compile(r"\b(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+) AAAA")),
    ("fixed machine id", re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{32}(?![0-9a-fA-F])")),
]

BAD_NAMES = re.compile(r"^(ssh_host_.*|id_(rsa|ed25519|ecdsa|dsa)|authorized_keys|machine-id|.*\.(pem|key|p12))$")


def findings(folder: Path) -> list[str]:
    """Every file below ``folder`` that would put a shared secret or a way in onto every card."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder)
        if BAD_NAMES.match(path.name):
            found.append(f"{relative}: file name {path.name}")
        if path.name.endswith((".tar.gz", ".tgz")):
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for what, pattern in PROBLEMS:
            match = pattern.search(text)
            if match:
                found.append(f"{relative}: {what}: {match.group(0).strip()!r}")
    return found


def test_image_build_has_no_password_key_machine_id_or_ssh():
    assert STAGE.is_dir()
    assert findings(IMAGE_BUILD) == []


def test_the_search_finds_what_it_looks_for(tmp_path):
    """The check above can fail: each kind of problem planted in a copy is found."""
    copy = tmp_path / "image-build"
    shutil.copytree(IMAGE_BUILD, copy, ignore=shutil.ignore_patterns("files"))
    planted = {
        "config.example": "FIRST_USER_PASS=raspberry\nENABLE_SSH=1\nPUBKEY_SSH_FIRST_USER='ssh-ed25519 AAAAC3Nz x'\n",
        "stage-library/03-x/00-run.sh": "echo 'pi:secret' | chpasswd\nsystemctl enable ssh\n",
        "stage-library/03-x/01-run.sh": "usermod -p '$6$abc' pi\necho 4f8c2a9d0e1b4c7d8a6f5e3b2c1d0a9f > /etc/machine-id\n",
        "stage-library/03-x/files/host.txt": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n",
        "stage-library/03-x/files/ssh_host_ed25519_key": "x",
        "box.env": "LIBRARY_WIFI_PASSPHRASE=village-wifi-2024\n",
    }
    for name, text in planted.items():
        path = copy / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(text)
    found = "\n".join(findings(copy))
    for what in ("password for the first user", "the old default password", "SSH enabled", "SSH key for the first user",
                 "chpasswd", "usermod/useradd", "fixed machine id", "OpenSSH private key", "file name ssh_host_ed25519_key",
                 "Wi-Fi passphrase"):
        assert what in found, what


def test_pi_gen_config_keeps_ssh_off_and_sets_no_password():
    config = dict(line.split("=", 1) for line in (IMAGE_BUILD / "config.example").read_text().splitlines()
                  if "=" in line and not line.lstrip().startswith("#"))
    assert config["ENABLE_SSH"] == "0"
    assert "FIRST_USER_PASS" not in config
    assert "PUBKEY_SSH_FIRST_USER" not in config
    assert config.get("DISABLE_FIRST_BOOT_USER_RENAME", "0") == "0"
    assert "stage-library" in config["STAGE_LIST"]


def test_lockdown_locks_accounts_and_masks_ssh():
    lockdown = (STAGE / "02-lockdown" / "00-run.sh").read_text()
    assert "passwd --lock root" in lockdown
    assert 'usermod --lock --expiredate 1 --shell /usr/sbin/nologin "${FIRST_USER_NAME}"' in lockdown
    assert re.search(r"systemctl mask [^\n]*sshswitch\.service", lockdown)
    assert "systemctl disable ssh.service" in lockdown
    assert 'rm -f "${ROOTFS_DIR}"/etc/ssh/ssh_host_*' in lockdown
    assert ': > "${ROOTFS_DIR}/etc/machine-id"' in lockdown


def test_stage_scripts_are_what_pi_gen_runs():
    """pi-gen runs NN-run.sh on the build machine and NN-run-chroot.sh in the image, only if executable."""
    scripts = sorted(STAGE.rglob("*.sh"))
    assert {p.name for p in scripts} >= {"prerun.sh", "00-run.sh", "01-run-chroot.sh"}
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script.relative_to(REPO)} must be executable"
        assert script.read_text().startswith("#!/bin/bash"), script
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, f"{script}: {check.stderr}"
        if script.name != "prerun.sh":
            assert re.fullmatch(r"\d\d-run(-chroot)?\.sh", script.name), script.name
    assert (STAGE / "EXPORT_IMAGE").is_file()
    packages = (STAGE / "00-packages" / "00-packages-nr").read_text().split()
    assert {"hostapd", "dnsmasq", "python3-venv", "systemd-resolved", "fdisk"} <= set(packages)
    assert "openssh-server" not in packages


def box_env_settings() -> Settings:
    """The settings the image is built with, read the way the chroot script reads box.env."""
    done = subprocess.run(["bash", "-c", f"set -a; . {IMAGE_BUILD / 'box.env'}; set +a; env -0"],
                          capture_output=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=True)
    environ = dict(item.split("=", 1) for item in done.stdout.decode("utf-8").split("\0") if "=" in item)
    return Settings.from_env({k: v for k, v in environ.items() if k.startswith("LIBRARY_")})


def test_files_rendered_for_the_image_carry_no_secret(tmp_path):
    settings = box_env_settings()
    assert settings.home == Path("/data/library")
    assert (settings.host, settings.port) == ("0.0.0.0", 80)
    files = {str(f.path): f.text for f in render_all(settings)}
    assert "wpa=0" in files["/etc/hostapd/hostapd.conf"]
    assert "wpa_passphrase" not in files["/etc/hostapd/hostapd.conf"]
    assert 'LIBRARY_WIFI_PASSPHRASE=""' in files["/etc/library/library.env"]
    for path, text in files.items():
        for what, pattern in PROBLEMS:
            assert not pattern.search(text), f"{path}: {what}"


def test_prepare_puts_the_stage_into_a_pi_gen_checkout(tmp_path):
    if not (REPO / ".git").exists() or not shutil.which("git"):
        pytest.skip("needs this project's git checkout")
    pigen = tmp_path / "pi-gen"
    (pigen / "stage2").mkdir(parents=True)
    (pigen / "build.sh").write_text("#!/bin/bash\n")
    done = subprocess.run([str(IMAGE_BUILD / "prepare.sh"), str(pigen)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stage = pigen / "stage-library"
    assert (pigen / "stage2" / "SKIP_IMAGES").exists()
    assert (pigen / "config").read_text() == (IMAGE_BUILD / "config.example").read_text()
    assert os.access(stage / "01-library" / "01-run-chroot.sh", os.X_OK)
    assert (stage / "01-library" / "files" / "box.env").read_text() == (IMAGE_BUILD / "box.env").read_text()
    with tarfile.open(stage / "01-library" / "files" / "library-src.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"pyproject.toml", "appliance/system/__init__.py", "appliance/cli/main.py"} <= names
    assert not any(name.startswith((".venv/", "library-data/")) for name in names)
    assert findings(stage) == []

    # Not a pi-gen checkout: a clear refusal, nothing written.
    other = tmp_path / "elsewhere"
    other.mkdir()
    refused = subprocess.run([str(IMAGE_BUILD / "prepare.sh"), str(other)], capture_output=True, text=True)
    assert refused.returncode != 0 and "does not look like a pi-gen checkout" in refused.stderr
    assert list(other.iterdir()) == []
