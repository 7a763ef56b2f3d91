#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# test-migtest-daemon.sh: vfio-migd --backend=kernel over vfio_migtest devices, in one boot.
#
#   test-migtest-daemon.sh [--bench-only] [--rounds N] [-- GUEST.SH OPTIONS...]
#
# Builds the module (build.sh), boots the guest (guest.sh) and runs test_migtest_daemon.py
# there: a private dbus-daemon, vfio-migd --backend=kernel and vfio-migctl over VMs of
# migtest mdevs (migration, refusals, rollbacks, streams refused by the daemon and by the
# device, the driver's arc log against vfio-migd's report), then the quiesce benchmark
# (8 devices, 20 ms per arc, parallel vs naive). --bench-only runs just the benchmark.
# MIGD and MIGCTL name the binaries (default: build/ at the top of the tree); the guest
# sees the host's files read-only, except under /tmp /run /var/tmp /var/lib, so they must
# live elsewhere.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../../.." && pwd)
logdir=${GUEST_LOG_DIR:-${TMPDIR:-/tmp}}
migd=$(realpath -m "${MIGD:-$top/build/daemon/vfio-migd}")
migctl=$(realpath -m "${MIGCTL:-$top/build/client/vfio-migctl}")

args=() guest_args=() log=migtest-daemon
while [ $# -gt 0 ]; do
  case $1 in
    --bench-only) args+=("$1"); log=migtest-bench ;;
    --rounds) args+=("$1" "${2:?}"); shift ;;
    --) shift; guest_args=("$@"); break ;;
    *) echo "test-migtest-daemon.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
for b in "$migd" "$migctl"; do
  [ -x "$b" ] || { echo "test-migtest-daemon.sh: $b is not built (set MIGD and MIGCTL)" >&2; exit 1; }
done

ko=$("$here/build.sh")
exec "$top/tests/kernel/guest.sh" --timeout 240 --log "$logdir/$log.console.log" \
  --env MIGD="$migd" --env MIGCTL="$migctl" "${guest_args[@]}" -- \
  python3 "$here/test_migtest_daemon.py" "${args[@]}" "$ko" "$top/tests/data/vfio-fsm-paths.tsv"
