#!/usr/bin/env bash
# test-guest-smoke.sh: boot the guest, bind the emulated devices to vfio-pci and check from
# inside it that the real kernel offers what the kernel backend needs (smoke-in-guest.py
# lists the checks); then that its findings came back through the writable share.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
logdir=${GUEST_LOG_DIR:-${TMPDIR:-/tmp}}
out=$(mktemp -d "${TMPDIR:-/tmp}/guest-smoke.XXXXXX")
trap 'rm -rf "$out"' EXIT

"$here/guest.sh" --timeout 240 --out "$out" --log "$logdir/guest-smoke.console.log" \
  -- python3 "$here/smoke-in-guest.py"

python3 - "$out/smoke.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
groups = findings["groups"]
assert any(len(m) >= 3 for m in groups.values()), f"no group with several members: {groups}"
print(f"ok - the findings came back to the host: groups {groups}")
PY
