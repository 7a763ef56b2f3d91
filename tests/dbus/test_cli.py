#!/usr/bin/env python3
"""vfio-migctl itself: its help, usage errors (exit 2), an unreachable bus or daemon
(exit 3), --json output of every reading subcommand, --timeout on calls and on monitor."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (EXIT_FAILURE, EXIT_UNREACHABLE, EXIT_USAGE, MigdTestCase,  # noqa: E402
                      binary, main, run, seconds)

COMMANDS = ["status", "list-vms", "list-devices", "show", "show-device", "last", "register",
            "unregister", "rescan", "precopy", "quiesce", "save", "resume", "start", "abort",
            "monitor", "check", "policy reload", "policy validate"]


class HelpAndUsageTest(MigdTestCase):
    """No daemon needed: these never reach the bus."""

    def ctl(self, *args, env=None):
        return run([binary("MIGCTL"), *args], env=env)

    def test_help_lists_every_command_and_exit_code(self):
        """--help names every subcommand and documents exit codes 0-7."""
        r = self.ctl("--help")
        self.assertEqual(r.returncode, 0, r)
        for c in COMMANDS:
            self.assertRegex(r.stdout, rf"\n  {c}\b", c)
        self.assertIn("Exit status:", r.stdout)
        for code in range(8):
            self.assertRegex(r.stdout, rf"\n  {code}  \S")
        self.assertIn("--timeout SEC", r.stdout)

    def test_migsim_version_and_a_missing_directory(self):
        """vfio-migsim --version prints it; list on a directory that does not exist fails with
        a sentence naming it instead of listing nothing."""
        r = run([binary("MIGSIM"), "--version"])
        self.assertEqual(r.returncode, 0, r)
        self.assertRegex(r.stdout, r"^vfio-migsim \d+\.\d+")
        missing = os.path.join(self.workdir, "nonexistent")
        r = run([binary("MIGSIM"), "--dir", missing, "list"])
        self.assertEqual(r.returncode, EXIT_FAILURE, r)
        self.assertIn(f"{missing}: no such directory", r.stderr)

    def test_usage_errors_exit_2(self):
        """Missing/extra arguments, unknown commands and bad option values: exit 2."""
        cases = [[], ["frobnicate"], ["show"], ["show", "a", "b"], ["register", "vm1"],
                 ["save", "vm1"], ["--timeout", "soon", "status"], ["--timeout", "0", "status"],
                 ["register", "vm1", "nic0", "--phase-deadline-ms", "ten"],
                 ["register", "vm1", "nic0", "--parallelism", "-1"],
                 ["quiesce", "vm1", "--strategy", "naive"], ["--no-such-option", "status"]]
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/socket")
        for args in cases:
            r = self.ctl(*args, env=env)
            self.assertEqual(r.returncode, EXIT_USAGE, f"{args}: {r}")
            self.assertTrue(r.stderr.strip(), f"{args}: no message")

    def test_no_bus_exits_3(self):
        """A bus that cannot be reached: exit 3 naming the address."""
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/socket")
        r = self.ctl("status", env=env)
        self.assertEqual(r.returncode, EXIT_UNREACHABLE, r)
        self.assertIn("/nonexistent/socket", r.stderr)


class NoDaemonTest(MigdTestCase):

    def test_no_daemon_on_the_bus_exits_3(self):
        """A bus without vfio-migd: exit 3, ServiceUnknown, and how to start it."""
        h = self.new_host(start=False)
        for args in (["status"], ["quiesce", "vm1"], ["list-devices"]):
            r = h.ctl(*args)
            self.assertExit(r, EXIT_UNREACHABLE, "org.freedesktop.DBus.Error.ServiceUnknown")
            self.assertIn("vfio-migd is not running", r.stderr)


class ClientTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[("nic0", "mlx5"), ("nic1", "pds")])
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1"))

    def test_every_reading_command_prints_json(self):
        """--json output of every reading subcommand parses, anywhere on the command line."""
        for args in (["--json", "status"], ["--json", "list-vms"], ["list-devices", "--json"],
                     ["--json", "show", "vm1"], ["--json", "show-device", "nic0"],
                     ["--json", "last", "vm1"], ["--json", "rescan"]):
            r = self.assertOk(self.h.ctl(*args))
            r.json  # parses
        self.assertOk(self.h.ctl("--json", "quiesce", "vm1")).json

    def test_json_error_document(self):
        """--json with an error: an object with the error's name, message and exit code."""
        r = self.h.ctl("--json", "show", "nope")
        self.assertEqual(r.returncode, 4)
        self.assertEqual(r.json, {"error": {"name": "org.vfiomig.Coordinator1.Error.NoSuchVM",
                                            "message": r.json["error"]["message"]},
                                  "exit-code": 4})
        self.assertIn("nope", r.json["error"]["message"])

    def test_call_timeout_exits_1_and_says_so(self):
        """--timeout shorter than the sequence: exit 1, 'no reply'; the sequence finishes."""
        for n in ("nic0", "nic1"):
            self.h.sim.latency(n, 1000)
        r = self.h.ctl("--timeout", "0.5", "quiesce", "vm1")
        self.assertExit(r, EXIT_FAILURE)
        self.assertIn("--timeout", r.stderr)
        deadline = time.monotonic() + seconds(10)
        while time.monotonic() < deadline and self.h.sim.state("nic1") != "STOP":
            time.sleep(0.1)
        time.sleep(0.2)
        self.assertStates(self.h, ["nic0", "nic1"], "STOP")

    def test_daemon_dying_during_a_call_is_not_called_a_timeout(self):
        """The daemon is killed while quiesce waits: the hint says vfio-migd left the bus,
        not that no reply came within 300 s."""
        for n in ("nic0", "nic1"):
            self.h.sim.latency(n, 3000)
        p = subprocess.Popen([self.h.ctl_tool, "quiesce", "vm1"], env=self.h.bus.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        self.h.crash_daemon()
        _, err = p.communicate(timeout=seconds(30))
        self.assertNotEqual(p.returncode, 0, err)
        self.assertIn("left the bus without replying", err)
        self.assertNotIn("no reply within", err)

    def test_monitor_is_bounded_by_timeout(self):
        """monitor --timeout 1 returns 0 after about a second."""
        r = self.h.ctl("--timeout", "1", "monitor")
        self.assertExit(r, 0)
        # Ended by its own --timeout (exit 0, not the harness's kill), not before it.
        self.assertGreaterEqual(r.elapsed, 0.9)

    def test_monitor_prints_signals_as_text(self):
        """Human monitor lines: SequenceProgress and DeviceStateChanged of a quiesce."""
        p = subprocess.Popen([self.h.ctl_tool, "--timeout", str(seconds(3)), "monitor"],
                             env=self.h.bus.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            # wait for the subscription before causing signals
            self.assertIn("Monitoring", p.stderr.readline())
            self.assertOk(self.h.ctl("quiesce", "vm1"))
            time.sleep(0.3)
            p.send_signal(2)
            out, _ = p.communicate(timeout=seconds(10))
        finally:
            if p.poll() is None:
                p.kill()
        self.assertEqual(p.returncode, 0)
        self.assertRegex(out, r"SequenceProgress vm1 quiesce: phase p2p \(\d+/2\) started")
        self.assertRegex(out, r"DeviceStateChanged nic0: RUNNING -> RUNNING_P2P")
        self.assertRegex(out, r"PropertiesChanged vm1 \(VM\):.* State=stopped")

    def test_monitor_notices_the_daemon_leaving(self):
        """When vfio-migd leaves the bus the monitor says so."""
        mon = self.h.monitor()
        self.h.daemon.stop()
        time.sleep(0.3)
        lines = mon.stop_json()
        left = [x["args"] for x in lines if x["signal"] == "NameOwnerChanged"]
        self.assertEqual(len(left), 1, lines)
        self.assertEqual((left[0][0], left[0][2]), ("org.vfiomig.Coordinator1", ""))

    def test_daemon_gone_mid_session_exits_3(self):
        """After the daemon stopped: exit 3."""
        self.h.daemon.stop()
        self.assertExit(self.h.ctl("status"), EXIT_UNREACHABLE)


if __name__ == "__main__":
    main()
