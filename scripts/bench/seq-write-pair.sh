#!/bin/bash
# The bench's sequential-write row for both tools back to back, ROUNDS times (s3zmount,
# then s3backer, then again), so that each pair shares the machine's state: 1 GiB of
# random data with dd bs=1M oflag=direct conv=fsync, until in S3 (s3zmount: when dd
# returns, then its unmount; s3backer: when its process has exited after the unmount),
# through the bench's latency proxy at LAT ms, with the CPU ticks (1/100 s) of the tool
# and of s3rver. `npm run bench` runs s3zmount's whole suite before s3backer's, so its
# row compares the two under different loads; this one does not.
#   [LAT=0] bash scripts/bench/seq-write-pair.sh [DIST_DIR] [ROUNDS]   (defaults: dist, 3)
# Needs root, /dev/fuse, s3backer, `npm run build` (dist-test holds the proxy) and a free
# port 4599; leaves nothing behind.
set -euo pipefail
ROOT=$(realpath "$(dirname "$0")/../..")
DIST=$(realpath "${1:-$ROOT/dist}")
ROUNDS=${2:-3}
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
W=$(mktemp -d /tmp/s3z-pair-XXXXXX)
mkdir -p "$W/mnt"
IMG=/dev/shm/s3z-pair-$$.img
SP='' PP='' BP=''
cleanup() {
  node "$DIST/cli.js" unmount "$W/mnt" >/dev/null 2>&1 || umount "$W/mnt" 2>/dev/null || true
  for p in $BP $PP $SP; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W" "$IMG"
}
trap cleanup EXIT
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
mbps() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%5.1f", 1073.741824 / (b - a) }'; }
head -c 1G /dev/urandom >"$IMG"
node "$DIST/cli.js" local-s3 --dir "$W/s3" --port 4599 --bucket bench >/dev/null 2>&1 &
SP=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/4599) 2>/dev/null && break; sleep 0.2; done
S3PID=$(pgrep -f "local-s3 --dir $W" | tail -1)
node --input-type=module -e "
  const { startFaultProxy } = await import('$ROOT/dist-test/helpers/fault-proxy.js');
  const proxy = await startFaultProxy('http://127.0.0.1:4599', { latencyMs: ${LAT:-0}, history: false });
  console.log(proxy.endpoint);
" >"$W/proxy" &
PP=$!
for _ in $(seq 50); do [ -s "$W/proxy" ] && break; sleep 0.1; done
EP=$(cat "$W/proxy")
export AWS_ENDPOINT_URL_S3=$EP
for r in $(seq "$ROUNDS"); do
  sync
  node "$DIST/cli.js" create "s3://bench/z$r" --size 1G --block-size 1M >/dev/null
  node "$DIST/cli.js" mount "s3://bench/z$r" "$W/mnt" --cache-dir "$W/cache$r" >/dev/null
  D=$(pgrep -f "mount s3://bench/z$r" | head -1)
  s0=$(ticks "$S3PID"); d0=$(ticks "$D"); t0=$(now)
  dd if="$IMG" of="$W/mnt/disk" bs=1M oflag=direct conv=fsync status=none
  d1=$(ticks "$D")
  node "$DIST/cli.js" unmount "$W/mnt" >/dev/null
  t1=$(now); s1=$(ticks "$S3PID")
  printf 's3zmount  round %d: %s MB/s  tool %4d ticks  s3rver %4d ticks\n' "$r" "$(mbps "$t0" "$t1")" $((d1 - d0)) $((s1 - s0))
  rm -rf "$W/cache$r"
  sync
  s3backer "--baseURL=$EP/" --accessId=S3RVER --accessKey=S3RVER --blockSize=1M --size=1G --listBlocks \
    --blockCacheSize=1040 "--prefix=b$r/" -f bench "$W/mnt" >/dev/null 2>&1 &
  BP=$!
  for _ in $(seq 100); do [ -e "$W/mnt/file" ] && break; sleep 0.1; done
  s0=$(ticks "$S3PID"); b1=0; t0=$(now)
  dd if="$IMG" of="$W/mnt/file" bs=1M oflag=direct conv=fsync status=none
  b1=$(ticks "$BP")
  umount "$W/mnt"
  while [ -e "/proc/$BP" ]; do t=$(ticks "$BP"); [ "$t" -gt 0 ] && b1=$t; sleep 0.05; done
  t1=$(now); s1=$(ticks "$S3PID"); BP=''
  printf 's3backer  round %d: %s MB/s  tool %4d ticks  s3rver %4d ticks\n' "$r" "$(mbps "$t0" "$t1")" "$b1" $((s1 - s0))
done
