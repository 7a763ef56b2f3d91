#!/usr/bin/env bash
# guest-bind.sh [BDF...]: IN THE GUEST (see guest.sh), load vfio and bind PCI devices to
# vfio-pci, then print the IOMMU group of each. Without arguments it binds every device
# that the guest does not need itself: not the 9p transports (the root file system), not
# bridges, not the ICH9 chipset functions at 00:1f (the LPC bridge powers the guest off).
# Output, one line per device, then one per group (members in sysfs order):
#   bound 0000:00:10.0 group 4 /dev/vfio/4
#   group 7 /dev/vfio/7 0000:00:18.0 0000:01:01.0 0000:01:02.0 0000:01:03.0
# Shell builtins only in the loops: under TCG every program started costs tens of ms.
set -euo pipefail
prog=guest-bind.sh
sys=/sys/bus/pci/devices
vfio_pci=/sys/bus/pci/drivers/vfio-pci

groups_dir=/sys/kernel/iommu_groups
[ -e $groups_dir/0 ] ||
  { echo "$prog: no IOMMU groups: is the guest's IOMMU on (intel_iommu=on, -device intel-iommu)?" >&2; exit 1; }
modprobe -a vfio vfio_iommu_type1 vfio-pci

essential() { # essential BDF: true for the devices the guest itself runs on
  local d=$sys/$1 class v
  read -r class <"$d/class"
  case $class in 0x06*) return 0 ;; esac # host, ISA and PCI bridges (vfio-pci takes none)
  case $1 in 0000:00:1f.*) return 0 ;; esac
  for v in "$d"/virtio*/driver; do # a virtio transport whose device is a 9p channel
    [ "$v" -ef /sys/bus/virtio/drivers/9pnet_virtio ] && return 0
  done
  return 1
}

group_of() { # group_of BDF: sets group
  local g
  for g in "$groups_dir"/*; do
    [ -e "$g/devices/$1" ] && { group=${g##*/}; return 0; }
  done
  echo "$prog: $1 is in no IOMMU group" >&2
  return 1
}

bind() { # bind BDF: hand the device to vfio-pci, whoever has it now
  local bdf=$1 d=$sys/$1
  [ -d "$d" ] || { echo "$prog: no PCI device $bdf (see /sys/bus/pci/devices)" >&2; return 1; }
  if essential "$bdf"; then
    echo "$prog: refusing $bdf: the guest needs it (bridge, chipset or 9p transport)" >&2
    return 1
  fi
  [ "$d/driver" -ef $vfio_pci ] && return 0
  echo vfio-pci >"$d/driver_override"
  [ -e "$d/driver" ] && echo "$bdf" >"$d/driver/unbind"
  echo "$bdf" >/sys/bus/pci/drivers_probe
  [ "$d/driver" -ef $vfio_pci ] || { echo "$prog: $bdf did not bind to vfio-pci (see dmesg)" >&2; return 1; }
}

devices=("$@")
if [ ${#devices[@]} -eq 0 ]; then
  for d in "$sys"/*; do
    essential "${d##*/}" || devices+=("${d##*/}")
  done
fi
groups=()
for bdf in "${devices[@]}"; do
  [[ $bdf == *:*:* ]] || bdf=0000:$bdf
  bind "$bdf"
  group_of "$bdf"
  echo "bound $bdf group $group /dev/vfio/$group"
  [[ " ${groups[*]} " == *" $group "* ]] || groups+=("$group")
done
for group in "${groups[@]}"; do
  members=("$groups_dir/$group"/devices/*)
  echo "group $group /dev/vfio/$group ${members[*]##*/}"
done
