#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# build.sh: build vfio_migtest.ko against the headers of the kernel guest.sh boots.
#
#   build.sh [--out DIR] [--cache DIR]
#
# The headers come from guest.sh's kernel cache (fetched with apt-get download and
# unpacked there when missing). kbuild builds an external module in the directory it is
# given, so the sources are copied to DIR/src first and the source tree stays clean.
# Prints the path of the module on stdout. DIR defaults to $MIGTEST_BUILD, else
# build/migtest at the top of the tree.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../../.." && pwd)
out=${MIGTEST_BUILD:-$top/build/migtest}
cache_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=${2:?}; shift ;;
    --cache) cache_args=(--cache "${2:?}"); shift ;;
    -h | --help) sed -n '3,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown option '$1' (see build.sh --help)" >&2; exit 2 ;;
  esac
  shift
done

paths=$("$top/tests/kernel/guest.sh" "${cache_args[@]}" --print-paths) || {
  echo "build.sh: guest.sh --print-paths failed: no kernel headers to build against" >&2
  exit 1
}
eval "$paths"
[ -f "$HEADERS/Module.symvers" ] || { echo "build.sh: no Module.symvers in $HEADERS" >&2; exit 1; }
command -v gcc-12 >/dev/null || { echo "build.sh: Debian's kernel is built with gcc-12; install gcc-12" >&2; exit 1; }

src=$out/src
mkdir -p "$src"
# cp -p keeps the sources' times, so make rebuilds only what changed.
cp -p "$here"/Kbuild "$here"/*.c "$here"/*.h "$src"/
log=$out/build.log
if ! make -C "$HEADERS" M="$src" CC=gcc-12 modules >"$log" 2>&1; then
  cat "$log" >&2
  echo "build.sh: building vfio_migtest.ko against $HEADERS failed (log: $log)" >&2
  exit 1
fi
grep -E 'warning:|error:' "$log" >&2 || true
ko=$src/vfio_migtest.ko
vermagic=$(modinfo -F vermagic "$ko" 2>/dev/null || /sbin/modinfo -F vermagic "$ko")
case $vermagic in
  "$KERNEL_VERSION "*) ;;
  *) echo "build.sh: $ko has vermagic '$vermagic', not for $KERNEL_VERSION" >&2; exit 1 ;;
esac
echo "$ko"
