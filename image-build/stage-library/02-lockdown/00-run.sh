#!/bin/bash -e
# Nothing to log in with: no password, no SSH, no host keys or machine id shared by every card.

on_chroot <<CHROOT
passwd --lock root
if id "${FIRST_USER_NAME}" >/dev/null 2>&1; then
	usermod --lock --expiredate 1 --shell /usr/sbin/nologin "${FIRST_USER_NAME}"
fi
rm -f /etc/sudoers.d/010_*-nopasswd
systemctl disable ssh.service ssh.socket 2>/dev/null || true
# A file named "ssh" on the boot partition must not switch SSH on, and no first-boot
# wizard may wait on the console for a user to be created on a read-only root.
systemctl mask sshswitch.service regenerate_ssh_host_keys.service userconfig.service
CHROOT

rm -f "${ROOTFS_DIR}"/etc/ssh/ssh_host_*
rm -f "${ROOTFS_DIR}/var/lib/dbus/machine-id"
: > "${ROOTFS_DIR}/etc/machine-id"

# The root partition keeps its size: the free space of the card becomes the data partition at
# first boot (library-first-boot), so the stock resize-on-first-boot is removed. The Wi-Fi
# country is set from the first moment the kernel runs.
CMDLINE="${ROOTFS_DIR}/boot/firmware/cmdline.txt"
if [ ! -f "${CMDLINE}" ]; then
	CMDLINE="${ROOTFS_DIR}/boot/cmdline.txt"
fi
COUNTRY=$(sed -n 's/^LIBRARY_WIFI_COUNTRY="\([A-Za-z][A-Za-z]\)"$/\1/p' "${ROOTFS_DIR}/etc/library/library.env" | tr '[:lower:]' '[:upper:]')
sed -i -E \
	-e 's@ ?init=/usr/lib/raspberrypi-sys-mods/firstboot@@' \
	-e 's@ ?init=/usr/lib/raspi-config/init_resize\.sh@@' \
	-e 's@(^| )resize( |$)@\1@' \
	-e 's@ ?cfg80211\.ieee80211_regdom=[A-Za-z]+@@' \
	"${CMDLINE}"
if [ -n "${COUNTRY}" ]; then
	sed -i -e "1 s@\$@ cfg80211.ieee80211_regdom=${COUNTRY}@" "${CMDLINE}"
fi
