#!/usr/bin/env python3
"""The kernel backend over a fake host: vfio-migd --backend=kernel reads a sysfs tree and a
/dev tree made by the test, whose /dev/vfio nodes are regular files. Discovery, IOVA ranges
and the partial-group rule come from sysfs alone and are checked here; anything that opens
a device fails cleanly. The real kernel: tests/kernel/test-kernel-backend.sh."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (DEVICE_IFACE, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_REFUSED,  # noqa: E402
                      INVALID_ARGS, MANAGER, ROOT, VM_IFACE, MigdTestCase, Result, as_user,
                      binary, device_path, main, seconds, vm_path)

NIC = "0000:00:03.0"    # vfio-pci, IOMMU group 5, alone
GPU = "0000:00:04.0"    # vfio-pci, group 7 ...
AUDIO = "0000:00:04.1"  # ... shared with this one, on a host driver
DISK = "0000:00:05.0"   # a host driver, group 8
SPARE = "0000:00:06.0"  # bound to vfio-pci later, group 9

REGIONS = ("0x00000000fed90000 0x00000000fed90fff direct\n"
           "0x00000000fee00000 0x00000000feefffff msi\n")
# [0, 2^64-1] minus both regions (end inclusive)
IOVA = [[0x0, 0xfed8ffff], [0xfed91000, 0xfedfffff], [0xfef00000, 0xffffffffffffffff]]


class FakeHost:
    """sys/ and dev/ under root, laid out as the kernel lays them out."""

    def __init__(self, root):
        self.root = root
        self.sys = os.path.join(root, "sys")
        self.dev = os.path.join(root, "dev")
        self.file("dev/vfio/vfio", "")

    def file(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def link(self, rel, target):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)

    def group(self, gid, regions=REGIONS):
        self.file(f"sys/kernel/iommu_groups/{gid}/type", "DMA\n")
        self.file(f"sys/kernel/iommu_groups/{gid}/reserved_regions", regions)

    def pci(self, bdf, driver, gid, vendor="0x1af4", device="0x1041"):
        d = f"sys/devices/pci0000:00/{bdf}"
        self.file(f"{d}/vendor", vendor + "\n")
        self.file(f"{d}/device", device + "\n")
        self.file(f"{d}/class", "0x020000\n")
        self.link(f"sys/bus/pci/devices/{bdf}", f"../../../devices/pci0000:00/{bdf}")
        self.bind(bdf, driver)
        self.link(f"{d}/iommu_group", f"../../../kernel/iommu_groups/{gid}")
        self.link(f"sys/kernel/iommu_groups/{gid}/devices/{bdf}",
                  f"../../../../devices/pci0000:00/{bdf}")

    def bind(self, bdf, driver):
        os.makedirs(os.path.join(self.sys, "bus/pci/drivers", driver), exist_ok=True)
        self.link(f"sys/devices/pci0000:00/{bdf}/driver", f"../../../bus/pci/drivers/{driver}")

    def vfio_node(self, gid):
        """A regular file where the character device would be."""
        self.file(f"dev/vfio/{gid}", "")


class KernelBackendTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.fake = FakeHost(os.path.join(self.workdir, "fake-host"))
        self.fake.group(5)
        self.fake.group(7)
        self.fake.group(8, "")
        self.fake.group(9, "")
        self.fake.pci(NIC, "vfio-pci", 5, vendor="0x15b3", device="0x101e")
        self.fake.pci(GPU, "vfio-pci", 7)
        self.fake.pci(AUDIO, "snd_hda_intel", 7)
        self.fake.pci(DISK, "nvme", 8)
        self.fake.pci(SPARE, "nvme", 9)
        for gid in (5, 7):
            self.fake.vfio_node(gid)
        self.h = self.new_host(daemon_args=["--backend=kernel", f"--sysfs-root={self.fake.sys}",
                                            f"--dev-root={self.fake.dev}"])

    def devices(self):
        return {d["name"]: d for d in self.assertOk(self.h.ctl("--json", "list-devices")).json}

    def attach_fd(self, device, fd, user=None):
        """vfio-migctl attach-fd DEVICE fd:N with fd inherited."""
        argv = [*(as_user(user) if user else []), binary("MIGCTL"), "attach-fd", device,
                f"fd:{fd}"]
        return run_with_fd(argv, self.h.bus.env, fd)

    # --- discovery ---

    def test_backend_is_kernel(self):
        """Backend reads "kernel"; DeviceCount counts the VFIO-bound devices only."""
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "Backend"), "kernel")
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "DeviceCount"), 2)

    def test_list_devices_shows_vfio_devices_with_driver_and_group(self):
        """ListDevices: the VFIO-bound devices, their driver; their Group and ids as properties;
        nothing is open, so no state and no flags."""
        devs = self.devices()
        self.assertEqual(sorted(devs), [NIC, GPU])
        self.assertEqual(devs[NIC]["driver"], "vfio-pci")
        self.assertEqual(devs[NIC]["flags"], 0)
        self.assertIsNone(devs[NIC]["vm"])
        self.assertEqual(self.h.busctl_get(device_path(NIC), DEVICE_IFACE, "Group"), "5")
        self.assertEqual(self.h.busctl_get(device_path(GPU), DEVICE_IFACE, "Group"), "7")
        self.assertEqual(self.h.busctl_get(device_path(NIC), DEVICE_IFACE, "VendorId"), 0x15b3)
        self.assertEqual(self.h.busctl_get(device_path(NIC), DEVICE_IFACE, "DeviceId"), 0x101e)
        self.assertEqual(self.h.busctl_get(device_path(NIC), DEVICE_IFACE, "Driver"), "vfio-pci")

    def test_reads_of_a_free_device_open_nothing(self):
        """A free device's State is "unknown" to anyone, in ListDevices too: reading it would
        open its VFIO group, which the VMM starting now needs (issue 12). Nothing is opened,
        so the broken /dev/vfio/5 goes unnoticed."""
        r = self.h.busctl("get-property", "org.vfiomig.Coordinator1", device_path(NIC),
                          DEVICE_IFACE, "State", user="nobody")
        self.assertEqual(r.returncode, 0, r)
        self.assertEqual(r.stdout.strip(), 's "unknown"')
        self.assertEqual(self.devices()[NIC]["state"], "unknown")
        self.assertNotIn("not a character device", self.h.daemon.read_log())

    def test_check_incoming_opens_nothing(self):
        """CheckIncomingMigration as nobody for a domain holding NIC: answered from sysfs, the
        VFIO group untouched (a VMM about to start the domain needs it). The flags this host
        has not read are taken as the source declares them, with a warning saying so."""
        xml = os.path.join(self.workdir, "incoming.xml")
        with open(xml, "w") as f:
            f.write("<domain type='kvm'><name>web</name><memory unit='KiB'>1048576</memory>"
                    "<metadata><v:hostdevs xmlns:v='https://vfio-migd.org/xmlns/hostdevs/1'>"
                    f"<v:hostdev name='{NIC}' driver='vfio-pci' id='15b3:101e' flags='0x3'/>"
                    "</v:hostdevs></metadata>"
                    "<devices><hostdev mode='subsystem' type='pci'><source><address "
                    "domain='0' bus='0' slot='3' function='0'/></source></hostdev></devices>"
                    "</domain>")
        os.chmod(xml, 0o644)
        r = self.h.ctl("--json", "check-incoming", xml, user="nobody")
        self.assertOk(r)
        self.assertTrue(r.json["allowed"], str(r))
        self.assertEqual(r.json["details"]["devices"], [NIC], str(r))
        self.assertIn("migration flags are not known yet", r.json["details"]["warnings"][0])
        self.assertNotIn("not a character device", self.h.daemon.read_log())

    def test_a_sequence_names_why_the_state_cannot_be_read(self):
        """A device whose /dev/vfio/N is no character device: the sequence names the file."""
        self.assertOk(self.h.ctl("register", "vm1", NIC))
        # Abort needs no migration support: it gets as far as reading the device's state
        r = self.h.ctl("abort", "vm1")
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("vfio/5 is not a character device", r.stderr)

    def test_rescan_follows_binding(self):
        """Rescan: a device bound to vfio-pci since appears, one unbound disappears."""
        self.fake.bind(SPARE, "vfio-pci")
        self.fake.bind(GPU, "nvme")
        r = self.assertOk(self.h.ctl("--json", "rescan"))
        self.assertEqual(r.json["devices"], 2)
        self.assertEqual(sorted(self.devices()), [NIC, SPARE])

    # --- VMs ---

    def test_register_works_without_opening(self):
        """RegisterVM needs nothing opened: the VM is there with its device and group."""
        r = self.h.ctl("register", "vm1", NIC)
        self.assertOk(r)
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "DeviceNames"), [NIC])
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Groups"), ["5"])
        self.assertEqual(self.devices()[NIC]["vm"], "vm1")
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertIsNone(self.devices()[NIC]["vm"])

    def test_iova_ranges_are_the_aperture_minus_reserved_regions(self):
        """IovaRanges: [0, 2^64-1] minus the group's reserved regions. No container is open
        to disagree with sysfs; the one warning says the device's flags are unknown."""
        self.assertOk(self.h.ctl("register", "vm1", NIC))
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "IovaRanges"), IOVA)
        warnings = self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Warnings")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn(f"Device {NIC} cannot be opened, so its migration flags are unknown",
                      warnings[0])
        self.assertIn("vfio/5 is not a character device", warnings[0])
        shown = self.assertOk(self.h.ctl("--json", "show", "vm1")).json
        self.assertEqual(shown["IovaRanges"], [[0x0, 0xfed8ffff], [0xfed91000, 0xfedfffff],
                                               [0xfef00000, str(2**64 - 1)]])
        self.assertIn("IOVA ranges:     0x0-0xfed8ffff, 0xfed91000-0xfedfffff, "
                      "0xfef00000-0xffffffffffffffff", self.h.ctl("show", "vm1").stdout)

    def test_iova_ranges_of_two_groups_subtract_both(self):
        """A VM over groups 5 and 7: the union of their reserved regions is cut out."""
        self.fake.file("sys/kernel/iommu_groups/7/reserved_regions",
                       "0x0000000000000000 0x0000000000000fff reserved\n")
        self.assertOk(self.h.ctl("rescan"))
        self.assertOk(self.h.ctl("register", "vm1", NIC, GPU, "--p2p-mode", "p2p-blocked"))
        want = [[0x1000, 0xfed8ffff], *IOVA[1:]]
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "IovaRanges"), want)

    def test_group_shared_with_a_host_driver_blocks_migration(self):
        """GPU shares group 7 with AUDIO on a host driver: blocker partial-group naming AUDIO."""
        self.assertOk(self.h.ctl("register", "vm1", GPU))
        blockers = self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Blockers")
        partial = [b for b in blockers if b.startswith("partial-group")]
        self.assertEqual(len(partial), 1, blockers)
        self.assertIn(AUDIO, partial[0])
        r = self.h.ctl("--json", "check", "vm1")
        self.assertExit(r, EXIT_REFUSED)
        self.assertIn("partial-group", [b["id"] for b in r.json["blockers"]])

    def test_whole_group_has_no_partial_group_blocker(self):
        """NIC is alone in group 5: no partial-group blocker."""
        self.assertOk(self.h.ctl("register", "vm1", NIC))
        blockers = self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Blockers")
        self.assertFalse([b for b in blockers if b.startswith("partial-group")], blockers)

    # --- AttachDeviceFd ---

    def test_attach_pipe_is_invalid_args_naming_the_device(self):
        """A pipe is no VFIO device fd: InvalidArgs naming the device (exit 6)."""
        rd, wr = os.pipe()
        try:
            r = self.attach_fd(NIC, rd)
        finally:
            os.close(rd)
            os.close(wr)
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn(NIC, r.stderr)
        self.assertIn("not a VFIO device fd", r.stderr)

    def test_attach_is_validated_before_the_caller(self):
        """nobody handing over a pipe gets InvalidArgs, as root would: validation comes first."""
        rd, wr = os.pipe()
        try:
            r = self.attach_fd(NIC, rd, user="nobody")
        finally:
            os.close(rd)
            os.close(wr)
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)

    def test_attach_to_unknown_device_is_no_such_device(self):
        """An unknown device, or one on a host driver: NoSuchDevice (exit 4)."""
        rd, wr = os.pipe()
        try:
            for name in ("0000:00:1f.0", DISK):
                r = self.attach_fd(name, rd)
                self.assertExit(r, EXIT_NOT_FOUND, "NoSuchDevice")
        finally:
            os.close(rd)
            os.close(wr)

    def test_attach_fd_from_a_path(self):
        """attach-fd DEVICE PATH opens PATH read-write: /dev/null is refused like a pipe."""
        r = self.h.ctl("attach-fd", NIC, "/dev/null")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        r = self.h.ctl("attach-fd", NIC, os.path.join(self.workdir, "missing"))
        self.assertExit(r, EXIT_FAILURE)
        self.assertIn("cannot open", r.stderr)


class SimBackendTest(MigdTestCase):

    def test_sim_iova_ranges_are_the_whole_space(self):
        """The sim backend has no IOMMU: IovaRanges is [0, 2^64-1], Warnings is empty."""
        h = self.new_host(devices=[("nic0", "mlx5")])
        self.assertOk(h.ctl("register", "vm1", "nic0"))
        self.assertEqual(h.busctl_get(vm_path("vm1"), VM_IFACE, "IovaRanges"),
                         [[0, 0xffffffffffffffff]])
        self.assertEqual(h.busctl_get(vm_path("vm1"), VM_IFACE, "Warnings"), [])

    def test_sim_backend_takes_no_fds(self):
        """The sim backend: AttachDeviceFd is InvalidArgs, saying only the kernel backend
        takes device fds."""
        h = self.new_host(devices=[("nic0", "mlx5")])
        r = h.ctl("attach-fd", "nic0", "/dev/null")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn("Only the kernel backend takes device fds", r.stderr)


def run_with_fd(argv, env, fd):
    """migdtest.run() with fd inherited by the child under its own number."""
    start = time.monotonic()
    p = subprocess.run(argv, env=env, pass_fds=(fd,), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=seconds(60))
    return Result(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - start)


if __name__ == "__main__":
    main()
