#!/usr/bin/env python3
"""IN THE GUEST (test-guest-smoke.sh runs it through guest.sh): bind the emulated devices to
vfio-pci and check that the guest offers what the kernel backend needs: a /dev/vfio/N per
group, the bridge group with several members, readable reserved regions, a type1 container
that takes the groups, maps DMA and hands out device fds. Prints one "ok" line per check
and writes the findings to $GUEST_OUT/smoke.json; exits 1 at the first failure."""

import ctypes
import errno
import fcntl
import json
import mmap
import os
import re
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ioctls, from /work/shared/reference/vfio-uapi.md and linux/vfio.h (6.1)
VFIO_GET_API_VERSION = 0x3B64
VFIO_CHECK_EXTENSION = 0x3B65
VFIO_SET_IOMMU = 0x3B66
VFIO_GROUP_GET_STATUS = 0x3B67
VFIO_GROUP_SET_CONTAINER = 0x3B68
VFIO_GROUP_GET_DEVICE_FD = 0x3B6A
VFIO_DEVICE_GET_INFO = 0x3B6B
VFIO_IOMMU_GET_INFO = 0x3B70
VFIO_IOMMU_MAP_DMA = 0x3B71
VFIO_IOMMU_UNMAP_DMA = 0x3B72
VFIO_DEVICE_FEATURE = 0x3B75
VFIO_TYPE1v2_IOMMU = 3
VFIO_GROUP_FLAGS_VIABLE = 1
VFIO_DEVICE_FLAGS_PCI = 1 << 1
VFIO_IOMMU_INFO_CAPS = 1 << 1
VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
VFIO_DEVICE_FEATURE_GET = 1 << 16
VFIO_DEVICE_FEATURE_PROBE = 1 << 18
VFIO_DEVICE_FEATURE_MIGRATION = 1

# The layout guest.sh builds (README.md, "Device layout").
E1000E = "0000:00:10.0"
BRIDGE = "0000:00:18.0"
BEHIND_BRIDGE = ["0000:01:01.0", "0000:01:02.0", "0000:01:03.0"]
MSI_WINDOW = (0xFEE00000, 0xFEEFFFFF)

findings = {}
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_char_p]


def ok(what):
    print(f"ok - {what}", flush=True)


def fail(what):
    print(f"FAIL - {what}", flush=True)
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)
    ok(what)


def bind_all():
    out = subprocess.run([os.path.join(HERE, "guest-bind.sh")], check=True,
                         capture_output=True, text=True).stdout
    bound, groups = {}, {}
    for line in out.splitlines():
        f = line.split()
        if f[0] == "bound":
            bound[f[1]] = int(f[3])
        elif f[0] == "group":
            groups[int(f[1])] = f[3:]
    return bound, groups


def reserved_regions(group):
    regions = []
    with open(f"/sys/kernel/iommu_groups/{group}/reserved_regions") as f:
        for line in f:
            m = re.fullmatch(r"0x([0-9a-f]+) 0x([0-9a-f]+) (\S+)\n", line)
            if not m:
                fail(f"group {group}: reserved_regions line {line!r} is not '0xSTART 0xEND TYPE'")
            regions.append((int(m[1], 16), int(m[2], 16), m[3]))
    return regions


def iommu_info(container):
    buf = bytearray(struct.pack("IIQII", 24, 0, 0, 0, 0))
    fcntl.ioctl(container, VFIO_IOMMU_GET_INFO, buf)
    argsz, flags, pgsizes, cap_offset, _ = struct.unpack_from("IIQII", buf)
    if argsz > len(buf):  # the capability chain did not fit: ask again with room for it
        buf = bytearray(struct.pack("IIQII", argsz, 0, 0, 0, 0)) + bytearray(argsz - 24)
        fcntl.ioctl(container, VFIO_IOMMU_GET_INFO, buf)
        argsz, flags, pgsizes, cap_offset, _ = struct.unpack_from("IIQII", buf)
    ranges = []
    off = cap_offset if flags & VFIO_IOMMU_INFO_CAPS else 0
    while off:
        cap_id, _version, nxt = struct.unpack_from("HHI", buf, off)
        if cap_id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
            (nr,) = struct.unpack_from("I", buf, off + 8)
            ranges = [struct.unpack_from("QQ", buf, off + 16 + 16 * i) for i in range(nr)]
        off = nxt
    return pgsizes, ranges


def main():
    bound, groups = bind_all()
    findings["groups"] = {str(g): m for g, m in groups.items()}
    check(len(bound) >= 6, f"guest-bind.sh bound {len(bound)} devices to vfio-pci (want 6: {sorted(bound)})")
    for g in groups:
        path = f"/dev/vfio/{g}"
        check(os.path.exists(path) and os.path.isdir("/dev/vfio") and
              os.stat(path).st_mode & 0o170000 == 0o020000, f"{path} is a character device")

    bridge_group = bound[BEHIND_BRIDGE[0]]
    members = groups[bridge_group]
    check(all(bound.get(d) == bridge_group for d in BEHIND_BRIDGE) and BRIDGE in members,
          f"the bridge and everything behind it share group {bridge_group}: {members}")
    check(len(members) >= 3, f"the bridge group has several members ({len(members)})")
    check(len({bound[E1000E], bridge_group, bound["0000:00:11.0"]}) == 3,
          "devices on the root complex have groups of their own")

    for g in groups:
        regions = reserved_regions(g)
        findings.setdefault("reserved_regions", {})[str(g)] = regions
        check(any((s, e, t) == (*MSI_WINDOW, "msi") for s, e, t in regions),
              f"group {g} reserved_regions readable, with the MSI window: {regions}")

    container = os.open("/dev/vfio/vfio", os.O_RDWR)
    check(fcntl.ioctl(container, VFIO_GET_API_VERSION) == 0, "VFIO_GET_API_VERSION on /dev/vfio/vfio is 0")
    check(fcntl.ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1, "the container offers TYPE1v2")

    group_fds = {}
    for g in (bound[E1000E], bridge_group):
        fd = os.open(f"/dev/vfio/{g}", os.O_RDWR)
        status = bytearray(struct.pack("II", 8, 0))
        fcntl.ioctl(fd, VFIO_GROUP_GET_STATUS, status)
        check(struct.unpack("II", status)[1] & VFIO_GROUP_FLAGS_VIABLE, f"group {g} is viable")
        fcntl.ioctl(fd, VFIO_GROUP_SET_CONTAINER, struct.pack("i", container))
        ok(f"group {g} joins the container")
        group_fds[g] = fd
    # Only with interrupt remapping does type1 accept the groups (guest.sh: intremap=on).
    fcntl.ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)
    ok("VFIO_SET_IOMMU TYPE1v2 (the IOMMU remaps interrupts)")

    pgsizes, ranges = iommu_info(container)
    findings["iova_pgsizes"], findings["iova_ranges"] = pgsizes, ranges
    check(pgsizes & 4096, f"IOMMU page sizes {pgsizes:#x} include 4 KiB")
    check(ranges and not any(s <= MSI_WINDOW[1] and e >= MSI_WINDOW[0] for s, e in ranges),
          f"the IOVA ranges leave out the MSI window: {[(hex(s), hex(e)) for s, e in ranges]}")

    buf = mmap.mmap(-1, 1 << 16)
    vaddr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    iova = 1 << 20
    fcntl.ioctl(container, VFIO_IOMMU_MAP_DMA, struct.pack("IIQQQ", 32, 3, vaddr, iova, len(buf)))
    unmap = bytearray(struct.pack("IIQQ", 24, 0, iova, len(buf)))
    fcntl.ioctl(container, VFIO_IOMMU_UNMAP_DMA, unmap)
    check(struct.unpack_from("IIQQ", unmap)[3] == len(buf), "VFIO_IOMMU_MAP_DMA and UNMAP_DMA of 64 KiB")

    for bdf in [E1000E] + BEHIND_BRIDGE:
        # fcntl.ioctl returns the buffer, not the ioctl's result (the fd): call libc.
        dev = libc.ioctl(group_fds[bound[bdf]], VFIO_GROUP_GET_DEVICE_FD, ctypes.c_char_p(bdf.encode()))
        if dev < 0:
            fail(f"{bdf}: VFIO_GROUP_GET_DEVICE_FD: {os.strerror(ctypes.get_errno())}")
        info = bytearray(struct.pack("IIIIII", 24, 0, 0, 0, 0, 0))
        fcntl.ioctl(dev, VFIO_DEVICE_GET_INFO, info)
        _, flags, regions, irqs, _, _ = struct.unpack("IIIIII", info)
        check(flags & VFIO_DEVICE_FLAGS_PCI and regions >= 9,
              f"{bdf}: device fd, a PCI device with {regions} regions and {irqs} irq types")
        # Plain vfio-pci cannot migrate: the kernel says so with ENOTTY (vfio-uapi.md).
        probe = struct.pack("IIQ", 16, VFIO_DEVICE_FEATURE_MIGRATION | VFIO_DEVICE_FEATURE_GET |
                            VFIO_DEVICE_FEATURE_PROBE, 0)
        try:
            fcntl.ioctl(dev, VFIO_DEVICE_FEATURE, probe)
            fail(f"{bdf}: plain vfio-pci claims migration support")
        except OSError as e:
            check(e.errno == errno.ENOTTY, f"{bdf}: MIGRATION feature probe fails with ENOTTY ({e.strerror})")
        os.close(dev)

    with open(os.path.join(os.environ["GUEST_OUT"], "smoke.json"), "w") as f:
        json.dump(findings, f, indent=1)
    ok("findings written to $GUEST_OUT/smoke.json")


if __name__ == "__main__":
    main()
