# SPDX-License-Identifier: GPL-2.0
"""migtest: drive vfio_migtest devices from Python with raw VFIO ioctls (for guest tests).

Constants from the kernel's include/uapi/linux/vfio.h (see the project's vfio-uapi.md).
Every function raises OSError with the kernel's errno on failure.
"""

import errno
import fcntl
import hashlib
import os
import struct
import subprocess
import sys
import time
import traceback
import uuid

# ioctls: _IO(';', 100 + n)
VFIO_GET_API_VERSION = 0x3B64
VFIO_CHECK_EXTENSION = 0x3B65
VFIO_SET_IOMMU = 0x3B66
VFIO_GROUP_GET_STATUS = 0x3B67
VFIO_GROUP_SET_CONTAINER = 0x3B68
VFIO_GROUP_GET_DEVICE_FD = 0x3B6A
VFIO_DEVICE_GET_INFO = 0x3B6B
VFIO_DEVICE_GET_REGION_INFO = 0x3B6C
VFIO_DEVICE_GET_IRQ_INFO = 0x3B6D
VFIO_DEVICE_RESET = 0x3B6F
VFIO_DEVICE_FEATURE = 0x3B75

VFIO_TYPE1v2_IOMMU = 3
VFIO_GROUP_FLAGS_VIABLE = 1
VFIO_DEVICE_FLAGS_RESET = 1
VFIO_DEVICE_FLAGS_PCI = 2
VFIO_PCI_CONFIG_REGION_INDEX = 7

FEATURE_GET = 1 << 16
FEATURE_SET = 1 << 17
FEATURE_PROBE = 1 << 18
FEATURE_MIGRATION = 1
FEATURE_MIG_DEVICE_STATE = 2

MIG_STOP_COPY = 1
MIG_P2P = 2
MIG_PRE_COPY = 4

STATES = ["ERROR", "STOP", "RUNNING", "STOP_COPY", "RESUMING", "RUNNING_P2P", "PRE_COPY",
          "PRE_COPY_P2P"]
STATE = {name: i for i, name in enumerate(STATES)}

TYPES = {"migtest-sc": MIG_STOP_COPY, "migtest-p2p": MIG_STOP_COPY | MIG_P2P}
PARENT = "/sys/class/mdev_bus/migtest"
MDEV_DEVICES = "/sys/bus/mdev/devices"

# The save stream: header, state, SHA-256 (migtest-stream.c).
STREAM_HDR = struct.Struct("<8sII16sIIQ")
STREAM_MAGIC = b"VMIGTEST"


def load_modules(ko):
    """vfio, vfio_iommu_type1 and mdev from the guest kernel's modules, then ko."""
    for m in ("vfio", "vfio_iommu_type1", "mdev"):
        subprocess.run(["modprobe", m], check=True)
    if not os.path.exists(PARENT):
        subprocess.run(["insmod", ko], check=True)


class Container:
    """/dev/vfio/vfio with type1v2 set once the first group is attached."""

    def __init__(self):
        self.fd = os.open("/dev/vfio/vfio", os.O_RDWR | os.O_CLOEXEC)
        if fcntl.ioctl(self.fd, VFIO_GET_API_VERSION) != 0:
            raise RuntimeError("VFIO API version is not 0")
        if not fcntl.ioctl(self.fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU):
            raise RuntimeError("no type1v2 IOMMU")
        self.iommu_set = False
        self.groups = {}

    def attach(self, group):
        if group in self.groups:
            return self.groups[group]
        gfd = os.open(f"/dev/vfio/{group}", os.O_RDWR | os.O_CLOEXEC)
        st = bytearray(struct.pack("II", 8, 0))
        fcntl.ioctl(gfd, VFIO_GROUP_GET_STATUS, st, True)
        if not struct.unpack("II", st)[1] & VFIO_GROUP_FLAGS_VIABLE:
            raise RuntimeError(f"group {group} is not viable")
        fcntl.ioctl(gfd, VFIO_GROUP_SET_CONTAINER, struct.pack("i", self.fd))
        if not self.iommu_set:
            fcntl.ioctl(self.fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)
            self.iommu_set = True
        self.groups[group] = gfd
        return gfd

    def close(self):
        for gfd in self.groups.values():
            os.close(gfd)
        self.groups = {}
        os.close(self.fd)


class Mdev:
    """One vfio_migtest mdev: sysfs controls, and its VFIO device fd once opened."""

    def __init__(self, mtype, name=None):
        self.type = mtype
        self.uuid = str(uuid.uuid4())
        self.name = name or self.uuid[:8]
        with open(f"{PARENT}/mdev_supported_types/{mtype}/create", "w") as f:
            f.write(self.uuid)
        self.sysfs = f"{MDEV_DEVICES}/{self.uuid}"
        self.group = os.path.basename(os.readlink(f"{self.sysfs}/iommu_group"))
        self.fd = None

    # sysfs
    def attr(self, name):
        with open(f"{self.sysfs}/migtest/{name}") as f:
            return f.read().rstrip("\n")

    def set_attr(self, name, value):
        with open(f"{self.sysfs}/migtest/{name}", "w") as f:
            f.write(str(value))

    def arcs(self):
        """The arc log as a list of lines."""
        return [l for l in self.attr("arc_log").split("\n") if l]

    def clear_log(self):
        self.set_attr("arc_log", "0")

    def remove(self):
        self.close()
        with open(f"{self.sysfs}/remove", "w") as f:
            f.write("1")

    # VFIO
    def open(self, container):
        gfd = container.attach(self.group)
        buf = bytearray(self.uuid.encode() + b"\0")
        self.fd = fcntl.ioctl(gfd, VFIO_GROUP_GET_DEVICE_FD, buf, True)
        return self.fd

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def info(self):
        buf = bytearray(struct.pack("IIIII", 20, 0, 0, 0, 0))
        fcntl.ioctl(self.fd, VFIO_DEVICE_GET_INFO, buf, True)
        _, flags, nregions, nirqs, _ = struct.unpack("IIIII", buf)
        return flags, nregions, nirqs

    def region_info(self, index):
        buf = bytearray(struct.pack("IIIIQQ", 32, 0, index, 0, 0, 0))
        fcntl.ioctl(self.fd, VFIO_DEVICE_GET_REGION_INFO, buf, True)
        _, flags, _, _, size, offset = struct.unpack("IIIIQQ", buf)
        return flags, size, offset

    def feature(self, flags, payload):
        buf = bytearray(struct.pack("II", 8 + len(payload), flags) + payload)
        fcntl.ioctl(self.fd, VFIO_DEVICE_FEATURE, buf, True)
        return bytes(buf[8:])

    def migration_flags(self):
        return struct.unpack("Q", self.feature(FEATURE_MIGRATION | FEATURE_GET, bytes(8)))[0]

    def get_state(self):
        out = self.feature(FEATURE_MIG_DEVICE_STATE | FEATURE_GET, struct.pack("Ii", 0, -1))
        return STATES[struct.unpack("Ii", out)[0]]

    def set_state(self, state):
        """SET; returns the data fd (caller closes it) or None."""
        out = self.feature(FEATURE_MIG_DEVICE_STATE | FEATURE_SET,
                           struct.pack("Ii", STATE[state], -1))
        fd = struct.unpack("Ii", out)[1]
        return fd if fd >= 0 else None

    def reset(self):
        fcntl.ioctl(self.fd, VFIO_DEVICE_RESET)

    # composite steps
    def save(self):
        """From any state: to STOP_COPY, read the whole stream, back to STOP."""
        fd = self.set_state("STOP_COPY")
        try:
            data = read_all(fd)
        finally:
            os.close(fd)
        self.set_state("STOP")
        return data

    def resume(self, data, chunk=4096):
        """To RESUMING, write data in chunks, then RESUMING->STOP (which validates)."""
        fd = self.set_state("RESUMING")
        try:
            write_all(fd, data, chunk)
        finally:
            os.close(fd)
        self.set_state("STOP")


def read_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def write_all(fd, data, chunk=4096):
    for i in range(0, len(data), chunk):
        view = data[i:i + chunk]
        while view:
            n = os.write(fd, view)
            view = view[n:]


def stream_parse(data):
    """(header dict, state bytes) of a save stream; raises ValueError on a bad one."""
    if len(data) < STREAM_HDR.size:
        raise ValueError("short header")
    magic, version, hdr_len, mtype, flags, dev_id, state_len = STREAM_HDR.unpack_from(data)
    if magic != STREAM_MAGIC or hdr_len != STREAM_HDR.size:
        raise ValueError("bad magic or header")
    end = STREAM_HDR.size + state_len
    if len(data) != end + 32:
        raise ValueError(f"length {len(data)}, want {end + 32}")
    if hashlib.sha256(data[:end]).digest() != data[end:]:
        raise ValueError("checksum")
    hdr = dict(version=version, type=mtype.rstrip(b"\0").decode(), flags=flags, id=dev_id,
               state_len=state_len)
    return hdr, data[STREAM_HDR.size:end]


def expect_errno(err, fn, *args):
    """fn(*args) must fail with errno err."""
    try:
        fn(*args)
    except OSError as e:
        if e.errno != err:
            raise AssertionError(f"{fn.__name__}{args}: errno {e.errno} ({os.strerror(e.errno)}), want {errno.errorcode[err]}") from e
        return
    raise AssertionError(f"{fn.__name__}{args} succeeded, want {errno.errorcode[err]}")


def fsm_paths(tsv):
    """{(flags, from, to): [states...] or None for EINVAL} from vfio-fsm-paths.tsv."""
    names = {"SC": MIG_STOP_COPY, "P2P": MIG_P2P, "PC": MIG_PRE_COPY}
    paths = {}
    with open(tsv) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fl, src, dst, path = line.rstrip("\n").split("\t")
            flags = sum(names[n] for n in fl.split("|"))
            paths[(flags, src, dst)] = None if path == "EINVAL" else path.split()
    return paths


def path_arcs(path):
    return [f"{a}>{b}" for a, b in zip(path, path[1:])]


def wait_for(pred, timeout=5.0, step=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# --- a small TAP runner, shared by the in-guest test programs ---

tests = []


def test(fn):
    """Registers fn as a test, in the order of definition."""
    tests.append(fn)
    return fn


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def tap_step(i, name, fn):
    """Runs fn as TAP test number i; True when it passed (the traceback goes to stderr)."""
    t = time.monotonic()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"not ok {i} - {name}: {e}", flush=True)
        traceback.print_exc(file=sys.stderr)
        return False
    print(f"ok {i} - {name} ({(time.monotonic() - t) * 1000:.0f} ms)", flush=True)
    return True
