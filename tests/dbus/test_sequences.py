#!/usr/bin/env python3
"""The VM methods on one host: PreCopy, Quiesce, Start, Abort through vfio-migctl and busctl,
the reports they return, the refusals before anything moves (InvalidState, NotMigratable,
Busy), the signals and property changes, and the strategies: naive corrupts P2P peers, qemu
(QEMU 8.1's order) and parallel do not."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (BUS_NAME, DEVICE_IFACE, EXIT_REFUSED, VM_IFACE, MigdTestCase,  # noqa: E402
                      Monitor, device_path, main, seconds, unvariant, vm_path, wait_for)

# Four devices with P2P, two of them with PRE_COPY as well.
DEVICES = [("nic0", "mlx5"), ("nic1", "pds"), ("gpu0", "xe"), ("vio0", "virtio")]
NAMES = [d[0] for d in DEVICES]
PRE_COPY = {"nic0", "vio0"}


def steps_of(report, phase):
    return [s for s in report["steps"] if s["phase"] == phase]


def phase_names(report):
    return [p["name"] for p in report["phases"]]


def end(x):
    return x["start-us"] + x["duration-us"]


class SequenceTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, p, {"p2p_group": "vm1"}) for n, p in DEVICES])
        self.assertOk(self.h.ctl("register", "vm1", *NAMES))
        self.path = vm_path("vm1")

    def ctl_json(self, *args):
        return self.assertOk(self.h.ctl("--json", *args)).json

    def busctl_vm(self, method):
        r = self.h.busctl_call(self.path, VM_IFACE, method)
        self.assertOk(r)
        self.assertEqual(r.json["type"], "a{sv}")
        return unvariant(r.json["data"][0])

    def vm_state(self):
        return self.h.busctl_get(self.path, VM_IFACE, "State")

    def generations(self):
        return {n: self.h.sim.show(n)["generation"] for n in NAMES}

    def assertNoCorruption(self):
        for n in NAMES:
            self.assertEqual(self.h.sim.events(n), [], f"corruption events on {n}")

    # --- Quiesce ---

    def test_quiesce_p2p_phase_completes_before_any_device_stops(self):
        """Quiesce: every device RUNNING>RUNNING_P2P, barrier, every device RUNNING_P2P>STOP."""
        report = self.ctl_json("quiesce", "vm1")
        self.assertEqual((report["operation"], report["strategy"], report["result"],
                          report["error"]), ("quiesce", "parallel", "ok", ""))
        self.assertEqual(phase_names(report), ["p2p", "stop"])
        p2p, stop = steps_of(report, "p2p"), steps_of(report, "stop")
        self.assertEqual(sorted(s["device"] for s in p2p), sorted(NAMES))
        self.assertEqual(sorted(s["device"] for s in stop), sorted(NAMES))
        for s in p2p:
            self.assertEqual((s["from"], s["target"], s["reached"], s["path"], s["errno"]),
                             ("RUNNING", "RUNNING_P2P", "RUNNING_P2P", "RUNNING>RUNNING_P2P", 0))
        for s in stop:
            self.assertEqual((s["from"], s["reached"], s["path"]),
                             ("RUNNING_P2P", "STOP", "RUNNING_P2P>STOP"))
        self.assertLessEqual(max(end(s) for s in p2p), min(s["start-us"] for s in stop))
        self.assertEqual(report["lost-state"], [])
        self.assertEqual(report["hung"], [])
        self.assertGreater(report["total-us"], 0)

        self.assertStates(self.h, NAMES, "STOP")
        self.assertEqual(self.vm_state(), "stopped")
        self.assertEqual(self.h.busctl_get(device_path("nic0"), DEVICE_IFACE, "State"), "STOP")
        self.assertNoCorruption()

    def test_quiesce_prints_a_timeline(self):
        """The human output: phases, device steps with from -> reached and path, bars, result."""
        out = self.assertOk(self.h.ctl("quiesce", "vm1")).stdout
        self.assertRegex(out, r"VM vm1: quiesce \(parallel\): ok in [\d.]+ ms")
        self.assertRegex(out, r"\|[#.]+\| phase p2p")
        self.assertRegex(out, r"\|[#.]+\| phase stop")
        for n in NAMES:
            self.assertRegex(out, rf"\|[=.]+\|\s+{n}\s+RUNNING -> RUNNING_P2P\s+"
                                  r"\[RUNNING>RUNNING_P2P\]")
            self.assertRegex(out, rf"{n}\s+RUNNING_P2P -> STOP\s+\[RUNNING_P2P>STOP\]")
        self.assertIn("result: ok", out)

    def test_quiesce_via_busctl(self):
        """busctl call Quiesce returns the report a{sv}."""
        report = self.busctl_vm("Quiesce")
        self.assertEqual((report["operation"], report["result"]), ("quiesce", "ok"))
        self.assertEqual(len(report["steps"]), 2 * len(NAMES))
        self.assertStates(self.h, NAMES, "STOP")

    def test_devices_move_in_parallel_within_a_phase(self):
        """With 200 ms per arc, the four p2p steps overlap: a phase costs the slowest device."""
        for n in NAMES:
            self.h.sim.latency(n, 200)
        report = self.ctl_json("quiesce", "vm1")
        for phase in ("p2p", "stop"):
            steps = steps_of(report, phase)
            self.assertLess(max(s["start-us"] for s in steps), min(end(s) for s in steps),
                            f"the {phase} steps did not overlap: {steps}")

    def test_quiesce_twice_second_is_a_no_op(self):
        """A second Quiesce on a stopped VM succeeds and moves nothing."""
        self.ctl_json("quiesce", "vm1")
        before = self.generations()
        report = self.ctl_json("quiesce", "vm1")
        self.assertEqual(report["result"], "ok")
        self.assertTrue(all(s["from"] == s["reached"] for s in report["steps"]), report)
        self.assertStates(self.h, NAMES, "STOP")
        self.assertEqual(self.generations(), before)

    # --- PreCopy, Start, Abort ---

    def test_precopy_moves_only_pre_copy_devices(self):
        """PreCopy: devices with PRE_COPY go RUNNING>PRE_COPY, the others stay RUNNING."""
        report = self.ctl_json("precopy", "vm1")
        self.assertEqual((report["operation"], report["result"]), ("precopy", "ok"))
        self.assertEqual(sorted(s["device"] for s in report["steps"]), sorted(PRE_COPY))
        for s in report["steps"]:
            self.assertEqual(s["path"], "RUNNING>PRE_COPY")
        for n in NAMES:
            self.assertEqual(self.h.sim.state(n), "PRE_COPY" if n in PRE_COPY else "RUNNING")

    def test_quiesce_after_precopy_keeps_the_save_sessions(self):
        """After PreCopy, Quiesce takes pre-copying devices to STOP_COPY, the others to STOP."""
        self.busctl_vm("PreCopy")
        report = self.busctl_vm("Quiesce")
        paths = {s["device"]: s["path"] for s in report["steps"] if s["phase"] == "p2p"}
        self.assertEqual(paths["nic0"], "PRE_COPY>PRE_COPY_P2P")
        self.assertEqual(paths["nic1"], "RUNNING>RUNNING_P2P")
        stops = {s["device"]: s["path"] for s in report["steps"] if s["phase"] == "stop"}
        self.assertEqual(stops["vio0"], "PRE_COPY_P2P>STOP_COPY")
        self.assertEqual(stops["gpu0"], "RUNNING_P2P>STOP")
        for n in NAMES:
            self.assertEqual(self.h.sim.state(n), "STOP_COPY" if n in PRE_COPY else "STOP")
        self.assertNoCorruption()

    def test_start_returns_a_stopped_vm_to_running_with_migctl(self):
        """Start after Quiesce: p2p phase, barrier, run phase; every device RUNNING."""
        self.ctl_json("quiesce", "vm1")
        report = self.ctl_json("start", "vm1")
        self.assertEqual((report["operation"], report["result"]), ("start", "ok"))
        p2p = [s for s in report["steps"] if s["reached"] == "RUNNING_P2P"]
        run = [s for s in report["steps"] if s["reached"] == "RUNNING"]
        self.assertEqual(len(p2p), len(NAMES))
        self.assertEqual(len(run), len(NAMES))
        self.assertLessEqual(max(end(s) for s in p2p), min(s["start-us"] for s in run))
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.vm_state(), "running")

    def test_start_returns_a_stopped_vm_to_running_with_busctl(self):
        """busctl call Start after busctl call Quiesce."""
        self.busctl_vm("Quiesce")
        report = self.busctl_vm("Start")
        self.assertEqual((report["operation"], report["result"]), ("start", "ok"))
        self.assertStates(self.h, NAMES, "RUNNING")

    def test_abort_returns_to_running_from_stopped(self):
        """Abort after Quiesce (busctl, then vfio-migctl): every device RUNNING."""
        self.busctl_vm("Quiesce")
        report = self.busctl_vm("Abort")
        self.assertEqual((report["operation"], report["result"]), ("abort", "ok"))
        self.assertStates(self.h, NAMES, "RUNNING")
        self.ctl_json("precopy", "vm1")
        out = self.assertOk(self.h.ctl("abort", "vm1")).stdout
        self.assertIn("abort (parallel): ok", out)
        self.assertStates(self.h, NAMES, "RUNNING")

    def test_abort_resets_a_device_in_error_and_reports_its_state_lost(self):
        """Abort with a device in ERROR: it is reset and named in lost-state."""
        self.h.sim.set_state("nic1", "ERROR")
        resets = self.h.sim.show("nic1")["resets"]
        report = self.ctl_json("abort", "vm1")
        self.assertEqual(report["result"], "ok")
        self.assertEqual(report["lost-state"], ["nic1"])
        self.assertStates(self.h, NAMES, "RUNNING")
        self.assertEqual(self.h.sim.show("nic1")["resets"], resets + 1)
        out = self.assertOk(self.h.ctl("last", "vm1")).stdout
        self.assertIn("lost state (fell into ERROR, reset): nic1", out)

    def test_unregister_leaves_devices_in_their_state(self):
        """UnregisterVM after PreCopy: the devices stay where they are, and are free again."""
        self.ctl_json("precopy", "vm1")
        self.assertOk(self.h.ctl("unregister", "vm1"))
        for n in NAMES:
            self.assertEqual(self.h.sim.state(n), "PRE_COPY" if n in PRE_COPY else "RUNNING")
            self.assertEqual(self.h.busctl_get(device_path(n), DEVICE_IFACE, "VM"), "/")

    # --- refused before anything moves ---

    def test_precopy_on_a_stopped_vm_is_invalid_state(self):
        """PreCopy after Quiesce: InvalidState naming a device and its state; nothing moves."""
        self.ctl_json("quiesce", "vm1")
        before = self.generations()
        r = self.h.ctl("precopy", "vm1")
        self.assertExit(r, EXIT_REFUSED, "InvalidState")
        self.assertIn("STOP", r.stderr)
        self.assertTrue(any(n in r.stderr for n in NAMES), r.stderr)
        self.assertBusctlFails(self.h.busctl_call(self.path, VM_IFACE, "PreCopy"), "STOP")
        self.assertGdbusError(self.h.gdbus_call(self.path, VM_IFACE + ".PreCopy"), "InvalidState")
        self.assertStates(self.h, NAMES, "STOP")
        self.assertEqual(self.generations(), before)
        last = self.h.busctl_get(self.path, VM_IFACE, "LastSequence")
        self.assertEqual(last["operation"], "quiesce", "a refused call is not a sequence")

    def test_quiesce_with_a_device_in_error_is_refused_naming_it_and_abort(self):
        """A device in ERROR is a blocker (device-error): Quiesce is NotMigratable naming it
        and Abort; the other devices stay RUNNING."""
        self.h.sim.set_state("gpu0", "ERROR")
        # the daemon serves cached states, refreshed off the loop: wait until it has seen it
        wait_for(lambda: self.h.busctl_get(device_path("gpu0"), DEVICE_IFACE, "State")
                 == "ERROR", seconds(10), "the daemon to see gpu0 in ERROR")
        r = self.h.ctl("quiesce", "vm1")
        self.assertExit(r, EXIT_REFUSED, "NotMigratable")
        self.assertIn("device-error: device 'gpu0' is in ERROR", r.stderr)
        self.assertIn("vfio-migctl abort vm1", r.stderr)
        self.assertStates(self.h, ["nic0", "nic1", "vio0"], "RUNNING")
        self.assertEqual(self.h.sim.state("gpu0"), "ERROR")

    def test_save_without_the_precopy_session_is_invalid_state(self):
        """A VM registered again after PreCopy: the daemon holds no session for the pre-copying
        devices, so Save is refused before anything moves, and Abort recovers the VM."""
        self.ctl_json("precopy", "vm1")
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertOk(self.h.ctl("register", "vm1", *NAMES))
        before = self.generations()
        out = os.path.join(self.h.workdir, "stream")
        r = self.h.ctl("save", "vm1", out)
        self.assertExit(r, EXIT_REFUSED, "InvalidState")
        self.assertIn("no data session", r.stderr)
        self.assertIn("Abort", r.stderr)
        self.assertEqual(self.generations(), before, "nothing moved")
        self.assertEqual({n: self.h.sim.state(n) for n in sorted(PRE_COPY)},
                         {n: "PRE_COPY" for n in sorted(PRE_COPY)})
        self.ctl_json("abort", "vm1")
        self.assertStates(self.h, NAMES, "RUNNING")
        self.ctl_json("save", "vm1", out)
        self.assertStates(self.h, NAMES, "STOP")

    def test_busy_while_a_sequence_runs(self):
        """A second call on a VM while its sequence runs is Busy; reads stay responsive."""
        for n in NAMES:
            self.h.sim.latency(n, 400)
        first = subprocess.Popen([self.h.ctl_tool, "--json", "quiesce", "vm1"],
                                 env=self.h.bus.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: self.vm_state().startswith("sequencing:"), seconds(5),
                     "VM vm1 to be sequencing")
            r = self.h.ctl("quiesce", "vm1")
            self.assertExit(r, EXIT_REFUSED, "Busy")
            self.assertExit(self.h.ctl("start", "vm1"), EXIT_REFUSED, "Busy")
            self.assertExit(self.h.ctl("unregister", "vm1"), EXIT_REFUSED, "Busy")
            # Abort is the exception: it preempts the sequence (test_abort.py)
            self.assertGdbusError(self.h.gdbus_call(self.path, VM_IFACE + ".Quiesce"), "Busy")
            r = self.assertOk(self.h.ctl("--json", "show", "vm1"))
            # Answered while the sequence runs: the read did not wait for it.
            self.assertEqual(r.json["State"], "sequencing:quiesce")
        finally:
            out, err = first.communicate(timeout=seconds(30))
        self.assertEqual(first.returncode, 0, err)
        self.assertStates(self.h, NAMES, "STOP")

    def test_different_vms_sequence_concurrently(self):
        """Two VMs quiesce at the same time: both are sequencing at once."""
        self.assertOk(self.h.ctl("unregister", "vm1"))
        self.assertOk(self.h.ctl("register", "a", "nic0", "nic1"))
        self.assertOk(self.h.ctl("register", "b", "gpu0", "vio0"))
        for n in NAMES:
            self.h.sim.latency(n, 400)
        procs = [subprocess.Popen([self.h.ctl_tool, "quiesce", vm], env=self.h.bus.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for vm in ("a", "b")]

        def both_sequencing():
            return all(self.h.busctl_get(vm_path(vm), VM_IFACE, "State").startswith(
                "sequencing:") for vm in ("a", "b"))
        try:
            wait_for(both_sequencing, seconds(5), "both VMs to sequence at once")
        finally:
            errors = [p.communicate(timeout=seconds(30))[1] for p in procs]
        self.assertEqual([p.returncode for p in procs], [0, 0], errors)
        self.assertStates(self.h, NAMES, "STOP")

    # --- LastSequence, properties, signals ---

    def test_last_prints_the_last_report(self):
        """LastSequence is empty before the first sequence, then the last report."""
        out = self.assertOk(self.h.ctl("last", "vm1")).stdout
        self.assertIn("no sequence has run on VM 'vm1' yet", out)
        self.assertEqual(self.ctl_json("last", "vm1"), {})
        report = self.ctl_json("quiesce", "vm1")
        self.assertEqual(self.ctl_json("last", "vm1"), report)
        self.assertEqual(self.h.busctl_get(self.path, VM_IFACE, "LastSequence"), report)
        out = self.assertOk(self.h.ctl("last", "vm1")).stdout
        self.assertIn("phase stop", out)
        self.assertIn("result: ok", out)
        out = self.assertOk(self.h.ctl("show", "vm1")).stdout
        self.assertRegex(out, r"Last sequence:\s+quiesce \(parallel\): ok in")

    def test_sequence_emits_progress_state_changes_and_property_changes(self):
        """Quiesce sends SequenceProgress per phase, DeviceStateChanged per arc, and
        PropertiesChanged for the VM's State and LastSequence and each device's State."""
        mon = self.h.monitor()
        bus_mon = Monitor(self.h, ["busctl", f"--address={self.h.address}", "--json=short",
                                   "monitor", BUS_NAME], ready_text="Monitoring")
        self.ctl_json("quiesce", "vm1")
        time.sleep(0.3)
        sigs = mon.stop_json()
        raw = [unvariant(m) for m in bus_mon.stop_json()]

        progress = [(s["fields"]["operation"], s["fields"]["phase"], s["fields"]["status"])
                    for s in sigs if s["signal"] == "SequenceProgress"]
        self.assertEqual(progress, [("quiesce", "p2p", "started"), ("quiesce", "p2p", "done"),
                                    ("quiesce", "stop", "started"), ("quiesce", "stop", "done")])
        first = next(s for s in sigs if s["signal"] == "SequenceProgress")
        self.assertEqual(first["args"][:2], ["vm1", self.path])
        self.assertEqual(first["args"][5], 2, "count: the plan's number of phases")

        changes = {(s["args"][0], s["args"][2], s["args"][3]) for s in sigs
                   if s["signal"] == "DeviceStateChanged"}
        for n in NAMES:
            self.assertIn((n, "RUNNING", "RUNNING_P2P"), changes)
            self.assertIn((n, "RUNNING_P2P", "STOP"), changes)

        vm_changes = [s["args"][1] for s in sigs
                      if s["signal"] == "PropertiesChanged" and s["path"] == self.path]
        states = [c["State"] for c in vm_changes if "State" in c]
        self.assertIn("sequencing:quiesce", states)
        self.assertEqual(states[-1], "stopped")
        self.assertTrue(any("LastSequence" in c for c in vm_changes) or any(
            "LastSequence" in s["args"][2] for s in sigs
            if s["signal"] == "PropertiesChanged" and s["path"] == self.path))
        dev_states = [s["args"][1].get("State") for s in sigs
                      if s["signal"] == "PropertiesChanged" and s["path"] == device_path("nic0")]
        self.assertIn("STOP", dev_states)

        members = {m.get("member") for m in raw if m.get("type") == "signal"}
        self.assertTrue({"SequenceProgress", "DeviceStateChanged", "PropertiesChanged"} <= members,
                        members)


class PolicyTest(MigdTestCase):
    """The multi-device rule: without P2P on every device a VM migrates only p2p-blocked."""

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[("acc0", "hisi"), ("nic0", "mlx5")])

    def test_device_without_p2p_under_require_p2p_is_not_migratable(self):
        """hisi (no P2P) + mlx5 under require-p2p: blockers name acc0, Quiesce refused."""
        self.assertOk(self.h.ctl("register", "vm1", "acc0", "nic0"))
        generation = self.h.sim.show("nic0")["generation"]
        j = self.assertOk(self.h.ctl("--json", "show", "vm1")).json
        self.assertIs(j["Migratable"], False)
        self.assertTrue(any("acc0" in b for b in j["Blockers"]), j["Blockers"])
        for verb in ("quiesce", "precopy"):
            r = self.h.ctl(verb, "vm1")
            self.assertExit(r, EXIT_REFUSED, "NotMigratable")
            self.assertIn("acc0", r.stderr)
        self.assertBusctlFails(self.h.busctl_call(vm_path("vm1"), VM_IFACE, "Quiesce"), "acc0")
        self.assertGdbusError(self.h.gdbus_call(vm_path("vm1"), VM_IFACE + ".Quiesce"),
                              "NotMigratable")
        self.assertStates(self.h, ["acc0", "nic0"], "RUNNING")
        self.assertEqual(self.h.sim.show("nic0")["generation"], generation)
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence"), {})

    def test_p2p_blocked_lets_a_device_without_p2p_join(self):
        """The same pair p2p-blocked quiesces; acc0 stops only after nic0 reached RUNNING_P2P."""
        self.assertOk(self.h.ctl("register", "vm1", "acc0", "nic0", "--p2p-mode", "p2p-blocked"))
        self.assertIs(self.assertOk(self.h.ctl("--json", "show", "vm1")).json["Migratable"], True)
        report = self.assertOk(self.h.ctl("--json", "quiesce", "vm1")).json
        self.assertEqual(report["result"], "ok")
        nic_p2p = next(s for s in report["steps"] if s["device"] == "nic0"
                       and s["reached"] == "RUNNING_P2P")
        acc_stop = next(s for s in report["steps"] if s["device"] == "acc0")
        self.assertEqual(acc_stop["path"], "RUNNING>STOP")
        self.assertLessEqual(end(nic_p2p), acc_stop["start-us"])
        self.assertStates(self.h, ["acc0", "nic0"], "STOP")

    def test_a_single_device_without_p2p_migrates(self):
        """One device needs no P2P: an ap device alone quiesces under require-p2p."""
        self.h.sim.create("ap0", "ap")
        self.assertOk(self.h.ctl("register", "solo", "ap0"))
        self.assertOk(self.h.ctl("quiesce", "solo"))
        self.assertEqual(self.h.sim.state("ap0"), "STOP")


class StrategyTest(MigdTestCase):
    """Peers (one --p2p-group): each device's whole journey alone (naive) corrupts state; QEMU
    8.1's order (qemu) and vfio-migd's phases (parallel) do not."""

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, p, {"p2p_group": "g1"}) for n, p in DEVICES])

    def quiesce_and_count_events(self, strategy):
        self.assertOk(self.h.ctl("register", "vm1", *NAMES, "--strategy", strategy))
        report = self.assertOk(self.h.ctl("--json", "quiesce", "vm1")).json
        self.assertEqual((report["strategy"], report["result"]), (strategy, "ok"))
        self.assertStates(self.h, NAMES, "STOP")
        return report, {n: len(self.h.sim.events(n)) for n in NAMES}

    def assertOneStepAtATime(self, report):
        steps = sorted(report["steps"], key=lambda s: s["start-us"])
        for a, b in zip(steps, steps[1:]):
            self.assertLessEqual(end(a), b["start-us"])

    def test_naive_strategy_records_corruption_between_peers(self):
        """naive: a device stops while a peer still runs; the sim records corruption."""
        report, events = self.quiesce_and_count_events("naive")
        self.assertGreater(sum(events.values()), 0, events)
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Strategy"), "naive")
        self.assertEqual(phase_names(report), [f"device {n}" for n in NAMES])
        self.assertOneStepAtATime(report)

    def test_naive_start_takes_and_logs_the_parallel_order(self):
        """naive exists for the stops and starts around a stream; a Start takes the parallel
        order, and both of its log lines say so (the first once named the VM's strategy)."""
        self.quiesce_and_count_events("naive")
        self.assertOk(self.h.ctl("start", "vm1"))
        log = self.h.daemon.read_log()
        self.assertIn("VM vm1: start (parallel, 2 phases,", log)
        self.assertRegex(log, r"VM vm1: start \(parallel, \d+ devices\) ok in")
        self.assertNotIn("start (naive", log)

    def test_qemu_strategy_records_no_corruption_one_device_at_a_time(self):
        """qemu: each device to RUNNING_P2P in turn, then each to STOP, the last device first as
        QEMU's VM stop does; no corruption events."""
        report, events = self.quiesce_and_count_events("qemu")
        self.assertEqual(sum(events.values()), 0, events)
        self.assertEqual(self.h.busctl_get(vm_path("vm1"), VM_IFACE, "Strategy"), "qemu")
        last_first = list(reversed(NAMES))
        self.assertEqual(phase_names(report),
                         [f"p2p {n}" for n in last_first] + [f"stop {n}" for n in last_first])
        self.assertOneStepAtATime(report)
        p2p = [s for s in report["steps"] if s["phase"].startswith("p2p ")]
        stop = [s for s in report["steps"] if s["phase"].startswith("stop ")]
        self.assertEqual([s["target"] for s in p2p], ["RUNNING_P2P"] * len(NAMES))
        self.assertEqual([s["reached"] for s in stop], ["STOP"] * len(NAMES))
        self.assertLessEqual(max(end(s) for s in p2p), min(s["start-us"] for s in stop))

    def test_qemu_strategy_refuses_a_device_without_p2p_among_several(self):
        """qemu follows QEMU, which refuses several devices unless every one has P2P, even where
        p2p-blocked would let parallel migrate them; nothing moves."""
        self.h.sim.create("ap0", "ap")
        self.assertOk(self.h.ctl("rescan"))
        self.assertOk(self.h.ctl("register", "vm2", "nic0", "ap0", "--strategy", "qemu",
                                 "--p2p-mode", "p2p-blocked"))
        r = self.h.ctl("quiesce", "vm2")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("device ap0", r.stderr)
        self.assertIn("the qemu strategy follows QEMU", r.stderr)
        self.assertIn("strategy parallel", r.stderr)
        self.assertStates(self.h, ["nic0", "ap0"], "RUNNING")

    def test_parallel_strategy_records_no_corruption(self):
        """parallel: every device quiesces P2P before any stops; no corruption events."""
        _, events = self.quiesce_and_count_events("parallel")
        self.assertEqual(sum(events.values()), 0, events)


if __name__ == "__main__":
    main()
