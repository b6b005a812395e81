#!/bin/bash
# CPU time of the mount daemon and of s3rver for one sequential write of SIZE MiB (256) (until
# in S3) and one cold sequential read, on a private s3rver (no latency proxy), in
# clock ticks (1/100 s) from /proc/PID/stat. For A/B comparisons of the data path:
# on these 2-core VMs single throughput figures spread by ±30%, CPU per MiB less so;
# alternate the builds and compare medians.
#   [BS=1M] [SIZE=256] bash scripts/bench/daemon-cpu.sh [DIST_DIR] [node flags...]   (default: dist)
# BS: the write's request size (dd bs=, with O_DIRECT); 128k is what zfs-fuse sends.
# SIZE: MiB written and read. "main" is the daemon's JS thread, the rest of its ticks are
# the hash workers', libuv's pool's, lmdb-js's and the FUSE threads'. THREADS=1 also lists
# every thread that used CPU, busiest first (by thread id: the two hash workers are the
# first threads started after libuv's pool of 4).
# Needs root, /dev/fuse and a free port 4599; leaves nothing behind.
set -euo pipefail
DIST=$(realpath "${1:-dist}"); shift || true
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL_S3=http://127.0.0.1:4599
W=$(mktemp -d /tmp/s3z-cpu-XXXXXX); mkdir -p "$W/mnt"
IMG=/dev/shm/s3z-cpu-$$.img
cleanup() {
  node "$DIST/cli.js" unmount "$W/mnt" >/dev/null 2>&1 || true
  [ -n "${SP:-}" ] && kill "$SP" 2>/dev/null; wait 2>/dev/null || true
  rm -rf "$W" "$IMG"
}
trap cleanup EXIT
node "$DIST/cli.js" local-s3 --dir "$W/s3" --port 4599 --bucket bench >/dev/null 2>&1 &
SP=$!
SIZE=${SIZE:-256}
for _ in $(seq 50); do node "$DIST/cli.js" create s3://bench/v --size "${SIZE}M" --block-size 1M >/dev/null 2>&1 && break; sleep 0.2; done
S3PID=$(pgrep -f "legacy-provider.*local-s3 --dir $W" || echo "$SP")
head -c "${SIZE}M" /dev/urandom > "$IMG"
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# The JS thread's own ticks (its task id is the process id).
mainTicks() { awk '{print $14+$15}' "/proc/$1/task/$1/stat"; }
faults() { awk '{print $10}' "/proc/$1/stat"; }
# Ticks per thread of process $1, one "tid ticks" line each.
threadTicks() { for t in /proc/"$1"/task/*; do echo "${t##*/} $(awk '{print $14+$15}' "$t/stat")"; done | sort; }
for mode in write read; do
  extra=(); [ "$mode" = read ] && extra=(--read-only)
  node "$@" "$DIST/cli.js" mount s3://bench/v "$W/mnt" --cache-dir "$W/cache-$mode" --log-file "$W/log-$mode" "${extra[@]}" >/dev/null
  DP=$(pgrep -f "mount s3://bench/v $W/mnt.*--foreground")
  echo 3 > /proc/sys/vm/drop_caches
  threadTicks "$DP" > "$W/threads0"
  d0=$(ticks "$DP"); m0=$(mainTicks "$DP"); f0=$(faults "$DP"); s0=$(ticks "$S3PID"); t0=$(date +%s.%N)
  if [ "$mode" = write ]; then dd if="$IMG" of="$W/mnt/disk" bs="${BS:-1M}" oflag=direct conv=fsync 2>/dev/null
  else dd if="$W/mnt/disk" of=/dev/null bs=1M iflag=direct 2>/dev/null; fi
  t1=$(date +%s.%N); d1=$(ticks "$DP"); m1=$(mainTicks "$DP"); f1=$(faults "$DP"); s1=$(ticks "$S3PID")
  printf '%-5s %6.1f MB/s  daemon %4d ticks (main %4d) %7d minor faults  s3rver %4d ticks\n' "$mode" "$(echo "$SIZE*1.048576/($t1-$t0)" | bc -l)" $((d1 - d0)) $((m1 - m0)) $((f1 - f0)) $((s1 - s0))
  if [ -n "${THREADS:-}" ]; then
    threadTicks "$DP" | join -a2 -e0 -o 0,1.2,2.2 "$W/threads0" - | awk -v dp="$DP" '$3 > $2 {print "      thread", $1 ($1 == dp ? "(main)" : ""), $3 - $2}' | sort -k3 -n -r
  fi
  node "$DIST/cli.js" unmount "$W/mnt" >/dev/null
done
