#!/usr/bin/env python3
"""Authorization: reads are open to every caller; every method that changes anything needs
uid 0 or the operator group, judged on the bus's credentials for the sender."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (EXIT_DENIED, EXIT_REFUSED, INVALID_ARGS, MANAGER, OPERATOR_GROUP,  # noqa: E402
                      ROOT, VM_IFACE, MigdTestCase, ensure_operator_group, main,
                      remove_operator_group, vm_path)

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
        r = self.h.ctl("register", "bad name", "nic0", user="nobody")
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


if __name__ == "__main__":
    main()
