#!/usr/bin/env python3
"""CheckIncomingMigration's "iova" problem: the guest's RAM (QEMU's x86 layout for the machine
type) must lie inside the valid IOVA space of its hostdevs' IOMMU context, the aperture minus
the groups' reserved regions (docs/dbus-api.md). The sim backend has no reserved regions, so
this runs the kernel backend over a fake sysfs tree (tests/dbus/test_kernel_backend.py's
FakeHost) and calls the method on the bus.

The fake devices cannot be opened, so their migration flags are unknown and the policy always
adds "policy:no-migration": allowed is false in every case here, and each test pins the whole
problem list so that an "iova" problem that should not be there (or is missing) fails."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dbus"))
sys.path.insert(0, HERE)
from migdtest import MANAGER, ROOT, MigdTestCase, main, unvariant  # noqa: E402
from test_kernel_backend import FakeHost  # noqa: E402
from test_tracker import domain_xml, pci_hostdev  # noqa: E402

NIC = "0000:00:03.0"  # vfio-pci, group 5
GPU = "0000:00:04.0"  # vfio-pci, group 7
GIB = 2**30
TOP = 2**64 - 1
MSI = "0x00000000fee00000 0x00000000feefffff msi\n"  # on every x86 IOMMU group
DIRECT = "0x000000007f000000 0x000000007fffffff direct\n"  # inside a q35 guest's low 2 GiB
HIGH = "0x0000000140000000 0x000000014000ffff reserved\n"  # 5 GiB, inside high RAM
NO_MIGRATION = ("policy:no-migration", NIC)


class IncomingIovaTest(MigdTestCase):

    def start(self, regions, gpu_regions=None):
        """A kernel-backend daemon over NIC in group 5 (and GPU in group 7) with these
        reserved_regions files."""
        self.fake = FakeHost(os.path.join(self.workdir, "fake-host"))
        self.fake.group(5, regions)
        self.fake.pci(NIC, "vfio-pci", 5)
        self.fake.vfio_node(5)
        if gpu_regions is not None:
            self.fake.group(7, gpu_regions)
            self.fake.pci(GPU, "vfio-pci", 7)
            self.fake.vfio_node(7)
        self.h = self.new_host(daemon_args=["--backend=kernel", f"--sysfs-root={self.fake.sys}",
                                            f"--dev-root={self.fake.dev}"])

    def check(self, xml):
        """CheckIncomingMigration on the bus: (allowed, [(id, hostdev, sentence)], details)."""
        r = self.h.busctl_call(ROOT, MANAGER, "CheckIncomingMigration", "s", xml)
        self.assertEqual(r.returncode, 0, str(r))
        self.assertEqual(r.json["type"], "ba(sss)a{sv}")
        allowed, problems, details = unvariant(r.json["data"])
        return allowed, [tuple(p) for p in problems], details

    def ids(self, problems):
        return sorted((i, dev) for i, dev, _ in problems)

    def iova_sentences(self, problems):
        return [s for i, _, s in problems if i == "iova"]

    def test_reserved_region_in_low_ram_is_an_iova_problem(self):
        """A 4 GiB q35 guest has RAM at 0..2 GiB and 4..6 GiB: a direct region at
        0x7f000000-0x7fffffff lies in it, so "iova" names exactly that range."""
        self.start(DIRECT + MSI)
        allowed, problems, details = self.check(domain_xml("web", pci_hostdev(NIC),
                                                           memory_mib=4096))
        self.assertFalse(allowed)
        self.assertEqual(self.ids(problems), [("iova", ""), NO_MIGRATION])
        (sentence,) = self.iova_sentences(problems)
        self.assertIn("Guest RAM 0x7f000000-0x7fffffff of domain web lies outside", sentence)
        self.assertIn("Give the guest less RAM", sentence)
        self.assertEqual(details["guest-ram"], [[0, 2 * GIB - 1], [4 * GIB, 6 * GIB - 1]])
        self.assertEqual(details["iova-ranges"], [[0, 0x7effffff], [0x80000000, 0xfedfffff],
                                                  [0xfef00000, TOP]])
        self.assertEqual(details["devices"], [NIC])

    def test_guest_ram_below_the_region_has_no_iova_problem(self):
        """The same host, a 1 GiB guest (RAM 0..1 GiB): the region is not in it."""
        self.start(DIRECT + MSI)
        allowed, problems, details = self.check(domain_xml("web", pci_hostdev(NIC),
                                                           memory_mib=1024))
        self.assertFalse(allowed)
        self.assertEqual(self.ids(problems), [NO_MIGRATION])
        self.assertEqual(details["guest-ram"], [[0, GIB - 1]])
        self.assertEqual(details["iova-ranges"], [[0, 0x7effffff], [0x80000000, 0xfedfffff],
                                                  [0xfef00000, TOP]])

    def test_msi_region_lies_in_the_pci_hole(self):
        """Only the msi window 0xfee00000-0xfeefffff: no guest layout puts RAM there, whether
        q35 with 4 GiB or 2.5 GiB (low RAM up to 2.75 GiB) or pc with 16 GiB (up to 3 GiB)."""
        self.start(MSI)
        for mib, machine, ram in ((4096, "q35", [[0, 2 * GIB - 1], [4 * GIB, 6 * GIB - 1]]),
                                  (2560, "q35", [[0, 2560 * 2**20 - 1]]),
                                  (16384, "pc", [[0, 3 * GIB - 1], [4 * GIB, 17 * GIB - 1]])):
            with self.subTest(memory_mib=mib, machine=machine):
                xml = domain_xml("web", pci_hostdev(NIC), memory_mib=mib)
                xml = xml.replace("machine='q35'", f"machine='{machine}'")
                allowed, problems, details = self.check(xml)
                self.assertEqual(self.ids(problems), [NO_MIGRATION])
                self.assertEqual(details["guest-ram"], ram)
                self.assertEqual(details["iova-ranges"], [[0, 0xfedfffff], [0xfef00000, TOP]])

    def test_regions_of_every_group_are_cut_and_each_range_is_named(self):
        """NIC's group reserves low RAM, GPU's group high RAM: the context subtracts both and
        there is one "iova" problem per uncovered range."""
        self.start(DIRECT + MSI, gpu_regions=HIGH + MSI)
        allowed, problems, details = self.check(
            domain_xml("web", pci_hostdev(NIC), pci_hostdev(GPU), memory_mib=4096))
        self.assertFalse(allowed)
        self.assertEqual([i for i, _ in self.ids(problems) if i == "iova"], ["iova", "iova"])
        sentences = self.iova_sentences(problems)
        self.assertIn("Guest RAM 0x7f000000-0x7fffffff of domain web", sentences[0])
        self.assertIn("Guest RAM 0x140000000-0x14000ffff of domain web", sentences[1])
        self.assertEqual(details["devices"], [NIC, GPU])
        self.assertEqual(details["iova-ranges"],
                         [[0, 0x7effffff], [0x80000000, 0xfedfffff], [0xfef00000, 0x13fffffff],
                          [0x140010000, TOP]])


if __name__ == "__main__":
    main()
