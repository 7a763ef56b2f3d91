#!/usr/bin/env python3
"""Authorization: reads are open to every caller; every method that changes anything needs
uid 0 or the operator group, judged on the bus's credentials for the sender."""

import grp
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (BUS_NAME, EXIT_DENIED, EXIT_REFUSED, HERE,  # noqa: E402
                      INVALID_ARGS, MANAGER, OPERATOR_GROUP, ROOT, VM_IFACE, Bus, MigdTestCase,
                      as_user, device_path, ensure_operator_group, main, remove_operator_group,
                      seconds, unvariant, vm_path)

DEVICES = [("nic0", "mlx5"), ("nic1", "pds"), ("spare0", "xe")]
NAMES = ["nic0", "nic1"]


class AccessTest(MigdTestCase):

    daemon_args = ()

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=DEVICES, daemon_args=self.daemon_args)
        self.assertOk(self.h.ctl("register", "vm1", *NAMES))
        # a directory the unprivileged caller may write its stream into
        self.drop = os.path.join(self.workdir, "drop")
        os.mkdir(self.drop)
        os.chmod(self.drop, 0o1777)
        self.stream = os.path.join(self.drop, "vm1.mig")

    def mutating(self):
        """Every subcommand that changes something, with arguments that would succeed."""
        return [["register", "vm2", "spare0"], ["unregister", "vm1"], ["rescan"],
                ["precopy", "vm1"], ["quiesce", "vm1"], ["save", "vm1", os.path.join(self.drop, "other.mig")],
                ["start", "vm1"], ["abort", "vm1"]]

    def make_stream(self):
        self.assertOk(self.h.ctl("save", "vm1", self.stream))
        self.assertOk(self.h.ctl("start", "vm1"))
        os.chmod(self.stream, 0o644)


class UnprivilegedTest(AccessTest):

    def test_reads_work_for_anyone(self):
        """nobody may read: status, list-vms, list-devices, show, show-device, last."""
        for args in (["status"], ["list-vms"], ["list-devices"], ["show", "vm1"],
                     ["show-device", "nic0"], ["last", "vm1"], ["--json", "show", "vm1"]):
            self.assertOk(self.h.ctl(*args, user="nobody"))
        r = self.h.busctl("get-property", "org.vfiomig.Coordinator1", vm_path("vm1"), VM_IFACE,
                          "State", user="nobody")
        self.assertOk(r)
        self.assertEqual(r.stdout.strip(), 's "running"')

    def test_every_change_is_denied_to_nobody(self):
        """nobody gets AccessDenied (exit 5) from every changing subcommand; nothing moves."""
        self.make_stream()
        for args in self.mutating() + [["resume", "vm1", self.stream]]:
            r = self.h.ctl(*args, user="nobody")
            self.assertExit(r, EXIT_DENIED, "org.freedesktop.DBus.Error.AccessDenied")
            self.assertIn("operator group", r.stderr)
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 1)
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence")["operation"],
                         "start")

    def test_busctl_change_is_denied_to_nobody(self):
        """busctl as nobody: RegisterVM, Rescan and Quiesce are refused."""
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "Rescan", user="nobody"))
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "RegisterVM", "sasa{sv}", "vm2",
                                                  1, "spare0", 0, user="nobody"))
        self.assertBusctlFails(self.h.busctl_call(vm_path("vm1"), VM_IFACE, "Quiesce",
                                                  user="nobody"))
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 1)

    def test_arguments_are_validated_before_the_caller(self):
        """A malformed call from nobody is InvalidArgs, not AccessDenied."""
        r = self.h.ctl("register", "bad/name", "nic0", user="nobody")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        r = self.h.ctl("register", "vm2", "spare0", "--strategy", "random", user="nobody")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)


class OperatorGroupTest(AccessTest):

    daemon_args = (f"--operator-group={OPERATOR_GROUP}",)

    @classmethod
    def setUpClass(cls):
        cls.created_group = ensure_operator_group()

    @classmethod
    def tearDownClass(cls):
        if cls.created_group:
            remove_operator_group()

    def test_operator_group_member_may_change(self):
        """nobody with the operator group may register, quiesce, save, start, unregister."""
        g = [OPERATOR_GROUP]
        self.assertOk(self.h.ctl("register", "vm2", "spare0", user="nobody", groups=g))
        self.assertOk(self.h.ctl("quiesce", "vm1", user="nobody", groups=g))
        self.assertStates(self.h, NAMES, "STOP")
        self.assertOk(self.h.ctl("save", "vm1", self.stream, user="nobody", groups=g))
        self.assertOk(self.h.ctl("start", "vm1", user="nobody", groups=g))
        self.assertOk(self.h.ctl("rescan", user="nobody", groups=g))
        self.assertOk(self.h.ctl("unregister", "vm2", user="nobody", groups=g))
        self.assertStates(self.h, NAMES, "RUNNING")

    def test_others_are_still_denied(self):
        """With an operator group configured, a caller outside it is still denied."""
        for args in self.mutating():
            self.assertExit(self.h.ctl(*args, user="nobody"), EXIT_DENIED,
                            "org.freedesktop.DBus.Error.AccessDenied")
        self.assertStates(self.h, NAMES, "RUNNING")


# ---- every method, classified (introspected from the running daemon) ----

# What any caller may call: these read and change nothing.
READ_METHODS = {
    (MANAGER, "ListVMs"), (MANAGER, "ListDevices"), (MANAGER, "GetVM"), (MANAGER, "GetDevice"),
    (MANAGER, "CheckMigration"), (MANAGER, "CheckIncomingMigration"),
    (MANAGER, "ListLibvirtDomains"),
}
# Every method of these interfaces is sd-bus's own and reads (Properties.Set has nothing to
# set: test_no_property_is_writable keeps it so).
STANDARD_PREFIX = "org.freedesktop.DBus."
# What changes something: uid 0 or the operator group only, in the daemon and in the bus policy.
MUTATING_METHODS = {
    (MANAGER, "RegisterVM"), (MANAGER, "RegisterVMFromXML"), (MANAGER, "UnregisterVM"),
    (MANAGER, "Rescan"), (MANAGER, "AttachDeviceFd"), (MANAGER, "ReloadPolicy"),
    (VM_IFACE, "PreCopy"), (VM_IFACE, "Quiesce"), (VM_IFACE, "Save"), (VM_IFACE, "Resume"),
    (VM_IFACE, "ResumeWithOptions"), (VM_IFACE, "Start"), (VM_IFACE, "Abort"),
}
# Methods whose arguments cannot be valid on the test's sim backend: validation (which needs
# no privilege and changes nothing) refuses first with this text. The bus policy still
# refuses them to an unprivileged caller before the daemon sees them (BusPolicyTest).
NO_VALID_ARGS = {(MANAGER, "AttachDeviceFd"): "Only the kernel backend takes device fds"}

CLASSIFY = ("classify it in tests/dbus/test_access.py: READ_METHODS if it changes nothing, "
            "else MUTATING_METHODS (and check the caller with bus_authorize())")
# The daemon's refusal (bus_authorize) and the bus's (dbus-daemon's policy), as gdbus prints them
DAEMON_DENIED = "GDBus.Error:org.freedesktop.DBus.Error.AccessDenied: Permission denied to"
BUS_DENIED = "GDBus.Error:org.freedesktop.DBus.Error.AccessDenied: Rejected send message"

SPARE_PCI = "0000:00:07.0"  # a spare sim device named like a PCI address, for domain XML
DOMAIN_XML = f"""<domain type='kvm'>
  <name>vmxml</name>
  <uuid>6b0d2a5e-1c8f-4a51-9b0e-3f0f8b3c4d21</uuid>
  <memory unit='KiB'>1048576</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></source>
      <alias name='hostdev0'/>
    </hostdev>
  </devices>
</domain>
"""


def gv_string(text):
    """A GVariant text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Method:
    """One introspected method: where it is, its in-arguments (type, name)."""

    def __init__(self, path, iface, name, args):
        self.path, self.iface, self.name, self.args = path, iface, name, args

    @property
    def key(self):
        return (self.iface, self.name)

    @property
    def signature(self):
        return "".join(t for t, _ in self.args)

    def __repr__(self):
        return f"{self.iface}.{self.name}({self.signature}) at {self.path}"


class CatalogTest(AccessTest):
    """Introspects the Manager, a VM and a Device and calls every method as nobody."""

    def setUp(self):
        super().setUp()
        self.h.sim.create(SPARE_PCI, "xe")
        self.assertOk(self.h.ctl("rescan"))
        self.make_stream()
        self.objects = [ROOT, vm_path("vm1"), device_path("nic0")]

    def introspect(self, path, user=None):
        r = self.h.busctl("--json=short", "call", BUS_NAME, path,
                          "org.freedesktop.DBus.Introspectable", "Introspect", user=user)
        self.assertOk(r)
        return ET.fromstring(r.json["data"][0])

    def methods(self):
        found = []
        for path in self.objects:
            for iface in self.introspect(path).findall("interface"):
                for m in iface.findall("method"):
                    args = [(a.get("type"), a.get("name") or "")
                            for a in m.findall("arg") if a.get("direction", "in") == "in"]
                    found.append(Method(path, iface.get("name"), m.get("name"), args))
        return found

    def properties(self):
        """(path, interface, property, access) of every property of the three objects."""
        return [(path, i.get("name"), p.get("name"), p.get("access"))
                for path in self.objects for i in self.introspect(path).findall("interface")
                for p in i.findall("property")]

    # --- valid arguments for each method, so that validation does not answer first ---

    def arg_value(self, method, type_, name):
        """One argument in GVariant text (gdbus call), and the fds it needs passed."""
        if type_ == "s":
            if "xml" in name.lower():
                return gv_string(DOMAIN_XML), []
            if "device" in name.lower() or "Device" in method.name:
                return gv_string("nic0"), []
            return gv_string("vm2" if method.key == (MANAGER, "RegisterVM") else "vm1"), []
        if type_ == "as":
            return ("@as ['spare0']" if method.key == (MANAGER, "RegisterVM") else "@as []"), []
        if type_ == "a{sv}":
            return "@a{sv} {}", []
        if type_ == "b":
            return "false", []
        if type_ in "ynqiuxtd":
            return f"@{type_} 0", []
        if type_ == "h":
            if method.name in ("Resume", "ResumeWithOptions"):
                fd = os.open(self.stream, os.O_RDONLY | os.O_CLOEXEC)
            else:
                fd = os.open(os.path.join(self.drop, f"{method.name}.out"),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            self.addCleanup(os.close, fd)
            return f"@h {fd}", [fd]
        self.fail(f"{method}: no valid value for an argument of type {type_}; teach "
                  f"CatalogTest.arg_value in tests/dbus/test_access.py")

    def call(self, method, user=None, groups=None):
        """gdbus call (it passes fds for h, and prints the error's name and message)."""
        words, fds = [], []
        for t, n in method.args:
            w, f = self.arg_value(method, t, n)
            words.append(w)
            fds += f
        prefix = as_user(user, groups) if user else []
        argv = [*prefix, "gdbus", "call", "--address", self.h.address, "--dest", BUS_NAME,
                "--object-path", method.path, "--timeout", str(int(seconds(120))),
                "--method", f"{method.iface}.{method.name}", *words]
        p = subprocess.run(argv, pass_fds=fds, capture_output=True, text=True,
                           timeout=seconds(150))
        p.text = f"$ {' '.join(argv)}\n-> exit {p.returncode}\n{p.stdout}{p.stderr}"
        return p

    def set_version(self, user):
        """Properties.Set of the Manager's Version, through gdbus."""
        m = Method(ROOT, "org.freedesktop.DBus.Properties", "Set", [])
        words = [gv_string(MANAGER), gv_string("Version"), "<'x'>"]
        argv = [*as_user(user), "gdbus", "call", "--address", self.h.address, "--dest",
                BUS_NAME, "--object-path", m.path, "--method", f"{m.iface}.{m.name}", *words]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds(30))
        p.text = f"$ {' '.join(argv)}\n-> exit {p.returncode}\n{p.stdout}{p.stderr}"
        return p

    def snapshot(self):
        """What a refused call must leave as it was."""
        names = [*NAMES, "spare0", SPARE_PCI]
        return {"states": self.h.sim.states(names),
                "vms": unvariant(self.h.busctl_call(ROOT, MANAGER, "ListVMs").json["data"]),
                "vm-count": self.h.busctl_get(ROOT, MANAGER, "VMCount"),
                "device-count": self.h.busctl_get(ROOT, MANAGER, "DeviceCount"),
                "vm1-state": self.h.busctl_get(vm_path("vm1"), VM_IFACE, "State"),
                "vm1-last": self.h.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence"),
                "policy-files": self.h.busctl_get(ROOT, MANAGER, "PolicyFiles")}

    def classified(self):
        """Every introspected method, split; an unclassified one fails the test."""
        reads, changes = [], []
        for m in self.methods():
            if m.iface.startswith(STANDARD_PREFIX) or m.key in READ_METHODS:
                reads.append(m)
            elif m.key in MUTATING_METHODS:
                changes.append(m)
            else:
                self.fail(f"{m} is not classified: {CLASSIFY}")
        self.assertTrue(changes and reads)
        return reads, changes


class ClassifiedMethodsTest(CatalogTest):

    def test_every_changing_method_is_denied_to_nobody(self):
        """Each introspected changing method, with valid arguments: AccessDenied, nothing moves."""
        _, changes = self.classified()
        before = self.snapshot()
        checked = set()
        for m in changes:
            p = self.call(m, user="nobody")
            self.assertNotEqual(p.returncode, 0, f"{m} succeeded for nobody:\n{p.text}")
            if m.key in NO_VALID_ARGS:
                self.assertIn(NO_VALID_ARGS[m.key], p.stderr, p.text)
                continue
            self.assertIn(DAEMON_DENIED, p.stderr,
                          f"{m}: nobody must get AccessDenied with valid arguments:\n{p.text}")
            self.assertIn("operator-group", p.stderr, p.text)
            checked.add(m.key)
        self.assertEqual(self.snapshot(), before, "a refused call changed something")
        # the ones this daemon has must all have been met (introspection saw them)
        self.assertTrue({(MANAGER, "RegisterVM"), (VM_IFACE, "Save"), (VM_IFACE, "Resume"),
                         (MANAGER, "ReloadPolicy")} <= checked, checked)

    def test_every_reading_method_works_for_nobody(self):
        """Each introspected reading method answers nobody (no refusal); the known ones succeed."""
        reads, _ = self.classified()
        must_succeed = {(MANAGER, "ListVMs"), (MANAGER, "ListDevices"), (MANAGER, "GetVM"),
                        (MANAGER, "GetDevice"), (MANAGER, "CheckMigration"),
                        ("org.freedesktop.DBus.Peer", "Ping"),
                        ("org.freedesktop.DBus.Introspectable", "Introspect")}
        before = self.snapshot()
        for m in reads:
            if m.key == ("org.freedesktop.DBus.Properties", "Set"):
                continue  # test_no_property_is_writable
            if m.key == ("org.freedesktop.DBus.Properties", "Get"):
                continue  # test_every_property_reads_for_nobody
            p = self.call(m, user="nobody")
            self.assertNotIn(DAEMON_DENIED, p.stderr, f"{m} refused nobody:\n{p.text}")
            if m.key in must_succeed:
                self.assertEqual(p.returncode, 0, f"{m} failed for nobody:\n{p.text}")
        self.assertEqual(self.snapshot(), before, "a reading method changed something")

    def test_every_property_reads_for_nobody(self):
        """Get of every property and GetAll of every interface work for nobody."""
        props = self.properties()
        self.assertGreater(len(props), 20)
        for path, iface, prop, _ in props:
            r = self.h.busctl("get-property", BUS_NAME, path, iface, prop, user="nobody")
            self.assertOk(r)
        for path, iface in {(p, i) for p, i, _, _ in props}:
            r = self.h.busctl("--json=short", "call", BUS_NAME, path,
                              "org.freedesktop.DBus.Properties", "GetAll", "s", iface,
                              user="nobody")
            self.assertOk(r)

    def test_no_property_is_writable(self):
        """No property can be set (a writable one would need a check in its setter); Set fails."""
        before = self.snapshot()
        for path, iface, prop, access in self.properties():
            self.assertEqual(access, "read", f"{iface}.{prop} at {path} is writable: its setter "
                             f"must call bus_authorize(); then extend test_access.py")
            r = self.h.busctl("set-property", BUS_NAME, path, iface, prop, "s", "x",
                              user="nobody")
            self.assertNotEqual(r.returncode, 0, str(r))
        p = self.set_version("nobody")
        self.assertIn("org.freedesktop.DBus.Error.PropertyReadOnly", p.stderr, p.text)
        self.assertEqual(self.snapshot(), before)

    def test_unclassified_method_fails_the_test(self):
        """The classification itself: a method in neither list is reported, naming the fix."""
        with self.assertRaises(AssertionError) as cm:
            m = Method(ROOT, MANAGER, "FormatDisk", [])
            if not (m.iface.startswith(STANDARD_PREFIX) or m.key in READ_METHODS
                    or m.key in MUTATING_METHODS):
                self.fail(f"{m} is not classified: {CLASSIFY}")
        self.assertIn("classify it in tests/dbus/test_access.py", str(cm.exception))
        self.assertFalse(READ_METHODS & MUTATING_METHODS)


class ClassifiedOperatorTest(CatalogTest):

    daemon_args = (f"--operator-group={OPERATOR_GROUP}",)

    @classmethod
    def setUpClass(cls):
        cls.created_group = ensure_operator_group()

    @classmethod
    def tearDownClass(cls):
        if cls.created_group:
            remove_operator_group()

    def test_operator_passes_every_changing_method(self):
        """An operator-group member is never refused; the VM's own methods run in order."""
        _, changes = self.classified()
        order = ["PreCopy", "Quiesce", "Save", "Abort", "Start", "Quiesce", "Resume",
                 "ReloadPolicy", "Rescan", "RegisterVM", "RegisterVMFromXML", "UnregisterVM"]
        by_name = {m.name: m for m in changes}
        ordered = [by_name[n] for n in order if n in by_name]
        ordered += [m for m in changes if m.name not in order]
        for m in ordered:
            p = self.call(m, user="nobody", groups=[OPERATOR_GROUP])
            self.assertNotIn(DAEMON_DENIED, p.stderr, f"{m} refused the operator:\n{p.text}")
            if m.key in NO_VALID_ARGS:
                self.assertIn(NO_VALID_ARGS[m.key], p.stderr, p.text)
            elif m.key in {(MANAGER, "RegisterVM"), (MANAGER, "UnregisterVM"),
                           (MANAGER, "Rescan"), (MANAGER, "ReloadPolicy"),
                           (VM_IFACE, "Quiesce"), (VM_IFACE, "Save"), (VM_IFACE, "Start")}:
                self.assertEqual(p.returncode, 0, f"{m} failed for the operator:\n{p.text}")
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"),
                         2 if (MANAGER, "RegisterVMFromXML") in {m.key for m in changes} else 1)


# ---- the bus policy (units/org.vfiomig.Coordinator1.conf) ----

POLICY_FILE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "units",
                           "org.vfiomig.Coordinator1.conf")
POLICY_GROUP = "vfio-migd"  # the group the policy file names (and vfio-migd.service passes)


class PolicyBus(Bus):
    """A dbus-daemon with the system bus's default policy plus the installed policy file."""

    def __init__(self, workdir):  # noqa: super().__init__ would start the permissive bus
        self.workdir = workdir
        socket_path = os.path.join(workdir, "system-bus.socket")
        with open(os.path.join(HERE, "test-system-bus.conf.in")) as f:
            conf = f.read().replace("@SOCKET_PATH@", socket_path)
        self.conf = os.path.join(workdir, "system-bus.conf")
        with open(self.conf, "w") as f:
            f.write(conf.replace("@POLICY_FILE@", POLICY_FILE))
        self.log = open(os.path.join(workdir, "system-bus.log"), "w")
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.conf}", "--nofork", "--nopidfile",
             "--print-address=1"], stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            self.stop()
            raise RuntimeError("the policy dbus-daemon did not start; see " + self.log.name)
        self.address = line
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)


class BusPolicyTest(CatalogTest):
    """dbus-daemon itself, with the policy file, refuses nobody's changes and lets reads by."""

    daemon_args = (f"--operator-group={POLICY_GROUP}",)

    @classmethod
    def setUpClass(cls):
        try:
            grp.getgrnam(POLICY_GROUP)
            cls.created_group = False
        except KeyError:
            subprocess.run(["groupadd", "--system", POLICY_GROUP], check=True)
            cls.created_group = True

    @classmethod
    def tearDownClass(cls):
        if cls.created_group:
            subprocess.run(["groupdel", POLICY_GROUP], check=False)

    def new_host(self, label="host", daemon_args=(), start=True, devices=()):
        h = super().new_host(label, daemon_args, start=False, devices=devices)
        h.bus.stop()
        h.bus = PolicyBus(h.workdir)
        if start:
            h.start_daemon()
        return h

    def test_bus_refuses_every_changing_method(self):
        """Every changing method from nobody: the bus's AccessDenied, the daemon never asked."""
        _, changes = self.classified()
        before = self.snapshot()
        for m in changes:
            p = self.call(m, user="nobody")
            self.assertIn(BUS_DENIED, p.stderr, f"the bus let {m} through for nobody:\n{p.text}")
        self.assertEqual(self.snapshot(), before)
        self.assertNotIn("Permission denied to", self.h.daemon.read_log())

    def test_bus_passes_reads_and_introspection(self):
        """Reading methods, Get/GetAll, Introspect and Ping pass the bus for nobody."""
        reads, _ = self.classified()
        for m in reads:
            if m.key in {("org.freedesktop.DBus.Properties", "Set"),
                         ("org.freedesktop.DBus.Properties", "Get")}:
                continue
            p = self.call(m, user="nobody")
            self.assertNotIn(BUS_DENIED, p.stderr, f"the bus refused {m} to nobody:\n{p.text}")
        for path, iface, prop, _ in self.properties():
            self.assertOk(self.h.busctl("get-property", BUS_NAME, path, iface, prop,
                                        user="nobody"))
        self.introspect(vm_path("vm1"), user="nobody")
        p = self.set_version("nobody")
        self.assertIn(BUS_DENIED, p.stderr, p.text)

    def test_policy_file_allows_exactly_the_read_methods(self):
        """The policy's per-member allows for everyone are READ_METHODS, nothing more."""
        allowed = set()
        for policy in ET.parse(POLICY_FILE).getroot().findall("policy"):
            if policy.get("context") != "default":
                continue
            for rule in policy.findall("allow"):
                iface = rule.get("send_interface")
                self.assertIsNotNone(iface, "an allow for everyone without an interface lets "
                                     "every method through")
                if not iface.startswith(STANDARD_PREFIX):
                    allowed.add((iface, rule.get("send_member")))
                elif iface == "org.freedesktop.DBus.Properties":
                    self.assertIn(rule.get("send_member"), ("Get", "GetAll"))
        self.assertEqual(allowed, READ_METHODS)

    def test_bus_passes_the_operator_group(self):
        """A member of the policy's group reaches the daemon, which lets it change things."""
        m = Method(ROOT, MANAGER, "Rescan", [])
        p = self.call(m, user="nobody", groups=[POLICY_GROUP])
        self.assertEqual(p.returncode, 0, p.text)
        m = Method(vm_path("vm1"), VM_IFACE, "Quiesce", [])
        self.assertEqual(self.call(m, user="nobody", groups=[POLICY_GROUP]).returncode, 0)
        self.assertStates(self.h, NAMES, "STOP")
        m = Method(vm_path("vm1"), VM_IFACE, "Start", [])
        self.assertEqual(self.call(m, user="root").returncode, 0)
        self.assertStates(self.h, NAMES, "RUNNING")


if __name__ == "__main__":
    main()
