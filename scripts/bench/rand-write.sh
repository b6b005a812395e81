#!/bin/bash
# Random 4 KiB writes into a fresh 1 GiB volume on a private s3rver (no proxy): fio
# --rw=randwrite --bs=4k --iodepth=16 for SECS seconds (default 10), no fsync, then the
# unmount. Prints fio's IOPS and mean latency, the daemon's and s3rver's CPU ticks
# (1/100 s) over the fio run, and the unmount's time. For A/B comparisons of the write
# path: alternate two builds.
#   [SECS=10] bash scripts/bench/rand-write.sh [DIST_DIR] [node flags...]   (default: dist)
# Node flags go to the mount (and so to its daemon), e.g. --cpu-prof --cpu-prof-dir=DIR.
# Needs root, /dev/fuse, fio and a free port 4599; leaves nothing behind.
set -euo pipefail
DIST=$(realpath "${1:-dist}"); shift || true
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL_S3=http://127.0.0.1:4599 AWS_REGION=us-east-1
W=$(mktemp -d /tmp/s3z-randw-XXXXXX)
mkdir -p "$W/mnt"
SP=''
cleanup() {
  node "$DIST/cli.js" unmount "$W/mnt" >/dev/null 2>&1 || true
  [ -n "$SP" ] && kill "$SP" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
node "$DIST/cli.js" local-s3 --dir "$W/s3" --port 4599 --bucket bench >/dev/null 2>&1 &
SP=$!
for _ in $(seq 50); do node "$DIST/cli.js" create s3://bench/v --size 1G --block-size 1M >/dev/null 2>&1 && break; sleep 0.2; done
S3PID=$(pgrep -f "local-s3 --dir $W" | tail -1)
node "$@" "$DIST/cli.js" mount s3://bench/v "$W/mnt" --cache-dir "$W/cache" >/dev/null
D=$(pgrep -f "mount s3://bench/v $W/mnt" | head -1)
d0=$(ticks "$D"); s0=$(ticks "$S3PID")
fio --name=randwrite --filename="$W/mnt/disk" --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
  --size=1G --time_based "--runtime=${SECS:-10}" --norandommap --randrepeat=0 --output-format=json >"$W/fio.json"
d1=$(ticks "$D"); s1=$(ticks "$S3PID")
t0=$(date +%s.%N)
node "$DIST/cli.js" unmount "$W/mnt" >/dev/null
t1=$(date +%s.%N)
node -e "
  const t = require('fs').readFileSync('$W/fio.json', 'utf8');
  const w = JSON.parse(t.slice(t.indexOf('{'))).jobs[0].write;
  console.log('randwrite ' + w.iops.toFixed(0) + ' IOPS, mean latency ' + (w.clat_ns.mean / 1000).toFixed(0) + ' µs');
"
awk -v d=$((d1 - d0)) -v s=$((s1 - s0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "daemon %d ticks  s3rver %d ticks  unmount %.2f s\n", d, s, b - a }'
