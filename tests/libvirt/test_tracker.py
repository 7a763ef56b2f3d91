#!/usr/bin/env python3
"""vfio-migd's libvirt side against real libvirt (its test driver): running domains with VFIO
hostdevs become VMs, unresolvable ones are listed with the reason, lifecycle events and
libvirtd restarts are followed, and RegisterVMFromXML / CheckIncomingMigration answer for
every error and problem (docs/dbus-api.md, docs/operator-guide.md "libvirt").

Two real setups:
  - test:///ABS/node.xml: libvirt's test driver in the daemon's own process, with the running
    domains the node file describes;
  - a real libvirtd serving the test driver on a private socket (test+unix:///default?socket=),
    which emits lifecycle events for `virsh create` / `virsh destroy` and can be killed and
    restarted. The test driver cannot attach or detach devices (virDomainAttachDeviceFlags is
    unsupported), so device-added/-removed events cannot be driven here; the daemon handles
    them on the same reconcile path as the lifecycle events tested below.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dbus"))
from migdtest import (ACCESS_DENIED, EXIT_NOT_FOUND, EXIT_REFUSED, INVALID_ARGS,  # noqa: E402
                      MANAGER, ROOT, VM_IFACE, MigdTestCase, main, seconds, vm_path, wait_for)

NS = "https://vfio-migd.org/xmlns/hostdevs/1"
PCI_A, PCI_B, PCI_C = "0000:03:00.1", "0000:04:00.0", "0000:05:00.0"
MDEV = "c2177883-f1bb-47f0-914d-32a22e3a8804"
GHOST = "0000:09:00.0"


def pci_hostdev(addr):
    dom, bus, rest = addr.split(":")
    slot, fn = rest.split(".")
    return (f"<hostdev mode='subsystem' type='pci' managed='yes'><source><address "
            f"domain='0x{dom}' bus='0x{bus}' slot='0x{slot}' function='0x{fn}'/></source>"
            f"</hostdev>")


def mdev_hostdev(uuid):
    return (f"<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>"
            f"<address uuid='{uuid}'/></source></hostdev>")


def metadata(*decl):
    """decl: (name, driver, 'vvvv:dddd', flags)"""
    rows = "".join(f"<m:hostdev name='{n}' driver='{d}' id='{i}' flags='0x{f:x}'/>"
                   for n, d, i, f in decl)
    return f"<metadata><m:hostdevs xmlns:m='{NS}'>{rows}</m:hostdevs></metadata>"


def domain_xml(name, *hostdevs, kind="test", meta="", memory_mib=1024):
    return (f"<domain type='{kind}'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
            f"{meta}<os><type arch='x86_64' machine='q35'>hvm</type></os>"
            f"<devices>{''.join(hostdevs)}</devices></domain>")


class LibvirtCase(MigdTestCase):

    def libvirt_host(self, uri, devices=(), **kw):
        """A host whose sim devices exist before the daemon starts with this URI."""
        h = self.new_host(start=False, **kw)
        for name, args in devices:
            h.sim("create", name, *args)
        h.start_daemon(f"--libvirt-uri={uri}")
        return h

    def domains(self, h):
        r = self.assertOk(h.ctl("--json", "libvirt-domains"))
        return {d["name"]: d for d in r.json["domains"]}

    def vms(self, h):
        return {vm["Name"] for vm in self.assertOk(h.ctl("--json", "list-vms")).json}

    def vm_devices(self, h, name):
        r = self.assertOk(h.ctl("--json", "show", name))
        return sorted(d["Name"] for d in r.json["DeviceDetails"])

    def connected(self, h):
        return h.busctl_get(ROOT, MANAGER, "LibvirtConnected")


SIM_DEVICES = [(PCI_A, ["--preset", "mlx5"]), (PCI_B, ["--preset", "mlx5"]),
               (MDEV, ["--preset", "mtty"]), (PCI_C, ["--preset", "mlx5"])]


class NodeFileTest(LibvirtCase):
    """The test driver in-process: the running domains of a node file, tracked at start."""

    def setUp(self):
        super().setUp()
        node = os.path.join(self.workdir, "node.xml")
        with open(node, "w") as f:
            f.write("<node>"
                    + domain_xml("web", pci_hostdev(PCI_A), mdev_hostdev(MDEV))
                    + domain_xml("plain")
                    + domain_xml("ghost", pci_hostdev(GHOST))
                    + domain_xml("thief", pci_hostdev(PCI_C))
                    + domain_xml("twin", pci_hostdev(PCI_C))
                    + "</node>")
        self.uri = f"test://{node}"
        self.h = self.libvirt_host(self.uri, SIM_DEVICES)

    def test_running_domain_with_pci_and_mdev_hostdevs_is_a_vm(self):
        self.assertIn("web", self.vms(self.h))
        self.assertEqual(self.vm_devices(self.h, "web"), sorted([PCI_A, MDEV]))
        d = self.domains(self.h)["web"]
        self.assertEqual((d["status"], d["vm"], d["path"], d["problems"]),
                         ("tracked", "web", vm_path("web"), []))
        r = self.h.busctl_call(ROOT, MANAGER, "GetVM", "s", "web")
        self.assertEqual(r.returncode, 0, str(r))

    def test_domain_without_hostdevs_is_listed_not_registered(self):
        d = self.domains(self.h)["plain"]
        self.assertEqual((d["status"], d["vm"], d["path"]), ("no-hostdevs", None, "/"))
        self.assertNotIn("plain", self.vms(self.h))

    def test_unknown_hostdev_is_unresolved_with_the_fix(self):
        d = self.domains(self.h)["ghost"]
        self.assertEqual(d["status"], "unresolved")
        self.assertEqual(d["problems"][0]["hostdev"], GHOST)
        self.assertIn("knows no such device", d["problems"][0]["reason"])
        self.assertIn("vfio-pci", d["problems"][0]["reason"])
        self.assertNotIn("ghost", self.vms(self.h))
        self.assertIn("domain ghost: unresolved", self.h.daemon.read_log())

    def test_hostdev_of_another_vm_is_refused_naming_the_holder(self):
        doms = self.domains(self.h)
        statuses = sorted((doms["thief"]["status"], doms["twin"]["status"]))
        self.assertEqual(statuses, ["refused", "tracked"])
        loser = "thief" if doms["thief"]["status"] == "refused" else "twin"
        winner = "twin" if loser == "thief" else "thief"
        self.assertEqual(doms[loser]["problems"][0]["hostdev"], PCI_C)
        self.assertIn(f"belongs to VM {winner}", doms[loser]["problems"][0]["reason"])

    def test_properties_name_the_uri_and_the_connection(self):
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "LibvirtURI"), self.uri)
        self.assertIs(self.connected(self.h), True)
        r = self.assertOk(self.h.ctl("libvirt-domains"))
        self.assertIn(f"libvirt: {self.uri} (connected)", r.stdout)
        self.assertIn("ghost " + GHOST, r.stdout)

class NoLibvirtTest(LibvirtCase):

    def test_off_by_default_in_tests_and_with_none(self):
        h = self.new_host()
        self.assertEqual(h.busctl_get(ROOT, MANAGER, "LibvirtURI"), "")
        self.assertIs(self.connected(h), False)
        r = self.assertOk(h.ctl("libvirt-domains"))
        self.assertIn("libvirt: off", r.stdout)
        self.assertEqual(self.assertOk(h.ctl("--json", "libvirt-domains")).json["domains"], [])

    def test_daemon_starts_without_libvirtd_and_retries_quietly(self):
        sock = os.path.join(self.workdir, "nothing-here")
        uri = f"test+unix:///default?socket={sock}"
        h = self.libvirt_host(uri)
        self.assertIs(self.connected(h), False)
        self.assertEqual(h.busctl_get(ROOT, MANAGER, "LibvirtURI"), uri)
        r = self.assertOk(h.ctl("libvirt-domains"))
        self.assertIn("Not connected to libvirt", r.stdout)
        self.assertNotIn("No running domain", r.stdout)
        time.sleep(3.5)  # attempts at 0, 1, 3 s: one warning, then debug lines
        log = h.daemon.read_log()
        self.assertEqual(log.count(f"libvirt: cannot connect to {uri}"), 1, log)
        self.assertGreaterEqual(log.count(f"still cannot connect to {uri}"), 1, log)

    def test_bad_option_is_a_usage_error(self):
        h = self.new_host(start=False)
        r = subprocess.run([os.environ["MIGD"], "--libvirt-uri="], capture_output=True,
                           text=True, env=h.bus.env)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--libvirt-uri: give a libvirt URI", r.stderr)


class Libvirtd:
    """libvirtd serving only the test driver, on a private socket."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "libvirtd")
        os.makedirs(os.path.join(self.dir, "sock"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "drivers"), exist_ok=True)
        self.conf = os.path.join(self.dir, "libvirtd.conf")
        with open(self.conf, "w") as f:
            f.write(f'unix_sock_dir = "{self.dir}/sock"\nunix_sock_group = "root"\n'
                    'unix_sock_rw_perms = "0770"\nauth_unix_rw = "none"\n'
                    'auth_unix_ro = "none"\n')
        self.sock = os.path.join(self.dir, "sock", "libvirt-sock")
        self.uri = f"test+unix:///default?socket={self.sock}"
        self.proc = None

    def start(self):
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        env = dict(os.environ, LIBVIRT_DRIVER_DIR=os.path.join(self.dir, "drivers"))
        self.log = open(os.path.join(self.dir, "libvirtd.log"), "a")
        self.proc = subprocess.Popen(["libvirtd", "--config", self.conf, "--pid-file",
                                      os.path.join(self.dir, "pid")], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.virsh("list").returncode == 0, seconds(10), "libvirtd")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(seconds(10))
            self.log.close()

    def virsh(self, *args):
        return subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True)


class LibvirtdTest(LibvirtCase):
    """Events and reconnects through a real libvirtd."""

    def setUp(self):
        super().setUp()
        if not shutil.which("libvirtd") or not shutil.which("virsh"):
            self.skipTest("libvirtd and virsh are needed (scripts/deps.sh)")
        self.lvd = Libvirtd(self.workdir)
        self.lvd.start()
        self.addCleanup(self.lvd.kill)
        self.h = self.libvirt_host(self.lvd.uri, SIM_DEVICES)
        self.dom = os.path.join(self.workdir, "dom.xml")
        with open(self.dom, "w") as f:
            f.write(domain_xml("db", pci_hostdev(PCI_A), pci_hostdev(PCI_B)))

    def create(self):
        r = self.lvd.virsh("create", self.dom)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_started_domain_becomes_a_vm_and_destroyed_goes(self):
        self.assertIs(self.connected(self.h), True)
        mon = self.h.monitor()
        self.create()
        wait_for(lambda: "db" in self.vms(self.h), seconds(10), "VM db from the Started event")
        self.assertEqual(self.domains(self.h)["db"]["status"], "tracked")
        r = self.lvd.virsh("destroy", "db")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: "db" not in self.vms(self.h), seconds(10), "VM db removed")
        seen = [(s["signal"], s["args"]) for s in mon.stop_json()
                if s["signal"] in ("VMNew", "VMRemoved")]
        self.assertEqual(seen, [("VMNew", ["db", vm_path("db")]),
                                ("VMRemoved", ["db", vm_path("db")])])

    def test_vm_from_xml_is_tracked_and_goes_when_its_domain_stops(self):
        with open(self.dom) as f:
            self.assertOk(self.h.ctl("register-xml", "-", input=f.read()))
        self.create()
        wait_for(lambda: self.domains(self.h).get("db", {}).get("status") == "tracked",
                 seconds(10), "domain db tracked")
        self.assertEqual(self.lvd.virsh("destroy", "db").returncode, 0)
        wait_for(lambda: "db" not in self.vms(self.h), seconds(10), "VM db removed on Stopped")

    def test_vm_of_register_vm_is_left_alone(self):
        self.assertOk(self.h.ctl("register", "db", PCI_C))
        self.create()
        wait_for(lambda: "db" in self.domains(self.h), seconds(10), "domain db listed")
        d = self.domains(self.h)["db"]
        self.assertEqual(d["status"], "refused")
        self.assertIn("registered through dbus", d["problems"][0]["reason"])
        self.assertEqual(self.lvd.virsh("destroy", "db").returncode, 0)
        wait_for(lambda: "db" not in self.domains(self.h), seconds(10), "domain db gone")
        self.assertEqual(self.vm_devices(self.h, "db"), [PCI_C])

    def test_metadata_declares_driver_id_and_flags(self):
        self.create()
        wait_for(lambda: "db" in self.vms(self.h), seconds(10), "VM db")
        r = self.lvd.virsh("metadata", "db", NS)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f'name="{PCI_A}"', r.stdout)
        self.assertIn('flags="0x7"', r.stdout)
        self.assertIn('driver="mlx5_vfio_pci"', r.stdout)

    def test_libvirtd_restart_disconnects_then_reconnects_and_reconciles(self):
        self.create()
        wait_for(lambda: "db" in self.vms(self.h), seconds(10), "VM db")
        self.lvd.kill()
        wait_for(lambda: self.connected(self.h) is False, seconds(10), "LibvirtConnected false")
        self.assertIn("db", self.vms(self.h), "the VM stays while libvirt is away")
        self.lvd.start()
        wait_for(lambda: self.connected(self.h) is True, seconds(15), "the reconnect")
        # the restarted test driver has only its default domain "test", without hostdevs
        wait_for(lambda: "db" not in self.vms(self.h), seconds(10), "VM db reconciled away")
        self.assertEqual(self.domains(self.h)["test"]["status"], "no-hostdevs")
        self.assertIn("closed", self.h.daemon.read_log())


class XmlTest(LibvirtCase):
    """RegisterVMFromXML and CheckIncomingMigration, without a libvirt connection."""

    def setUp(self):
        super().setUp()
        self.h = self.new_host(start=False)
        self.h.sim("create", PCI_A, "--driver", "mlx5_vfio_pci", "--vendor", "15b3",
                   "--device", "101e", "--flags", "SC|P2P|PC")
        self.h.sim("create", PCI_B, "--driver", "mlx5_vfio_pci", "--vendor", "15b3",
                   "--device", "101e", "--flags", "SC|P2P|PC")
        self.h.sim("create", PCI_C, "--driver", "e1000e", "--vendor", "8086", "--device",
                   "10d3")
        self.h.sim("create", MDEV, "--driver", "mtty", "--flags", "SC")
        self.h.start_daemon()

    def write(self, text, name="dom.xml"):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def register(self, text, *args, user=None):
        return self.h.ctl("register-xml", self.write(text), *args, user=user)

    def check(self, text):
        r = self.h.ctl("--json", "check-incoming", self.write(text))
        self.assertIn(r.returncode, (0, EXIT_REFUSED), str(r))
        return r.json

    def problem_ids(self, text):
        return [(p["id"], p["hostdev"]) for p in self.check(text)["problems"]]

    # --- RegisterVMFromXML ---

    def test_register_from_xml_names_the_vm_after_the_domain(self):
        r = self.assertOk(self.register(domain_xml("web", pci_hostdev(PCI_A),
                                                   pci_hostdev(PCI_B))))
        self.assertIn(f"registered VM web from", r.stdout)
        self.assertIn("web", self.vms(self.h))

    def test_register_from_stdin_with_options(self):
        xml = domain_xml("web", pci_hostdev(PCI_A))
        r = self.h.ctl("--json", "register-xml", "-", "--strategy", "qemu", input=xml)
        self.assertOk(r)
        self.assertEqual(r.json["path"], vm_path("web"))

    def test_register_again_is_idempotent(self):
        xml = domain_xml("web", pci_hostdev(PCI_A))
        self.assertOk(self.register(xml))
        mon = self.h.monitor()
        self.assertOk(self.register(xml))
        self.assertOk(self.register(xml))
        self.assertEqual([s["signal"] for s in mon.stop_json()
                          if s["signal"] in ("VMNew", "VMRemoved")], [])

    def test_changed_hostdevs_register_again(self):
        self.assertOk(self.register(domain_xml("web", pci_hostdev(PCI_A))))
        mon = self.h.monitor()
        self.assertOk(self.register(domain_xml("web", pci_hostdev(PCI_A), pci_hostdev(PCI_B))))
        self.assertEqual(self.vm_devices(self.h, "web"), [PCI_A, PCI_B])
        self.assertEqual([s["signal"] for s in mon.stop_json()
                          if s["signal"] in ("VMNew", "VMRemoved")], ["VMRemoved", "VMNew"])

    def test_changed_hostdevs_while_a_sequence_runs_is_exists(self):
        self.assertOk(self.register(domain_xml("web", pci_hostdev(PCI_A))))
        self.h.sim.latency(PCI_A, int(seconds(2) * 1000))
        quiesce = subprocess.Popen([self.h.ctl_tool, "quiesce", "web"], env=self.h.bus.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(quiesce.wait)
        wait_for(lambda: "sequencing" in self.h.busctl_get(vm_path("web"), VM_IFACE, "State"),
                 seconds(5), "the quiesce to run")
        r = self.register(domain_xml("web", pci_hostdev(PCI_B)))
        self.assertExit(r, EXIT_REFUSED, "VMExists")
        self.assertIn("a sequence runs on it", r.stderr)

    def test_vm_registered_by_register_vm_is_exists(self):
        self.assertOk(self.h.ctl("register", "web", PCI_A))
        r = self.register(domain_xml("web", pci_hostdev(PCI_B)))
        self.assertExit(r, EXIT_REFUSED, "VMExists")

    def test_device_of_another_vm_is_device_busy(self):
        self.assertOk(self.h.ctl("register", "other", PCI_A))
        r = self.register(domain_xml("web", pci_hostdev(PCI_A)))
        self.assertExit(r, EXIT_REFUSED, "DeviceBusy")
        self.assertIn("belongs to VM other", r.stderr)

    def test_unknown_hostdev_is_no_such_device_with_the_fix(self):
        r = self.register(domain_xml("web", pci_hostdev(GHOST)))
        self.assertExit(r, 4, "NoSuchDevice")
        self.assertIn(f"Hostdev {GHOST} of domain web", r.stderr)
        self.assertIn("bind it to vfio-pci", r.stderr)
        r = self.register(domain_xml("web", mdev_hostdev("0" * 8 + "-0000-0000-0000-" + "0" * 12)))
        self.assertIn("create the mdev", r.stderr)

    def test_malformed_xml_is_invalid_args_with_the_position(self):
        r = self.register("<domain><name>web</name>\n<devices></domain>")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertRegex(r.stderr, r"line 2")

    def test_no_vfio_hostdev_is_invalid_args(self):
        r = self.register(domain_xml("web"))
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn("has no VFIO hostdev", r.stderr)

    def test_bad_hostdev_address_is_invalid_args(self):
        bad = ("<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' "
               "bus='0xzz' slot='0x00' function='0x0'/></source></hostdev>")
        r = self.register(domain_xml("web", bad))
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn("Domain web: hostdev", r.stderr)

    def test_every_broken_hostdev_is_named_by_alias_or_position(self):
        bad = ("<hostdev mode='subsystem' type='mdev'><source><address uuid='nope'/></source>"
               "</hostdev>")
        bad_alias = ("<hostdev mode='subsystem' type='mdev'><source><address uuid='no'/>"
                     "</source><alias name='hostdev7'/></hostdev>")
        xml = domain_xml("web", pci_hostdev(PCI_A), bad, bad_alias)
        r = self.register(xml)
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn("hostdev 2 of 3", r.stderr)
        self.assertIn("hostdev hostdev7", r.stderr)
        ids = self.problem_ids(xml)
        self.assertEqual(sorted(ids), [("bad-hostdev", "2 of 3"), ("bad-hostdev", "hostdev7")])

    def test_every_domain_name_is_a_vm_name(self):
        for name in ("Win10 Pro (copy)", "vm-\u00e9", "w" * 200):
            r = self.register(domain_xml(name, pci_hostdev(PCI_A)))
            self.assertOk(r)
            self.assertOk(self.h.ctl("unregister", name))

    def test_name_over_1024_bytes_is_invalid_args_with_the_fix(self):
        r = self.register(domain_xml("w" * 1025, pci_hostdev(PCI_A)))
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn("cannot be a VM name: it is longer than 1024 bytes", r.stderr)
        self.assertIn("virsh domrename", r.stderr)
        self.assertLess(len(r.stderr), 1024)

    def test_validation_comes_before_authorization(self):
        r = self.register(domain_xml("web"), user="nobody")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        r = self.register(domain_xml("web", pci_hostdev(PCI_A)), user="nobody")
        self.assertExit(r, 5, ACCESS_DENIED)
        self.assertNotIn("web", self.vms(self.h))

    # --- CheckIncomingMigration ---

    def good_meta(self):
        return metadata((PCI_A, "mlx5_vfio_pci", "15b3:101e", 7),
                        (PCI_B, "mlx5_vfio_pci", "15b3:101e", 7))

    def test_matching_domain_is_allowed_with_details(self):
        xml = domain_xml("web", pci_hostdev(PCI_A), pci_hostdev(PCI_B), meta=self.good_meta())
        r = self.h.ctl("check-incoming", self.write(xml))
        self.assertOk(r)
        self.assertIn("allowed", r.stdout)
        self.assertIn("IOVA space:  0x0-0xffffffffffffffff", r.stdout)
        j = self.check(xml)
        self.assertTrue(j["allowed"])
        self.assertEqual(j["details"]["devices"], [PCI_A, PCI_B])
        self.assertEqual(j["details"]["guest-ram"], [[0, 1024 * 2**20 - 1]])
        self.assertEqual([[int(a), int(b)] for a, b in j["details"]["iova-ranges"]],
                         [[0, 2**64 - 1]])
        self.assertEqual(j["details"]["warnings"], [])

    def test_no_metadata_is_a_warning_not_a_problem(self):
        j = self.check(domain_xml("web", pci_hostdev(PCI_A)))
        self.assertTrue(j["allowed"])
        self.assertIn("declares no driver", j["details"]["warnings"][0])

    def test_unknown_device_is_no_device(self):
        self.assertEqual(self.problem_ids(domain_xml("web", pci_hostdev(GHOST))),
                         [("no-device", GHOST)])

    def test_host_driver_is_not_vfio(self):
        ids = self.problem_ids(domain_xml("web", pci_hostdev(PCI_C)))
        self.assertIn(("not-vfio", PCI_C), ids)

    def test_mdev_of_any_vendor_driver_is_a_vfio_device(self):
        """mtty, mdpy, mbochs: the check and RegisterVMFromXML give the one answer discovery
        gives (an mdev is driven through VFIO whatever its vendor driver)."""
        for i, driver in enumerate(("mtty", "mdpy", "mbochs")):
            uuid = f"{i}2177883-f1bb-47f0-914d-32a22e3a8804"
            self.h.sim("create", uuid, "--driver", driver, "--flags", "SC")
            xml = domain_xml(f"gfx-{driver}", mdev_hostdev(uuid))
            j = self.check(xml)
            self.assertNotIn("not-vfio", [p["id"] for p in j["problems"]], j)
            self.assertTrue(j["allowed"], j)
            self.assertOk(self.register(xml))
        self.assertEqual(self.vms(self.h), {"gfx-mtty", "gfx-mdpy", "gfx-mbochs"})

    def test_register_from_xml_refuses_a_pci_device_not_on_a_vfio_driver(self):
        r = self.register(domain_xml("web", pci_hostdev(PCI_C)))
        self.assertExit(r, EXIT_NOT_FOUND, "NoSuchDevice")
        self.assertIn(f"Hostdev {PCI_C} is bound to e1000e, not to a VFIO driver", r.stderr)
        self.assertEqual(self.vms(self.h), set())

    def test_device_of_another_vm_is_device_busy_but_same_name_is_fine(self):
        self.assertOk(self.h.ctl("register", "other", PCI_A))
        self.assertIn(("device-busy", PCI_A),
                      self.problem_ids(domain_xml("web", pci_hostdev(PCI_A))))
        self.assertNotIn(("device-busy", PCI_A),
                         self.problem_ids(domain_xml("other", pci_hostdev(PCI_A))))

    def test_declared_driver_id_and_flags_are_compared(self):
        meta = metadata((PCI_A, "ice_vfio_pci", "15b3:101e", 7),
                        (PCI_B, "mlx5_vfio_pci", "8086:1889", 3))
        ids = self.problem_ids(domain_xml("web", pci_hostdev(PCI_A), pci_hostdev(PCI_B),
                                          meta=meta))
        self.assertEqual(sorted(ids), [("driver-mismatch", PCI_A), ("flags-mismatch", PCI_B),
                                       ("id-mismatch", PCI_B)])

    def test_bad_hostdev_is_a_problem(self):
        bad = ("<hostdev mode='subsystem' type='mdev'><source><address uuid='nope'/></source>"
               "<alias name='hostdev7'/></hostdev>")
        ids = self.problem_ids(domain_xml("web", pci_hostdev(PCI_A), bad))
        self.assertEqual([i for i, _ in ids], ["bad-hostdev"])

    def test_policy_blocker_is_a_problem(self):
        """The mdev has no P2P: with another device, require-p2p refuses."""
        j = self.check(domain_xml("web", pci_hostdev(PCI_A), mdev_hostdev(MDEV)))
        self.assertFalse(j["allowed"])
        self.assertIn(("policy:no-p2p", MDEV), [(p["id"], p["hostdev"]) for p in j["problems"]])

    def test_malformed_xml_is_invalid_args(self):
        r = self.h.busctl_call(ROOT, MANAGER, "CheckIncomingMigration", "s", "<domain>")
        self.assertBusctlFails(r)
        r = self.h.ctl("check-incoming", self.write("<domain>"))
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertNotIn("CRITICAL", self.h.daemon.read_log())

    def test_check_is_open_to_everyone_and_changes_nothing(self):
        r = self.h.ctl("check-incoming", self.write(domain_xml("web", pci_hostdev(PCI_A))),
                       user="nobody")
        self.assertOk(r)
        self.assertEqual(self.vms(self.h), set())


if __name__ == "__main__":
    main()
