#!/usr/bin/env bash
# The main job, end to end on one machine, with the embedded S3-compatible server:
#   1. start `s3zmount local-s3`, create a 2 GiB volume, mount it read-write;
#   2. build a ZFS pool on <mnt>/disk with zfs-fuse, copy files in, snapshot, export;
#   3. unmount (everything is in S3), show `status`;
#   4. mount it read-only with an empty cache, verify the pool with OpenZFS's zdb,
#      and copy a file out of the snapshot: only the blocks touched are fetched.
# zfs-fuse runs in a private mount namespace so it cannot clash with a system one.
# Everything lives in one temporary folder, removed at the end (DEMO_KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
S3Z=(node dist/cli.js)
ZDB="$PWD/.cache/zdb/zdb"
[ -x "$ZDB" ] || { echo "demo: zdb is missing: run scripts/install-deps.sh first" >&2; exit 1; }
[ -f dist/cli.js ] || { echo "demo: not built: run npm run build first" >&2; exit 1; }

WORK=$(mktemp -d /tmp/s3zmount-demo.XXXXXX)
MNT="$WORK/mnt"
S3PID=""
cleanup() {
  set +e
  mountpoint -q "$MNT" && "${S3Z[@]}" unmount "$MNT" >/dev/null 2>&1
  mountpoint -q "$MNT" && fusermount3 -u -z "$MNT"
  [ -n "$S3PID" ] && kill "$S3PID" 2>/dev/null && wait "$S3PID" 2>/dev/null
  [ "${DEMO_KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting the embedded S3 server (s3zmount local-s3)"
"${S3Z[@]}" local-s3 --dir "$WORK/s3" --port 0 >"$WORK/s3.out" 2>&1 &
S3PID=$!
for _ in $(seq 100); do grep -q '^export ' "$WORK/s3.out" && break; sleep 0.1; done
eval "$(grep '^export ' "$WORK/s3.out")"
head -1 "$WORK/s3.out"
URL=s3://s3zmount/demo

step "creating a 2 GiB volume and mounting it read-write"
"${S3Z[@]}" create "$URL" --size 2G
mkdir -p "$MNT"
"${S3Z[@]}" mount "$URL" "$MNT" --cache-dir "$WORK/cache-rw"
ls -l "$MNT"

step "zfs-fuse: zpool create on $MNT/disk, copy files in, snapshot, export"
SRC=/usr/share/doc
unshare -m --propagation private bash -euo pipefail -c '
  for d in /var/run/zfs /var/lock/zfs /var/lib/zfs /etc/zfs; do mkdir -p "$d"; mount -t tmpfs tmpfs "$d"; done
  zfs-fuse --no-daemon --no-kstat-mount --pidfile /var/run/zfs/zfs-fuse.pid >/dev/null 2>&1 &
  ZPID=$!
  for _ in $(seq 100); do zpool list >/dev/null 2>&1 && break; sleep 0.1; done
  zpool create -m "$1/pool" demo "$2/disk"
  zfs create demo/files
  cp -a "$3" "$1/pool/files/doc"
  zfs snapshot demo/files@first
  echo "copied $(du -sh "$1/pool/files/doc" | cut -f1) from $3 and took demo/files@first"
  sha256sum "$1/pool/files/doc/bash/copyright" | cut -d" " -f1 >"$1/expected.sha256"
  zpool export demo
  kill "$ZPID"; wait "$ZPID" || true
' demo "$WORK" "$MNT" "$SRC"

step "unmounting: dirty blocks are uploaded, the lease released"
"${S3Z[@]}" unmount "$MNT"
"${S3Z[@]}" status "$URL"

step "mounting read-only with an empty cache; zdb verifies every block's checksum"
"${S3Z[@]}" mount --read-only "$URL" "$MNT" --cache-dir "$WORK/cache-ro"
mkdir -p "$WORK/vdev" && ln -s "$MNT/disk" "$WORK/vdev/disk"
if "$ZDB" -e -p "$WORK/vdev" -bcc demo >"$WORK/zdb.out" 2>&1; then
  grep -E 'No leaks|bp count' "$WORK/zdb.out"
  echo "zdb -bcc: every block's checksum verified, no errors"
else
  cat "$WORK/zdb.out" >&2; echo "demo: zdb found errors" >&2; exit 1
fi

step "copying one file out of the snapshot"
"$ZDB" -e -p "$WORK/vdev" -r demo/files@first doc/bash/copyright "$WORK/copyright" >/dev/null
if [ "$(sha256sum "$WORK/copyright" | cut -d' ' -f1)" = "$(cat "$WORK/expected.sha256")" ]; then
  echo "doc/bash/copyright from demo/files@first: sha256 matches"
else
  echo "demo: the file read back differs" >&2; exit 1
fi
"${S3Z[@]}" stats "$MNT"
"${S3Z[@]}" unmount "$MNT"
step "done: a ZFS pool backed up to S3 and read back, block by block"
