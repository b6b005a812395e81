#!/bin/bash
# An --overlay mount's local I/O, for A/B comparisons of the overlay layer: a 256 MiB
# volume with 64 MiB written through a read-write mount, then an overlay mount on the
# same cache dir that writes 32 MiB over the next 32 MiB; then fio 4 KiB random reads
# (iodepth 16, 5 s) of the blocks it did not write (the cache's copies) and of those it
# wrote, 4 KiB random writes into the overlay, and a 96 MiB sequential read. Private
# s3rver, no latency proxy.
#   bash scripts/bench/overlay.sh [DIST_DIR]   (default: dist)
# Needs root, /dev/fuse, fio and a free port 4598; leaves nothing behind.
set -euo pipefail
DIST=$(realpath "${1:-dist}")
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL_S3=http://127.0.0.1:4598
W=$(mktemp -d /tmp/s3z-overlay-XXXXXX); mkdir -p "$W/mnt"
cleanup() {
  node "$DIST/cli.js" unmount "$W/mnt" >/dev/null 2>&1 || true
  [ -n "${SP:-}" ] && kill "$SP" 2>/dev/null; wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
node "$DIST/cli.js" local-s3 --dir "$W/s3" --port 4598 --bucket bench >/dev/null 2>&1 &
SP=$!
for _ in $(seq 50); do node "$DIST/cli.js" create s3://bench/v --size 256M --block-size 1M >/dev/null 2>&1 && break; sleep 0.2; done
head -c 96M /dev/urandom > "$W/src"
node "$DIST/cli.js" mount s3://bench/v "$W/mnt" --cache-dir "$W/cache" >/dev/null
dd if="$W/src" of="$W/mnt/disk" bs=1M count=64 oflag=direct conv=fsync 2>/dev/null
node "$DIST/cli.js" unmount "$W/mnt" >/dev/null
node "$DIST/cli.js" mount --overlay s3://bench/v "$W/mnt" --cache-dir "$W/cache" >/dev/null
rate() { tail -1 | awk '{print $(NF-1), $NF}'; }
fio4k() { fio --name=o --filename="$W/mnt/disk" --rw="$1" --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --offset="$2" --size="$3" --runtime=5 --time_based --output-format=terse 2>/dev/null | awk -F';' -v f="$4" '{print $f}'; }
write=$(dd if="$W/src" of="$W/mnt/disk" bs=1M count=32 skip=64 seek=64 oflag=direct conv=fsync 2>&1 | rate)
untouched=$(fio4k randread 0 64M 8)
written=$(fio4k randread 64M 32M 8)
randwrite=$(fio4k randwrite 64M 32M 49)
seq=$(dd if="$W/mnt/disk" of=/dev/null bs=1M count=96 iflag=direct 2>&1 | rate)
echo "overlay: write 32 MiB $write; 4K random reads: not written $untouched IOPS, written $written IOPS; 4K random writes $randwrite IOPS; read 96 MiB $seq"
