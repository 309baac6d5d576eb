"""systemd units for the web server, the sync agent and the first-boot steps, and their environment file."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path, PurePosixPath

from appliance.settings import ENV_PREFIX, Settings
from appliance.system.layout import (
    HEADER,
    ConfigError,
    ImageLayout,
    SystemFile,
    check_layout,
    template_env,
)

# Shared by both long-running services: they may write only to the data folder.
HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={{ home }}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
UMask=0027
"""

WEB_MEMORY_MAX = "640M"
SYNC_MEMORY_MAX = "320M"

WEB_UNIT = """\
# {{ header }}
[Unit]
Description=Library web server (catalog, search, reading, OPDS, captive portal)
After=network.target library-first-boot.service
Requires=library-first-boot.service

[Service]
Type=simple
User={{ user }}
Group={{ user }}
EnvironmentFile={{ env_file }}
ExecStart={{ command }} serve
Restart=always
RestartSec=2
TimeoutStopSec=20
# A Pi of 1 GB and no swap: the server, its workers and its jobs (an index rebuild) stay within
# this much (the page cache of what they read included, which the kernel drops first; see
# BENCHMARKS.md, "Within a Pi's memory"). If memory runs out anyway, the kernel ends the library's
# processes before the Wi-Fi's and the network's (score 0), a job's end leaves the server
# serving, and the server is started again.
MemoryMax={{ web_memory }}
OOMScoreAdjust=300
OOMPolicy=continue
# Phones knock on port 80; this is the only privilege the server keeps.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
{{ hardening }}
[Install]
WantedBy=multi-user.target
"""

SYNC_UNIT = """\
# {{ header }}
[Unit]
Description=Library sync agent (content bundles in, anonymous statistics out)
After=network.target library-first-boot.service
Requires=library-first-boot.service

[Service]
Type=simple
User={{ user }}
Group={{ user }}
EnvironmentFile={{ env_file }}
ExecStart={{ command }} sync run
Restart=always
RestartSec=30
TimeoutStopSec=30
Nice=10
IOSchedulingClass=idle
# It installs releases (about 70 MB at its busiest): the first the kernel ends if memory runs out.
MemoryMax={{ sync_memory }}
OOMScoreAdjust=500
CapabilityBoundingSet=
{{ hardening }}# Carriers: a USB stick or folder mounted under /media brings bundles and takes statistics away.
ReadWritePaths=-/media

[Install]
WantedBy=multi-user.target
"""

FIRST_BOOT_UNIT = """\
# {{ header }}
[Unit]
Description=Prepare the library box (data partition, keys, Wi-Fi country)
After=local-fs.target
Before=library-web.service library-sync.service hostapd.service dnsmasq.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={{ script }}
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=30min

[Install]
WantedBy=multi-user.target
"""

# Logs are kept in RAM: the SD card is spared and a power cut cannot corrupt them.
JOURNALD = """\
# {{ header }}
[Journal]
Storage=volatile
RuntimeMaxUse=24M
ForwardToSyslog=no
"""


def env_quote(value: str) -> str:
    """Quote a value for a systemd EnvironmentFile that a POSIX shell can also source."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ConfigError(f"a setting contains a line break, which cannot be written to the environment file: {value!r}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    return f'"{escaped}"'


def render_env_file(settings: Settings) -> str:
    lines = [f"# {HEADER}", "# Read by the library services and by the first-boot script."]
    for f in fields(Settings):
        value = getattr(settings, f.name)
        text = value.as_posix() if isinstance(value, Path) else str(value)
        lines.append(f"{ENV_PREFIX}{f.name.upper()}={env_quote(text)}")
    return "\n".join(lines) + "\n"


def render_units(settings: Settings, layout: ImageLayout) -> list[SystemFile]:
    check_layout(settings, layout)
    env = template_env()
    home = settings.home.as_posix()
    if any(c.isspace() for c in home):
        raise ConfigError(f"LIBRARY_HOME must not contain spaces on the box image: {home!r}")
    hardening = env.from_string(HARDENING).render(home=home)
    values = {
        "header": HEADER,
        "user": layout.user,
        "env_file": layout.env_file,
        "command": layout.library_command,
        "hardening": hardening,
        "script": layout.first_boot_script,
        "web_memory": WEB_MEMORY_MAX,
        "sync_memory": SYNC_MEMORY_MAX,
    }
    unit_dir = PurePosixPath("/etc/systemd/system")
    return [
        SystemFile(layout.env_file, render_env_file(settings), 0o640),
        SystemFile(unit_dir / "library-web.service", env.from_string(WEB_UNIT).render(**values)),
        SystemFile(unit_dir / "library-sync.service", env.from_string(SYNC_UNIT).render(**values)),
        SystemFile(unit_dir / "library-first-boot.service", env.from_string(FIRST_BOOT_UNIT).render(**values)),
        SystemFile(PurePosixPath("/etc/systemd/journald.conf.d/library.conf"),
                   env.from_string(JOURNALD).render(header=HEADER)),
    ]
