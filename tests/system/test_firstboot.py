"""First boot of a box: its data partition and its own secrets, made once."""
from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from appliance.settings import Settings
from tests.support.system_files import box_layout, box_settings, need, rendered


def first_boot_script(tmp_path: Path) -> Path:
    text = rendered(box_settings(tmp_path), box_layout(tmp_path))["/usr/local/sbin/library-first-boot"]
    script = tmp_path / "library-first-boot"
    script.write_text(text)
    script.chmod(0o755)
    return script


def test_first_boot_script_is_valid_bash(tmp_path):
    script = first_boot_script(tmp_path)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    usage = subprocess.run(["bash", str(script), "nonsense"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def partitions(image: Path) -> list[dict]:
    import json

    done = subprocess.run([need("sfdisk"), "--json", str(image)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["partitiontable"]["partitions"]


def test_first_boot_adds_the_data_partition_once(tmp_path):
    """On a card image laid out like pi-gen's (boot, root, free space), the script adds one partition over the rest."""
    sfdisk = need("sfdisk")
    image = tmp_path / "card.img"
    size = 96 * 1024 * 1024
    with image.open("wb") as f:
        f.truncate(size)
    layout = "label: dos\nstart=8192, size=32768, type=c\nstart=40960, size=65536, type=83\n"
    subprocess.run([sfdisk, "--quiet", str(image)], input=layout, text=True, check=True)
    script = first_boot_script(tmp_path)

    done = subprocess.run(["bash", str(script), "partition", str(image)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    parts = partitions(image)
    assert len(parts) == 3
    root, data = parts[1], parts[2]
    assert data["type"] == "83"
    assert data["start"] >= root["start"] + root["size"]
    assert (data["start"] + data["size"]) * 512 > size - 2 * 1024 * 1024  # reaches (almost) the end
    assert parts[:2] == partitions(image)[:2]

    before = image.read_bytes()[:1024 * 1024]
    again = subprocess.run(["bash", str(script), "partition", str(image)], capture_output=True, text=True)
    assert again.returncode == 0 and "already has 3 partitions" in again.stdout
    assert image.read_bytes()[:1024 * 1024] == before


def test_first_boot_refuses_a_card_without_root_partition(tmp_path):
    sfdisk = need("sfdisk")
    image = tmp_path / "odd.img"
    with image.open("wb") as f:
        f.truncate(32 * 1024 * 1024)
    subprocess.run([sfdisk, "--quiet", str(image)], input="label: dos\nstart=8192, type=c\n", text=True, check=True)
    done = subprocess.run(["bash", str(first_boot_script(tmp_path)), "partition", str(image)],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert len(partitions(image)) == 1


def test_first_boot_command_makes_box_secrets_once(runner, settings):
    first = runner.invoke(["config", "first-boot"])
    assert first.exit_code == 0, first.output
    keys = settings.keys_dir
    key = keys / "box-ed25519.key"
    code = (keys / "admin-setup-code").read_text().strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((keys / "admin-setup-code").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert f"Admin setup code: {code}" in first.output
    assert len(code) == 14 and code.count("-") == 2
    public = (keys / "box-ed25519.pub").read_text().strip()
    assert public in first.output

    key_bytes = key.read_bytes()
    second = runner.invoke(["config", "first-boot"])
    assert second.exit_code == 0
    assert "nothing, all there already" in second.output
    assert key.read_bytes() == key_bytes
    assert (keys / "admin-setup-code").read_text().strip() == code

    # Once the code has been used (and removed), a restart does not make a new one.
    (keys / "admin-setup-code").unlink()
    third = runner.invoke(["config", "first-boot"])
    assert "Admin setup code" not in third.output
    assert not (keys / "admin-setup-code").exists()


def test_two_boxes_get_different_secrets(runner, tmp_path):
    from appliance.system.firstboot import prepare_box

    a = prepare_box(Settings(home=tmp_path / "a"))
    b = prepare_box(Settings(home=tmp_path / "b"))
    assert a.box_public_key != b.box_public_key
    assert a.admin_setup_code != b.admin_setup_code
