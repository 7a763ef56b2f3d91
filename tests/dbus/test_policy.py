#!/usr/bin/env python3
"""The operator policy on the bus: CheckMigration (vfio-migctl check), ReloadPolicy
(vfio-migctl policy reload), the PolicyFiles property, and vfio-migctl policy validate,
which checks files without a daemon (docs/policy.md)."""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (BUS_NAME, DEVICE_IFACE, EXIT_DENIED, EXIT_FAILURE, EXIT_NOT_FOUND,  # noqa: E402
                      EXIT_REFUSED, EXIT_ROLLED_BACK, MANAGER, ROOT, VM_IFACE, MigdTestCase,
                      binary, device_path, main, run, seconds, vm_path,
                      wait_for)
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

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

    def test_a_device_in_error_is_a_blocker_naming_it_and_abort(self):
        """nic1 in ERROR: check refuses (exit 6) with blocker device-error naming nic1 and
        Abort; after abort the VM is allowed again."""
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1"))
        self.h.sim.set_state("nic1", "ERROR")
        # the daemon serves cached states, refreshed off the loop: wait until it has seen it
        wait_for(lambda: self.h.busctl_get(device_path("nic1"), DEVICE_IFACE, "State")
                 == "ERROR", seconds(10), "the daemon to see nic1 in ERROR")
        r = self.h.ctl("check", "vm1")
        self.assertExit(r, EXIT_REFUSED)
        self.assertRegex(r.stdout, r"device-error\s+nic1\s+.*ERROR.*vfio-migctl abort vm1")
        j = self.h.ctl("--json", "check", "vm1").json
        self.assertEqual([(b["id"], b["device"]) for b in j["blockers"]], [("device-error", "nic1")])
        self.assertEqual(j["plan"], [])
        self.assertIs(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Migratable"), False)
        self.assertOk(self.h.ctl("abort", "vm1"))
        self.assertOk(self.h.ctl("check", "vm1"))

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

    def test_check_and_policy_show_report_the_effective_settings_and_their_sources(self):
        """A VM registered with --strategy serial --phase-deadline-ms 7000 under a policy that
        sets 4000 and parallelism 2: check, policy show and CheckMigration show what its
        sequences run with and where each setting came from."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5"), ("nic1", "pds")])
        path = h.write_policy({"vms": [{"match": "db-*", "phase-deadline-ms": 4000,
                                        "parallelism": 2}]})
        h.start_daemon()
        self.assertOk(h.ctl("register", "--strategy", "serial", "--phase-deadline-ms", "7000",
                            "db-1", "nic0", "nic1"))
        for args in (["check", "db-1"], ["policy", "show"]):
            j = self.assertOk(h.ctl("--json", *args)).json
            s = (j if args[0] == "check" else j["vms"][0])["settings"]
            self.assertEqual((s["strategy"], s["phase-deadline-ms"], s["parallelism"],
                              s["mode"]), ("naive", 7000, 2, "require-p2p"))
            self.assertEqual(s["sources"]["strategy"], "VM registration")
            self.assertEqual(s["sources"]["phase-deadline-ms"], "VM registration")
            self.assertEqual(s["sources"]["parallelism"], f"{path}: vms[0]")
            self.assertEqual(s["sources"]["mode"], "defaults")
            self.assertEqual(s["on-start-unmigratable"], "allow")
            r = self.assertOk(h.ctl(*args))
            self.assertRegex(r.stdout, r"phase-deadline-ms\s+7000\s+VM registration")
            self.assertRegex(r.stdout, r"parallelism\s+2\s+" + path + r": vms\[0\]")
            self.assertRegex(r.stdout, r"mode\s+require-p2p\s+defaults")

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

    def test_reload_emits_properties_changed_for_every_setting_and_the_verdict(self):
        """ReloadPolicy: PropertiesChanged on the VM with the new P2PMode, PhaseDeadlineMs,
        Strategy, Parallelism, and Migratable and Blockers invalidated; introspection marks
        them emits-change, not const."""
        r = self.h.busctl("introspect", BUS_NAME, vm_path("vm1"), VM_IFACE)
        self.assertOk(r)
        for prop in ("P2PMode", "Strategy", "PhaseDeadlineMs", "Parallelism"):
            line = next(x for x in r.stdout.splitlines() if x.startswith("." + prop + " "))
            self.assertIn("emits-change", line)
            self.assertNotIn("const", line)
        m = self.h.monitor()
        self.h.write_policy({"vms": [{"match": "vm1", "phase-deadline-ms": 3000,
                                      "parallelism": 1, "strategy": "serial",
                                      "mode": "p2p-blocked", "migratable": False}]})
        self.assertOk(self.h.ctl("policy", "reload"))

        def changed():
            return [s["args"] for s in m.lines() if s["signal"] == "PropertiesChanged"
                    and s["path"] == vm_path("vm1")]
        wait_for(changed, seconds(10), "PropertiesChanged for vm1")
        args = changed()[0]
        m.stop()
        self.assertEqual(args[1], {"P2PMode": "p2p-blocked", "Strategy": "naive",
                                   "PhaseDeadlineMs": 3000, "Parallelism": 1})
        self.assertEqual(sorted(args[2]), ["Blockers", "Migratable"])
        self.assertIs(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Migratable"), False)

    def test_reload_applies_new_files(self):
        """A drop-in written after start takes effect on policy reload (and busctl)."""
        self.assertIs(self.allowed(), True)
        main = os.path.join(self.h.workdir, "policy.json")
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "PolicyFiles"), [main])
        path = self.h.write_policy({"vms": [{"match": "vm1", "migratable": False}]},
                                   dropin="50-hold.json")
        r = self.assertOk(self.h.ctl("policy", "reload"))
        self.assertIn("policy reloaded from 2 files", r.stdout)
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "PolicyFiles"), [main, path])
        self.assertIs(self.allowed(), False)
        os.unlink(path)
        r = self.h.busctl_call(ROOT, MANAGER, "ReloadPolicy")
        self.assertOk(r)
        self.assertEqual(r.json, {"type": "u", "data": [1]})
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
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "PolicyFiles"),
                         [os.path.join(self.h.workdir, "policy.json"), good])
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

    def test_every_invalid_file_is_reported_and_the_schema_skipped(self):
        """validate a b c: every file is reported, not only the first invalid one; the shipped
        schema.json (installed beside the examples) is skipped with a note."""
        bad1, good, bad2 = (os.path.join(self.workdir, n) for n in ("a.json", "b.json", "c.json"))
        for path, text in ((bad1, '{"defaults": {"mod": 1}}'), (good, "{}"),
                           (bad2, '{"vms": 3}')):
            with open(path, "w") as f:
                f.write(text)
        schema = os.path.join(SOURCE_ROOT, "policy", "schema.json")
        r = self.validate(bad1, good, bad2, schema)
        self.assertEqual(r.returncode, EXIT_FAILURE, r)
        self.assertIn(f"{bad1}:1:", r.stderr)
        self.assertIn(f"{bad2}:1:", r.stderr)
        self.assertIn("2 of 4 policy files invalid", r.stderr)
        self.assertIn(f"{schema}: skipped: a JSON schema", r.stdout)
        r = self.validate(*sorted(glob.glob(os.path.join(SOURCE_ROOT, "policy", "*.json"))))
        self.assertEqual(r.returncode, 0, r)

    def test_a_missing_file_is_an_error(self):
        """A file that does not exist: exit 1 naming it."""
        r = self.validate(os.path.join(self.workdir, "missing.json"))
        self.assertEqual(r.returncode, EXIT_FAILURE, r)
        self.assertIn("missing.json", r.stderr)


class P2PModeTest(MigdTestCase):
    """The reason the modes exist: a VM with a device that has no P2P."""

    # Every device a peer of every other (P2P mappings), so a device stopped while another
    # still initiates P2P DMA records corruption. The hisi device's stop is slow: if it were
    # stopped in the same phase as the P2P devices, they would stop while it still ran.
    DEVICES = [("nic0", "mlx5", {"p2p_group": "vm1"}), ("nvme0", "pds", {"p2p_group": "vm1"}),
               ("acc0", "hisi", {"p2p_group": "vm1"})]
    NAMES = ["nic0", "nvme0", "acc0"]

    def host(self, label, policy=None):
        h = self.new_host(label=label, start=False, devices=self.DEVICES)
        if policy:
            h.write_policy(policy)
        h.sim.latency("acc0", 100, arc="RUNNING>STOP")
        h.start_daemon()
        self.assertOk(h.ctl("register", "vm1", *self.NAMES))
        return h

    def test_require_p2p_refuses_and_nothing_moves(self):
        """The default mode: Quiesce and Save of the VM are NotMigratable (exit 6) naming acc0,
        and no device changes state or generation."""
        h = self.host("src")
        before = {n: h.sim.show(n)["generation"] for n in self.NAMES}
        r = h.ctl("quiesce", "vm1")
        self.assertExit(r, EXIT_REFUSED, "NotMigratable")
        self.assertIn("no-p2p: device 'acc0'", r.stderr)
        self.assertExit(h.ctl("save", "vm1", os.path.join(h.workdir, "s")), EXIT_REFUSED,
                        "NotMigratable")
        self.assertStates(h, self.NAMES, "RUNNING")
        self.assertEqual({n: h.sim.show(n)["generation"] for n in self.NAMES}, before)

    def test_p2p_blocked_by_policy_migrates_without_corruption(self):
        """The same VM with mode p2p-blocked in a policy file: it migrates (quiesce, save,
        resume on a second host) and no device on either side records corruption; the
        device without P2P stops after the P2P devices quiesced and before they stop."""
        policy = {"vms": [{"match": "vm*", "mode": "p2p-blocked"}]}
        src, dst = self.host("src", policy), self.host("dst", policy)
        stream = os.path.join(src.workdir, "stream")
        q = self.assertOk(src.ctl("--json", "quiesce", "vm1")).json
        self.assertEqual([p["name"] for p in q["phases"]], ["p2p", "stop-no-p2p", "stop"])
        self.assertOk(src.ctl("save", "vm1", stream))
        self.assertOk(dst.ctl("resume", "vm1", stream))
        for n in self.NAMES:
            self.assertEqual(src.sim.events(n), [], f"corruption on source {n}")
            self.assertEqual(dst.sim.events(n), [], f"corruption on destination {n}")
            self.assertEqual(dst.sim.show(n)["last_load_sha256"],
                             src.sim.show(n)["last_save_sha256"], n)
        self.assertStates(dst, self.NAMES, "RUNNING")

    def test_registration_mode_overrides_the_policy_but_not_a_denial(self):
        """RegisterVM's p2p-mode is the registrant's assertion: it lifts require-p2p, but a
        VM that policy denies stays denied."""
        h = self.host("src", {"vms": [{"match": "held*", "migratable": False}]})
        self.assertOk(h.ctl("unregister", "vm1"))
        self.assertOk(h.ctl("register", "vm1", *self.NAMES, "--p2p-mode", "p2p-blocked"))
        j = h.ctl("--json", "check", "vm1").json
        self.assertIs(j["allowed"], True, j)
        self.assertIn("VM registration (p2p-mode p2p-blocked)", j["matched"])
        self.assertOk(h.ctl("unregister", "vm1"))
        self.assertOk(h.ctl("register", "held1", *self.NAMES, "--p2p-mode", "p2p-blocked"))
        j = h.ctl("--json", "check", "held1").json
        self.assertEqual([b["id"] for b in j["blockers"]], ["vm-denied"])


class GroupTest(MigdTestCase):
    """IOMMU groups: one group cannot be split between VMs or left half outside one."""

    def test_partial_and_shared_groups_are_blockers(self):
        """a0 and a1 share group g1: a VM holding a0 alone has partial-group; once another VM
        holds a1, both have group-shared as well; holding the whole group is fine."""
        h = self.new_host(devices=[("a0", "mlx5", {"group": "g1"}), ("a1", "mlx5", {"group": "g1"}),
                                   ("b0", "pds", {"group": "g2"})])
        self.assertOk(h.ctl("register", "vm1", "a0"))
        j = h.ctl("--json", "check", "vm1").json
        self.assertEqual([(b["id"], b["device"]) for b in j["blockers"]], [("partial-group", "a0")])
        self.assertIn("'a1'", j["blockers"][0]["message"])
        self.assertOk(h.ctl("register", "vm2", "a1", "b0"))
        j2 = h.ctl("--json", "check", "vm2").json
        self.assertEqual(sorted(b["id"] for b in j2["blockers"]), ["group-shared", "partial-group"])
        self.assertIn("VM 'vm1' also holds", " ".join(b["message"] for b in j2["blockers"]))
        self.assertExit(h.ctl("quiesce", "vm2"), EXIT_REFUSED, "NotMigratable")
        self.assertOk(h.ctl("unregister", "vm1"))
        self.assertOk(h.ctl("unregister", "vm2"))
        self.assertOk(h.ctl("register", "vm3", "a0", "a1", "b0"))
        self.assertIs(h.ctl("--json", "check", "vm3").json["allowed"], True)


class FailureActionTest(MigdTestCase):

    def test_on_failure_reset_resets_every_device_and_reports_state_lost(self):
        """on-failure reset: a failing arc makes the sequencer reset every device (exit 7);
        every device is RUNNING again, was reset once, and is listed in lost-state."""
        names = ["nic0", "nic1"]
        h = self.new_host(start=False, devices=[("nic0", "mlx5"), ("nic1", "pds")])
        h.write_policy({"defaults": {"on-failure": "reset"}})
        h.start_daemon()
        self.assertOk(h.ctl("register", "vm1", *names))
        h.sim.fault("nic1", "RUNNING_P2P>STOP", "fail", errno="EIO")
        self.assertExit(h.ctl("quiesce", "vm1"), EXIT_ROLLED_BACK, "SequenceFailed")
        last = h.ctl("--json", "last", "vm1").json
        self.assertEqual(sorted(last["lost-state"]), names)
        self.assertIn("rollback:reset", [p["name"] for p in last["phases"]])
        self.assertStates(h, names, "RUNNING")
        self.assertEqual([h.sim.show(n)["resets"] for n in names], [1, 1])


class StartupTest(MigdTestCase):

    def test_an_invalid_policy_stops_the_daemon_with_78(self):
        """A bad policy at start: exit 78 (EX_CONFIG) naming file, line and column, and the
        bus name is never taken; --allow-default-policy starts with the defaults."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5")])
        path = h.write_policy('{"defaults": {"mode": "maybe"}}')
        argv = [binary("MIGD"), "--backend=sim", f"--sim-dir={h.sim.dir}", f"--policy={path}",
                f"--policy-dir={h.workdir}/policy.d"]
        p = subprocess.run(argv, env=h.bus.env, capture_output=True, text=True,
                           timeout=seconds(10))
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn(f"{path}:1:23: defaults.mode is \"maybe\"", p.stderr)
        self.assertFalse(h.bus.has_owner())
        h.start_daemon("--allow-default-policy")
        self.assertEqual(h.busctl_get(ROOT, MANAGER, "PolicyFiles"), [])
        self.assertIn("built-in default policy", h.daemon.read_log())
        self.assertNotIn("the policy in force stays", p.stderr)
        self.assertIn("vfio-migd does not start with it", p.stderr)

    def test_a_policy_file_given_that_does_not_exist_stops_the_daemon_with_78(self):
        """--policy=FILE names a file that must exist: exit 78 with a sentence naming it."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5")])
        missing = os.path.join(h.workdir, "polcy.json")
        argv = [binary("MIGD"), "--backend=sim", f"--sim-dir={h.sim.dir}",
                f"--policy={missing}", f"--policy-dir={h.workdir}/policy.d"]
        p = subprocess.run(argv, env=h.bus.env, capture_output=True, text=True,
                           timeout=seconds(10))
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn(f"--policy={missing}: no such file", p.stderr)
        self.assertFalse(h.bus.has_owner())

    def test_strategy_option_names(self):
        """--strategy: an unknown name exits 2 naming it and the three strategies; serial, naive's
        old name, starts the daemon with naive as the default and a warning in the log."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5"), ("nic1", "pds")])
        argv = [binary("MIGD"), "--backend=sim", f"--sim-dir={h.sim.dir}", "--strategy=QEMU",
                f"--policy={h.workdir}/policy.json", f"--policy-dir={h.workdir}/policy.d"]
        p = subprocess.run(argv, env=h.bus.env, capture_output=True, text=True,
                           timeout=seconds(10))
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--strategy: 'QEMU' is not parallel, qemu or naive.", p.stderr)
        self.assertFalse(h.bus.has_owner())
        h.start_daemon("--strategy=serial")
        self.assertIn("strategy 'serial' is deprecated", h.daemon.read_log())
        self.assertOk(h.ctl("register", "vm1", "nic0", "nic1"))
        self.assertEqual(h.busctl_get(vm_path("vm1"), VM_IFACE, "Strategy"), "naive")

    def test_sighup_reloads_the_policy(self):
        """SIGHUP (systemctl reload) reads the files again, as ReloadPolicy does."""
        h = self.new_host(devices=[("nic0", "mlx5")])
        main = os.path.join(h.workdir, "policy.json")
        self.assertEqual(h.busctl_get(ROOT, MANAGER, "PolicyFiles"), [main])
        path = h.write_policy({"defaults": {"phase-deadline-ms": 1234}}, dropin="10-sighup.json")
        h.daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + seconds(5)
        while h.busctl_get(ROOT, MANAGER, "PolicyFiles") != [main, path]:
            self.assertLess(time.monotonic(), deadline, "SIGHUP did not reload the policy")
            time.sleep(0.05)
        self.assertOk(h.ctl("register", "vm1", "nic0"))
        self.assertEqual(h.ctl("--json", "check", "vm1").json["settings"]["phase-deadline-ms"],
                         1234)


if __name__ == "__main__":
    main()
