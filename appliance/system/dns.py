"""DHCP and DNS for the phones on the box's Wi-Fi (dnsmasq).

Two files: ``library-dns.conf`` holds the answers (the library's own name, the phones' connectivity
probes and every other name all lead to the box), ``library-dhcp.conf`` holds the interface and the
addresses lent to phones. Both go to /etc/dnsmasq.d/.
"""
from __future__ import annotations

from pathlib import PurePosixPath

from appliance.settings import Settings
from appliance.system.layout import (
    HEADER,
    ImageLayout,
    SystemFile,
    check_domain,
    check_interface,
    check_network,
    template_env,
)

# Host names that phones and laptops ask to decide whether a Wi-Fi network has a captive portal.
# The web app answers their paths (see appliance/web/views/public/portal.py) whatever Host header they carry.
PORTAL_PROBE_HOSTS = (
    # Android and ChromeOS
    "connectivitycheck.gstatic.com",
    "connectivitycheck.android.com",
    "clients1.google.com",
    "clients3.google.com",
    "www.google.com",
    "play.googleapis.com",
    # Apple
    "captive.apple.com",
    "www.apple.com",
    "www.appleiphonecell.com",
    "www.itools.info",
    "www.ibook.info",
    "www.airport.us",
    "www.thinkdifferent.us",
    # Windows
    "www.msftconnecttest.com",
    "ipv6.msftconnecttest.com",
    "www.msftncsi.com",
    # Firefox, Linux desktops
    "detectportal.firefox.com",
    "nmcheck.gnome.org",
    "connectivity-check.ubuntu.com",
)

# Windows also looks this name up and expects this exact address before it believes a network is online.
WINDOWS_DNS_PROBE = ("dns.msftncsi.com", "131.107.255.255")

DNS_CONF = """\
# {{ header }}
# Answers for the phones on the box's Wi-Fi. There is no internet behind the box: its own name,
# the phones' connectivity probes and every other name lead to the library at {{ box }}.
no-resolv
no-hosts
domain-needed
bogus-priv
local-ttl=10
host-record={{ domain }},{{ box }}
address=/{{ domain }}/{{ box }}
{% for host in probes %}
address=/{{ host }}/{{ box }}
{% endfor %}
address=/{{ windows_host }}/{{ windows_address }}
address=/#/{{ box }}
# Nothing is forwarded; questions without an answer above (AAAA for instance) get an empty answer.
local=/#/
"""

DHCP_CONF = """\
# {{ header }}
# Addresses for the phones that join the box's Wi-Fi on {{ interface }}.
interface={{ interface }}
except-interface=lo
bind-dynamic
domain={{ domain }}
dhcp-range={{ first }},{{ last }},{{ netmask }},{{ lease_hours }}h
dhcp-option=option:router,{{ box }}
dhcp-option=option:dns-server,{{ box }}
dhcp-authoritative
dhcp-rapid-commit
# The root file system is read-only: leases live in RAM and phones simply ask again after a restart.
dhcp-leasefile=/run/library-dnsmasq.leases
"""


def render_dns(settings: Settings, layout: ImageLayout) -> list[SystemFile]:
    env = template_env()
    network = check_network(settings)
    domain = check_domain(settings)
    interface = check_interface("ap_interface", settings.ap_interface)
    values = {"header": HEADER, "box": str(network.box), "domain": domain}
    dns = env.from_string(DNS_CONF).render(
        **values, probes=PORTAL_PROBE_HOSTS, windows_host=WINDOWS_DNS_PROBE[0], windows_address=WINDOWS_DNS_PROBE[1]
    )
    dhcp = env.from_string(DHCP_CONF).render(
        **values, interface=interface, first=network.first, last=network.last, netmask=network.netmask,
        lease_hours=settings.dhcp_lease_hours,
    )
    return [
        SystemFile(PurePosixPath("/etc/dnsmasq.d/library-dns.conf"), dns),
        SystemFile(PurePosixPath("/etc/dnsmasq.d/library-dhcp.conf"), dhcp),
    ]
