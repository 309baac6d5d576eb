#!/bin/bash -e
# pi-gen: start this stage from the root file system the previous stage (stage2, the Lite system) left.
if [ ! -d "${ROOTFS_DIR}" ]; then
	copy_previous
fi
