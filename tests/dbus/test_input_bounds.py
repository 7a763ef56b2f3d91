#!/usr/bin/env python3
"""No caller can stop, stall or flood the daemon (issue 12): every caller-sized input is
bounded before work, the loop answers Peer.Ping within 10 ms while each load runs, and
losing the bus ends the daemon at once with a failure.

The Ping figures: ping-probe sends a Ping every 2 ms while the load runs; the test asserts the
best and the median answer of the pings sent during the load stay under 10 ms (the issue's
acceptance bound) and prints best/median/p90/max, so a loaded machine shows up in the figures
rather than as a flaky failure of one slow ping."""

import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (DEVICE_IFACE, EXIT_DENIED, EXIT_REFUSED, INVALID_ARGS,  # noqa: E402
                      MANAGER, OPERATOR_GROUP, ROOT, VM_IFACE, MigdTestCase, as_user, binary,
                      device_path, ensure_operator_group, main, remove_operator_group,
                      seconds, vm_path, wait_for)

PING_BOUND_MS = 10.0
XML_MAX = 16 << 20

HOSTDEV = ("<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='0x03' "
           "slot='0' function='0'/></source></hostdev>")
META_NS = "https://vfio-migd.org/xmlns/hostdevs/1"


def domain_xml(name, devices, metadata=""):
    return (f"<domain type='kvm'>\n<name>{name}</name>\n<memory unit='KiB'>1048576</memory>\n"
            f"{metadata}<devices>\n{devices}</devices>\n</domain>\n")


class PingProbe:
    """ping-probe in the background, as user; figures() gives the pings sent in a window."""

    def __init__(self, host, user="nobody", name="org.vfiomig.Coordinator1"):
        self.proc = subprocess.Popen([*as_user(user), binary("PING_PROBE"), "--interval-ms", "2",
                                      "--timeout-ms", str(int(seconds(60) * 1000)), name],
                                     env=host.bus.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise AssertionError(f"ping-probe did not start: {line}{self.proc.stderr.read()}")
        self.lines = None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=seconds(90))
        self.lines = out.splitlines()

    def window(self, start_us, end_us):
        """(rtts in ms, errors) of the pings sent between start_us and end_us."""
        rtts, errors = [], []
        for line in self.lines:
            parts = line.split()
            if len(parts) < 2 or not parts[0].isdigit():
                continue
            sent = int(parts[0])
            if not start_us <= sent <= end_us:
                continue
            if parts[1] == "error":
                errors.append(line)
            else:
                rtts.append(int(parts[1]) / 1000.0)
        return rtts, errors


def now_us():
    return time.monotonic_ns() // 1000


class LoopTestCase(MigdTestCase):
    """A test whose load must leave the loop free: self.h is the host it pings."""

    def under_load(self, label, load, rounds=3):
        """Runs load() rounds times while pinging; asserts the loop answered in time."""
        probe = PingProbe(self.h)
        # the bus driver answers its own Pings: what the bus alone costs under this load
        reference = PingProbe(self.h, name="org.freedesktop.DBus")
        time.sleep(0.05)
        start = now_us()
        results = [load() for _ in range(rounds)]
        end = now_us()
        probe.stop()
        reference.stop()
        rtts, errors = probe.window(start, end)
        self.assertEqual(errors, [], f"{label}: pings failed")
        self.assertGreaterEqual(len(rtts), 3, f"{label}: too few pings during the load")
        rtts.sort()
        best, median = rtts[0], statistics.median(rtts)
        p90, worst = rtts[int(len(rtts) * 0.9)], rtts[-1]
        bus, _ = reference.window(start, end)
        bus_worst = max(bus) if bus else float("nan")
        sys.stderr.write(f"\n{label}: {len(rtts)} pings in {(end - start) / 1e6:.2f} s: best "
                         f"{best:.2f} ms, median {median:.2f} ms, p90 {p90:.2f} ms, max "
                         f"{worst:.2f} ms (the bus driver's own max {bus_worst:.2f} ms)\n")
        self.assertLess(best, PING_BOUND_MS, f"{label}: no Ping answered within the bound")
        self.assertLess(median, PING_BOUND_MS, f"{label}: the median Ping is over the bound")
        return results


class InputBoundsTest(LoopTestCase):

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[("nic0", "mlx5"), ("nic1", "mlx5")])
        self.drop = os.path.join(self.workdir, "drop")
        os.mkdir(self.drop)
        os.chmod(self.drop, 0o755)

    def write(self, name, text):
        path = os.path.join(self.drop, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path

    def log_lines(self):
        return self.h.daemon.read_log().count("\n")

    # --- item 1: caller-sized input bounded before work ---

    def test_16mib_of_one_hostdev_as_nobody_is_a_short_invalid_args(self):
        """The issue's XML: 131 069 copies of one hostdev, metadata declaring another driver."""
        meta = (f"<metadata><v:hostdevs xmlns:v='{META_NS}'><v:hostdev name='0000:03:00.0' "
                f"driver='other_vfio' id='15b3:101e' flags='0x7'/></v:hostdevs></metadata>\n")
        xml = domain_xml("flood", HOSTDEV * 131069, meta)
        self.assertLessEqual(len(xml), XML_MAX)
        path = self.write("flood.xml", xml)
        before = self.log_lines()

        def check():
            return self.h.ctl("check-incoming", path, user="nobody", timeout=seconds(120))

        for r in self.under_load("CheckIncomingMigration of 16 MiB", check, rounds=2):
            self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
            self.assertIn("lists hostdev 0000:03:00.0 131069 times", r.stderr)
            self.assertLess(len(r.stderr), 1024, f"the answer is not bounded:\n{r}")
        r = self.h.ctl("register-xml", path, user="nobody", timeout=seconds(120))
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertTrue(self.h.bus.has_owner(), "the daemon lost its bus name")
        # three calls; a few lines each (and GLib-CRITICAL lines, issue 12, another item)
        self.assertLess(self.log_lines() - before, 3 * 10, "log lines per call are not bounded")
        self.assertOk(self.h.ctl("status"))

    def test_more_hostdevs_than_a_vm_holds_is_invalid_args(self):
        devs = "".join(f"<hostdev mode='subsystem' type='pci'><source><address domain='0x0001' "
                       f"bus='0x{i // 32:02x}' slot='0x{i % 32:02x}' function='0x0'/></source>"
                       f"</hostdev>\n" for i in range(300))
        path = self.write("wide.xml", domain_xml("wide", devs))
        r = self.h.ctl("check-incoming", path, user="nobody")
        self.assertExit(r, EXIT_REFUSED, INVALID_ARGS)
        self.assertIn("lists 300 VFIO hostdevs; a VM holds at most 256", r.stderr)

    def test_unknown_hostdevs_log_a_bounded_number_of_lines(self):
        """256 hostdevs the host does not have: every one in the reply, a few log lines."""
        devs = "".join(f"<hostdev mode='subsystem' type='pci'><source><address domain='0x0001' "
                       f"bus='0x{i // 32:02x}' slot='0x{i % 32:02x}' function='0x0'/></source>"
                       f"</hostdev>\n" for i in range(256))
        path = self.write("unknown.xml", domain_xml("unknown", devs))
        before = self.log_lines()

        def check():
            return self.h.ctl("--json", "check-incoming", path, user="nobody")

        for r in self.under_load("CheckIncomingMigration of 256 unknown hostdevs", check):
            self.assertExit(r, 6)
            self.assertEqual(len(r.json["problems"]), 256)
        added = self.h.daemon.read_log().splitlines()[before:]
        notices = [line for line in added if "Incoming migration check" in line]
        self.assertLessEqual(len(notices), 3 * 9, "\n".join(notices))
        self.assertTrue(any("and 248 more problems" in line for line in notices), notices)

    def test_check_migration_logs_a_few_lines_whatever_the_vm_holds(self):
        """CheckMigration is open to anyone: 12 devices without migration support make 12
        blockers in the answer, and a few log lines per call."""
        names = [f"old{i}" for i in range(12)]
        for n in names:
            self.h.sim.create(n, "mlx5", flags="none")
        self.assertOk(self.h.ctl("register", "wide", *names))
        before = self.log_lines()
        r = self.h.ctl("--json", "check", "wide", user="nobody")
        self.assertNotEqual(r.returncode, 0, str(r))
        self.assertGreaterEqual(r.stdout.count("no-migration"), 12, str(r))
        added = self.h.daemon.read_log().splitlines()[before:]
        refused = [line for line in added if "migration refused" in line or "more blockers" in line]
        self.assertLessEqual(len(refused), 9, "\n".join(refused))
        self.assertTrue(any("and 4 more blockers" in line for line in refused), refused)


class AsyncAuthorizationTest(LoopTestCase):
    """Item 2: with an operator group, authorization asks the bus without waiting on the loop."""

    @classmethod
    def setUpClass(cls):
        cls.created_group = ensure_operator_group()

    @classmethod
    def tearDownClass(cls):
        if cls.created_group:
            remove_operator_group()

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[("nic0", "mlx5"), ("nic1", "mlx5")],
                               daemon_args=(f"--operator-group={OPERATOR_GROUP}",))

    def test_loop_answers_pings_while_callers_are_authorized(self):
        """Members register and unregister, strangers are refused; Ping stays prompt."""
        g = [OPERATOR_GROUP]

        def calls():
            a = self.h.ctl("register", "vm1", "nic0", "nic1", user="nobody", groups=g)
            b = self.h.ctl("register", "vm2", "nic0", user="nobody")
            c = self.h.ctl("unregister", "vm1", user="nobody", groups=g)
            return a, b, c

        for a, b, c in self.under_load("register/unregister with authorization", calls):
            self.assertOk(a)
            self.assertExit(b, EXIT_DENIED, "org.freedesktop.DBus.Error.AccessDenied")
            self.assertIn(f"nor a member of group {OPERATOR_GROUP}", b.stderr)
            self.assertOk(c)

    def test_register_xml_is_parsed_off_the_loop_then_authorized(self):
        """RegisterVMFromXML: the parse on a worker, then the question to the bus, then the
        same call again with the answer; a member registers, a stranger is refused."""
        xml = domain_xml("web", "<hostdev mode='subsystem' type='mdev'><source><address "
                                "uuid='00000000-0000-0000-0000-000000000000'/></source>"
                                "</hostdev>")
        path = os.path.join(self.workdir, "web.xml")
        with open(path, "w") as f:
            f.write(xml)
        os.chmod(path, 0o644)
        r = self.h.ctl("register-xml", path, user="nobody")
        self.assertExit(r, EXIT_DENIED, "org.freedesktop.DBus.Error.AccessDenied")
        r = self.h.ctl("register-xml", path, user="nobody", groups=[OPERATOR_GROUP])
        # the sim backend has no such mdev: refused on the device, after authorization
        self.assertIn("NoSuchDevice", r.stderr, str(r))

    def test_a_caller_gone_before_the_answer_is_refused_quietly(self):
        """busctl --expect-reply=no leaves at once: the bus cannot say who it was."""
        for _ in range(20):
            r = self.h.busctl("--expect-reply=no", "call", "org.vfiomig.Coordinator1", ROOT,
                              MANAGER, "Rescan", user="nobody")
            self.assertEqual(r.returncode, 0, str(r))
            if "the bus did not say who" in self.h.daemon.read_log():
                break
        else:
            self.skipTest("every caller was still connected when the bus answered")
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1"))
        self.assertTrue(self.h.bus.has_owner())


class StalledDeviceTest(LoopTestCase):
    """Item 2: no device read on the loop. A device whose state read never returns (a kernel
    driver holding its state lock) is played by the sim device nic0 whose lock file is made a
    FIFO nobody writes: opening it blocks, as MIG_DEVICE_STATE GET would."""

    def setUp(self):
        super().setUp()
        self.h = self.new_host(devices=[("nic0", "mlx5"), ("nic1", "mlx5")])
        self.assertOk(self.h.ctl("register", "vm1", "nic0", "nic1"))
        self.lock = os.path.join(self.h.sim.dir, ".nic0.lock")
        with open(self.lock, "rb") as f:
            self.saved = f.read()
        fifo = self.lock + ".fifo"
        os.mkfifo(fifo)
        os.rename(fifo, self.lock)
        self.addCleanup(self.release)

    def release(self):
        """Lets the blocked read go on (it gets no version and reads the file) and puts the
        lock file back."""
        if getattr(self, "released", False):
            return
        self.released = True
        writer = os.open(self.lock, os.O_WRONLY | os.O_NONBLOCK) if self.reader_blocked() else -1
        tmp = self.lock + ".tmp"
        with open(tmp, "wb") as f:
            f.write(self.saved)
        os.rename(tmp, self.lock)
        if writer >= 0:
            os.close(writer)

    def reader_blocked(self):
        try:
            os.close(os.open(self.lock, os.O_WRONLY | os.O_NONBLOCK))
            return True
        except OSError:  # ENXIO: nobody has the FIFO open for reading
            return False

    def age(self):
        return self.h.busctl_get(vm_path("vm1"), VM_IFACE, "StateAgeUSec")

    def test_reads_are_served_from_the_cache_while_a_device_read_hangs(self):
        time.sleep(0.2)  # older than VM_STATES_FRESH_USEC: the next read starts a refresh

        def reads():
            show = self.h.ctl("--json", "show", "vm1", user="nobody")
            state = self.h.busctl("get-property", "org.vfiomig.Coordinator1",
                                  device_path("nic0"), DEVICE_IFACE, "State", user="nobody")
            check = self.h.ctl("check", "vm1", user="nobody")
            devices = self.h.ctl("--json", "list-devices", user="nobody")
            return show, state, check, devices

        for show, state, check, devices in self.under_load("reads with nic0 stalled", reads):
            self.assertOk(show)
            self.assertEqual(show.json["State"], "running")
            self.assertEqual(state.returncode, 0, str(state))
            self.assertEqual(state.stdout.strip(), 's "RUNNING"')
            self.assertOk(check)
            self.assertOk(devices)
        wait_for(self.reader_blocked, seconds(10), "the refresh to stall on nic0")
        time.sleep(0.3)
        self.assertGreater(self.age(), 300000, "the cache's age must show the stalled read")
        self.release()
        wait_for(lambda: self.age() < 1000000, seconds(10), "the cache to be refreshed")


class BusLossTest(MigdTestCase):
    """Item 3: the bus goes away while a sequence hangs; the daemon exits non-zero at once."""

    def test_losing_the_bus_exits_with_failure_while_a_sequence_hangs(self):
        h = self.new_host(devices=[("nic0", "mlx5"), ("nic1", "mlx5")])
        self.assertOk(h.ctl("register", "vm1", "nic0", "nic1", "--phase-deadline-ms", "600000"))
        h.sim.fault("nic0", "RUNNING_P2P>STOP", "hang")
        quiesce = subprocess.Popen([binary("MIGCTL"), "quiesce", "vm1"], env=h.bus.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(quiesce.wait)
        self.addCleanup(quiesce.kill)
        wait_for(lambda: "sequencing" in h.ctl("show", "vm1").stdout, seconds(10),
                 "the quiesce to start")
        h.bus.proc.kill()
        h.bus.proc.wait()
        try:
            code = h.daemon.proc.wait(seconds(20))
        except subprocess.TimeoutExpired:
            self.fail("the daemon lives on without its bus while a sequence hangs:\n"
                      + h.daemon.read_log())
        h.daemon.returncode = 0  # this exit is the test's subject, not a failed SIGTERM
        h.daemon.log.close()
        log = h.daemon.read_log()
        self.assertNotEqual(code, 0, "bus loss must be a failure, so systemd restarts us")
        self.assertIn("Lost the system bus", log)
        self.assertIn("some run", log)


if __name__ == "__main__":
    main()
