#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# test-qemu10.sh: the real QEMU 10 migrating vfio_migtest devices in the guest, in one boot.
#
#   test-qemu10.sh [--bench-only] [--rounds N] [-- GUEST.SH OPTIONS...]
#
# Builds the module (build.sh), fetches QEMU 10 (../fetch-qemu.sh, cached outside the clone),
# boots the guest (guest.sh) and runs test_qemu10.py there: an L2 VM holding migtest P2P
# mdevs migrates from one QEMU 10 to another through a file (digests, peer writes, the P2P
# order), and vfio-migd's qemu strategy must walk each device through the arcs QEMU did.
# --bench-only runs the side-by-side benchmark instead (QEMU 10 against vfio-migd's parallel
# strategy, N = 1, 2, 4, 8, 20 ms per arc). MIGD and MIGCTL name the binaries (default:
# build/ at the top of the tree).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../../.." && pwd)
logdir=${GUEST_LOG_DIR:-${TMPDIR:-/tmp}}
migd=$(realpath -m "${MIGD:-$top/build/daemon/vfio-migd}")
migctl=$(realpath -m "${MIGCTL:-$top/build/client/vfio-migctl}")

args=() guest_args=() log=qemu10
while [ $# -gt 0 ]; do
  case $1 in
    --bench-only) args+=("$1"); log=qemu10-bench ;;
    --rounds) args+=("$1" "${2:?}"); shift ;;
    --) shift; guest_args=("$@"); break ;;
    *) echo "test-qemu10.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
for b in "$migd" "$migctl"; do
  [ -x "$b" ] || { echo "test-qemu10.sh: $b is not built (set MIGD and MIGCTL)" >&2; exit 1; }
done

eval "$("$top/tests/kernel/fetch-qemu.sh" --print-paths)"
ko=$("$here/build.sh")
exec "$top/tests/kernel/guest.sh" --timeout 300 --log "$logdir/$log.console.log" \
  --env MIGD="$migd" --env MIGCTL="$migctl" --env QEMU10="$QEMU10" \
  --env QEMU10_DATA="$QEMU10_DATA" --env QEMU10_BIOS="$QEMU10_BIOS" "${guest_args[@]}" -- \
  python3 "$here/test_qemu10.py" "${args[@]}" "$ko"
