#!/usr/bin/env python3
"""The operator policy on the bus: CheckMigration (vfio-migctl check), ReloadPolicy
(vfio-migctl policy reload), the PolicyFiles property, and vfio-migctl policy validate,
which checks files without a daemon (docs/policy.md)."""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (EXIT_DENIED, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_REFUSED, MANAGER,  # noqa: E402
                      ROOT, MigdTestCase, binary, main, run)

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CheckTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[("nic0", "mlx5"), ("nic1", "pds"), ("acc0", "hisi")])

    def test_check_allows_a_p2p_vm_and_shows_the_plan(self):
        """check: allowed, the settings in force and the plan of a save from RUNNING."""
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1"))
        r = self.assertOk(self.h.ctl("check", "vm1"))
        self.assertIn("VM vm1: migration allowed", r.stdout)
        self.assertRegex(r.stdout, r"p2p\s+nic0\s+RUNNING_P2P\s+RUNNING>RUNNING_P2P")
        j = self.assertOk(self.h.ctl("--json", "check", "vm1")).json
        self.assertIs(j["allowed"], True)
        self.assertEqual(j["blockers"], [])
        self.assertEqual(j["settings"]["mode"], "require-p2p")
        phases = [p["phase"] for p in j["plan"]]
        self.assertLess(phases.index("p2p"), phases.index("stop"))
        self.assertIn({"phase": "p2p", "device": "nic1", "target": "RUNNING_P2P",
                       "path": "RUNNING>RUNNING_P2P"}, j["plan"])

        r = self.h.busctl_call(ROOT, MANAGER, "CheckMigration", "s", "vm1")
        self.assertOk(r)
        self.assertEqual(r.json["type"], "ba(sss)a(ssss)asa{sv}")
        self.assertIs(r.json["data"][0], True)

    def test_check_refuses_a_device_without_p2p(self):
        """hisi + mlx5 under require-p2p: refused (exit 6), blocker no-p2p naming acc0."""
        self.assertOk(self.h.ctl("register", "vm1", "acc0", "nic0"))
        r = self.h.ctl("check", "vm1")
        self.assertExit(r, EXIT_REFUSED)
        self.assertIn("VM vm1: migration refused", r.stdout)
        self.assertRegex(r.stdout, r"no-p2p\s+acc0\s+\S")
        j = self.h.ctl("--json", "check", "vm1").json
        self.assertIs(j["allowed"], False)
        self.assertEqual([(b["id"], b["device"]) for b in j["blockers"]], [("no-p2p", "acc0")])
        r = self.h.busctl_call(ROOT, MANAGER, "CheckMigration", "s", "vm1")
        self.assertIs(r.json["data"][0], False)
        self.assertStates(self.h, ["acc0", "nic0"], "RUNNING")

    def test_check_of_an_unknown_vm_is_no_such_vm(self):
        """check nope: NoSuchVM, exit 4."""
        self.assertExit(self.h.ctl("check", "nope"), EXIT_NOT_FOUND, "NoSuchVM")
        self.assertBusctlFails(self.h.busctl_call(ROOT, MANAGER, "CheckMigration", "s", "nope"),
                               "nope")

    def test_check_is_open_to_everyone(self):
        """nobody may check a VM."""
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1"))
        self.assertOk(self.h.ctl("check", "vm1", user="nobody"))


class PolicyFileTest(MigdTestCase):

    def test_a_policy_entry_denies_a_vm(self):
        """A vms entry with migratable false: check refuses with its reason, quiesce is
        NotMigratable and nothing moves."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5"), ("nic1", "pds")])
        h.write_policy({"vms": [{"match": "lic*", "migratable": False,
                                 "reason": "node-locked license"}]})
        h.start_daemon()
        self.assertOk(h.ctl("register", "licensing", "nic0", "nic1"))
        j = h.ctl("--json", "check", "licensing").json
        self.assertIs(j["allowed"], False)
        self.assertEqual([b["id"] for b in j["blockers"]], ["vm-denied"])
        self.assertIn("node-locked license", j["blockers"][0]["message"])
        self.assertTrue(any("vms[0]" in m for m in j["matched"]), j["matched"])
        r = h.ctl("quiesce", "licensing")
        self.assertExit(r, EXIT_REFUSED, "NotMigratable")
        self.assertIn("node-locked license", r.stderr)
        self.assertStates(h, ["nic0", "nic1"], "RUNNING")

    def test_policy_settings_apply_to_matching_vms(self):
        """A vms entry's settings show in check's settings."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5")])
        h.write_policy({"vms": [{"match": "storage-*", "phase-deadline-ms": 4000}]})
        h.start_daemon()
        self.assertOk(h.ctl("register", "storage-1", "nic0"))
        j = h.ctl("--json", "check", "storage-1").json
        self.assertEqual(j["settings"]["phase-deadline-ms"], 4000)

    def test_status_names_the_policy_files(self):
        """PolicyFiles lists the files in force; status prints them."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5")])
        path = h.write_policy({"defaults": {"mode": "require-p2p"}})
        h.start_daemon()
        self.assertEqual(h.busctl_get(ROOT, MANAGER, "PolicyFiles"), [path])
        self.assertIn(f"Policy:  {path}", self.assertOk(h.ctl("status")).stdout)


class ReloadTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[("nic0", "mlx5"), ("nic1", "pds")])
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1"))

    def allowed(self):
        return self.h.ctl("--json", "check", "vm1").json["allowed"]

    def test_reload_applies_new_files(self):
        """A drop-in written after start takes effect on policy reload (and busctl)."""
        self.assertIs(self.allowed(), True)
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "PolicyFiles"), [])
        path = self.h.write_policy({"vms": [{"match": "vm1", "migratable": False}]},
                                   dropin="50-hold.json")
        r = self.assertOk(self.h.ctl("policy", "reload"))
        self.assertIn("policy reloaded from 1 file", r.stdout)
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "PolicyFiles"), [path])
        self.assertIs(self.allowed(), False)
        os.unlink(path)
        r = self.h.busctl_call(ROOT, MANAGER, "ReloadPolicy")
        self.assertOk(r)
        self.assertEqual(r.json, {"type": "u", "data": [0]})
        self.assertIs(self.allowed(), True)

    def test_invalid_files_keep_the_policy_in_force(self):
        """An invalid drop-in: PolicyInvalid (exit 6) naming file, line and column; the
        policy in force stays."""
        good = self.h.write_policy({"vms": [{"match": "vm1", "migratable": False}]},
                                   dropin="10-hold.json")
        self.assertOk(self.h.ctl("policy", "reload"))
        bad = self.h.write_policy('{"defaults": {"mod": "deny"}}\n', dropin="20-typo.json")
        r = self.h.ctl("policy", "reload")
        self.assertExit(r, EXIT_REFUSED, "PolicyInvalid")
        self.assertIn(f"{bad}:1:", r.stderr)
        self.assertIn('"mod"', r.stderr)
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "PolicyFiles"), [good])
        self.assertIs(self.allowed(), False)

    def test_reload_is_denied_to_nobody(self):
        """policy reload changes the daemon: nobody gets AccessDenied (exit 5)."""
        self.assertExit(self.h.ctl("policy", "reload", user="nobody"), EXIT_DENIED,
                        "org.freedesktop.DBus.Error.AccessDenied")


class ValidateTest(MigdTestCase):
    """policy validate needs no bus and no daemon."""

    def validate(self, *files):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/socket")
        return run([binary("MIGCTL"), "policy", "validate", *files], env=env)

    def test_the_shipped_policies_are_valid(self):
        """policy/policy.json and every policy/example-*.json validate."""
        files = [os.path.join(SOURCE_ROOT, "policy", "policy.json")]
        files += sorted(glob.glob(os.path.join(SOURCE_ROOT, "policy", "example-*.json")))
        r = self.validate(*files)
        self.assertEqual(r.returncode, 0, r)
        self.assertIn(f"{len(files)} policy files valid", r.stdout)

    def test_an_invalid_file_is_named_with_line_and_column(self):
        """A typo: exit 1 and FILE:LINE:COL: sentence naming the key."""
        bad = os.path.join(self.workdir, "typo.json")
        with open(bad, "w") as f:
            f.write('{\n  "defaults": {"mod": "deny"}\n}\n')
        r = self.validate(bad)
        self.assertEqual(r.returncode, EXIT_FAILURE, r)
        self.assertRegex(r.stderr, rf"^{bad}:2:\d+: .*\"mod\"")

    def test_a_missing_file_is_an_error(self):
        """A file that does not exist: exit 1 naming it."""
        r = self.validate(os.path.join(self.workdir, "missing.json"))
        self.assertEqual(r.returncode, EXIT_FAILURE, r)
        self.assertIn("missing.json", r.stderr)


if __name__ == "__main__":
    main()
