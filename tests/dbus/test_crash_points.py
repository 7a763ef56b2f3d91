#!/usr/bin/env python3
"""Crash points, not hand-picked kills: every point of every operation.

The daemon is built with -Dcrash_points (daemon/crash-point.h). For each operation the test
first counts the points the operation passes (VFIO_MIGD_CRASH_COUNT=1), then runs it again
once per point k with VFIO_MIGD_CRASH_AT=k: the daemon abort()s there, a new daemon starts on
the same devices and state directory, and the test checks what a crash may never leave
behind: a VM lost from the journal, a device in a state its VM's record does not explain
(after recovery: one consistent state, no sequence in flight), a handed-off VM running on
the source, a device stopped while a peer could still do P2P, a corruption event on a sim
device. Points are counted only while an arm file exists, so start-up and set-up do not
shift them. The same walk runs with the state directory on a small tmpfs filled at point k
(a full disk at every journal point), the daemon killed after the operation. Zero-latency sim
devices, two peers: the whole file stays well under three minutes."""

import os
import re
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import MANAGER, ROOT, VM_IFACE, MigdTestCase, main, seconds, vm_path  # noqa: E402
from test_handoff import mount_tmpfs, umount  # noqa: E402

NAMES = ["nic0", "gpu0"]
RUNNING_STATES = {"RUNNING", "PRE_COPY"}
STOPPED_STATES = {"STOP", "STOP_COPY", "RESUMING"}
# the points at and after which a Save's stream may be complete: the source stays stopped
COMMITTED = ("save-before-trailer", "save-after-trailer")

# operation: (state it starts from, vfio-migctl arguments)
OPERATIONS = {
    "quiesce": ("running", ["quiesce", "vm1"]),
    "save": ("running", ["save", "vm1", "{stream}"]),
    "resume": ("running", ["resume", "vm1", "{stream}"]),
    "start": ("stopped", ["start", "vm1"]),
    "abort": ("stopped", ["abort", "vm1"]),
    "precopy": ("running", ["precopy", "vm1"]),
    "unregister": ("running", ["unregister", "vm1"]),
}

exercised = {}


class CrashPointWalk(MigdTestCase):

    @classmethod
    def setUpClass(cls):
        # abort() without core files
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[(n, "mlx5", {"p2p_group": "vm1"}) for n in NAMES],
                               start=False)
        self.arm = os.path.join(self.h.workdir, "crash-armed")
        self.stream = os.path.join(self.workdir, "vm1.mig")
        self.tmpfs = None
        self.env = {}

    # --- the daemon, with the crash point environment ---

    def start(self, **env):
        for k in list(self.h.bus.env):
            if k.startswith("VFIO_MIGD_CRASH"):
                del self.h.bus.env[k]
        self.h.bus.env.update({"VFIO_MIGD_CRASH_ARM": self.arm, **env})
        if self.h.daemon and self.h.daemon.returncode is None:
            self.h.daemon.stop()
        self.h.restart_daemon(*([f"--state-dir={self.tmpfs}"] if self.tmpfs else []))
        self.h.restarts = getattr(self.h, "restarts", 0) + 1

    def armed_op(self, args):
        argv = [a.format(stream=self.stream) for a in args]
        with open(self.arm, "w"):
            pass
        try:
            return self.h.ctl(*argv, timeout=seconds(30))
        finally:
            os.unlink(self.arm)

    def wait_exit(self):
        """The daemon aborted (or not: the point was not reached this time)."""
        try:
            self.h.daemon.proc.wait(seconds(10))
            self.h.daemon.log.close()
            self.h.daemon.returncode = 0  # a deliberate crash is no failure
            return True
        except subprocess.TimeoutExpired:
            return False

    def state(self):
        return self.h.busctl_get(vm_path("vm1"), VM_IFACE, "State")

    def registered(self):
        return self.h.busctl_get(ROOT, MANAGER, "VMCount") == 1

    def settle(self):
        deadline = time.monotonic() + seconds(20)
        while time.monotonic() < deadline:
            rec = self.h.busctl_get(ROOT, MANAGER, "LastRecovery")
            busy = self.registered() and self.state().startswith("sequencing:")
            if rec["status"] != "recovering" and not busy:
                return rec
            time.sleep(0.05)
        self.fail("the recovery did not settle")

    # --- bringing the VM to where the operation starts ---

    def prepare(self, start_from):
        if not self.registered():
            self.assertOk(self.h.ctl("register", "vm1", *NAMES))
        if self.state() == "handed-off":
            self.assertOk(self.h.ctl("start", "vm1"))
        if self.state() != "running":
            self.assertOk(self.h.ctl("abort", "vm1"))
        if start_from == "stopped":
            self.assertOk(self.h.ctl("quiesce", "vm1"))
        for n in NAMES:
            self.h.sim("clear-events", n)

    def make_stream(self):
        self.prepare("running")
        self.assertOk(self.h.ctl("save", "vm1", self.stream))
        self.assertOk(self.h.ctl("start", "vm1"))

    # --- what a crash may never leave behind ---

    def check(self, op, point):
        what = f"{op} cut at {point}"
        self.settle()
        states = self.h.sim.states(NAMES)
        for n in NAMES:
            events = self.h.sim.events(n)
            self.assertEqual(events, [], f"{what}: corruption event on {n}")
        if any(s in STOPPED_STATES for s in states.values()):
            self.assertFalse(any(s in RUNNING_STATES for s in states.values()),
                             f"{what}: a device stopped while a peer can do P2P: {states}")
        if not self.registered():
            self.assertEqual(op, "unregister", f"{what}: VM vm1 was lost")
            return
        vm_state = self.state()
        self.assertIn(vm_state, ("running", "stopped", "pre-copy", "handed-off"),
                      f"{what}: devices {states} in no state the journal explains")
        if vm_state == "handed-off":
            self.assertEqual(op, "save", what)
            self.assertFalse(any(s in RUNNING_STATES for s in states.values()),
                             f"{what}: a handed-off VM runs on the source: {states}")
        if point in COMMITTED:
            self.assertEqual(vm_state, "handed-off", f"{what}: the source may run twice")

    # --- the walks ---

    def count(self, op, start_from, args):
        self.start(VFIO_MIGD_CRASH_COUNT="1")
        self.prepare(start_from)
        log_before = len(self.h.daemon.read_log())
        self.assertOk(self.armed_op(args))
        points = re.findall(r"crash point \d+: (\S+)$",
                            self.h.daemon.read_log()[log_before:], re.M)
        self.assertGreater(len(points), 0, f"{op} passes no crash point")
        # each point as (name, its occurrence): reached by name whatever the interleaving
        seen, walk = {}, []
        for p in points:
            seen[p] = seen.get(p, 0) + 1
            walk.append((p, seen[p]))
        return walk

    @staticmethod
    def sampled(points):
        """Every point, or with CRASH_POINT_STRIDE=k every k-th plus the first of each name:
        the valgrind pass (scripts/run-tests.sh) hunts leaks, the other passes walk all."""
        stride = int(os.environ.get("CRASH_POINT_STRIDE", "1"))
        if stride <= 1:
            return points
        first = {}
        for i, (name, _) in enumerate(points):
            first.setdefault(name, i)
        return [p for i, p in enumerate(points) if i % stride == 0 or first[p[0]] == i]

    def walk(self, op, fill=False):
        start_from, args = OPERATIONS[op]
        points = self.count(op, start_from, args)
        if fill:
            # The disk matters only at a journal write: filling it at a step or phase point
            # is filling it before the next journal point, walked anyway.
            points = [p for p in points if p[0].startswith(("journal-", "save-"))]
        points = self.sampled(points)
        n = len(points)
        names = set()
        for name, k in points:
            if fill:
                self.start(VFIO_MIGD_CRASH_NAME=name, VFIO_MIGD_CRASH_FILL_AT=str(k),
                           VFIO_MIGD_CRASH_FILL_FILE=os.path.join(self.tmpfs, "filler"))
            else:
                self.start(VFIO_MIGD_CRASH_NAME=name, VFIO_MIGD_CRASH_AT=str(k))
            self.prepare(start_from)
            self.armed_op(args)
            log = self.h.daemon.read_log()
            m = re.search(r"crash point \d+: (\S+): (aborting|filled)", log)
            point = m.group(1) if m else "(not reached)"
            if fill:
                self.h.crash_daemon()  # the in-memory records die with it
                if os.path.exists(os.path.join(self.tmpfs, "filler")):
                    os.unlink(os.path.join(self.tmpfs, "filler"))
            elif not self.wait_exit():
                point = "(not reached)"
            if point != "(not reached)":
                names.add(point)
            self.start()
            self.check(op, point)
            self.assertIn(point, (name, "(not reached)"))
        key = op + (" (disk full)" if fill else "")
        exercised[key] = (n, names)
        return names

    def test_quiesce(self):
        names = self.walk("quiesce")
        self.assertTrue({"journal-begin", "phase-begin", "step-begin", "step-end",
                         "journal-end"} <= names, names)

    def test_save(self):
        names = self.walk("save")
        self.assertTrue(set(COMMITTED) | {"save-before-commit", "journal-commit",
                                          "journal-committed"} <= names, names)

    def test_resume(self):
        self.start()
        self.make_stream()
        self.walk("resume")

    def test_start(self):
        self.walk("start")

    def test_abort(self):
        self.walk("abort")

    def test_precopy(self):
        self.walk("precopy")

    def test_unregister(self):
        self.assertIn("journal-unregister", self.walk("unregister"))

    def full_disk(self):
        self.tmpfs = os.path.join(self.h.workdir, "state-tmpfs")
        mount_tmpfs(self.tmpfs)
        self.addCleanup(umount, self.tmpfs)

    def test_quiesce_with_the_disk_filling_at_each_point(self):
        self.full_disk()
        self.walk("quiesce", fill=True)

    def test_save_with_the_disk_filling_at_each_point(self):
        self.full_disk()
        self.walk("save", fill=True)


def tearDownModule():
    total = sum(n for n, _ in exercised.values())
    stride = os.environ.get("CRASH_POINT_STRIDE", "1")
    print(f"\ncrash points exercised: {total}"
          + (f" (CRASH_POINT_STRIDE={stride}: a sample)" if stride != "1" else ""), file=sys.stderr)
    for op, (n, names) in sorted(exercised.items()):
        print(f"  {op}: {n} points ({', '.join(sorted(names))})", file=sys.stderr)


if __name__ == "__main__":
    main()
