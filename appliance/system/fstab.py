"""/etc/fstab for a read-only root: RAM for logs and temporary files, one writable data partition.

A power cut can then only hit the data partition, where every write that matters is atomic
(temp file, fsync, rename) and the catalog is SQLite in WAL mode.
"""
from __future__ import annotations

from pathlib import PurePosixPath

from appliance.settings import Settings
from appliance.system.layout import HEADER, ImageLayout, SystemFile, check_layout, template_env

FSTAB = """\
# {{ header }}
# <source>  <mount point>  <type>  <options>  <dump>  <pass>
proc  /proc  proc  defaults  0  0
{{ boot }}  /boot/firmware  vfat  ro,noatime,fmask=0022,dmask=0022  0  2
{{ root }}  /  ext4  ro,noatime  0  1
# The data partition is made and formatted by library-first-boot on the first start.
LABEL={{ label }}  {{ data }}  ext4  rw,noatime,nodev,nosuid,noexec,nofail,x-systemd.device-timeout=10s,errors=remount-ro  0  2
{% for path, size, mode in tmpfs %}
tmpfs  {{ path }}  tmpfs  nosuid,nodev,noexec,size={{ size }},mode={{ mode }}  0  0
{% endfor %}
"""

# Folders that programs expect to write to, kept in RAM.
TMPFS = (
    ("/tmp", "64m", "1777"),
    ("/var/tmp", "16m", "1777"),
    ("/var/log", "32m", "0755"),
    ("/var/lib/systemd", "8m", "0755"),
    ("/var/lib/logrotate", "1m", "0755"),
)


def render_fstab(settings: Settings, layout: ImageLayout) -> list[SystemFile]:
    check_layout(settings, layout)
    text = template_env().from_string(FSTAB).render(
        header=HEADER, boot=layout.boot_source, root=layout.root_source, label=layout.data_label,
        data=layout.data_mount, tmpfs=TMPFS,
    )
    return [SystemFile(PurePosixPath("/etc/fstab"), text)]
