#!/usr/bin/env python3
"""Crash safety: vfio-migd is killed with SIGKILL at every phase boundary of a Quiesce, in
the middle of its phases, during a Save with its stream open, during a Resume on a
destination and while a device hangs. The simulated devices outlive the daemon, as real ones
do. A new daemon on the same state directory must restore the VMs from its journal, put every
device in a consistent state by the policy's after-crash (rollback: all RUNNING, the state
kept; finish: a Quiesce completed) and say what it did: LastRecovery, a Recovered signal, the
log. A torn, corrupt or foreign journal is reported, moved aside and never acted on.

Every wait is for a signal or a property, never a fixed sleep, so the file holds under
valgrind; the sim's per-arc latencies only make the phases long enough to be cut."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (MANAGER, ROOT, VM_IFACE, MigdTestCase, main, seconds,  # noqa: E402
                      vm_path)

NAMES = ["nic0", "gpu0"]
SLOW_MS = 1500  # an arc the daemon is killed in the middle of


class Signals:
    """vfio-migctl --json monitor, read while it runs (it outlives the daemons)."""

    def __init__(self, host):
        self.mon = host.monitor()
        self.seen = 0

    def lines(self):
        return self.mon.lines()

    def wait(self, what, pred, timeout=20):
        """The first signal after the last one waited for that matches pred."""
        deadline = time.monotonic() + seconds(timeout)
        while time.monotonic() < deadline:
            sigs = self.lines()
            for i in range(self.seen, len(sigs)):
                if pred(sigs[i]):
                    self.seen = i + 1
                    return sigs[i]
            time.sleep(0.01)
        raise AssertionError(f"no {what} within {seconds(timeout):.0f} s; signals: "
                             f"{[(s['signal'], s['args']) for s in self.lines()]}")

    def progress(self, phase, status, op=None):
        return self.wait(f"SequenceProgress {op or ''} {phase} {status}",
                         lambda s: s["signal"] == "SequenceProgress" and
                         s["args"][3] == phase and s["args"][6] == status and
                         (op is None or s["args"][2] == op))

    def state(self, device, new_state):
        return self.wait(f"DeviceStateChanged {device} -> {new_state}",
                         lambda s: s["signal"] == "DeviceStateChanged" and
                         s["args"][0] == device and s["args"][3] == new_state)

    def recovered(self, vm):
        return self.wait(f"Recovered {vm}",
                         lambda s: s["signal"] == "Recovered" and s["args"][0] == vm)

    def stop(self):
        self.mon.stop()


class CrashTestCase(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, "mlx5", {"p2p_group": "vm1"}) for n in NAMES])
        self.assertOk(self.h.ctl("register", "vm1", *NAMES))
        self.sig = Signals(self.h)
        self.addCleanup(self.sig.stop)
        self.bg = None

    def tearDown(self):
        if self.bg and self.bg.poll() is None:
            self.bg.kill()
            self.bg.wait()

    def policy(self, after_crash):
        self.h.write_policy({"defaults": {"after-crash": after_crash}})

    def background(self, *args, **kw):
        """vfio-migctl ARGS running while the test kills the daemon under it."""
        self.bg = subprocess.Popen([self.h.ctl_tool, *args], env=self.h.bus.env,
                                   stdout=kw.get("stdout", subprocess.DEVNULL),
                                   stdin=kw.get("stdin", subprocess.DEVNULL),
                                   stderr=subprocess.DEVNULL)
        return self.bg

    def crash_and_restart(self):
        self.h.crash_daemon()
        found = self.h.sim.states(NAMES)
        self.h.restart_daemon()
        return found

    def last_recovery(self, settle=True):
        """LastRecovery once the recovery's sequences are over."""
        rec = self.h.busctl_get(ROOT, MANAGER, "LastRecovery")
        deadline = time.monotonic() + seconds(20)
        while settle and rec["status"] == "recovering" and time.monotonic() < deadline:
            time.sleep(0.05)
            rec = self.h.busctl_get(ROOT, MANAGER, "LastRecovery")
        return rec

    def entry(self, rec, vm="vm1"):
        return next(e for e in rec["vms"] if e["vm"] == vm)

    def assertRecovered(self, action, outcome, operation, states=None):
        sig = self.sig.recovered("vm1")
        self.assertEqual(sig["args"], ["vm1", action, outcome])
        rec = self.last_recovery()
        self.assertEqual(rec["status"], "recovered")
        e = self.entry(rec)
        self.assertEqual((e["action"], e["outcome"], e["operation"]),
                         (action, outcome, operation))
        if states:
            self.assertEqual(e["states"], states, "the states the start found")
        log = self.h.daemon.read_log()
        self.assertIn(f"VM vm1: vfio-migd stopped during {operation}", log)
        return e

    def assertIntact(self, names=NAMES):
        """No device was reset: the state it had is the one it goes on from."""
        for n in names:
            self.assertEqual(self.h.sim.show(n)["resets"], 0, f"{n} was reset")

    def assertVmBack(self, origin="dbus"):
        """The VM is registered again; the journal keeps its first origin."""
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Name"), "vm1")
        rec = self.last_recovery()
        self.assertEqual(self.entry(rec)["origin"], origin)
        with open(os.path.join(self.h.daemon.state_dir, "journal.json")) as f:
            j = json.load(f)
        self.assertEqual(j["payload"]["vms"]["vm1"]["origin"], origin)
        self.assertNotIn("sequence", j["payload"]["vms"]["vm1"], "the recovery ended it")


class QuiesceCrashTest(CrashTestCase):
    """kill -9 at each boundary and inside each phase of a Quiesce."""

    def quiesce_slow(self, p2p_ms=300, stop_ms=300, slow_arc=None):
        """Quiesce in the background; slow_arc: gpu0 takes SLOW_MS on that arc."""
        for n in NAMES:
            self.h.sim.latency(n, p2p_ms, arc="RUNNING>RUNNING_P2P")
            self.h.sim.latency(n, stop_ms, arc="RUNNING_P2P>STOP")
        if slow_arc:
            self.h.sim.latency("gpu0", SLOW_MS, arc=slow_arc)
        self.background("quiesce", "vm1")

    def rollback_case(self, cut):
        self.quiesce_slow()
        cut()
        found = self.crash_and_restart()
        if all(s == "RUNNING" for s in found.values()):
            # Nothing had moved yet: nothing to roll back, and it says so.
            self.assertRecovered("none", "consistent", "quiesce")
        else:
            self.assertRecovered("rollback", "ok", "quiesce", found)
            self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE,
                                               "LastSequence")["operation"], "abort")
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertIntact()
        self.assertVmBack()

    def test_killed_as_the_p2p_phase_begins(self):
        self.rollback_case(lambda: self.sig.progress("p2p", "started", "quiesce"))

    def test_killed_in_the_middle_of_the_p2p_phase(self):
        self.quiesce_slow(p2p_ms=50, slow_arc="RUNNING>RUNNING_P2P")
        self.sig.state("nic0", "RUNNING_P2P")
        found = self.crash_and_restart()
        self.assertEqual(found, {"nic0": "RUNNING_P2P", "gpu0": "RUNNING"})
        self.assertRecovered("rollback", "ok", "quiesce", found)
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertIntact()
        self.assertVmBack()

    def test_killed_between_the_p2p_and_the_stop_phase(self):
        self.quiesce_slow(stop_ms=SLOW_MS)
        self.sig.progress("p2p", "done", "quiesce")
        found = self.crash_and_restart()
        self.assertEqual(found, {n: "RUNNING_P2P" for n in NAMES})
        self.assertRecovered("rollback", "ok", "quiesce", found)
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertIntact()

    def test_killed_in_the_middle_of_the_stop_phase(self):
        self.quiesce_slow(stop_ms=50, slow_arc="RUNNING_P2P>STOP")
        self.sig.state("nic0", "STOP")
        found = self.crash_and_restart()
        self.assertEqual(found, {"nic0": "STOP", "gpu0": "RUNNING_P2P"})
        self.assertRecovered("rollback", "ok", "quiesce", found)
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertIntact()
        self.assertEqual([self.h.sim.events(n) for n in NAMES], [[], []],
                         "the rollback let no stopped device see a running peer")

    def test_killed_as_the_stop_phase_ends(self):
        """The quiesce may have been recorded as over or not: either way one consistent
        state, and LastRecovery says which."""
        self.quiesce_slow()
        self.sig.progress("stop", "done", "quiesce")
        self.crash_and_restart()
        rec = self.last_recovery()
        e = self.entry(rec)
        if e["action"] == "restored":
            self.assertEqual(rec["status"], "clean")
            self.assertStates(self.h, NAMES, "STOP")
        else:
            self.assertEqual((e["action"], e["outcome"]), ("rollback", "ok"))
            self.assertStates(self.h, NAMES, "RUNNING")
        self.assertIntact()

    def test_finish_completes_a_quiesce_cut_in_its_stop_phase(self):
        self.policy("finish")
        self.quiesce_slow(stop_ms=50, slow_arc="RUNNING_P2P>STOP")
        self.sig.state("nic0", "STOP")
        self.h.crash_daemon()
        kept = self.h.sim.show("nic0")["blob_sha256"]
        for n in NAMES:  # the finishing walk need not be slow
            self.h.sim.latency(n, 0, arc="RUNNING_P2P>STOP")
        self.h.restart_daemon()
        e = self.assertRecovered("finish", "ok", "quiesce")
        self.assertEqual(e["after-crash"], "finish")
        self.assertStates(self.h, NAMES, "STOP")
        self.assertEqual(self.h.sim.show("nic0")["blob_sha256"], kept, "nic0's state moved")
        self.assertIntact()
        self.assertEqual([self.h.sim.events(n) for n in NAMES], [[], []])
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence")
                         ["operation"], "quiesce")

    def test_finish_completes_a_quiesce_cut_in_its_p2p_phase(self):
        self.policy("finish")
        self.quiesce_slow(p2p_ms=50, slow_arc="RUNNING>RUNNING_P2P")
        self.sig.state("nic0", "RUNNING_P2P")
        self.crash_and_restart()
        self.assertRecovered("finish", "ok", "quiesce")
        self.assertStates(self.h, NAMES, "STOP")
        self.assertEqual([self.h.sim.events(n) for n in NAMES], [[], []],
                         "finishing kept the P2P quiesce before any stop")

    def test_killed_while_a_device_hangs(self):
        self.h.sim.fault("gpu0", "RUNNING_P2P>STOP", "hang")
        self.quiesce_slow(p2p_ms=0, stop_ms=0)
        self.sig.state("nic0", "STOP")
        found = self.crash_and_restart()
        self.assertEqual(found, {"nic0": "STOP", "gpu0": "RUNNING_P2P"})
        self.assertRecovered("rollback", "ok", "quiesce", found)
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertIntact()


class StreamCrashTest(CrashTestCase):
    """Save with its stream open, Resume on a destination."""

    def test_killed_during_save_before_the_commit_rolls_back(self):
        """Cut while the stream is written, before its commit: no destination can have a
        complete stream, so finish (which cannot finish a Save) rolls back, state kept."""
        self.policy("finish")
        for n in NAMES:
            self.h.sim.latency(n, SLOW_MS, arc="STOP>STOP_COPY")
        self.background("save", "vm1", os.path.join(self.workdir, "vm1.mig"))
        self.sig.progress("stop-copy", "started", "save")
        found = self.crash_and_restart()
        self.assertEqual(set(found.values()) - {"STOP", "STOP_COPY"}, set(), found)
        for n in NAMES:
            self.h.sim.latency(n, 0, arc="STOP>STOP_COPY")
        e = self.assertRecovered("rollback", "ok", "save", found)
        self.assertIn("Save cannot be finished", e["message"])
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertIntact()

    def test_killed_during_save_after_the_commit_stays_handed_off(self):
        """Reproduction 1: cut in the stopped phase, the stream complete: the destination
        may run the VM, so the source stays stopped whatever after-crash says."""
        stream = os.path.join(self.workdir, "vm1.mig")
        for n in NAMES:
            self.h.sim.latency(n, SLOW_MS, arc="STOP_COPY>STOP")
        self.background("save", "vm1", stream)
        self.sig.progress("stopped", "started", "save")
        found = self.crash_and_restart()
        self.assertEqual(found, {n: "STOP_COPY" for n in NAMES})
        sig = self.sig.recovered("vm1")
        self.assertEqual(sig["args"], ["vm1", "none", "handed-off"])
        self.assertEqual(self.h.sim.states(NAMES), found)
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "State"), "handed-off")
        self.assertIntact()

    def test_killed_while_resuming_loses_the_loading_state_and_says_so(self):
        stream = os.path.join(self.workdir, "vm1.mig")
        self.assertOk(self.h.ctl("save", "vm1", stream))
        self.assertOk(self.h.ctl("start", "vm1"))
        with open(stream, "rb") as f:
            data = f.read()
        resume = self.background("resume", "vm1", "-", stdin=subprocess.PIPE)
        resume.stdin.write(data[:len(data) // 2])
        resume.stdin.flush()
        self.sig.progress("load", "started", "resume")
        found = self.crash_and_restart()
        resume.stdin.close()
        self.assertEqual(found, {n: "RESUMING" for n in NAMES})
        e = self.assertRecovered("rollback", "state-lost", "resume", found)
        self.assertEqual(sorted(e["lost-state"]), sorted(NAMES))
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence")
                         ["operation"], "reset")
        self.assertIn("the state it was loading is lost", self.h.daemon.read_log())


class JournalTest(CrashTestCase):
    """The journal itself: restored VMs, and files that must not be trusted."""

    def journal_path(self):
        return os.path.join(self.h.daemon.state_dir, "journal.json")

    def stopped_vm_with_a_bad_journal(self, damage):
        """vm1's devices cut mid-quiesce, then the journal damaged: nothing may move."""
        for n in NAMES:
            self.h.sim.latency(n, SLOW_MS, arc="RUNNING_P2P>STOP")
        self.background("quiesce", "vm1")
        self.sig.progress("stop", "started", "quiesce")
        self.h.crash_daemon()
        with open(self.journal_path(), "rb") as f:
            text = f.read()
        with open(self.journal_path(), "wb") as f:
            f.write(damage(text))
        before = {n: self.h.sim.show(n) for n in NAMES}
        self.h.restart_daemon()
        rec = self.last_recovery()
        self.assertEqual(rec["status"], "journal-corrupt")
        self.assertEqual(rec["vms"], [])
        self.assertTrue(rec["moved-to"].startswith(self.journal_path() + ".corrupt-"), rec)
        with open(rec["moved-to"], "rb") as f:
            self.assertEqual(f.read(), damage(text), "the bad file is kept as it was")
        self.assertFalse(os.path.exists(self.journal_path()))
        self.assertIn(self.journal_path(), self.h.daemon.read_log())
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 0)
        after = {n: self.h.sim.show(n) for n in NAMES}
        for n in NAMES:
            self.assertEqual((after[n]["state"], after[n]["blob_sha256"]),
                             (before[n]["state"], before[n]["blob_sha256"]),
                             f"{n} was touched")
        # the daemon goes on with a fresh journal
        self.assertOk(self.h.ctl("register", "vm2", "nic0"))
        self.assertTrue(os.path.exists(self.journal_path()))
        return rec

    def test_torn_journal_is_reported_and_not_trusted(self):
        rec = self.stopped_vm_with_a_bad_journal(lambda t: t[:len(t) // 2])
        self.assertIn("not valid JSON", rec["message"])

    def test_corrupt_journal_fails_its_checksum(self):
        def flip(t):
            i = t.index(b'"nic0"') + 2  # still valid JSON, another device name
            return t[:i] + b"j" + t[i + 1:]
        rec = self.stopped_vm_with_a_bad_journal(flip)
        self.assertIn("checksum", rec["message"])

    def test_journal_of_another_version_is_not_trusted(self):
        rec = self.stopped_vm_with_a_bad_journal(
            lambda t: t.replace(b'"version":1,', b'"version":99,'))
        self.assertIn("version 99", rec["message"])

    def test_vms_come_back_after_a_clean_restart(self):
        self.h.daemon.stop()
        self.h.restart_daemon()
        rec = self.last_recovery()
        self.assertEqual(rec["status"], "clean")
        self.assertEqual([(e["vm"], e["action"]) for e in rec["vms"]], [("vm1", "restored")])
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Devices"),
                         [f"{ROOT}/device/{n}" for n in NAMES])
        self.assertOk(self.h.ctl("quiesce", "vm1"))

    def test_vm_whose_device_vanished_is_not_restored(self):
        self.h.crash_daemon()
        self.h.sim("remove", "gpu0")
        self.h.restart_daemon()
        sig = self.sig.recovered("vm1")
        self.assertEqual(sig["args"], ["vm1", "not-restored", "device-missing"])
        rec = self.last_recovery()
        self.assertEqual(rec["status"], "recovered")
        self.assertIn("gpu0", self.entry(rec)["message"])
        self.assertEqual(self.h.busctl_get(ROOT, MANAGER, "VMCount"), 0)

    def test_sequence_is_refused_when_the_journal_cannot_be_written(self):
        """The record goes to disk before any device moves, or nothing moves."""
        state_dir = self.h.daemon.state_dir
        os.unlink(os.path.join(state_dir, "journal.json"))
        os.unlink(os.path.join(state_dir, "lock"))
        os.rmdir(state_dir)
        r = self.h.ctl("quiesce", "vm1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("crash journal", r.stderr)
        self.assertStates(self.h, NAMES, "RUNNING")


if __name__ == "__main__":
    main()
