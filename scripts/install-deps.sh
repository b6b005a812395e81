#!/usr/bin/env bash
# Installs everything s3zmount and its tests need on Debian 12 / Ubuntu, as root
# (or with sudo): FUSE 3, zfs-fuse, fio and s3backer (benchmarks), a build
# toolchain for the native addon, Ceph's radosgw, mon and osd (the tests' second
# S3 server, which checks signatures: test/helpers/rgw.ts), OpenZFS's zdb
# (extracted locally, see scripts/install-zdb.sh), then the npm dependencies,
# and builds.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  fuse3 libfuse3-dev pkg-config build-essential python3 \
  zfs-fuse fio s3backer ca-certificates >/dev/null
# ceph-common brings radosgw-admin, monmaptool, ceph-authtool and the ceph CLI.
# The packages start no daemon: tests run a throwaway cluster under a temp folder.
$SUDO apt-get install -y -qq --no-install-recommends \
  radosgw ceph-mon ceph-osd ceph-common >/dev/null
# zfs-fuse's package starts a daemon; tests run their own in private namespaces.
$SUDO pkill -x zfs-fuse 2>/dev/null || true

$SUDO bash scripts/install-zdb.sh

# Not `npm ci`: the registry reachable here lacks lmdb's optional macOS/Windows
# helper packages, so the lock file cannot list them and `npm ci` refuses it.
npm install --no-audit --no-fund
npm run build
