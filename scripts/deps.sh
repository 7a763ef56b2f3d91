#!/usr/bin/env bash
# deps.sh: install the Debian 12 packages vfio-migd needs to build, test and demo, when missing.
# Safe to run repeatedly; needs root only when something is missing.
set -euo pipefail

PACKAGES=(
  meson ninja-build pkg-config gcc libc6-dev
  libsystemd-dev libglib2.0-dev libjansson-dev
  dbus dbus-daemon dbus-bin libglib2.0-bin systemd python3 util-linux passwd
  valgrind clang libclang-rt-14-dev
  qemu-system-x86 busybox-static cpio kmod
  libvirt-dev libvirt-daemon libvirt-clients
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]}; run as root (or: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
