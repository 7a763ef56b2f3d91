#!/usr/bin/env python3
"""Hotplug: devices that join or leave a VM's IOMMU group after it was registered, and a VM
device that the host removes, even in the middle of a sequence.

The sim backend is watched through inotify on its directory: a device file created or
removed with vfio-migsim is a hotplug, seen without any call. The kernel backend on a fake
sysfs tree has no watch (no uevent describes a tree of files; the daemon says so in its
log): there Rescan does the same comparison. Real uevents: tests/kernel/test-hotplug.sh."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (ERROR, EXIT_ROLLED_BACK, MANAGER, ROOT, VM_IFACE,  # noqa: E402
                      MigdTestCase, main, seconds, vm_path, wait_for)
import test_kernel_backend  # noqa: E402  (its FakeHost; not its tests)

GROUP = "ctx1"  # the sim IOMMU group label the VM's devices share


def blocker_ids(blockers):
    return sorted({b.split(":", 1)[0] for b in blockers})


class HotplugCase(MigdTestCase):

    def blockers(self, vm="vm1"):
        return self.h.busctl_get(vm_path(vm), VM_IFACE, "Blockers")

    def wait_blockers(self, want, vm="vm1", timeout=5):
        """Until the VM's blocker ids are exactly want (the watch debounces 100 ms)."""
        wait_for(lambda: blocker_ids(self.blockers(vm)) == sorted(want), seconds(timeout),
                 f"blockers {want} on {vm} (now {blocker_ids(self.blockers(vm))})")

    def group_changes(self, mon):
        signals = [s for s in mon.stop_json() if s["signal"] == "GroupChanged"]
        for s in signals:  # vfio-migctl names the arguments as docs/dbus-api.md does
            self.assertEqual(list(s["fields"]), ["group", "added", "removed", "vms"])
        return [s["args"] for s in signals]

    def check(self, vm="vm1"):
        """CheckMigration: (allowed, [(id, device, sentence)])."""
        r = self.h.busctl_call(ROOT, MANAGER, "CheckMigration", "s", vm)
        self.assertOk(r)
        data = r.json["data"]
        return data[0], data[1]


class SimHotplugTest(HotplugCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[("nic0", "mlx5", {"group": GROUP}),
                                        ("nic1", "mlx5", {"group": GROUP}),
                                        ("gpu0", "xe", {"group": "ctx2"})])
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1", "gpu0"))

    def test_watch_is_logged(self):
        """The daemon says what it watches."""
        self.assertIn(f"Hotplug: watching inotify on {self.h.sim.dir}", self.h.daemon.read_log())

    def test_device_joining_the_group_blocks_until_it_leaves(self):
        """A sim device created in the VM's group: GroupChanged, blocker group-changed (and the
        policy's partial-group), CheckMigration refuses, a warning in the log; removed again:
        GroupChanged and both blockers lifted."""
        self.assertEqual(self.blockers(), [])
        mon = self.h.monitor()
        self.h.sim.create("intruder", "virtio", group=GROUP)
        self.wait_blockers(["group-changed", "partial-group"])
        self.assertEqual(self.group_changes(mon), [[GROUP, ["intruder"], [], ["vm1"]]])

        allowed, blockers = self.check()
        self.assertFalse(allowed)
        changed = [b for b in blockers if b[0] == "group-changed"]
        self.assertEqual(len(changed), 1, blockers)
        self.assertEqual(changed[0][1], "intruder")
        self.assertIn(f"device intruder joined IOMMU group {GROUP}, which VM vm1 holds",
                      changed[0][2])
        self.assertIn("re-register VM vm1", changed[0][2])
        self.assertFalse(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Migratable"))
        r = self.h.ctl("quiesce", "vm1")
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("NotMigratable", r.stderr)
        log = self.h.daemon.read_log()
        self.assertRegex(log, rf"IOMMU group {GROUP} changed: joined: intruder; left: none; "
                              r"held by VM vm1")
        self.assertIn("VM vm1: group-changed: device intruder joined", log)

        mon = self.h.monitor()
        self.h.sim("remove", "intruder")
        self.wait_blockers([])
        self.assertEqual(self.group_changes(mon), [[GROUP, [], ["intruder"], ["vm1"]]])
        self.assertTrue(self.check()[0])
        self.assertIn("hotplug blockers are lifted", self.h.daemon.read_log())

    def test_device_in_another_group_changes_nothing(self):
        """A device created in a group no VM holds: no signal, no blocker."""
        mon = self.h.monitor()
        self.h.sim.create("other", "virtio", group="ctx9")
        wait_for(lambda: "sim device other created" in self.h.daemon.read_log(), seconds(5),
                 "the watch to see the new device")
        self.assertOk(self.h.ctl("rescan"))
        self.assertEqual(self.group_changes(mon), [])
        self.assertEqual(self.blockers(), [])

    def test_state_changes_are_not_hotplug(self):
        """A sequence rewrites every device file: the watch does not take that for hotplug."""
        for n in ("nic0", "nic1", "gpu0"):
            self.h.sim.latency(n, 5)
        self.assertOk(self.h.ctl("quiesce", "vm1"))
        self.assertOk(self.h.ctl("start", "vm1"))
        self.h.sim.create("witness", "virtio", group="ctx9")
        wait_for(lambda: "sim device witness created" in self.h.daemon.read_log(), seconds(5),
                 "the watch to see the new device")
        log = self.h.daemon.read_log()
        for n in ("nic0", "nic1", "gpu0"):
            self.assertNotIn(f"sim device {n}", log)

    def test_reregistering_accepts_the_new_membership(self):
        """A VM registered again after the change takes the group as it is now."""
        self.h.sim.create("intruder", "virtio", group=GROUP)
        self.wait_blockers(["group-changed", "partial-group"])
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1", "gpu0", "intruder",
                                 "--p2p-mode=p2p-blocked"))
        self.assertEqual(self.blockers(), [])

    def test_removed_vm_device_blocks_and_refuses_sequences(self):
        """A VM device removed from the host: device-removed, Quiesce and Abort refused with
        NoSuchDevice naming it; the VM registered again without it is migratable."""
        self.h.sim("remove", "nic1")
        self.wait_blockers(["device-removed"])
        allowed, blockers = self.check()
        self.assertFalse(allowed)
        self.assertEqual([(b[0], b[1]) for b in blockers], [("device-removed", "nic1")])
        self.assertIn("device nic1 of VM vm1 was removed from the host", blockers[0][2])
        for verb in ("quiesce", "abort"):
            r = self.h.ctl(verb, "vm1")
            self.assertNotEqual(r.returncode, 0, r)
            self.assertIn(ERROR + "NoSuchDevice", r.stderr)
            self.assertIn("its device nic1 was removed from the host", r.stderr)
        self.assertRegex(self.h.daemon.read_log(),
                         r"VM vm1: device nic1 was removed from the host")
        # the VM still holds it, so the device object stays until the VM goes
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "DeviceCount"), 3)
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "DeviceCount"), 2)
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "gpu0"))
        self.assertEqual(self.blockers(), [])
        self.assertOk(self.h.ctl("quiesce", "vm1"))

    def test_device_removed_during_a_sequence_fails_it_cleanly(self):
        """nic1 removed while a slow Quiesce runs: the sequence fails, the other devices are
        rolled back to RUNNING, the error and LastSequence name nic1 as the cause."""
        for n in ("nic0", "nic1", "gpu0"):
            self.h.sim.latency(n, 1500)
        quiesce = subprocess.Popen([self.h.ctl_tool, "quiesce", "vm1"], env=self.h.bus.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: self.h.busctl_get(vm_path("vm1"), VM_IFACE, "State")
                     .startswith("sequencing:"), seconds(5), "the quiesce to start")
            self.h.sim("remove", "nic1")
        finally:
            out, err = quiesce.communicate(timeout=seconds(60))
        self.assertEqual(quiesce.returncode, EXIT_ROLLED_BACK, out + err)
        self.assertIn("SequenceFailed", err)
        self.assertIn("device nic1 was removed from the host during the sequence", err)
        report = self.h.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence")
        self.assertEqual(report["result"], "rolled-back", report)
        self.assertIn("device nic1 was removed from the host during the sequence (hotplug) "
                      "and the other devices were rolled back", report["error"])
        self.assertTrue(any(p["name"].startswith("rollback") for p in report["phases"]))
        rollback_devices = {s["device"] for s in report["steps"]
                            if s["phase"].startswith("rollback")}
        self.assertEqual(rollback_devices, {"nic0", "gpu0"})
        self.assertStates(self.h, ["nic0", "gpu0"], "RUNNING")
        self.assertEqual(blocker_ids(self.blockers()), ["device-removed"])
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "gpu0"))
        self.assertEqual(self.blockers(), [])


class KernelHotplugTest(HotplugCase):
    """The kernel backend over a fake sysfs tree: Rescan compares."""

    NIC = "0000:00:03.0"    # vfio-pci, group 5, the VM's
    NEW = "0000:00:03.1"    # appears in group 5 later, on a host driver

    def setUp(self):
        super().setUp()
        self.fake = test_kernel_backend.FakeHost(os.path.join(self.workdir, "fake-host"))
        self.fake.group(5)
        self.fake.pci(self.NIC, "vfio-pci", 5)
        self.fake.vfio_node(5)
        self.h = self.new_host(daemon_args=["--backend=kernel", f"--sysfs-root={self.fake.sys}",
                                            f"--dev-root={self.fake.dev}"])
        self.assertOk(self.h.ctl("register", "vm1", self.NIC))

    def ids(self):
        """Blocker ids but no-migration: a fake device cannot be opened to ask for its flags."""
        return [i for i in blocker_ids(self.blockers()) if i != "no-migration"]

    def rescan(self):
        mon = self.h.monitor()
        self.assertOk(self.h.ctl("rescan"))
        return self.group_changes(mon)

    def test_no_watch_on_a_fake_tree(self):
        """No uevent describes a fake tree: no watch, and the log says Rescan is the way."""
        self.assertIn("Hotplug: no watch on --sysfs-root=", self.h.daemon.read_log())

    def test_device_added_to_the_group_is_reported_by_rescan(self):
        """A device linked into group 5 on a host driver: Rescan emits GroupChanged and the VM
        gets group-changed (and partial-group); unlinked again: lifted."""
        self.assertEqual(self.rescan(), [])
        self.fake.pci(self.NEW, "e1000e", 5)
        self.assertEqual(self.rescan(), [["5", [self.NEW], [], ["vm1"]]])
        self.assertEqual(self.ids(), ["group-changed", "partial-group"])
        self.assertIn(f"device {self.NEW} joined IOMMU group 5, which VM vm1 holds",
                      " ".join(self.blockers()))
        os.unlink(os.path.join(self.fake.sys, "kernel/iommu_groups/5/devices", self.NEW))
        self.assertEqual(self.rescan(), [["5", [], [self.NEW], ["vm1"]]])
        self.assertEqual(self.ids(), [])

    def test_vm_device_bound_to_a_host_driver(self):
        """The VM's device rebound from vfio-pci to a host driver: group-changed naming both
        drivers; bound back: lifted."""
        self.fake.bind(self.NIC, "e1000e")
        self.rescan()
        blockers = self.blockers()
        self.assertEqual(self.ids(), ["group-changed"])
        self.assertIn(f"device {self.NIC} of VM vm1 left its VFIO driver vfio-pci for the host "
                      "driver e1000e", " ".join(blockers))
        self.fake.bind(self.NIC, "vfio-pci")
        self.rescan()
        self.assertEqual(self.ids(), [])

    def test_vm_device_unbound(self):
        """The VM's device without a driver: it leaves the group's members (GroupChanged) and
        the VM gets group-changed saying it was unbound."""
        os.unlink(os.path.join(self.fake.sys, "devices/pci0000:00", self.NIC, "driver"))
        self.assertEqual(self.rescan(), [["5", [], [self.NIC], ["vm1"]]])
        self.assertIn("was unbound from its VFIO driver vfio-pci", " ".join(self.blockers()))

    def test_vm_device_removed(self):
        """The VM's device gone from sysfs: device-removed; sequences refused."""
        os.unlink(os.path.join(self.fake.sys, "kernel/iommu_groups/5/devices", self.NIC))
        os.unlink(os.path.join(self.fake.sys, "bus/pci/devices", self.NIC))
        self.assertEqual(self.rescan(), [["5", [], [self.NIC], ["vm1"]]])
        self.assertEqual(self.ids(), ["device-removed"])
        r = self.h.ctl("abort", "vm1")
        self.assertIn(ERROR + "NoSuchDevice", r.stderr)


if __name__ == "__main__":
    main()
