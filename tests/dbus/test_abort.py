#!/usr/bin/env python3
"""Abort that preempts, a hung step that returns late, and SIGTERM that ends the daemon
(issue 11, reproductions 2 and 4). Every test ends with each device RUNNING and no P2P
corruption event on any of them (the sim records one when a device stops while a peer can
still DMA into it)."""

import array
import fcntl
import os
import signal
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (EXIT_OK, EXIT_ROLLED_BACK, MANAGER, ROOT, VM_IFACE,  # noqa: E402
                      MigdTestCase, main, seconds, vm_path, wait_for)

DEVICES = [("nic0", "mlx5"), ("nic1", "pds"), ("gpu0", "xe")]
NAMES = [d[0] for d in DEVICES]
ECANCELED = 125


def fifo_bytes(fd):
    """How many bytes wait unread in the pipe fd."""
    n = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, n)
    return n[0]


class Background:
    """vfio-migctl ARGS running while the test goes on."""

    def __init__(self, host, *args):
        self.proc = subprocess.Popen([host.ctl_tool, *map(str, args)], env=host.bus.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def running(self):
        return self.proc.poll() is None

    def wait(self, timeout):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


class VmCase(MigdTestCase):
    """What every test here checks at its end."""

    def assertNoCorruption(self):
        self.assertEqual({n: self.h.sim.events(n) for n in NAMES}, {n: [] for n in NAMES},
                         "P2P corruption events")

    def entry_after_restart(self):
        """Restarts the daemon, waits for its recovery, returns vm1's LastRecovery entry."""
        self.h.restart_daemon()
        wait_for(lambda: self.h.busctl_get(ROOT, MANAGER, "LastRecovery")["status"]
                 != "recovering", seconds(20), "the recovery to end")
        rec = self.h.busctl_get(ROOT, MANAGER, "LastRecovery")
        return next(v for v in rec["vms"] if v["vm"] == "vm1")


class AbortTest(VmCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, p, {"p2p_group": "vm1"}) for n, p in DEVICES])
        self.path = vm_path("vm1")

    def register(self, *options):
        self.assertOk(self.h.ctl("register", "vm1", *NAMES, *options))

    def last(self):
        return self.h.busctl_get(self.path, VM_IFACE, "LastSequence")

    def blockers(self):
        return self.h.busctl_get(self.path, VM_IFACE, "Blockers")

    def test_abort_preempts_a_hanging_quiesce(self):
        """Reproduction 4: hang fault, 20 s deadline; Abort during the stop phase answers
        with the rollback's report instead of Busy: the stop phase ended ECANCELED (the
        deadline never fired), the Quiesce caller gets SequenceFailed, every device RUNNING."""
        self.register("--phase-deadline-ms", "20000")
        self.h.sim.fault("gpu0", "RUNNING_P2P>STOP", "hang")
        quiesce = Background(self.h, "quiesce", "vm1")
        # the stop phase is under way once the others stopped; gpu0 hangs in it
        wait_for(lambda: self.h.sim.states(["nic0", "nic1"]) == {"nic0": "STOP", "nic1": "STOP"},
                 seconds(10), "nic0 and nic1 to stop")
        self.assertTrue(quiesce.running())
        r = self.h.ctl("--json", "abort", "vm1")
        self.assertExit(r, EXIT_OK)
        report = r.json if "operation" in r.json else r.json.get("report", r.json)
        self.assertEqual(report["operation"], "quiesce", report)
        self.assertEqual(report["result"], "rolled-back", report)
        self.assertTrue(report["aborted"])
        code, out, err = quiesce.wait(seconds(10))
        self.assertEqual(code, EXIT_ROLLED_BACK, err)
        self.assertIn("SequenceFailed", err)
        self.assertIn("aborted", err)
        last = self.last()
        self.assertEqual(last, report)
        stop = next(p for p in last["phases"] if p["name"] == "stop")
        self.assertEqual(stop["errno"], ECANCELED, last["phases"])
        self.assertIn("rollback:run", [p["name"] for p in last["phases"]])
        self.assertEqual(last["hung"], [])
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.h.busctl_get(self.path, VM_IFACE, "State"), "running")
        self.assertNoCorruption()

    def test_abort_names_the_device_whose_step_cannot_be_cancelled(self):
        """gpu0's RUNNING_P2P>STOP takes 3 s and ignores cancel (as a kernel ioctl does);
        Abort during it cannot wait that out: after the cancel grace it fails naming gpu0,
        the others held at RUNNING_P2P, and the VM finishes the rollback once gpu0 lands."""
        self.register("--phase-deadline-ms", "20000")
        self.h.sim.latency("gpu0", 3000, arc="RUNNING_P2P>STOP")
        quiesce = Background(self.h, "quiesce", "vm1")
        wait_for(lambda: self.h.sim.states(["nic0", "nic1"]) == {"nic0": "STOP", "nic1": "STOP"},
                 seconds(10), "the stop phase to be under way")
        r = self.h.ctl("abort", "vm1")
        self.assertExit(r, EXIT_ROLLED_BACK, "SequenceFailed")
        self.assertIn("gpu0", r.stderr)
        self.assertIn("deferred", r.stderr)
        code, out, err = quiesce.wait(seconds(10))
        self.assertEqual(code, EXIT_ROLLED_BACK, err)
        report = self.last()
        self.assertEqual(report["result"], "deferred", report)
        self.assertTrue(report["aborted"])
        self.assertEqual(report["hung"], ["gpu0"])
        wait_for(lambda: self.h.sim.states(NAMES) == {n: "RUNNING" for n in NAMES},
                 seconds(30), "the deferred rollback to bring every device back to RUNNING")
        wait_for(lambda: self.last()["operation"] == "abort", seconds(10),
                 "LastSequence to be the deferred rollback")
        self.assertEqual(self.last()["result"], "ok")
        self.assertNoCorruption()

    def test_abort_on_an_idle_vm_still_runs_an_abort(self):
        """Nothing runs: Abort is the ordinary sequence back to RUNNING."""
        self.register()
        self.assertOk(self.h.ctl("quiesce", "vm1"))
        self.assertOk(self.h.ctl("abort", "vm1"))
        self.assertEqual(self.last()["operation"], "abort")
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertNoCorruption()

    def test_hung_step_returning_late_never_stops_next_to_a_running_peer(self):
        """Reproduction 2, scaled down: gpu0's RUNNING_P2P>STOP takes 3 s (it ignores
        cancel), the deadline is 0.5 s. Quiesce fails with gpu0 hung and the rollback
        deferred: nic0 and nic1 are held at RUNNING_P2P, the VM carries step-outstanding and
        refuses sequences. When gpu0 lands in STOP the VM finishes the rollback itself:
        every device RUNNING, LastSequence the abort, zero corruption events."""
        self.register("--phase-deadline-ms", "500")
        self.h.sim.latency("gpu0", 3000, arc="RUNNING_P2P>STOP")
        mon = self.h.monitor()
        r = self.h.ctl("--json", "quiesce", "vm1")
        self.assertExit(r, EXIT_ROLLED_BACK, "Timeout")
        report = self.last()
        self.assertEqual(report["operation"], "quiesce")
        self.assertEqual(report["result"], "deferred", report)
        self.assertEqual(report["hung"], ["gpu0"])
        self.assertIn("deferred", report["error"])
        self.assertIn("gpu0", report["error"])
        self.assertNotIn("rollback:run", [p["name"] for p in report["phases"]])
        # gpu0's step is still out: its peers wait at RUNNING_P2P, nothing else may start
        if self.h.sim.state("gpu0") == "RUNNING_P2P":
            self.assertEqual(self.h.sim.states(["nic0", "nic1"]),
                             {"nic0": "RUNNING_P2P", "nic1": "RUNNING_P2P"})
            self.assertTrue(any(b.startswith("step-outstanding:") and "gpu0" in b
                                for b in self.blockers()), self.blockers())
            busy = self.h.ctl("start", "vm1")
            self.assertNotEqual(busy.returncode, 0, busy)
            self.assertIn("Busy", busy.stderr)
            self.assertIn("gpu0", busy.stderr)
        wait_for(lambda: self.h.sim.states(NAMES) == {n: "RUNNING" for n in NAMES},
                 seconds(30), "the deferred rollback to bring every device back to RUNNING")
        wait_for(lambda: self.last()["operation"] == "abort", seconds(10),
                 "LastSequence to be the deferred rollback")
        done = self.last()
        self.assertEqual(done["result"], "ok", done)
        # the late device first back to RUNNING_P2P, then every device RUNNING
        self.assertEqual([p["name"] for p in done["phases"]], ["p2p", "run"])
        gpu_steps = [s for s in done["steps"] if s["device"] == "gpu0"]
        self.assertEqual(gpu_steps[0]["from"], "STOP")
        self.assertEqual([b for b in self.blockers() if b.startswith("step-outstanding")], [])
        self.assertNoCorruption()
        time.sleep(0.3)
        sigs = mon.stop_json()
        changes = [(s["args"][0], s["args"][2], s["args"][3]) for s in sigs
                   if s["signal"] == "DeviceStateChanged"]
        self.assertIn(("gpu0", "RUNNING_P2P", "STOP"), changes)
        progress = [(s["fields"]["operation"], s["fields"]["phase"], s["fields"]["status"])
                    for s in sigs if s["signal"] == "SequenceProgress"]
        self.assertIn(("abort", "run", "done"), progress)
        # and the VM migrates again
        self.h.sim.latency("gpu0", 0, arc="RUNNING_P2P>STOP")
        self.assertOk(self.h.ctl("quiesce", "vm1"))
        self.assertNoCorruption()


class ShutdownTest(VmCase):
    """SIGTERM aborts the running sequences, waits for them at most --stop-timeout-ms, exits
    0, and leaves every VM in a state its journal record explains."""

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, p, {"p2p_group": "vm1", "blob_size": 4 << 20})
                                        for n, p in DEVICES],
                               daemon_args=["--stop-timeout-ms=2000"])
        self.assertOk(self.h.ctl("register", "vm1", *NAMES, "--phase-deadline-ms", "20000"))

    def sigterm(self):
        """SIGTERM; the daemon's exit code (the harness bounds the wait, and fails a test
        whose daemon exits non-zero)."""
        self.h.daemon.proc.send_signal(signal.SIGTERM)
        code = self.h.daemon.proc.wait(seconds(20))
        self.h.daemon.returncode = code
        self.h.daemon.log.close()
        return code

    def test_sigterm_rolls_back_a_sequence_held_by_a_hanging_device(self):
        """gpu0 hangs in the stop phase, deadline 20 s: SIGTERM aborts the Quiesce, which
        rolls back (the caller gets SequenceFailed), and the daemon exits 0 before the
        deadline could fire; every device RUNNING, and the journal holds no sequence."""
        self.h.sim.fault("gpu0", "RUNNING_P2P>STOP", "hang")
        quiesce = Background(self.h, "quiesce", "vm1")
        wait_for(lambda: self.h.sim.states(["nic0", "nic1"]) == {"nic0": "STOP", "nic1": "STOP"},
                 seconds(10), "the stop phase to be under way")
        self.assertEqual(self.sigterm(), 0)
        code, out, err = quiesce.wait(seconds(10))
        self.assertEqual(code, EXIT_ROLLED_BACK, err)
        self.assertIn("aborted", err)
        self.assertStates(self.h, NAMES, "RUNNING")
        log = self.h.daemon.read_log()
        self.assertIn("aborting its quiesce", log)
        self.assertNotIn("exiting without it", log)
        # a restart finds nothing in flight: the record was closed by the rollback
        entry = self.entry_after_restart()
        self.assertEqual(entry["operation"], "", entry)
        self.assertNoCorruption()

    def test_sigterm_exits_without_a_step_that_ignores_cancel(self):
        """gpu0's RUNNING_P2P>STOP takes 8 s and ignores cancel (a kernel ioctl cannot be
        cancelled): SIGTERM's abort ends the sequence with its rollback deferred (the peers
        held at RUNNING_P2P, never beside a stopped gpu0) and the daemon exits 0 without
        waiting for the step, leaving the journal record in flight; the restart recovers the
        VM from it: every device RUNNING, no corruption event."""
        self.h.sim.latency("gpu0", 8000, arc="RUNNING_P2P>STOP")
        quiesce = Background(self.h, "quiesce", "vm1")
        wait_for(lambda: self.h.sim.states(["nic0", "nic1"]) == {"nic0": "STOP", "nic1": "STOP"},
                 seconds(10), "the stop phase to be under way")
        self.assertEqual(self.sigterm(), 0)
        log = self.h.daemon.read_log()
        self.assertIn("aborting its quiesce", log)
        self.assertIn("device gpu0 did not return from its step (RUNNING_P2P>STOP) even "
                      "after cancel", log)
        self.assertIn("VM vm1: the rollback waits for 1 outstanding step(s)", log)
        self.assertIn("Every sequence finished: stopping.", log)
        quiesce.proc.kill()
        quiesce.wait(seconds(10))
        self.h.sim.latency("gpu0", 0, arc="RUNNING_P2P>STOP")
        entry = self.entry_after_restart()
        self.assertEqual(entry["operation"], "quiesce", entry)
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertNoCorruption()

    def test_sigterm_does_not_wait_forever_for_a_stalled_save(self):
        """Save into a FIFO nobody reads: the stream stalls; SIGTERM's abort preempts the
        stalled write (stream I/O polls the abort request), the Save rolls back and the daemon
        exits 0 without waiting out the phase deadline (20 s here). A restart finds nothing
        in flight, every device RUNNING and no corruption event."""
        fifo = os.path.join(self.workdir, "stalled.mig")
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
        try:
            save = Background(self.h, "save", "vm1", fifo)
            wait_for(lambda: self.h.busctl_get(vm_path("vm1"), VM_IFACE, "State")
                     == "sequencing:save", seconds(10), "the Save to run")
            # Bytes in the FIFO: the stream writer runs, so SIGTERM meets it in its write
            # (not the phase before it starts, which a slow valgrind run once caught).
            wait_for(lambda: fifo_bytes(reader) > 0, seconds(30), "the stream to be written")
            self.assertEqual(self.sigterm(), 0)
            log = self.h.daemon.read_log()
            self.assertIn("aborting its save", log)
            # Which sentence wins is a race: the writer's own ("... was aborted after N
            # bytes") or the phase's, which for a save phase waits for the writer to return
            # (never abandons it, hence no "exiting without it").
            self.assertRegex(log, r"phase save was aborted \(Abort\)|was aborted after \d+ bytes")
            self.assertNotIn("exiting without it", log)
            save.wait(seconds(10))
        finally:
            os.close(reader)
        entry = self.entry_after_restart()
        self.assertEqual(entry["operation"], "", entry)
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertNoCorruption()

if __name__ == "__main__":
    main()
