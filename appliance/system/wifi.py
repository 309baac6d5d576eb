"""The box's Wi-Fi access point (hostapd) and the addresses of its interfaces (systemd-networkd)."""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from appliance.settings import Settings
from appliance.system.layout import (
    HEADER,
    ConfigError,
    ImageLayout,
    SystemFile,
    check_interface,
    check_network,
    template_env,
)

SECURITIES = ("open", "wpa2")

HOSTAPD_CONF = """\
# {{ header }}
interface={{ interface }}
driver=nl80211
{% if ssid_plain %}
ssid={{ ssid_plain }}
{% else %}
# SSID: {{ ssid_text }}
ssid2={{ ssid_hex }}
{% endif %}
{% if utf8 %}
utf8_ssid=1
{% endif %}
country_code={{ country }}
ieee80211d=1
{% if band == "a" %}
ieee80211h=1
{% endif %}
hw_mode={{ band }}
channel={{ channel }}
ieee80211n=1
wmm_enabled=1
auth_algs=1
ignore_broadcast_ssid=0
# Phones talk to the box only, never to each other.
ap_isolate=1
max_num_sta=64
{% if security == "wpa2" %}
wpa=2
wpa_key_mgmt=WPA-PSK
wpa_pairwise=CCMP
rsn_pairwise=CCMP
wpa_passphrase={{ passphrase }}
{% else %}
# Open network: anyone in range may join and read.
wpa=0
{% endif %}
"""

HOSTAPD_DROPIN = """\
# {{ header }}
[Unit]
After=systemd-networkd.service
Wants=systemd-networkd.service

[Service]
ExecStartPre=-/usr/sbin/rfkill unblock wlan
Restart=on-failure
RestartSec=5
"""

AP_NETWORK = """\
# {{ header }}
[Match]
Name={{ interface }}

[Link]
RequiredForOnline=no

[Network]
Address={{ cidr }}
ConfigureWithoutCarrier=yes
LinkLocalAddressing=no
IPv6AcceptRA=no
DHCP=no
"""

UPLINK_NETWORK = """\
# {{ header }}
# The internet link, when there is one: a cable or a USB modem that hands out addresses.
[Match]
Name={{ interface }}

[Link]
RequiredForOnline=no

[Network]
DHCP=yes
"""


def check_wifi(settings: Settings) -> dict:
    """The Wi-Fi settings, checked; raises ConfigError with the setting to fix."""
    ssid = settings.wifi_ssid
    raw = ssid.encode("utf-8")
    if not 1 <= len(raw) <= 32:
        raise ConfigError(f"LIBRARY_WIFI_SSID must be 1 to 32 bytes long; {ssid!r} is {len(raw)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in ssid):
        raise ConfigError("LIBRARY_WIFI_SSID must not contain control characters")
    country = settings.wifi_country.strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", country) or country == "00":
        raise ConfigError(f"LIBRARY_WIFI_COUNTRY must be a two-letter country code such as VN, not {settings.wifi_country!r}")
    channel = settings.wifi_channel
    if 1 <= channel <= 14:
        band = "g"
    elif 32 <= channel <= 177:
        band = "a"
    else:
        raise ConfigError(f"LIBRARY_WIFI_CHANNEL {channel} is not a Wi-Fi channel (1-13 on 2.4 GHz, 36 and up on 5 GHz)")
    security = settings.wifi_security.strip().lower()
    if security not in SECURITIES:
        raise ConfigError(f"LIBRARY_WIFI_SECURITY must be open or wpa2, not {settings.wifi_security!r}")
    passphrase = settings.wifi_passphrase
    if security == "wpa2":
        if not 8 <= len(passphrase) <= 63 or not all(32 <= ord(c) <= 126 for c in passphrase):
            raise ConfigError("LIBRARY_WIFI_PASSPHRASE must be 8 to 63 plain ASCII characters for a wpa2 network")
    elif passphrase:
        raise ConfigError("LIBRARY_WIFI_PASSPHRASE is set but LIBRARY_WIFI_SECURITY is open; set it to wpa2 or clear the passphrase")
    plain = ssid.isascii() and ssid == ssid.strip() and ssid.isprintable()
    return {
        "ssid_plain": ssid if plain else "",
        "ssid_text": ssid,
        "ssid_hex": raw.hex(),
        "utf8": not ssid.isascii(),
        "country": country,
        "channel": channel,
        "band": band,
        "security": security,
        "passphrase": passphrase,
    }


def render_wifi(settings: Settings, layout: ImageLayout) -> list[SystemFile]:
    env = template_env()
    ap = check_interface("ap_interface", settings.ap_interface)
    uplink = check_interface("uplink_interface", settings.uplink_interface)
    if ap == uplink:
        raise ConfigError("LIBRARY_AP_INTERFACE and LIBRARY_UPLINK_INTERFACE must be different interfaces")
    wifi = check_wifi(settings)
    network = check_network(settings)
    values = {"header": HEADER, "interface": ap}
    hostapd_mode = 0o600 if wifi["security"] == "wpa2" else 0o644
    return [
        SystemFile(PurePosixPath("/etc/hostapd/hostapd.conf"),
                   env.from_string(HOSTAPD_CONF).render(**values, **wifi), hostapd_mode),
        SystemFile(PurePosixPath("/etc/systemd/system/hostapd.service.d/library.conf"),
                   env.from_string(HOSTAPD_DROPIN).render(**values)),
        SystemFile(PurePosixPath("/etc/systemd/network/10-library-ap.network"),
                   env.from_string(AP_NETWORK).render(**values, cidr=network.cidr)),
        SystemFile(PurePosixPath("/etc/systemd/network/20-library-uplink.network"),
                   env.from_string(UPLINK_NETWORK).render(header=HEADER, interface=uplink)),
    ]
