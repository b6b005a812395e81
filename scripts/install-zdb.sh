#!/usr/bin/env bash
# Fetch OpenZFS's userspace `zdb` (zfsutils-linux and the zfs-linux libraries it
# links to) from Debian <codename>-backports into <repo>/.cache/zdb, WITHOUT
# installing anything system-wide (zfsutils-linux conflicts with zfs-fuse) and
# WITHOUT touching the system's apt sources, lists or caches: apt runs with a
# private sources list, lists dir and cache dir under .cache/zdb/apt.
#
# Result: <repo>/.cache/zdb/zdb, a wrapper that runs the extracted zdb with
# LD_LIBRARY_PATH pointing at the extracted libraries.
#
# Usage: sudo scripts/install-zdb.sh [--force]
#   --force        re-download and re-extract even if already done
# Environment:
#   ZDB_MIRROR     Debian mirror URL (default: the one the system's apt sources use)
#   ZDB_SUITE      suite to fetch from (default: <codename>-backports)
#
# Idempotent: when the wrapper exists and works, it only prints the version.
# Exits non-zero on any failure.
set -euo pipefail

die() { echo "install-zdb: error: $*" >&2; exit 1; }
log() { echo "install-zdb: $*" >&2; }

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run as root"
for c in apt-get apt-cache dpkg dpkg-deb ldd sha256sum; do
  command -v "$c" >/dev/null 2>&1 || die "missing command: $c"
done

repo=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
out="$repo/.cache/zdb"
wrapper="$out/zdb"
mkdir -p "$out"

# Prints the version of the installed zdb; fails if it does not run.
smoke_test() {
  local w=$1 o
  [ -x "$w" ] || return 1
  [ -f "$out/VERSION" ] || return 1
  # zdb has no --version; `-l /dev/null` exercises the binary and every library
  # (a missing library makes the loader exit 127 with "error while loading").
  o=$("$w" -l /dev/null 2>&1) || true
  case "$o" in
    *"failed to read label"*) ;;
    *) echo "$o" >&2; return 1 ;;
  esac
  [ -f "$out/LIBDIRS" ] && [ -f "$out/ZDB_REL" ] || return 1
  local ld="" d dirs missing
  IFS=: read -r -a dirs < "$out/LIBDIRS"
  for d in "${dirs[@]}"; do ld="${ld:+$ld:}$out/$d"; done
  missing=$(LD_LIBRARY_PATH=$ld ldd "$out/root/$(cat "$out/ZDB_REL")" | grep 'not found' || true)
  if [ -n "$missing" ]; then
    echo "libraries missing on this system (install them with apt-get):" >&2
    echo "$missing" >&2
    return 1
  fi
  return 0
}

print_version() {
  echo "zdb $(cat "$out/VERSION") ($wrapper)"
}

if [ "$force" -eq 0 ] && smoke_test "$wrapper" 2>/dev/null; then
  log "already installed"
  print_version
  exit 0
fi

# --- where to download from --------------------------------------------------
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || die "cannot read VERSION_CODENAME from /etc/os-release"
suite=${ZDB_SUITE:-$codename-backports}
arch=$(dpkg --print-architecture)

# Find the mirror (and keyring) the system already uses for "<codename>" in
# /etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources (deb822).
find_mirror() {
  local f
  {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      # deb [opts] URI suite comps...
      sed -e 's/#.*//' "$f" | awk -v cn="$codename" '
        $1 == "deb" {
          signed = ""; i = 2
          if ($2 ~ /^\[/) {
            while (i <= NF) {
              if ($i ~ /^\[?signed-by=/) { s = $i; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
              if ($i ~ /\]$/) { i++; break }
              i++
            }
          }
          uri = $i; st = $(i + 1)
          if (st == cn || st == cn "-updates") print uri "\t" signed
        }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      # deb822 stanzas separated by blank lines
      awk -v cn="$codename" '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && enabled != "no") {
            n = split(suites, s, " ")
            for (k = 1; k <= n; k++) if (s[k] == cn || s[k] == cn "-updates") { split(uris, u, " "); print u[1] "\t" signed; break }
          }
          types = ""; uris = ""; suites = ""; signed = ""; enabled = ""
        }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        {
          line = $0; key = line; sub(/:.*/, "", key); val = line; sub(/^[^:]*:[[:space:]]*/, "", val)
          key = tolower(key)
          if (key == "types") types = val
          else if (key == "uris") uris = val
          else if (key == "suites") suites = val
          else if (key == "signed-by") signed = val
          else if (key == "enabled") enabled = tolower(val)
        }
        END { flush() }' "$f"
    done
  } | head -n 1
}

if [ -n "${ZDB_MIRROR:-}" ]; then
  mirror=$ZDB_MIRROR
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
else
  line=$(find_mirror)
  [ -n "$line" ] || die "no '$codename' Debian source found in /etc/apt/sources.list(.d); set ZDB_MIRROR"
  mirror=${line%%$'\t'*}
  keyring=${line#*$'\t'}
fi
# Signed-By may be inline key material (multi-line) in deb822; only keep a path.
case "$keyring" in
  /*) [ -f "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg ;;
  *) keyring=/usr/share/keyrings/debian-archive-keyring.gpg ;;
esac
[ -f "$keyring" ] || die "keyring $keyring not found (apt-get install debian-archive-keyring)"
mirror=${mirror%/}
log "mirror $mirror, suite $suite ($arch), keyring $keyring"

# --- private apt configuration ----------------------------------------------
aptdir="$out/apt"
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
echo "deb [arch=$arch signed-by=$keyring] $mirror $suite main contrib" > "$aptdir/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$aptdir/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "Dir::State::Lists=$aptdir/lists"
  -o "Dir::Cache=$aptdir/cache"
  -o "APT::Sandbox::User=root"
  -o "Acquire::Languages=none"
  -o "APT::Get::List-Cleanup=true"
)
log "apt-get update (private lists in $aptdir)"
apt-get "${apt_opts[@]}" -q update >&2 || die "apt-get update failed"

# zfsutils-linux plus every package it needs (recursively) that is built from
# the zfs-linux source: libzpool*, libnvpair*, libuutil*, libzfs* (names change
# with the soname, so do not hard-code them). Other dependencies (libc, libssl,
# libtirpc, ...) come from the system; ldd below checks they are there.
candidate() { apt-cache "${apt_opts[@]}" policy "$1" | awk '/Candidate:/ {print $2}'; }
ver=$(candidate zfsutils-linux)
[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "zfsutils-linux not found in $suite (component contrib) at $mirror"
pkgs=()
while read -r p; do
  [ -n "$p" ] || continue
  src=$(apt-cache "${apt_opts[@]}" show "$p=$(candidate "$p")" 2>/dev/null | awk '/^Source:/ {print $2; exit}')
  if [ "$p" = zfsutils-linux ] || [ "$src" = zfs-linux ]; then pkgs+=("$p"); fi
done < <(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
           --no-breaks --no-replaces --no-enhances --no-pre-depends zfsutils-linux | grep -v '^[ <]' | sort -u)
log "packages: ${pkgs[*]} (zfsutils-linux $ver)"

# --- download (skip .debs already present with the right checksum) ----------
debdir="$out/debs"
mkdir -p "$debdir"
need=()
for p in "${pkgs[@]}"; do
  info=$(apt-cache "${apt_opts[@]}" show "$p=$(candidate "$p")")
  file=$(echo "$info" | awk '/^Filename:/ {print $2; exit}'); file=${file##*/}
  sum=$(echo "$info" | awk '/^SHA256:/ {print $2; exit}')
  [ -n "$file" ] && [ -n "$sum" ] || die "no Filename/SHA256 for $p"
  # apt-get download names files with the epoch's ':' escaped as %3a
  if [ -f "$debdir/$file" ] && echo "$sum  $debdir/$file" | sha256sum -c --status; then
    continue
  fi
  need+=("$p=$(candidate "$p")")
done
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get download ${need[*]}"
  (cd "$debdir" && apt-get "${apt_opts[@]}" -q download "${need[@]}" >&2) || die "apt-get download failed"
else
  log "all .debs already downloaded"
fi

# --- extract into a fresh tree, then swap it in ------------------------------
tmp="$out/root.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
for p in "${pkgs[@]}"; do
  v=$(candidate "$p"); v=${v#*:}   # apt-get download writes an epoch as %3a
  deb=$(ls -1 "$debdir"/"${p}"_*"${v}"_"$arch".deb "$debdir"/"${p}"_*"${v}"_all.deb 2>/dev/null | head -n 1 || true)
  [ -n "$deb" ] || die "downloaded .deb for $p $v not found in $debdir"
  dpkg -x "$deb" "$tmp" || die "dpkg -x $deb failed"
done
zdb_rel=""
for cand in usr/sbin/zdb sbin/zdb usr/bin/zdb; do
  if [ -x "$tmp/$cand" ]; then zdb_rel=$cand; break; fi
done
[ -n "$zdb_rel" ] || die "zdb not found in the extracted packages"
libdirs=""
while read -r d; do
  libdirs="${libdirs:+$libdirs:}root/${d#"$tmp"/}"
done < <(find "$tmp" -name 'libzpool.so*' -printf '%h\n' | sort -u)
[ -n "$libdirs" ] || die "libzpool not found in the extracted packages"

rm -rf "$out/root"
mv "$tmp" "$out/root"
echo "$zdb_rel" > "$out/ZDB_REL"
echo "$libdirs" > "$out/LIBDIRS"
zver=$ver
printf 'zfsutils-linux %s (%s %s)\n' "$zver" "$mirror" "$suite" > "$out/VERSION"

# The wrapper finds everything relative to its own location.
ld=""
IFS=: read -r -a dirs <<< "$libdirs"
for d in "${dirs[@]}"; do ld="${ld:+$ld:}\$here/$d"; done
cat > "$wrapper.tmp" <<EOF
#!/bin/sh
# Generated by scripts/install-zdb.sh: OpenZFS zdb from zfsutils-linux $zver,
# extracted with dpkg -x (not installed system-wide), run with its libraries.
here=\$(dirname "\$(readlink -f "\$0")")
LD_LIBRARY_PATH="$ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$here/root/$zdb_rel" "\$@"
EOF
chmod 0755 "$wrapper.tmp"
mv "$wrapper.tmp" "$wrapper"

smoke_test "$wrapper" || die "the extracted zdb does not run (see above)"
print_version
