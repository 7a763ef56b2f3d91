#!/usr/bin/env python3
"""hotplug_guest: IN THE GUEST (test-hotplug.sh runs it through guest.sh), vfio-migd
--backend=kernel watching the guest kernel's real uevents (there is no udevd in the guest, so
the daemon reads the kernel's NETLINK_KOBJECT_UEVENT itself) while devices join and leave
the IOMMU group of a registered VM: the group behind the PCIe-to-PCI bridge, where the e1000
(01:01.0) and the rtl8139 (01:02.0) are the VM's and the edu device (01:03.0) is not.

This script plays the VMM: it holds the group's /dev/vfio node, as QEMU would, so vfio-migd
opens nothing of the VM's devices. (A device whose VFIO device fd is open cannot be unbound
or removed at all: the kernel blocks the writer until the fd is closed.)

Output is TAP on stdout; diagnostics and the daemon's log go to stderr.
Environment: MIGD, MIGCTL (the binaries), MIGD_WRAPPER (optional, e.g. valgrind).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from kernel_backend_guest import Host, Tap, group_of, wait_until  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "dbus"))
from migdtest import read_shared  # noqa: E402

SYS_PCI = "/sys/bus/pci/devices"
VFIO_PCI = "/sys/bus/pci/drivers/vfio-pci"
E1000, RTL, EDU = "0000:01:01.0", "0000:01:02.0", "0000:01:03.0"
HOTPLUG_IDS = ("group-changed", "device-removed", "partial-group")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def driver_of(bdf):
    link = f"{SYS_PCI}/{bdf}/driver"
    return os.path.basename(os.readlink(link)) if os.path.exists(link) else None


def bind_vfio(bdf):
    write(f"{SYS_PCI}/{bdf}/driver_override", "vfio-pci")
    write("/sys/bus/pci/drivers_probe", bdf)


class Monitor:
    """vfio-migctl --json monitor in the background: the GroupChanged signals it saw."""

    def __init__(self, h):
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([os.environ["MIGCTL"], "--json", "monitor"], env=h.env,
                                     stdout=self.out, stderr=self.err, text=True)
        wait_until(lambda: "Monitoring" in self.read_err(), 10)

    def read_err(self):
        return read_shared(self.err)

    def changes(self):
        text = read_shared(self.out)
        text = text[:text.rfind("\n") + 1]  # a line being written is not complete yet
        return [json.loads(line)["args"] for line in text.splitlines()
                if line.strip() and json.loads(line)["signal"] == "GroupChanged"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def hotplug_blockers(h, vm="vm1"):
    """The VM's blocker ids that hotplug can cause (the guest's devices cannot migrate at
    all, so no-migration is always there)."""
    return sorted({b.split(":", 1)[0] for b in h.vm(vm, "Blockers") or []} & set(HOTPLUG_IDS))


def expect(t, h, mon, want_blockers, want_change, what):
    """Waits for the blockers and the newest GroupChanged the step should cause."""
    ok = wait_until(lambda: hotplug_blockers(h) == want_blockers
                    and mon.changes()[-1:] == [want_change], 10)
    t.check(ok, what, f"blockers {hotplug_blockers(h)} want {want_blockers}\n"
                      f"GroupChanged {mon.changes()} want last {want_change}")


def run_checks(t, h, group):
    t.check("Hotplug: watching kernel uevents" in h.read_log(),
            "without udevd the daemon reads the kernel's uevents", h.read_log()[-2000:])
    r = h.ctl("register", "vm1", E1000, RTL)
    if not t.check(r.returncode == 0, "RegisterVM of the e1000 and the rtl8139", r.stderr):
        return
    t.equal(hotplug_blockers(h), [], "no hotplug blocker at registration")
    mon = Monitor(h)
    try:
        bind_vfio(EDU)
        expect(t, h, mon, ["group-changed", "partial-group"], [group, [EDU], [], ["vm1"]],
               "edu bound to vfio-pci joins the VM's group: GroupChanged and group-changed")
        t.check(any(f"device {EDU} joined IOMMU group {group}" in b
                    for b in h.vm("vm1", "Blockers")), "the blocker names the device and group")
        t.check(f"IOMMU group {group} changed: joined: {EDU}" in h.read_log(),
                "the change is logged")

        write(f"{VFIO_PCI}/unbind", EDU)
        write(f"{SYS_PCI}/{EDU}/driver_override", "\n")  # or new_id below binds it again
        expect(t, h, mon, [], [group, [], [EDU], ["vm1"]],
               "edu unbound again: GroupChanged, blockers lifted")

        write(f"{VFIO_PCI}/unbind", RTL)
        expect(t, h, mon, ["group-changed"], [group, [], [RTL], ["vm1"]],
               "the VM's rtl8139 unbound from vfio-pci: GroupChanged and group-changed")
        t.check(any("was unbound from its VFIO driver vfio-pci" in b
                    for b in h.vm("vm1", "Blockers")), "the blocker says it was unbound")
        write("/sys/bus/pci/drivers_probe", RTL)
        expect(t, h, mon, [], [group, [RTL], [], ["vm1"]],
               "bound back to vfio-pci: GroupChanged, blocker lifted")

        # vfio-pci takes the rtl8139 by its id once it is back, as a VMM's host would
        write(f"{VFIO_PCI}/new_id", "10ec 8139")
        try:
            write(f"{SYS_PCI}/{RTL}/remove", "1")
            expect(t, h, mon, ["device-removed"], [group, [], [RTL], ["vm1"]],
                   "the VM's rtl8139 removed from the PCI bus: device-removed")
            r = h.ctl("abort", "vm1")
            t.check(r.returncode != 0 and "NoSuchDevice" in r.stderr
                    and f"its device {RTL} was removed" in r.stderr,
                    "a sequence on the VM is refused naming the device", r.stderr)
            write("/sys/bus/pci/rescan", "1")
            expect(t, h, mon, ["device-removed"], [group, [RTL], [], ["vm1"]],
                   "PCI rescan: the device is back in the group, the VM still holds the old one")
            t.equal(driver_of(RTL), "vfio-pci", "the rescanned device is on vfio-pci again")
        finally:
            write(f"{VFIO_PCI}/remove_id", "10ec 8139")
        r = h.ctl("unregister", "vm1")
        t.check(r.returncode == 0, "UnregisterVM", r.stderr)
        r = h.ctl("register", "vm1", E1000, RTL)
        t.check(r.returncode == 0, "RegisterVM again with the device as it is now", r.stderr)
        t.equal(hotplug_blockers(h), [], "no hotplug blocker after registering again")
    finally:
        mon.stop()


def main():
    t = Tap()
    start = time.monotonic()
    bind = subprocess.run([os.path.join(HERE, "guest-bind.sh"), E1000, RTL],
                          capture_output=True, text=True)
    sys.stderr.write(bind.stdout + bind.stderr)
    if not t.check(bind.returncode == 0, "guest-bind.sh binds the e1000 and the rtl8139"):
        return t.done()
    group = group_of(E1000)
    t.equal(group_of(EDU), group, "edu shares the bridge's group with the VM's devices")
    # the VMM holds the group, so the daemon opens none of its devices
    vmm = os.open(f"/dev/vfio/{group}", os.O_RDWR)
    work = tempfile.mkdtemp(prefix="hotplug-")
    os.chmod(work, 0o755)
    h = Host(work)
    try:
        run_checks(t, h, group)
    except Exception as e:  # a broken step must still stop the daemon and show its log
        t.check(False, "the hotplug checks ran to their end", repr(e))
    finally:
        code = h.stop()
        os.close(vmm)
        t.equal(code, 0, "vfio-migd exits 0 on SIGTERM")
        if t.failed:
            sys.stderr.write("===== vfio-migd log =====\n" + h.read_log())
    print(f"# {time.monotonic() - start:.1f} s in the guest", flush=True)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
