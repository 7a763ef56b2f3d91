#!/usr/bin/env bash
# test-guest-failures.sh: guest.sh tells its own failures apart from the command's: a kernel
# that is not there or not a kernel, a guest that panics while booting (125), a guest that
# dies under the command (123), a command that outlives the timeout (124), a signal; and it
# hands back the command's exit status, stdout, environment and result files.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guest=$here/guest.sh
logdir=${GUEST_LOG_DIR:-${TMPDIR:-/tmp}}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/guest-failures.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; failures=$((failures + 1)); }
expect() { # expect NAME STATUS STDERR_REGEX -- GUEST_SH_ARGS...: run guest.sh, check both
  local name=$1 want=$2 regex=$3; shift 4
  local status=0
  "$guest" --log "$logdir/guest-failures.$name.console.log" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || status=$?
  if [ "$status" -ne "$want" ]; then
    not_ok "$name: exit status $status, want $want; its stderr ends:"
    tail -n 20 "$tmp/$name.err" | sed 's/^/  | /'
  elif ! grep -qE "$regex" "$tmp/$name.err"; then
    not_ok "$name: exit status $status, but no /$regex/ on stderr; it ends:"
    tail -n 20 "$tmp/$name.err" | sed 's/^/  | /'
  else
    ok "$name: exit status $status; stderr says: $(grep -E "$regex" "$tmp/$name.err" | head -n1)"
  fi
}

# Fetch first, so that the cases below time the guest and not the download.
"$guest" --prepare || { echo "not ok - guest.sh --prepare failed"; exit 1; }

expect missing-kernel 125 'cannot boot: no kernel at /nonexistent/vmlinuz' -- \
  --kernel /nonexistent/vmlinuz -- true
expect not-a-kernel 125 'could not boot to the command.*kernel /etc/os-release' -- \
  --kernel /etc/os-release -- true
if ! grep -q '^  | qemu' "$tmp/not-a-kernel.err"; then
  not_ok "not-a-kernel: QEMU's own complaint is not among the last lines shown"
fi
# No init in the initramfs: the kernel panics ("VFS: Unable to mount root fs").
expect boot-panic 125 'could not boot to the command' -- \
  --append rdinit=/nonexistent -- true
grep -q '^  | .*Kernel panic' "$tmp/boot-panic.err" || not_ok "boot-panic: the panic is not among the last lines shown"

# The command's own results: status, stdout (ours), stderr (the console), --env, the
# directory it started in, a file in $GUEST_OUT.
mkdir -p "$tmp/results"
expect command-status 7 'the command exited with status 7' -- \
  --out "$tmp/results" --env GREETING='hello world' -- \
  bash -c 'echo "$GREETING from $(pwd)"; echo to-stderr >&2; echo result >"$GUEST_OUT/file"; exit 7'
[ "$(cat "$tmp/command-status.out")" = "hello world from $PWD" ] &&
  ok "command-status: stdout came back: $(cat "$tmp/command-status.out")" ||
  not_ok "command-status: stdout is '$(cat "$tmp/command-status.out")', want 'hello world from $PWD'"
grep -q '^to-stderr' "$tmp/command-status.err" || not_ok "command-status: the command's stderr is not on ours"
[ "$(cat "$tmp/results/file" 2>/dev/null)" = result ] && ok "command-status: \$GUEST_OUT/file came back" ||
  not_ok "command-status: no \$GUEST_OUT/file in --out"

expect crash-in-command 123 'went down .* while the command was running' -- \
  -- bash -c 'echo c >/proc/sysrq-trigger; sleep 60'

start=$SECONDS
expect timeout 124 'timeout: the command was still running after 40s' -- \
  --timeout 40 -- sleep 600
[ $((SECONDS - start)) -lt 55 ] || not_ok "timeout: guest.sh took $((SECONDS - start))s to give up after 40s"

# A signal to guest.sh (meson's own timeout, ^C) takes the guest down with it.
"$guest" --out "$tmp/sig" --log "$tmp/sig.log" -- sleep 600 >/dev/null 2>"$tmp/sig.err" &
pid=$!
for _ in $(seq 120); do
  grep -q '^guest-init: running the command' "$tmp/sig.log" 2>/dev/null && break
  sleep 0.5
done
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
if [ "$status" -eq 143 ] && grep -q 'SIGTERM: guest killed' "$tmp/sig.err"; then
  ok "signal: SIGTERM kills the guest, exit status 143"
else
  not_ok "signal: exit status $status, want 143; stderr ends:"
  tail -n 5 "$tmp/sig.err" | sed 's/^/  | /'
fi
if pgrep -f "path=$tmp/sig" >/dev/null; then
  not_ok "signal: QEMU is still running after guest.sh exited"
fi

[ "$failures" -eq 0 ] || { echo "$failures failed"; exit 1; }
