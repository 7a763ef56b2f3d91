#!/usr/bin/env bash
# fetch-qemu.sh: a real QEMU 10 for the test guest, from Debian's bookworm-backports.
#
#   fetch-qemu.sh [--cache DIR] [--print-paths]
#
# Downloads the pinned version of qemu-system-x86, qemu-system-data and seabios with a
# private apt configuration (its own sources list, lists and cache; the system's apt
# sources are neither read nor changed), unpacks them with dpkg -x (nothing is installed)
# and prints, as shell assignments, QEMU10 (the binary), QEMU10_DATA and QEMU10_BIOS (the
# directories to pass with -L) and QEMU10_VERSION. The binary runs on Debian 12: every
# library it links is bookworm's.
#
# The cache lives outside the clone beside guest.sh's kernel cache, keyed by version, so a
# fresh clone (CI) reuses it: /var/cache/vfio-migd-tests/qemu, or --cache, or
# $GUEST_QEMU_CACHE. The guest sees it read-only (the host root is shared; only /run /tmp
# /var/tmp /var/lib are the guest's own). A newer QEMU is picked up by changing the pin below.
set -euo pipefail

prog=fetch-qemu.sh

# The pin. bookworm-backports keeps only its newest build of a package: when this one is
# gone from the archive a fresh machine cannot fetch it, and the message below says so.
VERSION='1:10.0.2+ds-2+deb13u1~bpo12+1'
SEABIOS_VERSION='1.16.3-2~bpo12+1'
SUITE='bookworm-backports'
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

cache=${GUEST_QEMU_CACHE:-/var/cache/vfio-migd-tests/qemu} print=''
while [ $# -gt 0 ]; do
  case $1 in
    --cache) cache=${2:?}; shift ;;
    --print-paths) print=yes ;;
    -h | --help) sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$prog: unknown option '$1' (see $prog --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$cache" || { echo "$prog: cannot create the QEMU cache $cache (--cache DIR)" >&2; exit 1; }
cache=$(cd "$cache" && pwd)
# The version as a directory name: the epoch colon and tilde are awkward in paths.
dir=$cache/$(echo "$VERSION" | tr ':~' '_-')
root=$dir/root

fetch() {
  local apt=$dir/apt debs=$dir/debs
  rm -rf "$apt" "$debs" "$root"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$debs"
  echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $SUITE main" >"$apt/sources.list"
  local opts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
    -o APT::Sandbox::User=root) # as root apt drops to _apt, which cannot write our directory
  echo "$prog: fetching QEMU $VERSION from Debian's $SUITE into $dir" >&2
  if ! apt-get "${opts[@]}" update >"$apt/update.log" 2>&1; then
    sed 's/^/  /' "$apt/update.log" >&2
    echo "$prog: apt-get update of $SUITE failed (is the Debian archive reachable?)" >&2
    exit 1
  fi
  if ! (cd "$debs" && apt-get "${opts[@]}" download "qemu-system-x86=$VERSION" \
    "qemu-system-data=$VERSION" "seabios=$SEABIOS_VERSION" >"$apt/download.log" 2>&1); then
    sed 's/^/  /' "$apt/download.log" >&2
    echo "$prog: cannot download the pinned QEMU $VERSION: if $SUITE has moved on," \
      "pin its current version in $0 (apt-cache policy qemu-system-x86 with this private configuration)" >&2
    exit 1
  fi
  mkdir -p "$root"
  local deb
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root"; done
  rm -rf "$apt/lists" "$apt/cache" "$debs" # 12 MB of .debs and the lists are not needed again
  local missing
  missing=$(ldd "$root/usr/bin/qemu-system-x86_64" | grep 'not found' || true)
  if [ -n "$missing" ]; then
    echo "$prog: the unpacked QEMU lacks libraries on this system:" >&2
    echo "$missing" >&2
    exit 1
  fi
  touch "$root/.complete"
}

exec {lockfd}>"$cache/.lock" # one fetch fills the cache; the others wait for it
flock "$lockfd"
[ -f "$root/.complete" ] || fetch
exec {lockfd}>&-

if [ -n "$print" ]; then
  printf '%s=%q\n' QEMU10 "$root/usr/bin/qemu-system-x86_64" QEMU10_DATA "$root/usr/share/qemu" \
    QEMU10_BIOS "$root/usr/share/seabios" QEMU10_VERSION "$VERSION"
fi
