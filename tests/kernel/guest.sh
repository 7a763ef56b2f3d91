#!/usr/bin/env bash
# guest.sh: run one command as root in a fresh QEMU guest that boots Debian's own kernel,
# with the host root shared read-only over 9p, an emulated Intel IOMMU and emulated PCI
# devices for vfio-pci. How it works, the device layout and troubleshooting: README.md here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
prog=guest.sh

# Exit statuses of our own; anything else is the command's.
EXIT_USAGE=2
EXIT_DIED=123    # the guest went down while the command ran (kernel panic, crash)
EXIT_TIMEOUT=124 # the command was still running when the timeout struck
EXIT_NOBOOT=125  # no guest to run the command in: fetch, qemu, kernel, initramfs or mounts failed

usage() {
  cat <<EOF
usage: $prog [options] -- COMMAND [ARG...]
       $prog [--cache DIR] --print-paths | --prepare

Boots Debian's linux-image-amd64 (of the release this host runs) in QEMU, runs COMMAND as
root in the host's own root file system (read-only; tmpfs on /run /tmp /var/tmp /var/lib),
in the current directory, and exits with COMMAND's exit status. COMMAND's stdout becomes
ours when the guest has exited; its stderr and the guest console stream to stderr and to
the console log.

  --kvm | --tcg      accelerator (default: KVM when /dev/kvm works, else TCG; or \$GUEST_ACCEL)
  --timeout SEC      kill the guest after SEC seconds (default 240)
  --mem MB           guest memory (default 1024)
  --out DIR          the writable share: the guest sees it as \$GUEST_OUT (/run/guest/out);
                     kept after the run (default: a temporary directory, removed)
  --log FILE         the console log (default: a temporary file, kept only on failure)
  --env NAME=VALUE   set NAME in COMMAND's environment (repeatable; the rest is cleared)
  --append ARGS      extra kernel command line
  --kernel FILE      boot FILE instead of the cached Debian kernel (its modules must match)
  --cache DIR        kernel cache (default /var/cache/vfio-migd-tests/kernel; or \$GUEST_KERNEL_CACHE)
  --print-paths      fetch what is missing, print the cache paths as NAME=VALUE, exit
  --prepare          fetch and build what is missing, exit

Exit status: COMMAND's, or $EXIT_NOBOOT (the guest did not boot to the command),
$EXIT_TIMEOUT (timeout while the command ran), $EXIT_DIED (the guest died during the command).
EOF
}

die_usage() { echo "$prog: $*" >&2; echo "$prog: see $prog --help" >&2; exit $EXIT_USAGE; }
fail_noboot() { echo "$prog: $*" >&2; exit $EXIT_NOBOOT; }

accel=${GUEST_ACCEL:-auto}
timeout=240 mem=1024 out='' log='' kernel='' append='' mode=run accel_note=''
cache=${GUEST_KERNEL_CACHE:-/var/cache/vfio-migd-tests/kernel}
envs=()
while [ $# -gt 0 ]; do
  case $1 in
    --kvm) accel=kvm ;;
    --tcg) accel=tcg ;;
    --timeout) timeout=${2:?}; shift ;;
    --mem) mem=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --log) log=${2:?}; shift ;;
    --env) envs+=("${2:?}"); shift ;;
    --append) append=${2:?}; shift ;;
    --kernel) kernel=${2:?}; shift ;;
    --cache) cache=${2:?}; shift ;;
    --print-paths) mode=paths ;;
    --prepare) mode=prepare ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die_usage "unknown option '$1'" ;;
  esac
  shift
done
[[ $timeout =~ ^[0-9]+$ ]] && [ "$timeout" -gt 0 ] || die_usage "--timeout wants a number of seconds, not '$timeout'"
[[ $mem =~ ^[0-9]+$ ]] && [ "$mem" -ge 512 ] || die_usage "--mem wants megabytes, at least 512, not '$mem'"
case $accel in auto | kvm | tcg) ;; *) die_usage "GUEST_ACCEL must be auto, kvm or tcg, not '$accel'" ;; esac
for e in "${envs[@]}"; do
  [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die_usage "--env wants NAME=VALUE, not '$e'"
done
[ "$mode" != run ] || [ $# -gt 0 ] || die_usage "no command given (put it after --)"

# ---------------------------------------------------------------------------------------
# The kernel cache: Debian's packages, unpacked (never installed), and our initramfs.
#   $cache/debs/*.deb                  what the last fetch downloaded
#   $cache/kernel-version              the ABI the cache holds, e.g. 6.1.0-56-amd64; kept
#                                      until the cache is removed, so runs are repeatable
#   $cache/$kver/image/                linux-image-$kver unpacked; depmod run on it
#   $cache/$kver/vmlinux               the uncompressed kernel from its vmlinuz (faster boot)
#   $cache/$kver/headers/              linux-headers-$kver, its -common and linux-kbuild
#   $cache/$kver/initramfs.cpio        busybox, the 9p modules, initramfs-init.sh as /init

apt_download() { # apt_download DIR PACKAGE...: into DIR; apt-get update once if apt knows nothing
  local dir=$1; shift
  # As root apt drops to the _apt user, which cannot write our directory; the warning it
  # prints about that is noise, so download as root outright.
  if ! (cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "$@" >/dev/null 2>"$dir/apt.err"); then
    if [ "$(id -u)" -eq 0 ]; then
      echo "$prog: apt-get download $* failed; running apt-get update once" >&2
      apt-get -q update >/dev/null 2>&1 || true
      (cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "$@" >/dev/null 2>"$dir/apt.err") && return 0
    fi
    sed 's/^/  /' "$dir/apt.err" >&2
    fail_noboot "cannot download $* from the Debian archive (is the network to it up? as root, apt-get update)"
  fi
}

deb_depends() { # deb_depends DEB REGEX: the package names in DEB's Depends matching REGEX
  dpkg-deb -f "$1" Depends | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -E "$2" || true
}

fetch_kernel() { # sets kver; fetches and unpacks the image and headers when the cache lacks them
  if [ -f "$cache/kernel-version" ]; then
    kver=$(cat "$cache/kernel-version")
    [ -f "$cache/$kver/image/.complete" ] && [ -f "$cache/$kver/headers/.complete" ] && return 0
  fi
  local debs=$cache/debs
  rm -rf "$debs" # only what this fetch downloads, so that each glob below matches one file
  mkdir -p "$debs"
  echo "$prog: fetching Debian's linux-image-amd64 into $cache" >&2
  apt_download "$debs" linux-image-amd64
  local meta image
  meta=$(ls "$debs"/linux-image-amd64_*.deb)
  image=$(deb_depends "$meta" '^linux-image-[0-9].*-amd64$' | head -n1)
  [ -n "$image" ] || fail_noboot "$meta depends on no linux-image-*-amd64 package: $(dpkg-deb -f "$meta" Depends)"
  kver=${image#linux-image-}

  local root=$cache/$kver
  if [ ! -f "$root/image/.complete" ]; then
    apt_download "$debs" "$image"
    rm -rf "$root/image"
    mkdir -p "$root/image"
    dpkg -x "$debs/${image}"_*.deb "$root/image"
    # The package's postinst would run depmod; we need modules.dep for the initramfs and
    # for modprobe in the guest.
    PATH=$PATH:/usr/sbin:/sbin depmod -b "$root/image" "$kver" ||
      fail_noboot "depmod on $root/image failed (is kmod installed?)"
    touch "$root/image/.complete"
  fi
  if [ ! -f "$root/headers/.complete" ]; then
    apt_download "$debs" "linux-headers-$kver"
    local hdeb more
    hdeb=$(ls "$debs/linux-headers-${kver}"_*.deb)
    # The arch package holds .config and Module.symvers; the rest of the tree is in
    # -common and the build scripts in linux-kbuild-X.Y.
    mapfile -t more < <(deb_depends "$hdeb" '^linux-(headers-.*-common|kbuild-.*)$')
    apt_download "$debs" "${more[@]}"
    rm -rf "$root/headers"
    mkdir -p "$root/headers"
    dpkg -x "$hdeb" "$root/headers"
    local p
    for p in "${more[@]}"; do dpkg -x "$(ls "$debs/${p}"_*.deb | tail -n1)" "$root/headers"; done
    # The arch Makefile includes -common by its installed, absolute path; point it at the
    # unpacked copy so `make -C .../linux-headers-$kver M=...` works from the cache.
    local mk=$root/headers/usr/src/linux-headers-$kver/Makefile
    sed -i 's|^include /usr/src/\(linux-headers-[^/]*-common\)/Makefile|include $(dir $(lastword $(MAKEFILE_LIST)))../\1/Makefile|' "$mk"
    touch "$root/headers/.complete"
  fi
  echo "$kver" >"$cache/kernel-version"
}

extract_vmlinux() { # extract_vmlinux VMLINUZ OUT: the uncompressed ELF kernel inside a bzImage
  # Under TCG the xz decompressor alone takes seconds; QEMU boots the ELF directly through
  # its PVH entry point (Debian builds CONFIG_PVH), skipping decompression and real mode.
  python3 - "$@" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
pos = data.find(b"\xfd7zXZ\x00")
while pos >= 0:
    try:
        elf = lzma.LZMADecompressor().decompress(data[pos:])
    except lzma.LZMAError:
        elf = b""
    if elf[:4] == b"\x7fELF":
        with open(sys.argv[2] + ".tmp", "wb") as f:
            f.write(elf)
        break
    pos = data.find(b"\xfd7zXZ\x00", pos + 1)
else:
    sys.exit(f"no xz-compressed ELF in {sys.argv[1]}")
PY
  [ -f "$2.tmp" ] && mv "$2.tmp" "$2"
}

find_busybox() { # sets busybox: a statically linked busybox (Debian's busybox-static)
  if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
    busybox=/bin/busybox
    return 0
  fi
  busybox=$cache/busybox-static/bin/busybox
  [ -x "$busybox" ] && return 0
  echo "$prog: busybox-static is not installed; fetching it into $cache" >&2
  mkdir -p "$cache/debs"
  apt_download "$cache/debs" busybox-static
  dpkg -x "$(ls "$cache"/debs/busybox-static_*.deb | tail -n1)" "$cache/busybox-static"
}

module_order() { # module_order MODULES_DIR MODULE...: the .ko paths to insmod, dependencies first
  python3 - "$@" <<'PY'
import sys
moddir, wanted = sys.argv[1], sys.argv[2:]
deps = {}
for line in open(f"{moddir}/modules.dep"):
    path, _, rest = line.partition(":")
    deps[path] = rest.split()
byname = {p.rsplit("/", 1)[1].removesuffix(".ko").replace("-", "_"): p for p in deps}
order = []
for name in wanted:
    path = byname.get(name.replace("-", "_"))
    if path is None:
        sys.exit(f"module {name} is not in {moddir}/modules.dep (built into this kernel? renamed?)")
    # modules.dep lists every (transitive) dependency, the ones loaded first last.
    for p in list(reversed(deps[path])) + [path]:
        if p not in order:
            order.append(p)
print("\n".join(order))
PY
}

build_initramfs() { # rebuilds $cache/$kver/initramfs.cpio when missing or older than its /init
  local cpio=$cache/$kver/initramfs.cpio init=$here/initramfs-init.sh
  [ -f "$cpio" ] && [ "$cpio" -nt "$init" ] && return 0
  find_busybox
  local moddir=$cache/$kver/image/lib/modules/$kver stage
  stage=$(mktemp -d "$cache/initramfs.XXXXXX")
  mkdir -p "$stage"/{bin,dev,proc,sys,newroot,modules}
  cp "$busybox" "$stage/bin/busybox"
  cp "$init" "$stage/init"
  chmod 755 "$stage/init"
  local order p
  order=$(module_order "$moddir" virtio_pci 9pnet_virtio 9p) || { rm -rf "$stage"; fail_noboot "cannot work out the 9p modules to load"; }
  for p in $order; do
    cp "$moddir/$p" "$stage/modules/"
    basename "$p" .ko >>"$stage/modules/order"
  done
  (cd "$stage" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0) >"$cpio.tmp"
  mv "$cpio.tmp" "$cpio"
  rm -rf "$stage"
}

prepare_cache() {
  mkdir -p "$cache" || fail_noboot "cannot create the kernel cache $cache"
  cache=$(cd "$cache" && pwd)
  local lockfd
  exec {lockfd}>"$cache/.lock" # one guest.sh fills the cache; the others wait for it
  flock "$lockfd"
  fetch_kernel
  if [ ! -f "$cache/$kver/vmlinux" ] && ! extract_vmlinux "$cache/$kver/image/boot/vmlinuz-$kver" "$cache/$kver/vmlinux"; then
    echo "$prog: could not extract vmlinux from vmlinuz-$kver; booting the compressed kernel (slower under TCG)" >&2
  fi
  build_initramfs
  exec {lockfd}>&-
}

prepare_cache
headers=$cache/$kver/headers/usr/src/linux-headers-$kver
if [ "$mode" = paths ]; then
  printf '%s=%q\n' KERNEL_VERSION "$kver" KERNEL "$cache/$kver/image/boot/vmlinuz-$kver" VMLINUX "$cache/$kver/vmlinux" \
    MODULES "$cache/$kver/image/lib/modules/$kver" HEADERS "$headers" \
    HEADERS_COMMON "$cache/$kver/headers/usr/src/linux-headers-${kver%-amd64}-common" \
    INITRAMFS "$cache/$kver/initramfs.cpio" CACHE "$cache"
  exit 0
fi
[ "$mode" = prepare ] && exit 0

# ---------------------------------------------------------------------------------------
# The guest.

command -v qemu-system-x86_64 >/dev/null || fail_noboot "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
if [ -z "$kernel" ]; then
  kernel=$cache/$kver/vmlinux
  [ -f "$kernel" ] || kernel=$cache/$kver/image/boot/vmlinuz-$kver
fi
[ -f "$kernel" ] && [ -r "$kernel" ] || fail_noboot "cannot boot: no kernel at $kernel"

kvm_problem() { # prints why KVM cannot boot Debian's kernel here; nothing when it can
  if [ ! -c /dev/kvm ]; then
    echo "there is no /dev/kvm"
  # Opening is not enough (a container may pass the node through without access): create a VM.
  elif ! python3 -c 'import fcntl, os; fcntl.ioctl(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC), 0xAE01, 0)' 2>/dev/null; then
    echo "/dev/kvm cannot create a VM (permissions? nested virtualization off?)"
  # Some nested setups offer a /dev/kvm without hardware virtualization, e.g. PVM
  # (kvm_pvm), which boots only kernels built as PVM guests: Debian's hangs at once.
  elif [ ! -d /sys/module/kvm_intel ] && [ ! -d /sys/module/kvm_amd ]; then
    echo "/dev/kvm is not hardware virtualization (kvm_intel/kvm_amd not loaded; loaded: $(cd /sys/module && echo kvm*))"
  fi
}
if [ "$accel" != tcg ]; then
  why=$(kvm_problem)
  if [ -z "$why" ]; then
    accel=kvm
  elif [ "$accel" = kvm ]; then
    fail_noboot "--kvm: $why; use --tcg"
  else
    accel=tcg accel_note=" ($why)"
  fi
fi
if [ "$accel" = kvm ]; then
  accel_args=(-accel kvm -cpu host)
else
  # shellcheck disable=SC2054 # one host thread per vCPU: -smp 2 on two cores
  accel_args=(-accel tcg,thread=multi -cpu max)
fi

keep_out=yes
if [ -z "$out" ]; then
  out=$(mktemp -d "${TMPDIR:-/tmp}/guest-out.XXXXXX")
  keep_out=
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out" && out=$(cd "$out" && pwd) || fail_noboot "cannot create --out $out"
keep_log=yes
if [ -z "$log" ]; then
  log=$(mktemp "${TMPDIR:-/tmp}/guest-console.XXXXXX")
  keep_log=
fi
: >"$log" || fail_noboot "cannot write the console log $log"
ctl=$out/.guest
rm -rf "$ctl"
mkdir -p "$ctl"

{ # The command, as the guest's bash runs it: environment, directory, arguments.
  printf 'export HOME=/root LANG=C.UTF-8 TERM=dumb GUEST_OUT=/run/guest/out\n'
  for e in "${envs[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
  # The guest sees the host's files; under its own tmpfs (/run /tmp /var/tmp /var/lib) only
  # the paths listed in .guest/keep.
  printf 'cd %q || { echo "guest.sh: no directory %q in the guest (a tmpfs there hides the host'"'"'s)" >&2; exit %d; }\n' "$PWD" "$PWD" $EXIT_NOBOOT
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$ctl/cmd"

# The guest mounts its own tmpfs on /run, /tmp, /var/tmp and /var/lib, which would hide a
# checkout (or a build tree, or a binary named in --env) that lives there, as a fresh clone
# under /tmp does. These paths are bound back, read-only, from the host root (initramfs-init.sh).
{
  printf '%s\n' "$top" "$PWD"
  for e in "${envs[@]}"; do
    v=${e#*=}
    if [[ $v == /* ]]; then printf '%s\n' "$(dirname "$v")"; fi
  done
} | sort -u >"$ctl/keep"

# The device layout is documented in README.md; guest-bind.sh and the tests rely on it.
# shellcheck disable=SC2054 # the commas are QEMU's
devices=(
  # The IOMMU first: QEMU wants it before the devices it translates for. intremap: without
  # interrupt remapping vfio_iommu_type1 refuses to attach a group. caching-mode stays off:
  # every device is emulated, so QEMU walks the guest's IOMMU tables itself and needs no
  # notification of each map (that is only for host devices assigned through QEMU's vfio).
  -device intel-iommu,intremap=on
  # 00:02-04: the guest's own 9p shares. Never bind these to vfio-pci.
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,bus=pcie.0,addr=02.0
  -fsdev local,id=kmods,path="$cache/$kver/image/lib/modules",security_model=none,readonly=on
  -device virtio-9p-pci,fsdev=kmods,mount_tag=kmods,bus=pcie.0,addr=03.0
  -fsdev local,id=guestout,path="$out",security_model=none
  -device virtio-9p-pci,fsdev=guestout,mount_tag=guestout,bus=pcie.0,addr=04.0
  # 00:10-12: devices for vfio-pci, each in an IOMMU group of its own. No option ROMs (iPXE
  # would wait for a key press); each NIC on a user netdev that reaches nothing (restrict=on),
  # as QEMU warns about a NIC without one.
  -netdev user,id=net10,restrict=on -device e1000e,netdev=net10,bus=pcie.0,addr=10.0,romfile=
  -device virtio-rng-pci,bus=pcie.0,addr=11.0
  -device virtio-balloon-pci,bus=pcie.0,addr=12.0
  # 00:18: a PCIe-to-PCI bridge; the conventional devices behind it all reach the IOMMU
  # with the bridge's requester ID, so they share one group with it.
  -device pcie-pci-bridge,id=br0,bus=pcie.0,addr=18.0
  -netdev user,id=net11,restrict=on -device e1000,netdev=net11,bus=br0,addr=01.0,romfile=
  -netdev user,id=net12,restrict=on -device rtl8139,netdev=net12,bus=br0,addr=02.0,romfile=
  -device edu,bus=br0,addr=03.0
)
# loglevel=5: warnings and worse on the console (a WARN_ON splat is a test finding), not
# the hundreds of lines of an ordinary boot.
cmdline="console=ttyS0 panic=-1 intel_iommu=on loglevel=5 $append"

echo "$prog: booting Debian $kver under ${accel^^}$accel_note (console log: $log)" >&2
start=$(date +%s.%N)
timeout --kill-after=5 "$timeout" qemu-system-x86_64 \
  -M q35,kernel-irqchip=split "${accel_args[@]}" -m "$mem" -smp 2 \
  -nodefaults -nographic -serial stdio -monitor none -no-reboot \
  -kernel "$kernel" -initrd "$cache/$kver/initramfs.cpio" -append "$cmdline" \
  "${devices[@]}" </dev/null >"$log" 2>&1 &
qpid=$!
signalled=
for sig in INT TERM HUP; do
  # shellcheck disable=SC2064 # $sig and $qpid are wanted as they are now
  trap "signalled=$sig; kill $qpid 2>/dev/null" "$sig"
done
# Live to stderr, without the CRs of the serial line and SeaBIOS's terminal resets (ESC c,
# ESC [2J), which would clear the screen of whoever runs this by hand.
tail -n +1 -s 0.2 -f --pid="$qpid" "$log" | sed -u 's/\r$//; s/\x1bc//g; s/\x1b\[[0-9;?]*[a-zA-Z]//g' >&2 &
tpid=$!
qstatus=0
wait "$qpid" || qstatus=$?
# wait returns early when a trapped signal arrives; then qemu is on its way down.
while kill -0 "$qpid" 2>/dev/null; do wait "$qpid" || qstatus=$?; done
wait "$tpid" 2>/dev/null || true
trap - INT TERM HUP
elapsed=$(echo "$start $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')

console_text() { sed 's/\r$//; s/\x1bc//g; s/\x1b\[[0-9;?]*[a-zA-Z]//g' "$log"; }
last_lines() {
  echo "$prog: the last console lines:" >&2
  console_text | grep -v '^\s*$' | tail -n 15 | sed 's/^/  | /' >&2
}
finish() { # finish STATUS
  cat "$ctl/stdout" 2>/dev/null || true
  rm -rf "$ctl"
  [ -n "$keep_out" ] || rm -rf "$out"
  [ "$1" -eq 0 ] && [ -z "$keep_log" ] && rm -f "$log"
  [ "$1" -eq 0 ] || [ -z "$keep_log" ] || echo "$prog: console log: $log" >&2
  [ "$1" -eq 0 ] || [ -n "$keep_log" ] || echo "$prog: console log kept: $log" >&2
  exit "$1"
}

# The kernel's complaints would scroll by unnoticed; repeat them once at the end.
kernel_problems='^\[ *[0-9]+\.[0-9]+\] .*(BUG:|Oops|WARNING:|Kernel panic|cut here)'
if console_text | grep -qE "$kernel_problems"; then
  echo "$prog: the guest kernel reported problems:" >&2
  console_text | grep -E "$kernel_problems" | head -n 10 | sed 's/^/  | /' >&2
fi

if [ -n "$signalled" ]; then
  echo "$prog: SIG$signalled: guest killed after ${elapsed}s" >&2
  finish $((128 + $(kill -l "$signalled")))
fi
started=
grep -q 'guest-init: running the command' "$log" && started=yes
if [ -f "$ctl/status" ]; then
  status=$(cat "$ctl/status")
  echo "$prog: guest ran for ${elapsed}s; the command exited with status $status" >&2
  finish "$status"
fi
if [ "$qstatus" -eq 124 ] || [ "$qstatus" -eq 137 ]; then
  if [ -n "$started" ]; then
    echo "$prog: timeout: the command was still running after ${timeout}s; guest killed" >&2
    last_lines
    finish $EXIT_TIMEOUT
  fi
  echo "$prog: the guest did not boot to the command within ${timeout}s; killed" >&2
  last_lines
  finish $EXIT_NOBOOT
fi
if [ -n "$started" ]; then
  echo "$prog: the guest went down after ${elapsed}s while the command was running, with no exit status (kernel panic?)" >&2
  last_lines
  finish $EXIT_DIED
fi
echo "$prog: the guest could not boot to the command (qemu exit status $qstatus after ${elapsed}s; kernel $kernel)" >&2
last_lines
finish $EXIT_NOBOOT
