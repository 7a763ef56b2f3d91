#!/usr/bin/env bash
# demo.sh: live-migrate one VM of five simulated devices from a source to a destination
# vfio-migd, each on its own private D-Bus, three times over the same device set: with
# vfio-migd's phased sequence (parallel), with QEMU 8.1's order (qemu: every device to
# RUNNING_P2P one at a time, then each to STOP), and with each device's whole journey alone
# (naive: QEMU before 8.1, or a VMM that ignores P2P); and show what each did to the devices'
# state and how long the VM's devices were down.
#
# Runs from a fresh clone on Debian 12 as root: installs what is missing, builds, cleans up.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/deps.sh
bash scripts/build.sh build

B=$top/${BUILD_DIR:-build}
MIGD=$B/daemon/vfio-migd
CTL=$B/client/vfio-migctl
SIM=$B/client/vfio-migsim
work=$(mktemp -d /tmp/vfio-migd-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# host NAME: a private bus and a vfio-migd with its own sim device directory and its own
# state directory (the crash journal: two daemons never share one, the second would refuse)
host() {
  local name=$1
  mkdir -p "$work/$name/sim" "$work/$name/state"
  sed "s|@LISTEN@|unix:path=$work/$name/bus|" "$top/tests/data/demo-bus.conf" >"$work/$name/bus.conf"
  dbus-daemon --config-file="$work/$name/bus.conf" --nofork --nopidfile 2>"$work/$name/bus.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$work/$name/bus" ] && break; sleep 0.05; done
  DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/$name/bus" "$MIGD" --backend=sim \
    --sim-dir="$work/$name/sim" --state-dir="$work/$name/state" --phase-deadline-ms=5000 \
    2>"$work/$name/daemon.log" & pids+=($!)
  for _ in $(seq 200); do
    DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/$name/bus" "$CTL" status >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "demo: vfio-migd on $name did not come up:" >&2
  cat "$work/$name/daemon.log" >&2
  exit 1
}
on() { local h=$1; shift; DBUS_SYSTEM_BUS_ADDRESS="unix:path=$work/$h/bus" "$@"; }
sim() { local h=$1; shift; "$SIM" --dir "$work/$h/sim" "$@"; }

# The VM: five devices with the flag sets of real drivers, all peers in one IOMMU context
# with P2P mappings (so a device stopped while a peer still runs records corruption).
DEVICES=(nic0:mlx5 nic1:mlx5 nvme0:pds gpu0:xe blk0:virtio)
make_devices() { # make_devices HOST PREFIX
  for d in "${DEVICES[@]}"; do
    sim "$1" create "$2${d%%:*}" --preset "${d##*:}" --p2p-group "$2vm" --latency-ms 20 \
      --blob-size 262144 >/dev/null
  done
}
names() { for d in "${DEVICES[@]}"; do printf '%s%s ' "$1" "${d%%:*}"; done; }

# compare PREFIX: the digest of the state each source device sent against the digest of the
# state its destination twin took in, and the peer writes into stopped devices (corruption
# events) both sides recorded: bytes can arrive intact and still carry a corrupted state.
compare() {
  local prefix=$1 ok=0
  printf '%-8s %-18s %-18s %-13s %-22s %s\n' device "state sent" "state loaded" "bytes intact" \
    "P2P writes (src/dst)" verdict
  for d in "${DEVICES[@]}"; do
    local n=${d%%:*}
    read -r sd se < <(sim src --json show "$prefix$n" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["last_save_sha256"][:16], len(d["events"]))')
    read -r dd de < <(sim dst --json show "$prefix$n" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["last_load_sha256"][:16], len(d["events"]))')
    local same=yes verdict=ok
    [ "$sd" = "$dd" ] || { same=NO; verdict="CORRUPT"; ok=1; }
    if [ "$se" -gt 0 ] || [ "$de" -gt 0 ]; then verdict="CORRUPT (peer DMA)"; ok=1; fi
    printf '%-8s %-18s %-18s %-13s %-22s %s\n' "$n" "$sd" "$dd" "$same" "$se/$de" "$verdict"
  done
  return $ok
}

events() { # events PREFIX: total corruption events on both hosts
  local total=0
  for h in src dst; do
    for d in "${DEVICES[@]}"; do
      total=$((total + $(sim $h --json show "$1${d%%:*}" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["events"]))')))
    done
  done
  echo $total
}

migrate() { # migrate PREFIX STRATEGY
  local p=$1 strategy=$2
  make_devices src "$p"; make_devices dst "$p"
  on src "$CTL" register "${p}vm" $(names "$p") --strategy "$strategy" >/dev/null
  on dst "$CTL" register "${p}vm" $(names "$p") --strategy "$strategy" >/dev/null
  say "[$strategy] source: pre-copy (devices with PRE_COPY start streaming while the VM runs)"
  on src "$CTL" precopy "${p}vm"
  say "[$strategy] source: quiesce (this is the VM's device downtime)"
  on src "$CTL" quiesce "${p}vm"
  downtime[$strategy]=$(on src "$CTL" --json last "${p}vm" | python3 -c 'import json,sys; print("%.1f" % (json.load(sys.stdin)["total-us"]/1000))')
  say "[$strategy] source: save every device's state into one stream"
  on src "$CTL" save "${p}vm" "$work/${p}stream"
  say "[$strategy] destination: resume from the stream"
  on dst "$CTL" resume "${p}vm" "$work/${p}stream"
  say "[$strategy] did every device's state arrive intact?"
  compare "$p" || corrupt[$strategy]=1
}

STRATEGIES=(parallel qemu naive)
declare -A downtime corrupt nevents
for st in "${STRATEGIES[@]}"; do corrupt[$st]=0; done
say "Two hosts, each a private D-Bus with its own vfio-migd and simulated devices"
host src
host dst
echo "VM: $(names "") -- mlx5 (STOP_COPY|P2P|PRE_COPY) x2, pds (STOP_COPY|P2P), xe (STOP_COPY|P2P),"
echo "    virtio (STOP_COPY|P2P|PRE_COPY); 20 ms per kernel arc; all peers with P2P mappings."
echo "    The same VM is migrated three times, once per strategy (devices prefixed par-, qemu-, naive-)."

for st in "${STRATEGIES[@]}"; do
  p=${st:0:5}-; [ "$st" = parallel ] && p=par-
  migrate "$p" "$st"
  nevents[$st]=$(events "$p")
done

# The floor: a quiesce cannot take less than its two arcs (to RUNNING_P2P, then to STOP).
n=${#DEVICES[@]}
floor=40
ratio() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
say "Summary: quiesce (the VM's device downtime) of $n devices, 20 ms per arc; floor $floor ms (2 arcs)"
printf '%-42s %11s %11s %18s\n' strategy "quiesce ms" "x parallel" "corruption events"
printf '%-42s %11s %11s %18s\n' "parallel (vfio-migd: phases, in parallel)" "${downtime[parallel]}" 1.0 "${nevents[parallel]}"
printf '%-42s %11s %11s %18s\n' "qemu (QEMU >= 8.1: safe, one at a time)" "${downtime[qemu]}" "$(ratio "${downtime[qemu]}" "${downtime[parallel]}")" "${nevents[qemu]}"
printf '%-42s %11s %11s %18s\n' "naive (each device's journey alone)" "${downtime[naive]}" "$(ratio "${downtime[naive]}" "${downtime[parallel]}")" "${nevents[naive]}"
if [ "${corrupt[parallel]}" -eq 0 ] && [ "${nevents[parallel]}" -eq 0 ] &&
   [ "${corrupt[qemu]}" -eq 0 ] && [ "${nevents[qemu]}" -eq 0 ] && [ "${nevents[naive]}" -gt 0 ]; then
  echo "parallel and qemu both stop a device only after every peer has quiesced P2P: no corruption."
  echo "qemu does it one device at a time, 2 x $n arcs of downtime; parallel pays the 2 arcs once."
  echo "naive stops devices while peers can still write into them: their saved state is corrupt."
else
  echo "demo: unexpected result" >&2
  exit 1
fi
