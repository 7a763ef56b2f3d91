#!/usr/bin/env bash
# demo.sh: live-migrate one VM of five simulated devices from a source to a destination
# vfio-migd, each on its own private D-Bus, first with vfio-migd's phased sequence and then
# one device at a time (QEMU's order), and show what each did to the devices' state.
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

declare -A downtime corrupt=([parallel]=0 [serial]=0)
say "Two hosts, each a private D-Bus with its own vfio-migd and simulated devices"
host src
host dst
echo "VM: $(names par-) -- mlx5 (STOP_COPY|P2P|PRE_COPY) x2, pds (STOP_COPY|P2P), xe (STOP_COPY|P2P),"
echo "    virtio (STOP_COPY|P2P|PRE_COPY); 20 ms per kernel arc; all peers with P2P mappings."

migrate par- parallel
par_events=$(events par-)
migrate ser- serial
ser_events=$(events ser-)

say "Summary"
echo "vfio-migd (phases, devices in parallel): quiesce ${downtime[parallel]} ms, $par_events corruption events"
echo "one device at a time (QEMU's order):     quiesce ${downtime[serial]} ms, $ser_events corruption events"
if [ "${corrupt[parallel]}" -eq 0 ] && [ "$par_events" -eq 0 ] && [ "$ser_events" -gt 0 ]; then
  echo "Every device stopped only after all of its peers had quiesced P2P; one at a time, devices"
  echo "stopped while peers could still write into them."
else
  echo "demo: unexpected result" >&2
  exit 1
fi
