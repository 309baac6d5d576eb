"""First start of a box: the data partition, this box's own secrets and the Wi-Fi country.

Two halves. ``render_first_boot`` writes the root shell script that library-first-boot.service runs
at every start (partition, format and mount the data partition, keep the machine id, unblock the
radio); each step checks whether it is done already, so a power cut in the middle is repaired by
the next start. That script then runs ``library config first-boot`` as the service user, which is
``prepare_box`` below: the data folder, the box key and the admin setup code, made once per box and
never baked into the image.
"""
from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass

from appliance.settings import Settings
from appliance.storage.atomic import atomic_write_text
from appliance.storage.keys import ADMIN_SETUP_CODE, BOX_KEY, ensure_box_key, new_setup_code
from appliance.system.layout import (
    HEADER,
    ImageLayout,
    SystemFile,
    check_interface,
    check_layout,
    template_env,
)
from appliance.system.wifi import check_wifi

logger = logging.getLogger(__name__)

# No 0/O, 1/I/L: the code is read off a screen and typed on a phone.

FIRST_BOOT_SCRIPT = r"""#!/bin/bash
# {{ header }}
# Prepares this library box at every start. Every step first checks whether it is done already,
# so a power cut in the middle is simply repaired by the next start.
#   library-first-boot             run every step (what library-first-boot.service does)
#   library-first-boot partition DISK
#                                  only add the data partition to DISK if it has none
set -euo pipefail

DATA_MOUNT={{ data_mount | q }}
DATA_LABEL={{ data_label | q }}
SERVICE_USER={{ user | q }}
ENV_FILE={{ env_file | q }}
LIBRARY={{ library | q }}
WIFI_COUNTRY={{ country | q }}

log() { echo "library-first-boot: $*"; }

# Name of partition number $2 of disk $1 (/dev/sda -> /dev/sda3, /dev/mmcblk0 -> /dev/mmcblk0p3).
partition_name() {
    case "$1" in
        *[0-9]) echo "${1}p$2" ;;
        *) echo "$1$2" ;;
    esac
}

# Add one Linux partition over the free space after the last one, unless the disk has three already.
make_data_partition() {
    local disk=$1 count start size end=0 first
    count=$(sfdisk --dump "$disk" | grep -c ' : start=' || true)
    if [ "$count" -ge 3 ]; then
        log "$disk already has $count partitions; not adding one"
        return 0
    fi
    if [ "$count" -lt 2 ]; then
        log "$disk has $count partitions; expected the boot and root partitions first" >&2
        return 1
    fi
    # Start after the end of the last partition, on a 1 MiB boundary (never in a gap before it).
    while read -r start size; do
        if [ $((start + size)) -gt "$end" ]; then end=$((start + size)); fi
    done < <(sfdisk --dump "$disk" | sed -n 's/.*start= *\([0-9]*\), *size= *\([0-9]*\).*/\1 \2/p')
    first=$(( (end + 2047) / 2048 * 2048 ))
    log "adding the data partition to $disk from sector $first"
    echo "start=$first, type=83" | sfdisk --quiet --append --no-reread --no-tell-kernel "$disk"
    if [ -b "$disk" ]; then
        partx --add --nr 3 "$disk" 2>/dev/null || partx --update --nr 3 "$disk"
        udevadm settle || true
    fi
}

root_disk() {
    local source parent
    source=$(findmnt --noheadings --output SOURCE /)
    parent=$(lsblk --noheadings --nodeps --output PKNAME "$source")
    echo "/dev/$parent"
}

ensure_data_partition() {
    local disk device
    if blkid --label "$DATA_LABEL" >/dev/null 2>&1; then
        return 0
    fi
    disk=$(root_disk)
    make_data_partition "$disk"
    device=$(partition_name "$disk" 3)
    if blkid --probe "$device" >/dev/null 2>&1; then
        log "$device holds something that is not the library's data partition; leaving it alone" >&2
        return 1
    fi
    log "formatting $device for the library's data (this takes a minute)"
    mkfs.ext4 -q -F -L "$DATA_LABEL" -m 1 "$device"
    udevadm settle || true
}

ensure_data_mounted() {
    mkdir -p "$DATA_MOUNT" 2>/dev/null || true
    if ! mountpoint -q "$DATA_MOUNT"; then
        mount "$DATA_MOUNT" || mountpoint -q "$DATA_MOUNT"
    fi
}

with_writable_root() {
    mount -o remount,rw /
    local status=0
    "$@" || status=$?
    sync
    mount -o remount,ro / || log "could not make / read-only again" >&2
    return "$status"
}

# The image ships an empty /etc/machine-id; systemd then makes one in RAM. Keep the first one for good.
keep_machine_id() {
    if mountpoint -q /etc/machine-id; then
        log "keeping this box's machine id"
        with_writable_root systemd-machine-id-setup --commit
    fi
}

# The box resolves names for itself (the sync agent's link) through systemd-resolved, never through
# the Wi-Fi's dnsmasq, which answers every name with the box.
keep_resolver() {
    local stub=/run/systemd/resolve/stub-resolv.conf
    if [ "$(readlink /etc/resolv.conf || true)" != "$stub" ]; then
        log "pointing /etc/resolv.conf at systemd-resolved"
        with_writable_root ln -sfn "$stub" /etc/resolv.conf
    fi
}

unblock_wifi() {
    rfkill unblock wlan 2>/dev/null || true
    iw reg set "$WIFI_COUNTRY" 2>/dev/null || true
}

prepare_data_folder() {
    local home
    # shellcheck disable=SC1090
    set -a; . "$ENV_FILE"; set +a
    home=$LIBRARY_HOME
    install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$home"
    runuser -u "$SERVICE_USER" -- "$LIBRARY" --home "$home" config first-boot
    if [ -s "$home/keys/{{ setup_code_file }}" ]; then
        mkdir -p /run/issue.d
        {
            echo "Library box. Admin setup code: $(cat "$home/keys/{{ setup_code_file }}")"
            echo
        } > /run/issue.d/50-library.issue
    fi
}

main() {
    keep_machine_id
    keep_resolver
    ensure_data_partition
    ensure_data_mounted
    prepare_data_folder
    unblock_wifi
    log "ready"
}

case "${1:-}" in
    "") main ;;
    partition) make_data_partition "${2:?which disk?}" ;;
    *) echo "usage: $0 [partition DISK]" >&2; exit 2 ;;
esac
"""


def render_first_boot(settings: Settings, layout: ImageLayout) -> list[SystemFile]:
    check_layout(settings, layout)
    check_interface("ap_interface", settings.ap_interface)
    env = template_env()
    env.filters["q"] = lambda value: shlex.quote(str(value))
    text = env.from_string(FIRST_BOOT_SCRIPT).render(
        header=HEADER,
        data_mount=layout.data_mount,
        data_label=layout.data_label,
        user=layout.user,
        env_file=layout.env_file,
        library=layout.library_command,
        country=check_wifi(settings)["country"],
        setup_code_file=ADMIN_SETUP_CODE,
    )
    return [SystemFile(layout.first_boot_script, text, 0o755)]


@dataclass(frozen=True)
class BoxSecrets:
    box_public_key: str  # base64 of the raw 32-byte Ed25519 public key
    admin_setup_code: str | None  # None once the admin work has used and removed it
    created: tuple[str, ...]  # names of the files made by this call


def prepare_box(settings: Settings) -> BoxSecrets:
    """Make the data folder and this box's own secrets if they are missing; never replace existing ones."""
    settings.home.mkdir(parents=True, exist_ok=True)
    keys_dir = settings.keys_dir
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys_dir.chmod(0o700)
    created: list[str] = []
    public, made = ensure_box_key(keys_dir)
    if made:
        created.append(BOX_KEY)
        logger.info("made this box's key pair in %s", keys_dir)
    code_path = keys_dir / ADMIN_SETUP_CODE
    code: str | None = None
    if code_path.exists():
        code = code_path.read_text().strip() or None
    elif made:
        # A brand-new box: the first librarian proves presence with this code.
        code = new_setup_code()
        atomic_write_text(code_path, code + "\n", mode=0o600)
        created.append(ADMIN_SETUP_CODE)
        logger.info("made the admin setup code in %s", code_path)
    return BoxSecrets(box_public_key=public, admin_setup_code=code, created=tuple(created))
