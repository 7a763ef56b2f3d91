#!/usr/bin/env python3
"""The Manager object: its methods, properties and signals, through vfio-migctl and busctl,
and every error a registration can meet (docs/dbus-api.md, "Manager")."""

import os
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (ACCESS_DENIED, BUS_NAME, DEVICE_IFACE, EXIT_NOT_FOUND, EXIT_REFUSED,  # noqa: E402
                      INVALID_ARGS, MANAGER, ROOT, VM_IFACE, MigdTestCase, device_path, main,
                      vm_path)

# name, preset, expected MigrationFlags (STOP_COPY=1, P2P=2, PRE_COPY=4)
DEVICES = [("acc0", "hisi", 5), ("ap0", "ap", 1), ("gpu0", "xe", 3), ("nic0", "mlx5", 7),
           ("nic1", "pds", 3), ("vio0", "virtio", 7)]
NAMES = [d[0] for d in DEVICES]


class ManagerTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, p) for n, p, _ in DEVICES])

    def register(self, name="vm1", *devices):
        r = self.h.ctl("register", name, *(devices or ("nic0", "nic1")))
        self.assertOk(r)
        return r

    def vm_count(self):
        return self.h.busctl_get(ROOT, MANAGER, "VMCount")

    # --- properties and reading ---

    def test_status_prints_version_backend_and_counts(self):
        """status: Version, Backend and the VM and device counts, as text and as JSON."""
        self.register()
        r = self.assertOk(self.h.ctl("status"))
        self.assertIn("Backend: sim", r.stdout)
        self.assertIn("VMs:     1", r.stdout)
        self.assertIn("Devices: 6 (2 in VMs, 4 free)", r.stdout)
        j = self.assertOk(self.h.ctl("--json", "status")).json
        self.assertEqual(j["properties"]["Backend"], "sim")
        self.assertTrue(j["properties"]["Version"])
        self.assertEqual((j["vms"], j["devices"], j["devices-in-vms"], j["devices-free"]),
                         (1, 6, 2, 4))

    def test_manager_properties_via_busctl(self):
        """Version, Backend, VMCount, DeviceCount read with busctl get-property."""
        self.register()
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "Backend"), "sim")
        self.assertRegex(self.h.busctl_get(ROOT, MANAGER, "Version"), r"^\d+\.\d+")
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 1)
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "DeviceCount"), 6)

    def test_list_devices_lists_every_device_sorted_with_flags(self):
        """ListDevices: every sim device, sorted by name, flags per preset, VM '/' when free."""
        self.register("vm1", "nic0", "gpu0")
        j = self.assertOk(self.h.ctl("--json", "list-devices")).json
        self.assertEqual([d["name"] for d in j], NAMES)
        flags = {d["name"]: d["flags"] for d in j}
        self.assertEqual(flags, {n: f for n, _, f in DEVICES})
        vms = {d["name"]: d["vm"] for d in j}
        self.assertEqual(vms, {"acc0": None, "ap0": None, "gpu0": "vm1", "nic0": "vm1",
                               "nic1": None, "vio0": None})
        self.assertTrue(all(d["state"] == "RUNNING" for d in j))

        r = self.h.busctl_call(ROOT, MANAGER, "ListDevices")
        self.assertOk(r)
        self.assertEqual(r.json["type"], "a(ssusoo)")
        rows = r.json["data"][0]
        self.assertEqual([row[0] for row in rows], NAMES)
        by_name = {row[0]: row for row in rows}
        self.assertEqual(by_name["nic0"][2], 7)
        self.assertEqual(by_name["nic0"][3], "RUNNING")
        self.assertEqual(by_name["nic0"][4], vm_path("vm1"))
        self.assertEqual(by_name["acc0"][4], "/")
        self.assertEqual(by_name["acc0"][5], device_path("acc0"))

        human = self.assertOk(self.h.ctl("list-devices")).stdout
        self.assertRegex(human, r"nic0\s+\S+\s+STOP_COPY\|P2P\|PRE_COPY\s+RUNNING\s+vm1")

    def test_list_vms_sorted_by_name(self):
        """ListVMs: name and path of every VM, sorted by name."""
        self.register("zeta", "nic0")
        self.register("alpha", "nic1")
        r = self.h.busctl_call(ROOT, MANAGER, "ListVMs")
        self.assertOk(r)
        self.assertEqual(r.json["data"][0], [["alpha", vm_path("alpha")],
                                             ["zeta", vm_path("zeta")]])
        j = self.assertOk(self.h.ctl("--json", "list-vms")).json
        self.assertEqual([v["Name"] for v in j], ["alpha", "zeta"])
        self.assertEqual(j[0]["State"], "running")
        self.assertRegex(self.h.ctl("list-vms").stdout, r"alpha\s+running\s+yes")

    def test_rescan_finds_devices_created_after_start(self):
        """Rescan: a device made after the daemon started is counted and listed."""
        self.h.sim.create("late0", "mlx5")
        r = self.assertOk(self.h.ctl("--json", "rescan"))
        self.assertEqual(r.json, {"devices": 7})
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "DeviceCount"), 7)
        self.h.sim.create("late1", "pds")
        r = self.h.busctl_call(ROOT, MANAGER, "Rescan")
        self.assertOk(r)
        self.assertEqual(r.json, {"type": "u", "data": [8]})
        self.assertIn("knows 8 devices", self.assertOk(self.h.ctl("rescan")).stdout)

    def test_register_finds_fresh_devices_without_rescan(self):
        """RegisterVM rescans first: a device created a moment ago can be registered."""
        self.h.sim.create("fresh0", "xe")
        self.register("vm1", "fresh0", "nic0")

    def test_show_device_lists_every_property(self):
        """show-device and the Device properties via busctl agree with the sim device."""
        self.register("vm1", "nic0", "nic1")
        j = self.assertOk(self.h.ctl("--json", "show-device", "nic0")).json
        for key in ("Name", "Driver", "Group", "VendorId", "DeviceId", "MigrationFlags",
                    "MigrationFlagNames", "State", "VM"):
            self.assertIn(key, j)
        self.assertEqual(j["Name"], "nic0")
        self.assertEqual(j["MigrationFlags"], 7)
        self.assertEqual(j["MigrationFlagNames"], "STOP_COPY|P2P|PRE_COPY")
        self.assertEqual(j["State"], "RUNNING")
        self.assertEqual(j["VM"], vm_path("vm1"))
        self.assertEqual(j["Path"], device_path("nic0"))
        sim = self.h.sim.show("nic0")
        self.assertEqual(j["Driver"], sim["driver"])

        p = device_path("nic0")
        self.assertEqual(self.h.busctl_get(p, DEVICE_IFACE, "Name"), "nic0")
        self.assertEqual(self.h.busctl_get(p, DEVICE_IFACE, "MigrationFlags"), 7)
        self.assertEqual(self.h.busctl_get(p, DEVICE_IFACE, "VM"), vm_path("vm1"))
        self.assertEqual(self.h.busctl_get(device_path("acc0"), DEVICE_IFACE, "VM"), "/")
        r = self.h.busctl("get-property", BUS_NAME, p, DEVICE_IFACE, "VendorId")
        self.assertTrue(r.stdout.startswith("q "), f"VendorId is not 'q':\n{r}")

        human = self.assertOk(self.h.ctl("show-device", "nic0")).stdout
        self.assertIn("Device nic0", human)
        self.assertIn("STOP_COPY|P2P|PRE_COPY", human)
        self.assertRegex(human, r"VM:\s+vm1")

    def test_get_device_via_busctl(self):
        """GetDevice returns the device's escaped object path."""
        r = self.h.busctl_call(ROOT, MANAGER, "GetDevice", "s", "nic0")
        self.assertOk(r)
        self.assertEqual(r.json["data"], [device_path("nic0")])

    # --- registration ---

    def test_register_and_unregister_with_migctl(self):
        """register with every option, show reflects it, unregister frees the devices."""
        r = self.h.ctl("register", "vm1", "nic0", "gpu0", "--strategy", "qemu",
                       "--p2p-mode", "p2p-blocked", "--phase-deadline-ms", "5000",
                       "--parallelism", "2")
        self.assertOk(r)
        self.assertIn(vm_path("vm1"), r.stdout)
        j = self.assertOk(self.h.ctl("--json", "show", "vm1")).json
        self.assertEqual(j["Name"], "vm1")
        self.assertEqual(j["DeviceNames"], ["nic0", "gpu0"])
        self.assertEqual(j["Devices"], [device_path("nic0"), device_path("gpu0")])
        self.assertEqual((j["Strategy"], j["P2PMode"], j["PhaseDeadlineMs"], j["Parallelism"]),
                         ("qemu", "p2p-blocked", 5000, 2))
        self.assertEqual(j["State"], "running")
        self.assertIs(j["Migratable"], True)
        self.assertEqual(j["Blockers"], [])
        self.assertEqual(j["LastSequence"], {})
        self.assertEqual(len(j["Groups"]), 2)
        self.assertEqual([d["Name"] for d in j["DeviceDetails"]], ["nic0", "gpu0"])
        human = self.assertOk(self.h.ctl("show", "vm1")).stdout
        self.assertIn("Last sequence:   none", human)
        self.assertRegex(human, r"nic0\s+\S+\s+STOP_COPY\|P2P\|PRE_COPY\s+RUNNING")

        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertExit(self.h.ctl("show", "vm1"), EXIT_NOT_FOUND, "NoSuchVM")
        self.assertEqual(self.h.busctl_get(device_path("nic0"), DEVICE_IFACE, "VM"), "/")
        self.assertStates(self.h, ["nic0", "gpu0"], "RUNNING")
        self.assertEqual(self.vm_count(), 0)

    def test_register_defaults(self):
        """Options left out take the defaults: parallel, require-p2p, 10000 ms, 0."""
        self.register("vm1", "nic0", "nic1")
        p = vm_path("vm1")
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "Strategy"), "parallel")
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "P2PMode"), "require-p2p")
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "PhaseDeadlineMs"), 10000)
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "Parallelism"), 0)

    def test_register_and_unregister_with_busctl(self):
        """RegisterVM 'sasa{sv}' with options, GetVM, properties, UnregisterVM via busctl."""
        r = self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm1", 2, "nic0",
                               "vio0", 3, "strategy", "s", "serial", "phase-deadline-ms", "u",
                               5000, "parallelism", "u", 1)
        self.assertOk(r)
        self.assertEqual(r.json["data"], [vm_path("vm1")])
        r = self.h.busctl_call(ROOT, MANAGER, "GetVM", "s", "vm1")
        self.assertEqual(r.json["data"], [vm_path("vm1")])
        p = vm_path("vm1")
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "Name"), "vm1")
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "DeviceNames"), ["nic0", "vio0"])
        # serial is naive's old name: taken, shown under the new name, and warned about
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "Strategy"), "naive")
        self.assertIn("strategy 'serial' is deprecated", self.h.daemon.read_log())
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "PhaseDeadlineMs"), 5000)
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "Parallelism"), 1)
        self.assertEqual(self.h.busctl_get(p, VM_IFACE, "LastSequence"), {})
        r = self.h.busctl("--json=short", "get-property", BUS_NAME, p, VM_IFACE, "Devices")
        self.assertEqual(r.json, {"type": "ao", "data": [device_path("nic0"),
                                                         device_path("vio0")]})
        self.assertOk(self.h.busctl_call(ROOT, MANAGER, "UnregisterVM", "s", "vm1"))
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "GetVM", "s", "vm1"), "vm1")

    def test_vm_name_is_path_encoded(self):
        """A VM named web-1.a lives at .../vm/web_2d1_2ea (sd_bus_path_encode)."""
        r = self.register("web-1.a", "nic0")
        self.assertIn("/org/vfiomig/Coordinator1/vm/web_2d1_2ea", r.stdout)
        r = self.h.busctl_call(ROOT, MANAGER, "GetVM", "s", "web-1.a")
        self.assertEqual(r.json["data"], ["/org/vfiomig/Coordinator1/vm/web_2d1_2ea"])
        self.assertOk(self.h.ctl("show", "web-1.a"))

    def test_unknown_vm_is_no_such_vm(self):
        """GetVM / show / unregister / a VM method on an unknown VM: NoSuchVM, exit 4."""
        for args in (["show", "web1"], ["unregister", "web1"], ["quiesce", "web1"],
                     ["last", "web1"]):
            r = self.h.ctl(*args)
            self.assertExit(r, EXIT_NOT_FOUND, "NoSuchVM")
            self.assertIn("web1", r.stderr)
            self.assertIn("vfio-migctl list-vms", r.stderr)
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "GetVM", "s", "web1"), "web1")
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "UnregisterVM", "s", "web1"),
                               "web1")
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".GetVM", "web1"), "NoSuchVM")
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".UnregisterVM", "web1"),
                              "NoSuchVM")

    def test_unknown_device_is_no_such_device(self):
        """GetDevice / show-device on an unknown device: NoSuchDevice, exit 4."""
        r = self.h.ctl("show-device", "nope0")
        self.assertExit(r, EXIT_NOT_FOUND, "NoSuchDevice")
        self.assertIn("nope0", r.stderr)
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "GetDevice", "s", "nope0"),
                               "nope0")
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".GetDevice", "nope0"),
                              "NoSuchDevice")

    def test_register_unknown_device_is_no_such_device(self):
        """RegisterVM naming an unknown device: NoSuchDevice naming it, nothing registered."""
        r = self.h.ctl("register", "vm1", "nic0", "nope0")
        self.assertExit(r, EXIT_NOT_FOUND, "NoSuchDevice")
        self.assertIn("nope0", r.stderr)
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm1",
                                                  2, "nic0", "nope0", 0), "nope0")
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".RegisterVM", "vm1",
                                                "['nic0', 'nope0']", "{}"), "NoSuchDevice")
        self.assertEqual(self.vm_count(), 0)
        self.assertEqual(self.h.busctl_get(device_path("nic0"), DEVICE_IFACE, "VM"), "/")

    def test_register_device_of_another_vm_is_device_busy(self):
        """A device already in another VM: DeviceBusy naming that VM, exit 6."""
        self.register("vm1", "nic0", "nic1")
        r = self.h.ctl("register", "vm2", "gpu0", "nic1")
        self.assertExit(r, EXIT_REFUSED, "DeviceBusy")
        self.assertIn("vm1", r.stderr)
        self.assertIn("nic1", r.stderr)
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm2",
                                                  1, "nic0", 0), "vm1")
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".RegisterVM", "vm2",
                                                "['nic0']", "{}"), "DeviceBusy")
        self.assertEqual(self.vm_count(), 1)
        self.assertEqual(self.h.busctl_get(device_path("gpu0"), DEVICE_IFACE, "VM"), "/")

    def test_register_existing_name_is_vm_exists(self):
        """A second VM of the same name: VMExists, exit 6; the first VM is unchanged."""
        self.register("vm1", "nic0")
        r = self.h.ctl("register", "vm1", "gpu0")
        self.assertExit(r, EXIT_REFUSED, "VMExists")
        self.assertIn("vm1", r.stderr)
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm1",
                                                  1, "gpu0", 0), "vm1")
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".RegisterVM", "vm1",
                                                "['gpu0']", "{}"), "VMExists")
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "DeviceNames"), ["nic0"])
        self.assertEqual(self.h.busctl_get(device_path("gpu0"), DEVICE_IFACE, "VM"), "/")

    def test_register_duplicate_device_is_invalid_args(self):
        """The same device twice in one VM: InvalidArgs naming it, exit 6."""
        r = self.h.ctl("register", "vm1", "nic0", "nic1", "nic0")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn("nic0", r.stderr)
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm1",
                                                  2, "nic0", "nic0", 0), "nic0")
        self.assertEqual(self.vm_count(), 0)

    def test_register_bad_names_are_invalid_args(self):
        """VM names libvirt would refuse too ('/', control characters) or over 1024 bytes:
        InvalidArgs naming the name and the rule; nothing is registered."""
        for name, why in (("vm/1", "contains '/'"), ("a\tb", "control character"),
                          ("x" * 1025, "longer than 1024 bytes")):
            r = self.h.ctl("register", name, "nic0")
            self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
            self.assertIn(why, r.stderr)
            self.assertIn("cannot be a VM name", r.stderr)
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "",
                                                  1, "nic0", 0), "The VM name is empty")
        self.assertEqual(self.vm_count(), 0)

    def test_every_name_libvirt_accepts_is_a_vm_name(self):
        """Spaces, parentheses, UTF-8 and names over 64 bytes, up to 1024: registered, shown and
        unregistered by name, at their path-encoded object path."""
        for name in ("Win10 Pro (copy)", "vm-\u00e9", "caf\u00e9:1", "x" * 1024):
            r = self.register(name, "nic0")
            self.assertIn(vm_path(name), r.stdout)
            r = self.h.busctl_call(ROOT, MANAGER, "GetVM", "s", name)
            self.assertEqual(r.json["data"], [vm_path(name)])
            r = self.h.ctl("--json", "show", name)
            self.assertOk(r)
            self.assertEqual(r.json["Name"], name)
            self.assertOk(self.h.ctl("unregister", name))
        self.assertEqual(self.vm_count(), 0)

    def test_errors_echo_a_bad_name_bounded_and_as_utf8(self):
        """A 100 KiB name is echoed as its first 64 characters and an ellipsis; UTF-8 stays
        UTF-8; an empty name is called empty."""
        r = self.h.ctl("register", "\u00e9" * 100 + "/" + "y" * 100000, "nic0")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn("'" + "\u00e9" * 64 + "\u2026'", r.stderr)
        self.assertLess(len(r.stderr), 1024, r.stderr[:2000])
        r = self.h.ctl("show", "z" * 100000)
        self.assertExit(r, EXIT_NOT_FOUND, "NoSuchVM")
        self.assertLess(len(r.stderr), 1024, r.stderr[:2000])
        self.assertIn("z" * 64 + "\u2026", r.stderr)
        r = self.h.ctl("show", "")
        self.assertExit(r, EXIT_NOT_FOUND, "NoSuchVM")
        self.assertIn("The VM name is empty", r.stderr)
        r = self.h.ctl("show-device", "d" * 100000)
        self.assertExit(r, EXIT_NOT_FOUND, "NoSuchDevice")
        self.assertLess(len(r.stderr), 1024, r.stderr[:2000])
        r = self.h.ctl("register", "vm9", "\u00e9" * 50000)
        self.assertExit(r, EXIT_NOT_FOUND, "NoSuchDevice")
        self.assertLess(len(r.stderr), 1024, r.stderr[:2000])
        self.assertIn("\u00e9" * 64 + "\u2026", r.stderr)

    def test_register_without_devices_is_invalid_args(self):
        """An empty device list: InvalidArgs."""
        r = self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm1", 0, 0)
        self.assertBusctlFails(r)
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".RegisterVM", "vm1",
                                                "@as []", "{}"), INVALID_ARGS)
        self.assertEqual(self.vm_count(), 0)

    def test_register_unknown_option_is_invalid_args(self):
        """An option key the contract does not know: InvalidArgs naming the key."""
        r = self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm1", 1, "nic0", 1,
                               "colour", "s", "red")
        self.assertBusctlFails(r, "colour")
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".RegisterVM", "vm1", "['nic0']",
                                                "{'colour': <'red'>}"), INVALID_ARGS)
        self.assertEqual(self.vm_count(), 0)

    def test_register_wrong_option_type_is_invalid_args(self):
        """An option of the wrong type: InvalidArgs naming the key."""
        cases = [("phase-deadline-ms", "s", "300"), ("strategy", "u", 1),
                 ("parallelism", "i", 2), ("p2p-mode", "b", "true")]
        for key, sig, value in cases:
            r = self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm1", 1, "nic0", 1,
                                   key, sig, value)
            self.assertBusctlFails(r, key)
        self.assertGdbusError(self.h.gdbus_call(ROOT, MANAGER + ".RegisterVM", "vm1", "['nic0']",
                                                "{'phase-deadline-ms': <'300'>}"), INVALID_ARGS)
        self.assertEqual(self.vm_count(), 0)

    def test_register_bad_option_values_are_invalid_args(self):
        """Values out of the contract's range: InvalidArgs, exit 6, nothing registered."""
        for args in (["--strategy", "random"], ["--strategy", "QEMU"],
                     ["--p2p-mode", "anything-goes"],
                     ["--phase-deadline-ms", "0"], ["--phase-deadline-ms", "3600001"]):
            r = self.h.ctl("register", "vm1", "nic0", *args)
            self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "--phase-deadline-ms", "3600000"))

    def test_wrong_argument_signature_is_invalid_args(self):
        """Arguments of the wrong D-Bus types: InvalidArgs from the daemon, nothing changes."""
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "s", "vm1"))
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sas", "vm1", 1,
                                                  "nic0"))
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "GetVM", "u", 5))
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "Rescan", "s", "now"))
        self.assertDbusSendError(self.h.dbus_send(ROOT, MANAGER + ".RegisterVM", "string:vm1"),
                                 INVALID_ARGS)
        self.assertDbusSendError(self.h.dbus_send(ROOT, MANAGER + ".GetVM", "uint32:5"),
                                 INVALID_ARGS)
        self.assertDbusSendError(self.h.dbus_send(ROOT, MANAGER + ".UnregisterVM"), INVALID_ARGS)
        self.assertDbusSendError(self.h.dbus_send(vm_path("nope"), VM_IFACE + ".Quiesce"),
                                 "org.freedesktop.DBus.Error.UnknownObject")
        self.assertEqual(self.vm_count(), 0)

    def test_unknown_method_is_unknown_method(self):
        """A method the contract does not have: UnknownMethod."""
        self.assertDbusSendError(self.h.dbus_send(ROOT, MANAGER + ".Migrate", "string:vm1"),
                                 "org.freedesktop.DBus.Error.UnknownMethod")

    def test_properties_are_read_only(self):
        """Setting a property is refused; the value stays."""
        self.register("vm1", "nic0")
        r = self.h.busctl("set-property", BUS_NAME, vm_path("vm1"), VM_IFACE, "Strategy", "s",
                          "qemu")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Strategy"), "parallel")
        self.assertNotIn(ACCESS_DENIED, r.stderr)

    # --- the object tree, introspection, signals ---

    def test_tree_lists_vm_and_device_objects(self):
        """busctl tree shows the root, every VM and every device."""
        self.register("vm1", "nic0", "nic1")
        r = self.assertOk(self.h.busctl("tree", "--list", BUS_NAME))
        paths = set(r.stdout.split())
        self.assertIn(ROOT, paths)
        self.assertIn(vm_path("vm1"), paths)
        for n in NAMES:
            self.assertIn(device_path(n), paths)

    def test_introspection_names_arguments(self):
        """Introspection documents every method's and signal's argument names."""
        self.register("vm1", "nic0")
        xml = self.assertOk(self.h.busctl("introspect", "--xml-interface", BUS_NAME, ROOT)).stdout
        iface = ET.fromstring(xml).find(f"interface[@name='{MANAGER}']")
        self.assertIsNotNone(iface, xml)
        methods = {m.get("name"): m for m in iface.findall("method")}
        for name in ("ListVMs", "ListDevices", "GetVM", "GetDevice", "RegisterVM",
                     "UnregisterVM", "Rescan"):
            self.assertIn(name, methods)
        args = [(a.get("name"), a.get("type"), a.get("direction"))
                for a in methods["RegisterVM"].findall("arg")]
        self.assertEqual(args, [("name", "s", "in"), ("devices", "as", "in"),
                                ("options", "a{sv}", "in"), ("vm", "o", "out")])
        signals = {s.get("name"): [a.get("name") for a in s.findall("arg")]
                   for s in iface.findall("signal")}
        self.assertEqual(signals["SequenceProgress"],
                         ["vm", "path", "operation", "phase", "index", "count", "status",
                          "elapsed_us"])
        self.assertEqual(signals["DeviceStateChanged"],
                         ["device", "path", "old_state", "new_state"])
        self.assertEqual(signals["VMNew"], ["name", "vm"])

        xml = self.assertOk(self.h.busctl("introspect", "--xml-interface", BUS_NAME,
                                          vm_path("vm1"))).stdout
        vm = ET.fromstring(xml).find(f"interface[@name='{VM_IFACE}']")
        methods = {m.get("name"): [(a.get("name"), a.get("type")) for a in m.findall("arg")]
                   for m in vm.findall("method")}
        self.assertEqual(methods["Quiesce"], [("report", "a{sv}")])
        self.assertEqual(methods["Save"], [("fd", "h"), ("report", "a{sv}")])
        self.assertEqual(methods["Resume"], [("fd", "h"), ("report", "a{sv}")])
        for name in ("PreCopy", "Start", "Abort"):
            self.assertIn(name, methods)
        props = {p.get("name"): p.get("type") for p in vm.findall("property")}
        self.assertEqual(props["LastSequence"], "a{sv}")
        self.assertEqual(props["Devices"], "ao")

    def test_register_and_unregister_emit_signals(self):
        """VMNew and VMRemoved carry name and path; VMCount emits PropertiesChanged."""
        mon = self.h.monitor()
        self.register("vm1", "nic0")
        self.assertOk(self.h.ctl("unregister", "vm1"))
        time.sleep(0.3)  # signals may trail the replies by a moment
        lines = mon.stop_json()
        seen = [(s["signal"], s["args"]) for s in lines if s["signal"] in ("VMNew", "VMRemoved")]
        self.assertEqual(seen, [("VMNew", ["vm1", vm_path("vm1")]),
                                ("VMRemoved", ["vm1", vm_path("vm1")])])
        counts = [s["args"][1].get("VMCount") for s in lines
                  if s["signal"] == "PropertiesChanged" and s["path"] == ROOT]
        self.assertEqual([c for c in counts if c is not None], [1, 0])


if __name__ == "__main__":
    main()
