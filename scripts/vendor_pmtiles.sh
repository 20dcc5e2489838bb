#!/usr/bin/env bash
# Vendor the pmtiles npm package's browser build into the publish stage's package data, like Leaflet comes from
# xstatic: fetch the pinned version with npm, check its digest, copy dist/pmtiles.js. Run it to update the pin
# (then change PMTILES_VERSION and PMTILES_SHA256 here and in src/amberwatch/publish/assets/PMTILES-LICENSE.txt).
set -euo pipefail
PMTILES_VERSION=4.5.0
PMTILES_SHA256=caf981bc46f6327ee7e65d5dc964d89d38a69f60edca2bd4c5c890c21b554c6c  # dist/pmtiles.js
DEST="$(cd "$(dirname "$0")/.." && pwd)/src/amberwatch/publish/assets"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "pmtiles@${PMTILES_VERSION}" >/dev/null && tar xzf "pmtiles-${PMTILES_VERSION}.tgz")
echo "${PMTILES_SHA256}  ${WORK}/package/dist/pmtiles.js" | sha256sum --check --quiet
grep -q '"license": "BSD-3-Clause"' "$WORK/package/package.json"
cp "$WORK/package/dist/pmtiles.js" "$DEST/pmtiles.js"
echo "vendored pmtiles ${PMTILES_VERSION} into ${DEST}/pmtiles.js"
