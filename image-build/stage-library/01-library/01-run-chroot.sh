#!/bin/bash -e
# Inside the image: the library in its own virtual environment, the user it runs as, and every
# system file rendered from the box's settings by the library itself (`library config render`).

if ! id library >/dev/null 2>&1; then
	adduser --system --group --home /nonexistent --no-create-home --shell /usr/sbin/nologin library
fi

python3 -m venv /opt/library/venv
/opt/library/venv/bin/pip install --no-cache-dir --disable-pip-version-check --quiet /opt/library/src

set -a
# shellcheck disable=SC1091
. /opt/library/box.env
set +a
/opt/library/venv/bin/library config render --out /

# Mount points of the data partition and of the folders kept in RAM (see /etc/fstab).
install -d -m 755 /data /var/lib/logrotate

systemctl unmask hostapd
systemctl enable hostapd dnsmasq systemd-networkd systemd-resolved
systemctl enable library-first-boot.service library-web.service library-sync.service

# The box's network is systemd-networkd's; nothing else may manage wlan0. No swap file on the SD card.
for unit in NetworkManager.service dhcpcd.service wpa_supplicant.service dphys-swapfile.service \
	apt-daily.timer apt-daily-upgrade.timer man-db.timer; do
	systemctl disable "${unit}" 2>/dev/null || true
done

rm -rf /opt/library/src /opt/library/box.env
