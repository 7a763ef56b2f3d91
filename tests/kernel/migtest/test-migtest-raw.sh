#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# test-migtest-raw.sh: vfio_migtest through raw VFIO ioctls, in one guest boot.
#
# Builds the module on the host (build.sh), boots the guest kernel (guest.sh) and runs
# test_migtest_raw.py there: the kernel's path for every state pair against
# tests/data/vfio-fsm-paths.tsv, save/resume byte for byte, refused streams, injected
# faults and latency, peer writes in P2P order and one device at a time. TAP on stdout;
# the console log goes to $GUEST_LOG_DIR (default $TMPDIR). Extra arguments go to guest.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../../.." && pwd)
logdir=${GUEST_LOG_DIR:-${TMPDIR:-/tmp}}

ko=$("$here/build.sh")
exec "$top/tests/kernel/guest.sh" --timeout 180 --log "$logdir/migtest-raw.console.log" "$@" -- \
  python3 "$here/test_migtest_raw.py" "$ko" "$top/tests/data/vfio-fsm-paths.tsv"
