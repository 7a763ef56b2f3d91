#!/usr/bin/env python3
"""The libvirt qemu hook (units/libvirt/vfio-migd -> vfio-migctl libvirt-hook), run exactly as
libvirtd runs /etc/libvirt/hooks/qemu.d/* (argv DOMAIN OPERATION SUBOP EXTRA, the domain XML
on stdin, stdout the XML to use for "migrate begin", a non-zero exit vetoing with stderr as
the error), against vfio-migd on a private bus with simulated devices named like PCI
addresses (docs/libvirt.md)."""

import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dbus"))
from migdtest import MigdTestCase, as_user, binary, main, run, seconds  # noqa: E402

NS = "https://vfio-migd.org/xmlns/hostdevs/1"
NIC, ACC, MDEV = "0000:03:00.1", "0000:81:00.0", "c2177883-f1bb-47f0-914d-32a22e3a8804"
GHOST = "0000:09:00.0"


def pci_hostdev(addr, alias="hostdev0"):
    dom, bus, rest = addr.split(":")
    slot, fn = rest.split(".")
    return (f"    <hostdev mode='subsystem' type='pci' managed='yes'>\n"
            f"      <driver name='vfio'/>\n"
            f"      <source>\n"
            f"        <address domain='0x{dom.upper()}' bus='0x{bus.upper()}' "
            f"slot='0x{slot}' function='0x{fn}'/>\n"
            f"      </source>\n"
            f"      <alias name='{alias}'/>\n"
            f"      <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>\n"
            f"    </hostdev>\n")


def metadata(*decl):
    """decl: (name, driver, 'vvvv:dddd', flags), stored as libvirt stores it."""
    rows = "".join(f"      <vfiomig:hostdev name=\"{n}\" driver=\"{d}\" id=\"{i}\" "
                   f"flags=\"0x{f:x}\"/>\n" for n, d, i, f in decl)
    return (f"  <metadata>\n    <vfiomig:hostdevs xmlns:vfiomig=\"{NS}\">\n{rows}"
            f"    </vfiomig:hostdevs>\n  </metadata>\n")


def domain_xml(name, *hostdevs, meta="", memory_gib=4):
    """A domain XML shaped like `virsh dumpxml`, with a non-ASCII description and a CRLF so
    that "unchanged" means byte for byte."""
    return (f"<domain type='kvm' id='4'>\n"
            f"  <name>{name}</name>\n"
            f"  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>\n"
            f"  <description>Übergrößenträger — test\r\n</description>\n"
            f"{meta}"
            f"  <memory unit='KiB'>{memory_gib * 1024 * 1024}</memory>\n"
            f"  <os>\n    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n  </os>\n"
            f"  <devices>\n"
            f"    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
            f"{''.join(hostdevs)}"
            f"    <interface type='network'><source network='default'/></interface>\n"
            f"  </devices>\n"
            f"</domain>\n").encode()


MLX5 = (NIC, "mlx5_vfio_pci", "15b3:101e", 7)
ACC_DECL = (ACC, "hisi_acc_vfio_pci", "19e5:a251", 5)


class HookCase(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.hook = binary("HOOK")
        self.h = self.new_host(daemon_args=["--libvirt-uri=none"],
                               devices=[(NIC, "mlx5"), (ACC, "hisi"), ("0000:04:00.0", "mlx5")])
        self.timeout = "3"

    def run_hook(self, domain, op, subop, xml=b"", extra="-", policy=None, timeout=None,
                 bus=True, user=None):
        """The hook as libvirtd runs it. policy: the hook's (and daemon's) policy.json."""
        if policy is not None:
            self.h.write_policy(policy)
        env = dict(self.h.bus.env if bus else os.environ,
                   VFIO_MIGD_POLICY=os.path.join(self.h.workdir, "policy.json"),
                   VFIO_MIGD_POLICY_DIR=os.path.join(self.h.workdir, "policy.d"),
                   VFIO_MIGD_HOOK_TIMEOUT=timeout or self.timeout)
        if not bus:
            env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=" + os.path.join(self.workdir, "nobus")
        prefix = as_user(user) if user else []
        return run([*prefix, self.hook, domain, op, subop, extra], env=env, input=xml,
                   timeout=seconds(60))

    def assertHook(self, r, code, *texts):
        self.assertEqual(r.returncode, code, f"wrong exit code:\n{r}")
        for t in texts:
            self.assertIn(t, r.stderr, f"'{t}' not in the hook's stderr:\n{r}")

    def vms(self):
        r = self.h.ctl("--json", "list-vms")
        self.assertOk(r)
        return {v["Name"]: v for v in r.json}

    def devices_of(self, name):
        return sorted(self.vms()[name]["DeviceNames"])


class RegisterTest(HookCase):

    def test_prepare_registers_and_start_is_idempotent(self):
        xml = domain_xml("web-1", pci_hostdev(NIC), pci_hostdev("0000:04:00.0", "hostdev1"))
        r = self.run_hook("web-1", "prepare", "begin", xml)
        self.assertHook(r, 0, "web-1", "registered with vfio-migd")
        self.assertEqual(r.stdout, "")
        self.assertEqual(self.devices_of("web-1"), [NIC, "0000:04:00.0"])
        r = self.run_hook("web-1", "start", "begin", xml)
        self.assertHook(r, 0, "registered with vfio-migd")
        self.assertEqual(list(self.vms()), ["web-1"])

    def test_domain_without_vfio_hostdevs_is_silent(self):
        xml = domain_xml("plain", "    <hostdev mode='subsystem' type='usb'><source><vendor "
                                  "id='0x1234'/><product id='0xbeef'/></source></hostdev>\n")
        for op in ("prepare", "start"):
            r = self.run_hook("plain", op, "begin", xml)
            self.assertHook(r, 0)
            self.assertEqual((r.stdout, r.stderr), ("", ""))
        r = self.run_hook("plain", "migrate", "begin", xml)
        self.assertHook(r, 0)
        self.assertEqual(r.stdout.encode(), xml)
        self.assertEqual(r.stderr, "")
        self.assertEqual(self.vms(), {})

    def test_unknown_device_is_no_veto_at_prepare_but_vetoes_start(self):
        xml = domain_xml("web-1", pci_hostdev(NIC), pci_hostdev(GHOST, "hostdev1"))
        r = self.run_hook("web-1", "prepare", "begin", xml)
        self.assertHook(r, 0, "not registered yet", GHOST)
        r = self.run_hook("web-1", "start", "begin", xml)
        self.assertHook(r, 1, "domain 'web-1'", "refusing the start", GHOST,
                        "bind the device to a VFIO driver")
        self.assertEqual(self.vms(), {})

    def test_device_held_by_another_vm_vetoes(self):
        self.assertOk(self.h.ctl("register", "db-1", NIC))
        r = self.run_hook("web-1", "start", "begin", domain_xml("web-1", pci_hostdev(NIC)))
        self.assertHook(r, 1, "domain 'web-1'", NIC, "db-1", "one VM only")
        self.assertEqual(list(self.vms()), ["db-1"])

    def test_vm_registered_with_other_devices_vetoes(self):
        self.assertOk(self.h.ctl("register", "web-1", "0000:04:00.0"))
        r = self.run_hook("web-1", "start", "begin", domain_xml("web-1", pci_hostdev(NIC)))
        self.assertHook(r, 1, "domain 'web-1'", "other devices", "vfio-migctl unregister")
        self.assertEqual(self.devices_of("web-1"), ["0000:04:00.0"])

    def test_bad_hostdev_address_vetoes(self):
        bad = pci_hostdev(NIC).replace("bus='0x03'", "bus='0x300'")
        r = self.run_hook("web-1", "prepare", "begin", domain_xml("web-1", bad))
        self.assertHook(r, 1, "domain 'web-1'", "hostdev hostdev0", "bus='0x300'", "virsh edit")
        self.assertEqual(self.vms(), {})

    def test_every_broken_hostdev_is_named_even_without_an_alias(self):
        """Two broken hostdevs, one without <alias>: both named, that one by its position."""
        bad1 = pci_hostdev(GHOST, "x").replace("bus='0x09'", "bus='0x900'").replace(
            "      <alias name='x'/>\n", "")
        bad2 = pci_hostdev(ACC, "hostdev9").replace("slot='0x00'", "slot='0x99'", 1)
        xml = domain_xml("web-1", pci_hostdev(NIC), bad1, bad2)
        r = self.run_hook("web-1", "start", "begin", xml)
        self.assertHook(r, 1, "hostdev 2 of 3", "bus='0x900'", "hostdev hostdev9", "virsh edit")
        self.assertNotIn("no address", r.stderr)
        self.assertEqual(self.vms(), {})

    def test_every_name_libvirt_accepts_registers_migrates_and_releases(self):
        """A VM's name is its domain's: spaces, parentheses, UTF-8, over 64 bytes."""
        for name in ("Win10 Pro (copy)", "vm-\u00e9", "v" * 100):
            xml = domain_xml(name, pci_hostdev(NIC), meta=metadata(MLX5))
            for op in ("prepare", "start"):
                r = self.run_hook(name, op, "begin", xml)
                self.assertHook(r, 0, f"domain '{name}'", "registered with vfio-migd")
            self.assertEqual(list(self.vms()), [name])
            r = self.run_hook(name, "release", "end")
            self.assertHook(r, 0, "unregistered")
            r = self.run_hook(name, "migrate", "begin", xml)
            self.assertHook(r, 0, "incoming migration allowed")
            self.assertEqual(r.stdout.encode(), xml)
        self.assertEqual(self.vms(), {})

    def test_a_name_vfio_migd_cannot_take_starts_unless_the_policy_refuses(self):
        """Over 1024 bytes: on-start-unmigratable allow (the default) lets libvirt go on with
        a warning (the name echoed bounded); refuse vetoes."""
        name = "n" * 1100
        xml = domain_xml(name, pci_hostdev(NIC), meta=metadata(MLX5))
        for op in ("prepare", "start", "migrate"):
            r = self.run_hook(name, op, "begin", xml)
            self.assertHook(r, 0, "does not coordinate this VM", "on-start-unmigratable is allow",
                            "longer than 1024 bytes", "virsh domrename", "n" * 64 + "\u2026")
            self.assertLess(len(r.stderr), 1024, r.stderr)
        self.assertEqual(r.stdout.encode(), xml)
        self.assertEqual(self.vms(), {})
        r = self.run_hook(name, "start", "begin", xml,
                          policy={"defaults": {"on-start-unmigratable": "refuse"}})
        self.assertHook(r, 1, "refusing the start", "longer than 1024 bytes",
                        "on-start-unmigratable is refuse")
        self.assertHook(self.run_hook(name, "release", "end"), 0)

    def test_unmigratable_start_allowed_by_default_with_the_blockers_logged(self):
        xml = domain_xml("web-1", pci_hostdev(NIC), pci_hostdev(ACC, "hostdev1"))
        r = self.run_hook("web-1", "start", "begin", xml)
        self.assertHook(r, 0, "cannot migrate", "on-start-unmigratable is allow", "no-p2p", ACC)
        self.assertEqual(self.devices_of("web-1"), [NIC, ACC])

    def test_unmigratable_start_refused_by_policy(self):
        policy = {"vms": [{"match": "web-*", "on-start-unmigratable": "refuse"}]}
        self.h.write_policy(policy)
        self.assertOk(self.h.ctl("policy", "reload"))
        xml = domain_xml("web-1", pci_hostdev(NIC), pci_hostdev(ACC, "hostdev1"))
        r = self.run_hook("web-1", "start", "begin", xml)
        self.assertHook(r, 1, "domain 'web-1'", "refusing the start",
                        "on-start-unmigratable is refuse", "[no-p2p]", ACC)
        self.assertEqual(self.vms(), {}, "the refused VM is unregistered again")
        # a migratable VM of the same pattern starts
        r = self.run_hook("web-2", "start", "begin", domain_xml("web-2", pci_hostdev(NIC)))
        self.assertHook(r, 0, "registered with vfio-migd")

    def test_the_daemons_policy_decides_when_it_answers(self):
        """The daemon runs with a policy the hook's own files do not have (its --policy):
        CheckMigration's effective on-start-unmigratable decides."""
        self.h.write_policy({"vms": [{"match": "web-*", "on-start-unmigratable": "refuse"}]})
        self.assertOk(self.h.ctl("policy", "reload"))
        xml = domain_xml("web-1", pci_hostdev(NIC), pci_hostdev(ACC, "hostdev1"))
        r = run([self.hook, "web-1", "start", "begin", "-"], input=xml,
                env=dict(self.h.bus.env, VFIO_MIGD_POLICY="/nonexistent",
                         VFIO_MIGD_POLICY_DIR="/nonexistent", VFIO_MIGD_HOOK_TIMEOUT="3"))
        self.assertHook(r, 1, "refusing the start", "on-start-unmigratable is refuse")
        self.assertEqual(self.vms(), {})

    def test_unprivileged_caller_vetoes(self):
        """libvirtd runs hooks as root; a session libvirtd's user may not register."""
        r = self.run_hook("web-1", "start", "begin", domain_xml("web-1", pci_hostdev(NIC)),
                          user="nobody")
        self.assertHook(r, 1, "domain 'web-1'", "refusing the start",
                        "needs root or vfio-migd's operator group")
        self.assertEqual(self.vms(), {})

    def test_bad_timeout_in_the_environment_falls_back_to_the_default(self):
        r = self.run_hook("web-1", "prepare", "begin", domain_xml("web-1", pci_hostdev(NIC)),
                          timeout="soon")
        self.assertHook(r, 0, "VFIO_MIGD_HOOK_TIMEOUT='soon' is not a number of seconds",
                        "registered with vfio-migd")

    def test_malformed_xml_vetoes_with_the_position(self):
        xml = b"<domain>\n  <name>web-1</name>\n  <devices>\n    <hostdev>\n  </devices>\n"
        for op in ("prepare", "start", "migrate"):
            r = self.run_hook("web-1", op, "begin", xml)
            self.assertHook(r, 1, "domain 'web-1'", "invalid domain XML", "line 5")
            self.assertEqual(r.stdout, "")
        self.assertEqual(self.vms(), {})

    def test_oversize_stdin_vetoes(self):
        xml = b"<domain><name>x</name><description>" + b"x" * (16 << 20) + b"</description>"
        r = self.run_hook("x", "start", "begin", xml)
        self.assertHook(r, 1, "larger than 16777216 bytes")


class MigrateTest(HookCase):

    def test_allowed_prints_the_xml_byte_for_byte(self):
        xml = domain_xml("web-1", pci_hostdev(NIC), meta=metadata(MLX5))
        r = run([self.hook, "web-1", "migrate", "begin", "-"], input=xml,
                env=dict(self.h.bus.env, VFIO_MIGD_POLICY="/nonexistent",
                         VFIO_MIGD_POLICY_DIR="/nonexistent"), stdout=None)
        self.assertHook(r, 0, "incoming migration allowed")
        self.assertEqual(r.stdout.encode(), xml)
        self.assertEqual(self.vms(), {}, "the check registers nothing")

    def test_without_metadata_allowed_with_a_warning(self):
        xml = domain_xml("web-1", pci_hostdev(NIC))
        r = self.run_hook("web-1", "migrate", "begin", xml)
        self.assertHook(r, 0, "no vfio-migd metadata", NIC)
        self.assertEqual(r.stdout.encode(), xml)

    def test_refused_for_driver_and_flags_mismatch(self):
        xml = domain_xml("web-1", pci_hostdev(NIC), pci_hostdev(ACC, "hostdev1"),
                         meta=metadata((NIC, "mlx5_other", "15b3:101e", 7),
                                       (ACC, "hisi_acc_vfio_pci", "19e5:a251", 7)))
        r = self.run_hook("web-1", "migrate", "begin", xml)
        self.assertHook(r, 1, "domain 'web-1'", "refusing the incoming migration",
                        f"[driver-mismatch] {NIC}", f"[flags-mismatch] {ACC}")
        self.assertEqual(r.stdout, "")

    def test_refused_for_an_unknown_device(self):
        xml = domain_xml("web-1", pci_hostdev(NIC), pci_hostdev(GHOST, "hostdev1"),
                         meta=metadata(MLX5))
        r = self.run_hook("web-1", "migrate", "begin", xml)
        self.assertHook(r, 1, f"[no-device] {GHOST}")
        self.assertEqual(r.stdout, "")

    def test_refused_for_a_device_held_here(self):
        self.assertOk(self.h.ctl("register", "db-1", NIC))
        r = self.run_hook("web-1", "migrate", "begin",
                          domain_xml("web-1", pci_hostdev(NIC), meta=metadata(MLX5)))
        self.assertHook(r, 1, f"[device-busy] {NIC}")

    def test_mdev_of_a_vendor_driver_not_named_vfio_is_allowed(self):
        """An mtty mdev is a VFIO device (an mdev is driven through VFIO whatever its driver)."""
        self.h.sim("create", MDEV, "--preset", "mtty")
        xml = domain_xml("gfx-1", "    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>"
                                  f"<source><address uuid='{MDEV}'/></source></hostdev>\n")
        r = self.run_hook("gfx-1", "migrate", "begin", xml)
        self.assertHook(r, 0, "incoming migration allowed")
        self.assertNotIn("not-vfio", r.stderr)
        self.assertEqual(r.stdout.encode(), xml)

    def test_iova_not_covering_guest_ram(self):
        xml = domain_xml("web-1", pci_hostdev(NIC), meta=metadata(MLX5), memory_gib=4096)
        r = self.run_hook("web-1", "migrate", "begin", xml)
        if r.returncode == 0:
            self.skipTest("the sim backend reports the whole 64-bit IOVA space for every "
                          "device, so no guest RAM can fall outside it; tests/kernel covers "
                          "reserved regions")
        self.assertHook(r, 1, "[iova]")


class OtherOperationsTest(HookCase):

    def test_release_unregisters_and_tolerates_an_unknown_vm(self):
        self.assertHook(self.run_hook("web-1", "start", "begin",
                                      domain_xml("web-1", pci_hostdev(NIC))), 0)
        r = self.run_hook("web-1", "release", "end", b"<not xml")
        self.assertHook(r, 0, "unregistered")
        self.assertEqual(self.vms(), {})
        r = self.run_hook("web-1", "release", "end", domain_xml("web-1", pci_hostdev(NIC)))
        self.assertHook(r, 0)
        self.assertEqual((r.stdout, r.stderr), ("", ""))

    def test_other_operations_are_silent_and_never_ask_the_daemon(self):
        """With no bus at all and fail-closed, they still exit 0 at once without output."""
        xml = domain_xml("web-1", pci_hostdev(NIC))
        policy = {"defaults": {"hook-daemon-unavailable": "fail-closed"}}
        for op, sub in (("started", "begin"), ("stopped", "end"), ("reconnect", "begin"),
                        ("attach", "begin"), ("restore", "begin"), ("migrate", "end"),
                        ("prepare", "end"), ("start", "end"), ("release", "begin")):
            r = self.run_hook("web-1", op, sub, xml, policy=policy, bus=False)
            self.assertHook(r, 0)
            self.assertEqual((r.stdout, r.stderr), ("", ""), f"{op} {sub}")


class DaemonUnavailableTest(HookCase):

    def setUp(self):
        super().setUp()
        self.xml = domain_xml("web-1", pci_hostdev(NIC), meta=metadata(MLX5))

    def test_no_daemon_fail_open(self):
        self.h.daemon.stop()
        r = self.run_hook("web-1", "start", "begin", self.xml)
        self.assertHook(r, 0, "vfio-migd cannot be asked", "fail-open")
        r = self.run_hook("web-1", "migrate", "begin", self.xml)
        self.assertHook(r, 0, "fail-open")
        self.assertEqual(r.stdout.encode(), self.xml)
        r = self.run_hook("web-1", "release", "end")
        self.assertHook(r, 0, "cannot unregister")

    def test_release_without_the_daemon_says_the_journal_keeps_the_vm(self):
        """release end while vfio-migd is down: exit 0; the message says the VM stays
        registered and how to remove it, and after a restart the journal has restored it."""
        self.assertHook(self.run_hook("web-1", "start", "begin", self.xml), 0)
        self.h.daemon.stop()
        r = self.run_hook("web-1", "release", "end")
        self.assertHook(r, 0, "stays registered", "journal restores it",
                        "vfio-migctl unregister web-1")
        self.assertNotIn("forgets", r.stderr)
        self.h.restart_daemon()
        self.assertEqual(list(self.vms()), ["web-1"])
        self.assertOk(self.h.ctl("unregister", "web-1"))

    def test_no_daemon_fail_closed(self):
        self.h.daemon.stop()
        policy = {"vms": [{"match": "web-1", "hook-daemon-unavailable": "fail-closed"}]}
        r = self.run_hook("web-1", "start", "begin", self.xml, policy=policy)
        self.assertHook(r, 1, "domain 'web-1'", "vfio-migd cannot be asked",
                        "fail-closed", "systemctl start vfio-migd")
        r = self.run_hook("web-1", "migrate", "begin", self.xml)
        self.assertHook(r, 1, "refusing the incoming migration")
        self.assertEqual(r.stdout, "")
        # another VM is not covered by the entry: fail-open
        r = self.run_hook("db-1", "prepare", "begin",
                          domain_xml("db-1", pci_hostdev(NIC)))
        self.assertHook(r, 0, "fail-open")

    def test_no_bus_at_all_is_unavailable_too(self):
        policy = {"defaults": {"hook-daemon-unavailable": "fail-closed"}}
        r = self.run_hook("web-1", "prepare", "begin", self.xml, policy=policy, bus=False)
        self.assertHook(r, 1, "cannot connect to the system bus", "fail-closed")

    def test_invalid_policy_fails_closed_with_the_parse_error(self):
        self.h.daemon.stop()
        r = self.run_hook("web-1", "start", "begin", self.xml, policy='{"defaults": {"mod')
        self.assertHook(r, 1, "policy.json:1:", "policy is invalid", "policy validate")
        r = self.run_hook("web-1", "migrate", "begin", self.xml)
        self.assertHook(r, 1, "policy.json:1:")
        self.assertEqual(r.stdout, "")

    def hung_daemon(self):
        pid = self.h.daemon.proc.pid
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(os.kill, pid, signal.SIGCONT)

    def test_hung_daemon_fail_open_within_the_timeout(self):
        self.hung_daemon()
        for op in ("start", "migrate"):
            r = self.run_hook("web-1", op, "begin", self.xml, timeout="1.5")
            self.assertHook(r, 0, "got no reply in time", "fail-open")
            # The daemon is stopped, so the hook's own timeout ended the wait.
            self.assertGreater(r.elapsed, 1.4)
        self.assertEqual(r.stdout.encode(), self.xml)
        r = self.run_hook("web-1", "release", "end", timeout="1.5")
        self.assertHook(r, 0, "cannot unregister")

    def test_hung_daemon_fail_closed_within_the_timeout(self):
        policy = {"defaults": {"hook-daemon-unavailable": "fail-closed"}}
        self.h.write_policy(policy)
        self.hung_daemon()
        for op in ("prepare", "migrate"):
            r = self.run_hook("web-1", op, "begin", self.xml, timeout="1.5")
            self.assertHook(r, 1, "got no reply in time", "fail-closed")
            self.assertGreater(r.elapsed, 1.4)
            self.assertEqual(r.stdout, "")

    def test_stdin_that_never_ends_is_cut_by_the_alarm(self):
        """libvirtd always closes stdin; if something did not, the alarm still ends the hook
        within three timeouts and a margin, by the policy (fail-open here)."""
        r_fd, w_fd = os.pipe()
        self.addCleanup(os.close, w_fd)
        env = dict(self.h.bus.env, VFIO_MIGD_HOOK_TIMEOUT="0.5",
                   VFIO_MIGD_POLICY="/nonexistent", VFIO_MIGD_POLICY_DIR="/nonexistent")
        r = run([self.hook, "web-1", "start", "begin", "-"], env=env, stdin=r_fd,
                timeout=seconds(30))
        os.close(r_fd)
        # Returned while stdin is still open (w_fd is ours): the alarm ended it.
        self.assertHook(r, 0, "ran out of time", "fail-open")


if __name__ == "__main__":
    main()
