#!/usr/bin/env bash
# test-hotplug.sh: vfio-migd --backend=kernel watching real uevents. Boots Debian's kernel in
# QEMU (guest.sh) and runs hotplug_guest.py there: a device bound into a registered VM's IOMMU
# group and unbound again, a VM device unbound from vfio-pci and bound back, a VM device
# removed from the PCI bus and found again by a rescan. Its TAP output becomes ours.
#
#   MIGD=... MIGCTL=... [MIGD_WRAPPER=valgrind...] test-hotplug.sh [guest.sh options]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${MIGD:?set MIGD to the vfio-migd binary (meson test sets it)}"
: "${MIGCTL:?set MIGCTL to the vfio-migctl binary (meson test sets it)}"
MIGD=$(realpath "$MIGD") MIGCTL=$(realpath "$MIGCTL")
logdir=${GUEST_LOG_DIR:-${TMPDIR:-/tmp}}

status=0
"$here/guest.sh" --timeout "${GUEST_TIMEOUT:-180}" --log "$logdir/hotplug.console.log" "$@" \
  --env MIGD="$MIGD" --env MIGCTL="$MIGCTL" --env MIGD_WRAPPER="${MIGD_WRAPPER:-}" \
  -- python3 "$here/hotplug_guest.py" || status=$?
if [ "$status" -eq 125 ]; then
  echo "Bail out! no guest could be booted (guest.sh exit 125); console: $logdir/hotplug.console.log"
  exit 1
fi
exit "$status"
