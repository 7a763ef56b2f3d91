#!/usr/bin/env python3
"""kernel_backend_guest: IN THE GUEST (test-kernel-backend.sh runs it through guest.sh),
vfio-migd --backend=kernel against the guest's real VFIO: discovery, the lazy opening of
groups, IOVA ranges from sysfs against VFIO_IOMMU_GET_INFO, the partial-group and
no-migration blockers, the device-fd handover, and no VFIO fd left once no VM holds a device.
With MIGTEST_KO (vfio_migtest.ko built for the guest kernel), a two-device VM migrates
through the kernel's own state machine as well.

Output is TAP on stdout, one line per check; diagnostics and the daemon's log go to stderr.

Environment: MIGD, MIGCTL (the binaries), MIGTEST_KO (optional), MIGD_WRAPPER (a command
the daemon runs under, e.g. valgrind with --error-exitcode=99: its exit status is checked).
"""

import grp
import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import fcntl

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "migtest"))
import migtest  # noqa: E402

BUS_NAME = "org.vfiomig.Coordinator1"
ROOT = "/org/vfiomig/Coordinator1"
VM_IFACE = BUS_NAME + ".VM"
DEVICE_IFACE = BUS_NAME + ".Device"
SYS_PCI = "/sys/bus/pci/devices"

# guest.sh's device layout (its README): 00:10-12 each in a group of their own; the
# conventional devices behind the PCIe-to-PCI bridge 00:18.0 share the bridge's group.
NIC = "0000:00:10.0"      # e1000e on vfio-pci: no migration support
RNG = "0000:00:11.0"      # virtio-rng on vfio-pci: handed over by "the VMM" (this script)
BALLOON = "0000:00:12.0"  # stays on virtio-pci: not a VFIO device
BRIDGE = "0000:00:18.0"
BEHIND = ["0000:01:01.0", "0000:01:02.0", "0000:01:03.0"]


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, ok, what, detail=None):
        self.n += 1
        print(f"{'ok' if ok else 'not ok'} {self.n} - {what}", flush=True)
        if not ok:
            self.failed += 1
            if detail is not None:
                for line in str(detail).splitlines():
                    print(f"# {line}", flush=True)
        return ok

    def equal(self, got, want, what):
        return self.check(got == want, what, f"got:  {got!r}\nwant: {want!r}")

    def skip(self, what, why):
        self.n += 1
        print(f"ok {self.n} - {what} # SKIP {why}", flush=True)

    def done(self):
        print(f"1..{self.n}", flush=True)
        return 1 if self.failed else 0


def log(msg):
    print(f"kernel_backend_guest: {msg}", file=sys.stderr, flush=True)


def sysfs(path):
    with open(path) as f:
        return f.read().strip()


def link_name(path):
    return os.path.basename(os.readlink(path))


def group_of(bdf):
    return link_name(f"{SYS_PCI}/{bdf}/iommu_group")


def wait_until(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class Host:
    """A private bus and vfio-migd --backend=kernel on it."""

    def __init__(self, work):
        self.work = work
        sock = os.path.join(work, "bus.socket")
        with open(os.path.join(TOP, "tests/data/demo-bus.conf")) as f:
            conf = f.read().replace("@LISTEN@", f"unix:path={sock}")
        conf_path = os.path.join(work, "bus.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        self.bus = subprocess.Popen(["dbus-daemon", f"--config-file={conf_path}", "--nofork",
                                     "--nopidfile", "--print-address=1"],
                                    stdout=subprocess.PIPE, text=True)
        self.address = self.bus.stdout.readline().strip()
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        self.log_path = os.path.join(work, "vfio-migd.log")
        self.log_file = open(self.log_path, "w")
        with open(os.path.join(work, "policy.json"), "w") as f:
            f.write("{}")  # --policy must name an existing file: an empty policy
        self.daemon = subprocess.Popen(
            [*shlex.split(os.environ.get("MIGD_WRAPPER", "")), os.environ["MIGD"],
             "--backend=kernel", f"--policy={work}/policy.json",
             f"--policy-dir={work}/policy.d", "--log-level=debug"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=self.log_file,
            stderr=subprocess.STDOUT)
        if not wait_until(self.has_name, 60):
            raise RuntimeError("vfio-migd did not own its name:\n" + self.read_log())

    def has_name(self):
        r = subprocess.run(["busctl", f"--address={self.address}", "call", "org.freedesktop.DBus",
                            "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s",
                            BUS_NAME], capture_output=True, text=True)
        return r.returncode == 0 and r.stdout.strip() == "b true"

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        self.daemon.send_signal(signal.SIGTERM)
        code = self.daemon.wait(60)
        self.log_file.close()
        self.bus.terminate()
        self.bus.wait(10)
        return code

    def ctl(self, *args, user=None, fds=()):
        prefix = []
        if user:
            group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
            prefix = ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups"]
        return subprocess.run([*prefix, os.environ["MIGCTL"], *map(str, args)], env=self.env,
                              pass_fds=fds, capture_output=True, text=True, timeout=120)

    def ctl_json(self, *args):
        r = self.ctl("--json", *args)
        if r.returncode != 0:
            raise RuntimeError(f"vfio-migctl {' '.join(args)} failed: {r.stderr}")
        return json.loads(r.stdout)

    def get(self, path, iface, prop):
        """(value, None) or (None, error text)."""
        r = subprocess.run(["busctl", f"--address={self.address}", "--json=short",
                            "get-property", BUS_NAME, path, iface, prop],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return None, r.stderr.strip()
        return json.loads(r.stdout)["data"], None

    def vm(self, name, prop):
        return self.get(f"{ROOT}/vm/{path_encode(name)}", VM_IFACE, prop)[0]

    def device(self, name, prop):
        return self.get(f"{ROOT}/device/{path_encode(name)}", DEVICE_IFACE, prop)

    def vfio_fds(self):
        """What the daemon holds of VFIO: group nodes, the container, device fds, cdevs."""
        held = []
        fd_dir = f"/proc/{self.daemon.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("/dev/vfio") or target == "/dev/iommu" or \
                    target == "anon_inode:[vfio-device]":
                held.append(target)
        return sorted(held)


def path_encode(name):
    return "".join(c if c.isalnum() and ord(c) < 128 else "_%02x" % ord(c) for c in name)


def blocker_ids(host, vm):
    return [b.split(":", 1)[0] for b in host.vm(vm, "Blockers")]


def sysfs_iova(groups):
    """[0, 2^64-1] minus every reserved region of the groups, as [start, end] pairs."""
    cuts = []
    for g in groups:
        for line in sysfs(f"/sys/kernel/iommu_groups/{g}/reserved_regions").splitlines():
            start, end, _ = line.split()
            cuts.append((int(start, 16), int(end, 16)))
    ranges = [[0, 2**64 - 1]]
    for cs, ce in sorted(cuts):
        out = []
        for s, e in ranges:
            if ce < s or cs > e:
                out.append([s, e])
                continue
            if cs > s:
                out.append([s, cs - 1])
            if ce < e:
                out.append([ce + 1, e])
        ranges = out
    return ranges


# ---- the checks ----

def check_discovery(t, h):
    want = {}
    for bdf in os.listdir(SYS_PCI):
        drv = f"{SYS_PCI}/{bdf}/driver"
        if os.path.exists(drv) and link_name(drv) == "vfio-pci":
            want[bdf] = "vfio-pci"
    got = {d["name"]: d["driver"] for d in h.ctl_json("list-devices")}
    t.equal(got, want, "ListDevices lists exactly the devices /sys shows on vfio-pci")
    t.check(BALLOON not in got and BRIDGE not in got, "devices on other drivers are not listed")
    groups = {bdf: h.device(bdf, "Group")[0] for bdf in want}
    t.equal(groups, {bdf: group_of(bdf) for bdf in want},
            "each device's Group is its iommu_group link in /sys")
    ids = {bdf: (h.device(bdf, "VendorId")[0], h.device(bdf, "DeviceId")[0]) for bdf in want}
    t.equal(ids, {bdf: (int(sysfs(f"{SYS_PCI}/{bdf}/vendor"), 16),
                        int(sysfs(f"{SYS_PCI}/{bdf}/device"), 16)) for bdf in want},
            "VendorId and DeviceId are /sys's")
    t.check(wait_until(lambda: not h.vfio_fds()), "after reading every device no VFIO fd stays",
            h.vfio_fds())


def check_no_migration(t, h):
    g = group_of(NIC)
    t.check(h.ctl("register", "vm-nic", NIC).returncode == 0, "RegisterVM of the e1000e on vfio-pci")
    held = h.vfio_fds()
    t.check(f"/dev/vfio/{g}" in held and "/dev/vfio/vfio" in held and
            "anon_inode:[vfio-device]" in held,
            "the VM's device is opened through its group and a container", held)
    t.equal(h.device(NIC, "MigrationFlags")[0], 0, "MigrationFlags 0 for plain vfio-pci")
    t.check(f"Device {NIC}: VFIO migration flags none" in h.read_log(),
            "the migration probe said no (ENOTTY) and the daemon logged flags none")
    t.check("no-migration" in blocker_ids(h, "vm-nic"), "blocker no-migration",
            h.vm("vm-nic", "Blockers"))
    r = h.ctl("quiesce", "vm-nic")
    t.check(r.returncode == 6 and "NotMigratable" in r.stderr,
            "Quiesce is refused with NotMigratable before anything moves", r.stderr)
    state, err = h.device(NIC, "State")
    t.equal(state, "RUNNING", "a device without migration support reads RUNNING")

    want = sysfs_iova([g])
    t.equal(h.vm("vm-nic", "IovaRanges"), want,
            "IovaRanges: the aperture minus the group's reserved regions in /sys")
    t.equal(h.vm("vm-nic", "Warnings"), [],
            "no Warnings: VFIO_IOMMU_GET_INFO agrees with sysfs once the container is open")
    t.check(f"Device {NIC}: IOVA ranges from the kernel" in h.read_log() and
            "agree with sysfs" in h.read_log(),
            "the comparison with VFIO_IOMMU_GET_INFO ran")

    t.check(h.ctl("unregister", "vm-nic").returncode == 0, "UnregisterVM")
    t.check(wait_until(lambda: not h.vfio_fds()), "after UnregisterVM no VFIO fd is left",
            h.vfio_fds())


def check_partial_group(t, h):
    g = group_of(BEHIND[0])
    members = sorted(os.listdir(f"/sys/kernel/iommu_groups/{g}/devices"))
    t.check(BRIDGE in members and all(b in members for b in BEHIND),
            f"group {g} holds the bridge and the devices behind it", members)
    t.check(h.ctl("register", "vm-part", BEHIND[0]).returncode == 0,
            "RegisterVM of one device of the multi-device group")
    partial = [b for b in h.vm("vm-part", "Blockers") if b.startswith("partial-group")]
    t.check(len(partial) == 1 and BEHIND[1] in partial[0] and BRIDGE not in partial[0],
            "blocker partial-group names a VFIO member left out, never the bridge", partial)
    h.ctl("unregister", "vm-part")
    t.check(h.ctl("register", "vm-group", *BEHIND).returncode == 0,
            "RegisterVM of the whole group")
    t.check("partial-group" not in blocker_ids(h, "vm-group"),
            "the whole group (the bridge aside) has no partial-group blocker",
            h.vm("vm-group", "Blockers"))
    t.equal(h.vm("vm-group", "Groups"), [g], "the VM's Groups")
    h.ctl("unregister", "vm-group")
    t.check(wait_until(lambda: not h.vfio_fds()), "after UnregisterVM no VFIO fd is left",
            h.vfio_fds())


def check_handover(t, h):
    """This script plays the VMM: it holds RNG's group and hands the device fd over."""
    g = group_of(RNG)
    c = migtest.Container()
    try:
        gfd = c.attach(g)
        buf = bytearray(RNG.encode() + b"\0")
        dev_fd = fcntl.ioctl(gfd, migtest.VFIO_GROUP_GET_DEVICE_FD, buf, True)
        os.set_inheritable(dev_fd, True)
        t.check(h.ctl("register", "vm-rng", RNG).returncode == 0,
                "RegisterVM while another process holds the device's group")
        state, err = h.device(RNG, "State")
        t.check(state is None and err and f"/dev/vfio/{g} is open in another process" in err
                and "AttachDeviceFd" in err,
                "reading its State says who holds the group and names AttachDeviceFd", err)
        r = h.ctl("attach-fd", RNG, f"fd:{dev_fd}", user="nobody", fds=(dev_fd,))
        t.check(r.returncode == 5 and "AccessDenied" in r.stderr,
                "a valid device fd from an unprivileged caller: AccessDenied", r.stderr)
        r = h.ctl("attach-fd", RNG, f"fd:{dev_fd}", fds=(dev_fd,))
        t.check(r.returncode == 0, "AttachDeviceFd with the VMM's device fd", r.stderr)
        # The VM's cached states are read again off the loop: wait for that read.
        t.check(wait_until(lambda: h.device(RNG, "State")[0] == "RUNNING"),
                "the device is read through the fd", h.device(RNG, "State"))
        held = h.vfio_fds()
        t.check("anon_inode:[vfio-device]" in held and f"/dev/vfio/{g}" not in held and
                "/dev/vfio/vfio" not in held,
                "the daemon uses the handed-over fd and opens no group or container", held)
        r = h.ctl("attach-fd", RNG, f"fd:{dev_fd}", fds=(dev_fd,))
        t.check(r.returncode == 6 and "DeviceBusy" in r.stderr,
                "a second handover: DeviceBusy", r.stderr)
        t.check(h.ctl("unregister", "vm-rng").returncode == 0, "UnregisterVM")
        t.check(wait_until(lambda: not h.vfio_fds()),
                "after UnregisterVM the handed-over fd is closed too", h.vfio_fds())
        os.close(dev_fd)
    finally:
        c.close()


def check_migration(t, h, ko):
    """Two P2P devices of the migtest mdev, peers of each other, through the daemon: the
    source quiesces and saves, two fresh devices resume from the stream."""
    migtest.load_modules(ko)
    a, b = migtest.Mdev("migtest-p2p"), migtest.Mdev("migtest-p2p")
    c, d = migtest.Mdev("migtest-p2p"), migtest.Mdev("migtest-p2p")
    try:
        for m in (a, b):
            m.set_attr("peer_group", "vm")
        h.ctl("rescan")
        names = [d["name"] for d in h.ctl_json("list-devices")]
        t.check(a.uuid in names and b.uuid in names, "Rescan finds the new mdevs", names)
        t.check(h.ctl("register", "vm-mig", a.uuid, b.uuid).returncode == 0,
                "RegisterVM of two migtest-p2p mdevs")
        t.equal([h.device(m.uuid, "MigrationFlags")[0] for m in (a, b)], [3, 3],
                "MigrationFlags STOP_COPY|P2P from the kernel")
        t.equal(h.vm("vm-mig", "Blockers"), [], "no blockers")
        for m in (a, b):
            m.clear_log()
        r = h.ctl("quiesce", "vm-mig")
        t.check(r.returncode == 0, "Quiesce through the kernel", r.stderr)
        t.equal([h.device(m.uuid, "State")[0] for m in (a, b)], ["STOP", "STOP"],
                "both devices are stopped")
        arcs = {m.uuid: m.arcs() for m in (a, b)}
        t.equal(arcs, {m.uuid: ["RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP"] for m in (a, b)},
                "each device took RUNNING>RUNNING_P2P then RUNNING_P2P>STOP, nothing else")
        t.equal([m.attr("peer_writes_while_stopped") for m in (a, b)], ["0", "0"],
                "no peer wrote into a stopped device")
        stream = os.path.join(h.work, "vm-mig.stream")
        r = h.ctl("save", "vm-mig", stream)
        t.check(r.returncode == 0 and os.path.getsize(stream) > 0, "Save streams both devices",
                r.stderr)
        t.check(h.ctl("register", "vm-dst", c.uuid, d.uuid).returncode == 0,
                "RegisterVM of two fresh destination mdevs")
        r = h.ctl("--renamed-from", "vm-mig", "resume", "vm-dst", stream)
        t.check(r.returncode == 0, "Resume loads the stream through RESUMING", r.stderr)
        t.equal([h.device(m.uuid, "State")[0] for m in (c, d)], ["RUNNING", "RUNNING"],
                "the destination devices run")
        t.equal([c.attr("loaded_digest"), d.attr("loaded_digest")],
                [a.attr("saved_digest"), b.attr("saved_digest")],
                "each destination device loaded exactly the state its source saved")
        r = h.ctl("start", "vm-mig")
        t.check(r.returncode == 0, "Start brings the source back", r.stderr)
        t.equal([h.device(m.uuid, "State")[0] for m in (a, b)], ["RUNNING", "RUNNING"],
                "both source devices run again")
        h.ctl("unregister", "vm-mig")
        h.ctl("unregister", "vm-dst")
        t.check(wait_until(lambda: not h.vfio_fds()), "after UnregisterVM no VFIO fd is left",
                h.vfio_fds())
    finally:
        for m in (a, b, c, d):
            m.remove()


def main():
    t = Tap()
    bind = subprocess.run([os.path.join(HERE, "guest-bind.sh"), NIC, RNG, *BEHIND],
                          capture_output=True, text=True)
    sys.stderr.write(bind.stdout + bind.stderr)
    if not t.check(bind.returncode == 0, "guest-bind.sh binds the test devices to vfio-pci"):
        return t.done()
    work = tempfile.mkdtemp(prefix="kernel-backend-")
    os.chmod(work, 0o755)  # the bus socket, for the unprivileged caller
    h = Host(work)
    try:
        for check in (check_discovery, check_no_migration, check_partial_group, check_handover):
            try:
                check(t, h)
            except Exception as e:  # one broken check must not hide the others
                t.check(False, f"{check.__name__} ran to its end", repr(e))
        ko = os.environ.get("MIGTEST_KO")
        if ko and os.path.exists(ko):
            try:
                check_migration(t, h, ko)
            except Exception as e:
                t.check(False, "check_migration ran to its end", repr(e))
        else:
            t.skip("migration through the kernel state machine", "no vfio_migtest.ko")
    finally:
        code = h.stop()
        t.equal(code, 0, "vfio-migd exits 0 on SIGTERM")
        if t.failed:
            sys.stderr.write("===== vfio-migd log =====\n" + h.read_log())
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
