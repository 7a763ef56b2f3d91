#!/usr/bin/env bash
# test-kernel-backend.sh: vfio-migd --backend=kernel against a real kernel. Boots Debian's
# kernel in QEMU (guest.sh), binds emulated PCI devices to vfio-pci there and runs
# kernel_backend_guest.py, whose TAP output becomes ours. With vfio_migtest.ko buildable
# (migtest/build.sh: the guest kernel's headers and gcc-12), a two-device VM migrates through
# the kernel's state machine too; without it those checks are skipped.
#
#   MIGD=... MIGCTL=... [MIGD_WRAPPER=valgrind...] test-kernel-backend.sh [guest.sh options]
#
# Exit status: 0 and TAP on stdout; when no guest can be booted here (no QEMU, no kernel to
# fetch) the TAP plan is "1..0 # SKIP" and nothing was tested.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${MIGD:?set MIGD to the vfio-migd binary (meson test sets it)}"
: "${MIGCTL:?set MIGCTL to the vfio-migctl binary (meson test sets it)}"
MIGD=$(realpath "$MIGD") MIGCTL=$(realpath "$MIGCTL")
logdir=${GUEST_LOG_DIR:-${TMPDIR:-/tmp}}
build_log=$(mktemp "${TMPDIR:-/tmp}/migtest-build.XXXXXX")
trap 'rm -f "$build_log"' EXIT

if ko=$("$here/migtest/build.sh" 2>"$build_log"); then
  echo "test-kernel-backend.sh: built $ko" >&2
else
  # scripts/deps.sh provides everything the build needs: a failed build is a failure.
  echo "Bail out! vfio_migtest.ko could not be built:"
  sed 's/^/# /' "$build_log"
  exit 1
fi

status=0
"$here/guest.sh" --timeout "${GUEST_TIMEOUT:-300}" --log "$logdir/kernel-backend.console.log" "$@" \
  --env MIGD="$MIGD" --env MIGCTL="$MIGCTL" --env MIGTEST_KO="$ko" \
  --env MIGD_WRAPPER="${MIGD_WRAPPER:-}" \
  -- python3 "$here/kernel_backend_guest.py" || status=$?
if [ "$status" -eq 125 ]; then
  # TCG boots anywhere QEMU runs, so a guest that does not boot is a failure, not a skip.
  echo "Bail out! no guest could be booted (guest.sh exit 125); console: $logdir/kernel-backend.console.log"
  exit 1
fi
exit "$status"
