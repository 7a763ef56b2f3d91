#!/usr/bin/env python3
"""Sequences that fail: a step that fails, a device that falls into ERROR, a device that
hangs past the phase deadline. Each is rolled back, every device ends RUNNING, the method
fails with the contract's error and LastSequence holds the failed attempt."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (EXIT_ROLLED_BACK, VM_IFACE, MigdTestCase, main, seconds,  # noqa: E402
                      vm_path)

DEVICES = [("nic0", "mlx5"), ("nic1", "pds"), ("gpu0", "xe"), ("vio0", "virtio")]
NAMES = [d[0] for d in DEVICES]


class FailureTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, p, {"p2p_group": "vm1"}) for n, p in DEVICES])
        self.path = vm_path("vm1")

    def register(self, *options):
        self.assertOk(self.h.ctl("register", "vm1", *NAMES, *options))

    def last(self):
        return self.h.busctl_get(self.path, VM_IFACE, "LastSequence")

    def assertRolledBack(self, report, device):
        self.assertEqual(report["result"], "rolled-back", report)
        self.assertIn(device, report["error"])
        self.assertTrue(any(p["name"].startswith("rollback") for p in report["phases"]),
                        [p["name"] for p in report["phases"]])
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.h.busctl_get(self.path, VM_IFACE, "State"), "running")

    def test_failing_step_rolls_every_device_back_to_running(self):
        """nic1 fails RUNNING_P2P>STOP: Quiesce exits 7 SequenceFailed, every device RUNNING."""
        self.register()
        self.h.sim.fault("nic1", "RUNNING_P2P>STOP", "fail", errno="EIO")
        r = self.h.ctl("quiesce", "vm1")
        self.assertExit(r, EXIT_ROLLED_BACK, "SequenceFailed")
        self.assertIn("nic1", r.stderr)
        # the failed attempt's timeline follows the error
        self.assertIn("VM vm1: quiesce (parallel): rolled-back", r.stdout)
        self.assertRegex(r.stdout, r"X+\.*\|\s+nic1\s+RUNNING_P2P -> RUNNING_P2P \(target STOP\)")
        self.assertRegex(r.stdout, r"error: .*Input/output error.* \(EIO\)")
        self.assertRegex(r.stdout, r"phase stop: failed \(EIO: Input/output error\)")
        self.assertIn("phase rollback", r.stdout)
        report = self.last()
        self.assertEqual(report["operation"], "quiesce")
        self.assertRolledBack(report, "nic1")
        failed = [s for s in report["steps"] if s["errno"] != 0]
        self.assertEqual([s["device"] for s in failed], ["nic1"])
        self.assertIn(abs(failed[0]["errno"]), (5,))
        self.assertEqual(report["lost-state"], [])

    def test_failing_step_via_busctl(self):
        """busctl call Quiesce fails with the sentence naming the device; LastSequence says it."""
        self.register()
        self.h.sim.fault("gpu0", "RUNNING_P2P>STOP", "fail", errno="EIO")
        self.assertBusctlFails(self.h.busctl_call(self.path, VM_IFACE, "Quiesce"), "gpu0")
        self.assertRolledBack(self.last(), "gpu0")

    def test_failed_sequence_in_json(self):
        """--json on failure: one document with the error, the exit code and the report."""
        self.register()
        self.h.sim.fault("nic1", "RUNNING_P2P>STOP", "fail")
        r = self.h.ctl("--json", "quiesce", "vm1")
        self.assertExit(r, EXIT_ROLLED_BACK, "SequenceFailed")
        j = r.json
        self.assertEqual(j["error"]["name"], "org.vfiomig.Coordinator1.Error.SequenceFailed")
        self.assertEqual(j["exit-code"], EXIT_ROLLED_BACK)
        self.assertEqual(j["report"], self.last())

    def test_failure_in_the_p2p_phase_stops_no_device(self):
        """A failure while quiescing P2P: no device ever reaches STOP, all end RUNNING."""
        self.register()
        self.h.sim.fault("vio0", "RUNNING>RUNNING_P2P", "fail")
        self.assertExit(self.h.ctl("quiesce", "vm1"), EXIT_ROLLED_BACK, "SequenceFailed")
        report = self.last()
        self.assertRolledBack(report, "vio0")
        self.assertFalse([s for s in report["steps"] if s["reached"] == "STOP"], report["steps"])
        self.assertEqual(report["phases"][0]["name"], "p2p")
        self.assertNotEqual(report["phases"][0]["errno"], 0)

    def test_device_falling_into_error_is_reset_and_reported_lost(self):
        """gpu0 falls into ERROR: it is reset, named in lost-state; every device RUNNING."""
        self.register()
        self.h.sim.fault("gpu0", "RUNNING_P2P>STOP", "error")
        resets = self.h.sim.show("gpu0")["resets"]
        r = self.h.ctl("quiesce", "vm1")
        self.assertExit(r, EXIT_ROLLED_BACK, "SequenceFailed")
        self.assertIn("lost state (fell into ERROR, reset): gpu0", r.stdout)
        report = self.last()
        self.assertRolledBack(report, "gpu0")
        self.assertEqual(report["lost-state"], ["gpu0"])
        self.assertEqual(self.h.sim.show("gpu0")["resets"], resets + 1)

    def test_hanging_device_times_out_and_is_rolled_back(self):
        """nic0 hangs in the stop phase; deadline 300 ms: Timeout, rollback, bounded time."""
        self.register("--phase-deadline-ms", "300")
        self.h.sim.fault("nic0", "RUNNING_P2P>STOP", "hang")
        r = self.h.ctl("quiesce", "vm1")
        self.assertExit(r, EXIT_ROLLED_BACK, "Timeout")
        # The reply came although nic0 never returns on its own: the deadline, not the
        # device, ended the call (no wall-clock bound; the harness's timeout catches a hang).
        report = self.last()
        self.assertRolledBack(report, "nic0")
        stop = next(p for p in report["phases"] if p["name"] == "stop")
        self.assertGreaterEqual(stop["duration-us"], 300_000)
        self.assertNotEqual(stop["errno"], 0)

    def test_hang_in_the_p2p_phase_times_out(self):
        """A hang while quiescing P2P: Timeout via busctl, every device RUNNING."""
        self.register("--phase-deadline-ms", "300")
        self.h.sim.fault("nic1", "RUNNING>RUNNING_P2P", "hang")
        self.assertBusctlFails(self.h.busctl_call(self.path, VM_IFACE, "Quiesce"))
        self.assertRolledBack(self.last(), "nic1")

    def test_start_after_rollback_and_retry_succeeds(self):
        """Once the fault is gone, the rolled-back VM quiesces normally."""
        self.register()
        self.h.sim.fault("nic1", "RUNNING_P2P>STOP", "fail", times=1)
        self.assertExit(self.h.ctl("quiesce", "vm1"), EXIT_ROLLED_BACK, "SequenceFailed")
        self.assertOk(self.h.ctl("quiesce", "vm1"))
        self.assertStates(self.h, NAMES, "STOP")


if __name__ == "__main__":
    main()
