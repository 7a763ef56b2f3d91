#!/usr/bin/env python3
"""The Save hand-off, a journal that never drops a record, recovery that never forgets and
one daemon per state directory (issue 11, reproductions 1, 5 and 6).

A Save records a durable 'committing' before its stream's trailer; after the trailer the
source is 'handed-off': stopped until a caller decides, Start (the destination failed) or
UnregisterVM (the destination runs). No failure path, no restart and no lost journal write
returns it to RUNNING. A full state directory is a real tmpfs of a few KiB, filled with a
file while the daemon runs; a read-only one is a tmpfs remounted read-only."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (EXIT_REFUSED, MANAGER, ROOT, VM_IFACE, BUS_NAME, Daemon,  # noqa: E402
                      MigdTestCase, main, seconds, vm_path, wait_for)
from test_crash import Signals  # noqa: E402

NAMES = ["nic0", "gpu0"]
SLOW_MS = 1500


def mount_tmpfs(path, size="64k"):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                   check=True)


def umount(path):
    subprocess.run(["umount", "-l", path], check=False)


def fill(path):
    """Fills the file system of path: a file that grows until ENOSPC."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError:
            pass
    return filler


class HandoffCase(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, "mlx5", {"p2p_group": "vm1"}) for n in NAMES],
                               start=False)
        self.start()
        self.stream = os.path.join(self.workdir, "vm1.mig")

    def start(self):
        self.h.start_daemon()
        self.assertOk(self.h.ctl("register", "vm1", *NAMES))

    def state(self):
        return self.h.busctl_get(vm_path("vm1"), VM_IFACE, "State")

    def record(self):
        """vm1's record in the journal on disk (None when not recorded)."""
        state_dir = getattr(self, "tmpfs", None) or self.h.daemon.state_dir
        with open(os.path.join(state_dir, "journal.json")) as f:
            return json.load(f)["payload"]["vms"].get("vm1")

    def last_recovery(self):
        rec = self.h.busctl_get(ROOT, MANAGER, "LastRecovery")
        deadline = time.monotonic() + seconds(20)
        while rec["status"] == "recovering" and time.monotonic() < deadline:
            time.sleep(0.05)
            rec = self.h.busctl_get(ROOT, MANAGER, "LastRecovery")
        return rec

    def entry(self, vm="vm1"):
        return next(e for e in self.last_recovery()["vms"] if e["vm"] == vm)

    def assertRefusedAsHandedOff(self, *args):
        r = self.h.ctl(*args)
        self.assertExit(r, EXIT_REFUSED, "InvalidState")
        self.assertIn("was handed off", r.stderr)
        self.assertIn("Call Start if the destination failed", r.stderr)


class HandoffTest(HandoffCase):
    """A Save without faults: the source is handed off until a caller decides."""

    def test_save_hands_off_the_source(self):
        self.assertOk(self.h.ctl("save", "vm1", self.stream))
        self.assertEqual(self.state(), "handed-off")
        self.assertStates(self.h, NAMES, "STOP")
        rec = self.record()
        self.assertEqual(rec.get("handoff"), "handed-off")
        self.assertNotIn("sequence", rec)
        self.assertIn("handed off", self.h.daemon.read_log())

    def test_handed_off_vm_refuses_everything_but_start(self):
        self.assertOk(self.h.ctl("save", "vm1", self.stream))
        for args in (["quiesce", "vm1"], ["abort", "vm1"], ["precopy", "vm1"],
                     ["save", "vm1", self.stream + ".2"], ["resume", "vm1", self.stream]):
            self.assertRefusedAsHandedOff(*args)
        self.assertStates(self.h, NAMES, "STOP")
        self.assertOk(self.h.ctl("start", "vm1"))
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.state(), "running")
        self.assertNotIn("handoff", self.record())
        self.assertEqual([self.h.sim.events(n) for n in NAMES], [[], []])

    def test_unregister_releases_a_handed_off_vm_and_leaves_it_stopped(self):
        self.assertOk(self.h.ctl("save", "vm1", self.stream))
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertIsNone(self.record())
        self.h.restart_daemon()
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 0)
        self.assertStates(self.h, NAMES, "STOP")

    def test_handed_off_vm_stays_handed_off_across_a_restart(self):
        self.assertOk(self.h.ctl("save", "vm1", self.stream))
        self.h.restart_daemon()
        self.assertEqual(self.state(), "handed-off")
        self.assertRefusedAsHandedOff("abort", "vm1")
        self.assertOk(self.h.ctl("start", "vm1"))
        self.assertStates(self.h, NAMES, "RUNNING")

    def test_failure_after_the_trailer_rolls_nothing_back(self):
        """gpu0 fails STOP_COPY>STOP after the stream is complete: the Save fails, but the
        stream may run elsewhere, so no device goes back to RUNNING."""
        self.h.sim.fault("gpu0", "STOP_COPY>STOP", "fail")
        r = self.h.ctl("--json", "save", "vm1", self.stream)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("handed off", r.stderr + r.stdout)
        self.assertEqual(self.state(), "handed-off")
        states = self.h.sim.states(NAMES)
        self.assertNotIn("RUNNING", states.values(), states)
        last = self.h.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence")
        self.assertFalse(last.get("rolled-back", False), last)
        self.h.sim.clear_faults("gpu0")
        self.assertOk(self.h.ctl("start", "vm1"))
        self.assertStates(self.h, NAMES, "RUNNING")


class CrashHandoffTest(HandoffCase):
    """Reproduction 1: kill -9 after the commit; the restart must not run the source."""

    def crash_in_stopped_phase(self, after_crash):
        self.h.write_policy({"defaults": {"after-crash": after_crash}})
        self.h.daemon.stop()
        self.start_again()
        sig = Signals(self.h)
        self.addCleanup(sig.stop)
        for n in NAMES:
            self.h.sim.latency(n, SLOW_MS, arc="STOP_COPY>STOP")
        bg = subprocess.Popen([self.h.ctl_tool, "save", "vm1", self.stream], env=self.h.bus.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(bg.wait)
        sig.progress("stopped", "started", "save")
        self.h.crash_daemon()
        found = self.h.sim.states(NAMES)
        for n in NAMES:
            self.h.sim.latency(n, 0, arc="STOP_COPY>STOP")
        self.h.restart_daemon()
        self.assertEqual(sig.recovered("vm1")["args"], ["vm1", "none", "handed-off"])
        return found

    def start_again(self):
        self.h.restart_daemon()

    def check_handed_off(self, found):
        e = self.entry()
        self.assertEqual((e["action"], e["outcome"], e["operation"]),
                         ("none", "handed-off", "save"))
        self.assertIn("after-crash does not apply", e["message"])
        self.assertEqual(self.h.sim.states(NAMES), found, "a device moved")
        self.assertNotIn("RUNNING", found.values())
        self.assertEqual(self.state(), "handed-off")
        self.assertEqual(self.record().get("handoff"), "handed-off")
        self.assertNotIn("sequence", self.record())

    def test_rollback_policy_does_not_run_a_committed_source(self):
        self.check_handed_off(self.crash_in_stopped_phase("rollback"))

    def test_finish_policy_does_not_run_a_committed_source(self):
        found = self.crash_in_stopped_phase("finish")
        self.check_handed_off(found)
        # the caller decides: the destination failed, run here again
        self.assertOk(self.h.ctl("start", "vm1"))
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual([self.h.sim.events(n) for n in NAMES], [[], []])


class FullDiskTest(HandoffCase):
    """Reproduction 1 without a crash: the state directory fills during a Save."""

    def setUp(self):
        self.tmpfs = None
        super().setUp()

    def start(self):
        if not self.tmpfs:
            self.tmpfs = os.path.join(self.h.workdir, "state-tmpfs")
            mount_tmpfs(self.tmpfs)
            self.addCleanup(umount, self.tmpfs)
            self.h.daemon_args.append(f"--state-dir={self.tmpfs}")
        super().start()

    def save_filling_the_disk_in(self, phase, arc):
        sig = Signals(self.h)
        self.addCleanup(sig.stop)
        # The devices hang in the phase until the disk is full: a latency was a race that a
        # slow valgrind run lost (the journal written before the disk filled).
        for n in NAMES:
            self.h.sim.fault(n, arc, "hang")
        bg = subprocess.Popen([self.h.ctl_tool, "--json", "save", "vm1", self.stream],
                              env=self.h.bus.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        sig.progress(phase, "started", "save")
        filler = fill(self.tmpfs)
        for n in NAMES:
            self.h.sim("clear-faults", n)
        out, err = bg.communicate(timeout=seconds(60))
        return bg.returncode, out + err, filler

    def test_full_disk_before_the_commit_fails_the_save_without_its_trailer(self):
        code, out, filler = self.save_filling_the_disk_in("stop-copy", "STOP>STOP_COPY")
        self.assertNotEqual(code, 0, out)
        self.assertIn("trailer was not written", out)
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.state(), "running")
        os.unlink(filler)
        # a destination refuses the incomplete stream (if the CLI kept it at all)
        self.assertFalse(os.path.exists(self.stream) and os.path.getsize(self.stream) > 0
                         and self.resumes_elsewhere())

    def resumes_elsewhere(self):
        dst = self.new_host("dst", devices=[(n, "mlx5", {"p2p_group": "vm1"}) for n in NAMES])
        self.assertOk(dst.ctl("register", "vm1", *NAMES))
        return dst.ctl("resume", "vm1", self.stream).returncode == 0

    def test_full_disk_after_the_commit_keeps_the_end_and_the_handoff(self):
        code, out, filler = self.save_filling_the_disk_in("stopped", "STOP_COPY>STOP")
        self.assertEqual(code, 0, out)
        self.assertEqual(self.state(), "handed-off")
        # on disk: the durable commit, the end still to be written
        rec = self.record()
        self.assertEqual(rec.get("handoff"), "committing")
        self.assertIn("sequence", rec)
        self.h.crash_daemon()
        os.unlink(filler)
        self.h.restart_daemon()
        self.assertEqual(self.entry()["outcome"], "handed-off")
        self.assertStates(self.h, NAMES, "STOP")
        self.assertEqual(self.state(), "handed-off")

    def test_end_record_is_written_once_space_returns(self):
        code, out, filler = self.save_filling_the_disk_in("stopped", "STOP_COPY>STOP")
        self.assertEqual(code, 0, out)
        self.assertIn("sequence", self.record())
        os.unlink(filler)
        wait_for(lambda: "sequence" not in self.record(), seconds(10),
                 "the retried end record")
        self.assertEqual(self.record().get("handoff"), "handed-off")
        self.assertIn("written again after a failed write", self.h.daemon.read_log())

    def test_unregister_on_a_full_disk_is_refused_and_the_vm_stays(self):
        filler = fill(self.tmpfs)
        r = self.h.ctl("unregister", "vm1")
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("not unregistered", r.stderr)
        self.assertIn("Free space", r.stderr)
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 1)
        os.unlink(filler)
        self.h.restart_daemon()
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 1)
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.h.restart_daemon()
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 0)

    def test_sequence_whose_begin_cannot_be_written_moves_nothing(self):
        filler = fill(self.tmpfs)
        r = self.h.ctl("quiesce", "vm1")
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("crash journal", r.stderr)
        self.assertStates(self.h, NAMES, "RUNNING")
        os.unlink(filler)
        self.assertOk(self.h.ctl("quiesce", "vm1"))


class RecoveryNeverForgetsTest(HandoffCase):
    """Reproduction 5: a VM that cannot be restored stays in the journal."""

    def crash_mid_quiesce(self):
        sig = Signals(self.h)
        self.addCleanup(sig.stop)
        for n in NAMES:
            self.h.sim.latency(n, 50, arc="RUNNING_P2P>STOP")
        self.h.sim.latency("gpu0", SLOW_MS, arc="RUNNING_P2P>STOP")
        bg = subprocess.Popen([self.h.ctl_tool, "quiesce", "vm1"], env=self.h.bus.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(bg.wait)
        sig.state("nic0", "STOP")
        self.h.crash_daemon()
        for n in NAMES:
            self.h.sim.latency(n, 0)
        return sig

    def assertNotRestoredButKept(self, sig):
        self.assertEqual(sig.recovered("vm1")["args"][:2], ["vm1", "not-restored"])
        e = self.entry()
        self.assertIn("stays in the journal", e["message"])
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 0)
        rec = self.record()
        self.assertIsNotNone(rec, "the journal forgot vm1")
        self.assertEqual(rec["sequence"]["operation"], "quiesce")

    def assertRolledBack(self, sig):
        self.assertEqual(sig.recovered("vm1")["args"], ["vm1", "rollback", "ok"])
        wait_for(lambda: self.h.sim.states(NAMES) == {n: "RUNNING" for n in NAMES},
                 seconds(20), "the rollback")
        self.assertEqual([self.h.sim.events(n) for n in NAMES], [[], []])
        self.assertNotIn("sequence", self.record())

    def corrupt(self, name):
        path = os.path.join(self.h.sim.dir, name + ".json")
        with open(path) as f:
            good = f.read()
        with open(path, "w") as f:
            f.write("{not json")

        def repair():
            with open(path, "w") as f:
                f.write(good)
        return repair

    def test_corrupt_device_file_then_repair_and_rescan(self):
        sig = self.crash_mid_quiesce()
        repair = self.corrupt("gpu0")
        self.h.restart_daemon()
        self.assertNotRestoredButKept(sig)
        # a second restart still knows it
        self.h.restart_daemon()
        self.assertNotRestoredButKept(sig)
        repair()
        self.assertOk(self.h.ctl("rescan"))
        self.assertRolledBack(sig)
        self.assertEqual(self.state(), "running")

    def test_repaired_device_is_restored_at_the_next_start(self):
        sig = self.crash_mid_quiesce()
        repair = self.corrupt("gpu0")
        self.h.restart_daemon()
        self.assertNotRestoredButKept(sig)
        repair()
        self.h.restart_daemon()
        self.assertRolledBack(sig)

    def test_hotplugged_device_brings_the_vm_back(self):
        sig = self.crash_mid_quiesce()
        path = os.path.join(self.h.sim.dir, "gpu0.json")
        os.rename(path, path + ".away")
        self.h.restart_daemon()
        self.assertNotRestoredButKept(sig)
        self.assertEqual(self.entry()["outcome"], "device-missing")
        os.rename(path + ".away", path)  # hotplug: the file appears again
        self.assertRolledBack(sig)

    def test_unregister_forgets_a_vm_that_was_not_restored(self):
        sig = self.crash_mid_quiesce()
        self.corrupt("gpu0")
        self.h.restart_daemon()
        self.assertNotRestoredButKept(sig)
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertIsNone(self.record())


class StateDirTest(MigdTestCase):
    """Reproduction 6: one state directory, one daemon."""

    def test_second_daemon_on_the_same_state_dir_refuses_to_start(self):
        h = self.new_host(devices=[("nic0", "mlx5")])
        self.assertOk(h.ctl("register", "vm1", "nic0"))
        journal = os.path.join(h.daemon.state_dir, "journal.json")
        with open(journal) as f:
            before = f.read()
        other = self.new_host("other", start=False)
        d = Daemon(other.bus, h.sim.dir, other.workdir, [f"--state-dir={h.daemon.state_dir}"],
                   label="second")
        r = subprocess.run(d.argv, env=other.bus.env, capture_output=True, text=True,
                           timeout=seconds(30))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn(f"pid {h.daemon.proc.pid}", r.stderr)
        self.assertIn("--state-dir", r.stderr)
        self.assertFalse(other.bus.has_owner(BUS_NAME))
        with open(journal) as f:
            self.assertEqual(f.read(), before, "the second daemon wrote the journal")
        self.assertEqual(h.busctl_get(ROOT, MANAGER, "VMCount"), 1)

    def test_read_only_state_dir_refuses_start(self):
        h = self.new_host(start=False)
        ro = os.path.join(h.workdir, "ro-state")
        mount_tmpfs(ro)
        self.addCleanup(umount, ro)
        subprocess.run(["mount", "-o", "remount,ro", ro], check=True)
        d = Daemon(h.bus, h.sim.dir, h.workdir, [f"--state-dir={ro}"], label="ro")
        r = subprocess.run(d.argv, env=h.bus.env, capture_output=True, text=True,
                           timeout=seconds(30))
        self.assertEqual(r.returncode, 73, r.stderr)
        self.assertIn(ro, r.stderr)
        self.assertIn("writable", r.stderr)
        self.assertFalse(h.bus.has_owner(BUS_NAME))


if __name__ == "__main__":
    main()
