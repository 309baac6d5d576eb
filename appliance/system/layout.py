"""What every rendered system file shares: where things live on the image, and the checks on settings."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from jinja2 import Environment, StrictUndefined

from appliance.settings import Settings

HEADER = "Rendered by `library config render` from the box's settings; change the settings, not this file."

_INTERFACE = re.compile(r"^[A-Za-z0-9_.*-]{1,15}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class ConfigError(ValueError):
    """A setting cannot be turned into a working system file; the message says which and why."""


@dataclass(frozen=True)
class ImageLayout:
    """Where the image puts things. The defaults are those of the pi-gen stage in image-build/."""

    venv: PurePosixPath = PurePosixPath("/opt/library/venv")
    user: str = "library"
    data_mount: PurePosixPath = PurePosixPath("/data")
    data_label: str = "librarydata"
    config_dir: PurePosixPath = PurePosixPath("/etc/library")
    sbin_dir: PurePosixPath = PurePosixPath("/usr/local/sbin")
    # pi-gen replaces these two words in /etc/fstab with the partitions' PARTUUIDs when it exports the image.
    root_source: str = "ROOTDEV"
    boot_source: str = "BOOTDEV"

    @property
    def library_command(self) -> PurePosixPath:
        return self.venv / "bin" / "library"

    @property
    def env_file(self) -> PurePosixPath:
        return self.config_dir / "library.env"

    @property
    def first_boot_script(self) -> PurePosixPath:
        return self.sbin_dir / "library-first-boot"


@dataclass(frozen=True)
class SystemFile:
    """One rendered file: its absolute path on the box, its text and its permission bits."""

    path: PurePosixPath
    text: str
    mode: int = 0o644


def template_env() -> Environment:
    return Environment(
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


@dataclass(frozen=True)
class Network:
    """The Wi-Fi network around the box, checked once."""

    box: ipaddress.IPv4Address
    interface: ipaddress.IPv4Interface
    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    @property
    def netmask(self) -> str:
        return str(self.interface.network.netmask)

    @property
    def cidr(self) -> str:
        return str(self.interface)


def check_network(settings: Settings) -> Network:
    def address(name: str, value: str) -> ipaddress.IPv4Address:
        try:
            return ipaddress.IPv4Address(value.strip())
        except ValueError:
            raise ConfigError(f"LIBRARY_{name.upper()} must be an IPv4 address such as 10.42.0.1, not {value!r}") from None

    box = address("box_address", settings.box_address)
    if not 8 <= settings.ap_prefix_length <= 30:
        raise ConfigError("LIBRARY_AP_PREFIX_LENGTH must be between 8 and 30 (24 is usual)")
    interface = ipaddress.IPv4Interface(f"{box}/{settings.ap_prefix_length}")
    net = interface.network
    if not box.is_private:
        raise ConfigError(f"LIBRARY_BOX_ADDRESS {box} is not a private address; use one such as 10.42.0.1")
    if box in (net.network_address, net.broadcast_address):
        raise ConfigError(f"LIBRARY_BOX_ADDRESS {box} is the network's own or broadcast address; use e.g. {net.network_address + 1}")
    first = address("dhcp_first", settings.dhcp_first)
    last = address("dhcp_last", settings.dhcp_last)
    for name, value in (("dhcp_first", first), ("dhcp_last", last)):
        if value not in net or value in (net.network_address, net.broadcast_address):
            raise ConfigError(f"LIBRARY_{name.upper()} {value} is outside the box's Wi-Fi network {net}")
    if first > last:
        raise ConfigError(f"LIBRARY_DHCP_FIRST {first} comes after LIBRARY_DHCP_LAST {last}")
    if first <= box <= last:
        raise ConfigError(f"the box's own address {box} lies inside the range lent to phones ({first}-{last})")
    if settings.dhcp_lease_hours < 1:
        raise ConfigError("LIBRARY_DHCP_LEASE_HOURS must be at least 1")
    return Network(box=box, interface=interface, first=first, last=last)


def check_domain(settings: Settings) -> str:
    domain = settings.local_domain.strip().lower().rstrip(".")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or len(domain) > 253:
        raise ConfigError(
            f"LIBRARY_LOCAL_DOMAIN must be a name with a dot made of letters, digits and dashes, such as library.lan, not {settings.local_domain!r}"
        )
    return domain


def check_interface(name: str, value: str) -> str:
    if not _INTERFACE.match(value):
        raise ConfigError(f"LIBRARY_{name.upper()} must be a network interface name such as wlan0, not {value!r}")
    return value


def check_layout(settings: Settings, layout: ImageLayout) -> None:
    if not _USER.match(layout.user) or layout.user == "root":
        raise ConfigError(f"the service user must be an ordinary system user name, not {layout.user!r}")
    if not _LABEL.match(layout.data_label) or len(layout.data_label) > 16:
        raise ConfigError(f"the data partition label must be 1-16 lower-case letters, digits or dashes, not {layout.data_label!r}")
    home = PurePosixPath(settings.home.as_posix())
    if home == layout.data_mount or layout.data_mount not in home.parents:
        raise ConfigError(
            f"LIBRARY_HOME ({home}) must be a folder inside the data partition {layout.data_mount}, such as {layout.data_mount / 'library'}"
        )
