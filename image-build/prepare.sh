#!/bin/bash
# Put the library's pi-gen stage into a pi-gen checkout, ready for its build.sh.
#   image-build/prepare.sh PI_GEN_DIR [BOX_ENV]
# BOX_ENV (default image-build/box.env) holds the box's LIBRARY_* settings. The library's
# source goes in as `git archive` of this checkout's HEAD: commit what you want on the card.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "${here}/.." && pwd)
pigen=${1:?usage: image-build/prepare.sh PI_GEN_DIR [BOX_ENV]}
box_env=${2:-${here}/box.env}

if [ ! -f "${pigen}/build.sh" ] || [ ! -d "${pigen}/stage2" ]; then
    echo "${pigen} does not look like a pi-gen checkout (no build.sh or stage2/)" >&2
    exit 1
fi
if [ ! -f "${box_env}" ]; then
    echo "no settings file ${box_env}" >&2
    exit 1
fi

stage="${pigen}/stage-library"
rm -rf "${stage}"
cp -R "${here}/stage-library" "${stage}"
mkdir -p "${stage}/01-library/files"
git -C "${repo}" archive --format=tar.gz -o "${stage}/01-library/files/library-src.tar.gz" HEAD
install -m 644 "${box_env}" "${stage}/01-library/files/box.env"

# Only the library image is exported, not the plain Lite image of stage2.
touch "${pigen}/stage2/SKIP_IMAGES"
if [ ! -e "${pigen}/config" ]; then
    install -m 644 "${here}/config.example" "${pigen}/config"
    echo "wrote ${pigen}/config from config.example"
fi
echo "ready: cd ${pigen} && sudo ./build.sh   (or ./build-docker.sh)"
