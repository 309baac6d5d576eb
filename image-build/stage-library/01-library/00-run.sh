#!/bin/bash -e
# On the build machine: put the library's source and the box's settings into the image.
# prepare.sh placed both in files/ (the source is `git archive` of the checkout's HEAD).
for needed in files/library-src.tar.gz files/box.env; do
	if [ ! -f "${needed}" ]; then
		echo "missing ${needed}: run image-build/prepare.sh PI_GEN_DIR from the library's checkout first" >&2
		exit 1
	fi
done
rm -rf "${ROOTFS_DIR}/opt/library/src"
install -d -m 755 "${ROOTFS_DIR}/opt/library/src"
tar -xzf files/library-src.tar.gz -C "${ROOTFS_DIR}/opt/library/src"
install -m 644 files/box.env "${ROOTFS_DIR}/opt/library/box.env"
