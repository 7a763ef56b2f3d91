#!/usr/bin/env bash
# test-unit.sh UNIT DAEMON: vfio-migd.service as systemd sees it (TAP).
#   1. `systemd-analyze verify` says nothing at all (a warning is a failure);
#   2. ExecStart= runs the daemon given;
#   3. `systemd-analyze security --offline` scores it at most MAX_EXPOSURE (a regression of
#      the hardening fails; docs/operator-guide.md, "Hardening", records the score);
#   4. the same unit without CapabilityBoundingSet= scores worse and fails step 3's check,
#      so the check itself can fail.
set -uo pipefail
unit=$1 daemon=$2
# The exposure level times ten, as --threshold= takes it: 1.4 today.
MAX_EXPOSURE=14

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$2"; }

echo "1..4"

# systemd-analyze verify wants the unit under its own name; a copy keeps the build tree clean.
cp "$unit" "$work/vfio-migd.service"
if SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$work/vfio-migd.service" \
        >"$work/verify.out" 2>&1 && [ ! -s "$work/verify.out" ]; then
        ok "systemd-analyze verify: no error, no warning"
else
        not_ok "systemd-analyze verify complains" "$work/verify.out"
fi

if grep -q "^ExecStart=$daemon " "$work/vfio-migd.service" && [ -x "$daemon" ]; then
        ok "ExecStart= runs $daemon"
else
        grep "^ExecStart=" "$work/vfio-migd.service" >"$work/exec.out"
        not_ok "ExecStart= does not run $daemon" "$work/exec.out"
fi

score() { # score FILE: systemd-analyze security's overall exposure, e.g. 1.4
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$1"
}

SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=true --no-pager \
        --threshold="$MAX_EXPOSURE" "$work/vfio-migd.service" >"$work/security.out" 2>&1
rc=$?
s=$(score "$work/security.out")
echo "# exposure level: ${s:-unknown} (at most $((MAX_EXPOSURE / 10)).$((MAX_EXPOSURE % 10)) allowed)"
if [ "$rc" -eq 0 ] && [ -n "$s" ]; then
        ok "systemd-analyze security: exposure $s"
else
        not_ok "systemd-analyze security: exposure ${s:-unknown} is above the threshold (exit $rc)" \
                "$work/security.out"
fi

sed '/^CapabilityBoundingSet=/d' "$work/vfio-migd.service" >"$work/weaker.service"
SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=true --no-pager \
        --threshold="$MAX_EXPOSURE" "$work/weaker.service" >"$work/weaker.out" 2>&1
rc=$?
w=$(score "$work/weaker.out")
if [ "$rc" -ne 0 ] && [ -n "$w" ]; then
        ok "without CapabilityBoundingSet= the exposure ($w) fails the threshold"
else
        not_ok "a weaker unit passed the threshold (exposure ${w:-unknown}, exit $rc)" \
                "$work/weaker.out"
fi

[ "$failed" -eq 0 ]
