"""migdtest: the harness of the D-Bus tests.

A Host is one machine as vfio-migd sees it: a private dbus-daemon (from test-bus.conf.in,
listening on a socket in a temporary directory), a directory of simulated devices made
with vfio-migsim, and vfio-migd started on that bus with DBUS_SYSTEM_BUS_ADDRESS. Tests
drive it with vfio-migctl, busctl and gdbus, and read the devices back with vfio-migsim.

Environment (meson test sets the first three):
  MIGD, MIGCTL, MIGSIM   the binaries under test
  MIGD_WRAPPER           a command the daemon runs under, e.g. "valgrind --leak-check=full
                         --error-exitcode=99"; a daemon that exits non-zero (valgrind's
                         error exit code, a sanitizer's) fails the test that started it
  MIGD_TEST_SLOW         factor for every time bound (default 1, or 6 with a wrapper)
  MIGD_TEST_KEEP         keep the temporary directories (their paths are printed)
"""

import grp
import json
import os
import pwd
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
WRAPPER = shlex.split(os.environ.get("MIGD_WRAPPER", ""))
SLOW = float(os.environ.get("MIGD_TEST_SLOW", "6" if WRAPPER else "1"))

BUS_NAME = "org.vfiomig.Coordinator1"
ROOT = "/org/vfiomig/Coordinator1"
MANAGER = BUS_NAME + ".Manager"
VM_IFACE = BUS_NAME + ".VM"
DEVICE_IFACE = BUS_NAME + ".Device"
ERROR = BUS_NAME + ".Error."
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

# vfio-migctl's exit codes (vfio-migctl --help, docs/dbus-api.md)
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_NOT_FOUND, EXIT_DENIED, EXIT_REFUSED, EXIT_ROLLED_BACK = 4, 5, 6, 7

OPERATOR_GROUP = "vfiomigtest"


def binary(var):
    path = os.environ.get(var)
    if not path:
        raise unittest.SkipTest(f"{var} is not set (run through 'meson test')")
    return path


def path_encode(name):
    """sd_bus_path_encode(): every byte outside [A-Za-z0-9] becomes _xx."""
    if not name:
        return "_"
    return "".join(chr(b) if chr(b).isalnum() and b < 128 else "_%02x" % b
                   for b in name.encode())


def vm_path(name):
    return f"{ROOT}/vm/{path_encode(name)}"


def device_path(name):
    return f"{ROOT}/device/{path_encode(name)}"


def unvariant(v):
    """busctl --json wraps every variant as {"type": T, "data": D}: keep the data only."""
    if isinstance(v, dict):
        if set(v) == {"type", "data"}:
            return unvariant(v["data"])
        return {k: unvariant(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unvariant(x) for x in v]
    return v


def seconds(s):
    """A time bound scaled for slow runs (valgrind, sanitizers)."""
    return s * SLOW


class Result:
    """What a command did: exit code, output, wall time."""

    def __init__(self, argv, returncode, stdout, stderr, elapsed):
        self.argv, self.returncode = argv, returncode
        self.stdout, self.stderr, self.elapsed = stdout, stderr, elapsed

    @property
    def json(self):
        return json.loads(self.stdout)

    def __str__(self):
        return (f"$ {shlex.join(self.argv)}\n-> exit {self.returncode} after "
                f"{self.elapsed:.2f} s\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


def run(argv, env=None, timeout=None, input=None, stdin=None, stdout=None):
    start = time.monotonic()
    p = subprocess.run(argv, env=env, timeout=timeout or seconds(120), input=input,
                       stdin=stdin, stdout=stdout if stdout is not None else subprocess.PIPE,
                       stderr=subprocess.PIPE, text=input is None or isinstance(input, str))
    out = p.stdout if p.stdout is not None else ""
    if isinstance(out, bytes):
        out = out.decode(errors="replace")
    err = p.stderr.decode(errors="replace") if isinstance(p.stderr, bytes) else p.stderr
    return Result(argv, p.returncode, out, err, time.monotonic() - start)


def ensure_operator_group():
    """The group the operator tests give to an unprivileged caller. Returns True when it
    had to be created (the caller removes it again with remove_operator_group())."""
    try:
        grp.getgrnam(OPERATOR_GROUP)
        return False
    except KeyError:
        subprocess.run(["groupadd", "--system", OPERATOR_GROUP], check=True)
        return True


def remove_operator_group():
    subprocess.run(["groupdel", OPERATOR_GROUP], check=False)


def as_user(user="nobody", groups=None):
    """An argv prefix running a command as another user (and only the groups given)."""
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    argv = ["setpriv", f"--reuid={user}", f"--regid={group}"]
    argv += [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
    return argv


class Bus:
    """A private dbus-daemon listening on a socket in workdir."""

    def __init__(self, workdir):
        self.workdir = workdir
        socket_path = os.path.join(workdir, "bus.socket")
        with open(os.path.join(HERE, "test-bus.conf.in")) as f:
            conf = f.read().replace("@SOCKET_PATH@", socket_path)
        self.conf = os.path.join(workdir, "bus.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log = open(os.path.join(workdir, "bus.log"), "w")
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.conf}", "--nofork", "--nopidfile",
             "--print-address=1"], stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], seconds(10))
        self.address = self.proc.stdout.readline().strip() if ready else ""
        if not self.address:
            self.stop()
            raise RuntimeError("dbus-daemon did not print its address; see " + self.log.name)
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(seconds(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()

    def has_owner(self, name=BUS_NAME):
        r = run(["busctl", f"--address={self.address}", "call", "org.freedesktop.DBus",
                 "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s", name],
                timeout=seconds(10))
        return r.returncode == 0 and r.stdout.strip() == "b true"


class Sim:
    """The simulated devices of one host, through vfio-migsim --dir."""

    def __init__(self, directory):
        self.dir = directory
        self.tool = binary("MIGSIM")

    def __call__(self, *args, check=True):
        r = run([self.tool, "--dir", self.dir, *map(str, args)])
        if check and r.returncode != 0:
            raise AssertionError(f"vfio-migsim failed:\n{r}")
        return r

    def create(self, name, preset, flags=None, p2p_group=None, latency_ms=None,
               blob_size=None, group=None):
        args = ["create", name, "--preset", preset]
        if group:
            args += ["--group", group]
        if flags:
            args += ["--flags", flags]
        if p2p_group:
            args += ["--p2p-group", p2p_group]
        if latency_ms is not None:
            args += ["--latency-ms", latency_ms]
        if blob_size is not None:
            args += ["--blob-size", blob_size]
        self(*args)

    def show(self, name):
        """vfio-migsim --json show, with the counters (loads, saves, resets) at the top."""
        d = self("--json", "show", name).json
        d.update(d.get("counters", {}))
        return d

    def state(self, name):
        return self.show(name)["state"]

    def states(self, names):
        return {n: self.state(n) for n in names}

    def digest(self, name):
        d = self.show(name)
        for key in ("blob_sha256", "blob-sha256", "digest", "sha256"):
            if key in d:
                return d[key]
        raise AssertionError(f"no digest in vfio-migsim show {name}: {d}")

    def events(self, name):
        d = self.show(name)
        for key in ("events", "corruption_events", "corruption-events"):
            if key in d:
                return d[key]
        raise AssertionError(f"no corruption events in vfio-migsim show {name}: {d}")

    def fault(self, name, arc, action, errno=None, leave=None, times=None):
        args = ["fault", name, "--arc", arc, "--action", action]
        if errno is not None:
            args += ["--errno", errno]
        if leave:
            args += ["--leave", leave]
        if times is not None:
            args += ["--times", times]
        self(*args)

    def clear_faults(self, name):
        self("clear-faults", name)

    def latency(self, name, ms, arc=None):
        self("latency", name, ms, *(["--arc", arc] if arc else []))

    def set_state(self, name, state):
        self("set-state", name, state)


class Daemon:
    """vfio-migd on a bus, over a sim directory; its stderr goes to a file."""

    def __init__(self, bus, sim_dir, workdir, args=(), label="vfio-migd"):
        self.bus, self.sim_dir, self.label = bus, sim_dir, label
        self.log_path = os.path.join(workdir, label + ".log")
        # the host's own policy (/etc/vfio-migd) must not leak into a test
        self.argv = [*WRAPPER, binary("MIGD"), "--backend=sim", f"--sim-dir={sim_dir}",
                     f"--policy={workdir}/policy.json", f"--policy-dir={workdir}/policy.d",
                     "--log-level=debug", *args]
        # each host its own crash journal (never /var/lib/vfio-migd); a restart keeps it
        self.state_dir = os.path.join(workdir, "state")
        if not any(str(a).startswith("--state-dir=") for a in args):
            self.argv.append(f"--state-dir={self.state_dir}")
        # the host's libvirt (qemu:///system) must not leak into a test either
        if not any(str(a).startswith("--libvirt-uri=") for a in args):
            self.argv.append("--libvirt-uri=none")
        self.proc = None
        self.returncode = None

    def start(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv, env=self.bus.env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + seconds(10)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.label} exited with {self.proc.returncode} before "
                                     f"owning {BUS_NAME}:\n{self.read_log()}")
            if self.bus.has_owner():
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.label} did not own {BUS_NAME} within "
                             f"{seconds(10):.0f} s:\n{self.read_log()}")

    def stop(self):
        """SIGTERM; the daemon must exit 0 within the bound (valgrind's 99 is an error)."""
        if not self.proc or self.returncode is not None:
            return self.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(seconds(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.returncode = "killed"
        self.log.close()
        return self.returncode

    def kill(self):
        """kill -9, as a crash: no clean-up runs. A deliberate kill is no failure."""
        if self.proc and self.returncode is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            self.returncode = 0
        return self.returncode

    def read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class Host:
    """One machine: a private bus, a sim directory and vfio-migd."""

    def __init__(self, workdir, label="host", daemon_args=()):
        self.label = label
        self.workdir = os.path.join(workdir, label)
        os.makedirs(self.workdir)
        os.chmod(self.workdir, 0o755)  # the socket must be reachable by other users
        self.bus = Bus(self.workdir)
        self.sim = Sim(os.path.join(self.workdir, "sim"))
        # the daemon's --policy must exist: an empty policy (every setting a default)
        self.write_policy({})
        self.daemon_args = list(daemon_args)
        self.daemon = None
        self.ctl_tool = binary("MIGCTL")

    @property
    def address(self):
        return self.bus.address

    def write_policy(self, content, dropin=None):
        """The daemon's policy.json, or policy.d/DROPIN; content is a dict or raw text."""
        path = os.path.join(self.workdir, "policy.json")
        if dropin:
            os.makedirs(os.path.join(self.workdir, "policy.d"), exist_ok=True)
            path = os.path.join(self.workdir, "policy.d", dropin)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content, indent=2))
        return path

    def start_daemon(self, *extra_args):
        self.daemon = Daemon(self.bus, self.sim.dir, self.workdir,
                             [*self.daemon_args, *extra_args], label=f"vfio-migd-{self.label}")
        self.daemon.start()

    def stop(self):
        code = self.daemon.stop() if self.daemon else 0
        self.bus.stop()
        return code

    def crash_daemon(self):
        """kill -9 the daemon; the devices, the bus and the state directory stay."""
        self.daemon.kill()
        self.restarts = getattr(self, "restarts", 0) + 1

    def restart_daemon(self, *extra_args):
        """A new daemon on the same bus, devices and state directory (its own log file)."""
        if self.daemon and self.daemon.returncode is None:
            self.daemon.stop()
        n = getattr(self, "restarts", 0)
        self.daemon = Daemon(self.bus, self.sim.dir, self.workdir,
                             [*self.daemon_args, *extra_args],
                             label=f"vfio-migd-{self.label}-{n}")
        self.daemon.start()

    # --- clients ---

    def ctl(self, *args, user=None, groups=None, timeout=None, **kw):
        """vfio-migctl ARGS on this host's bus; as another user with user=."""
        prefix = as_user(user, groups) if user else []
        return run([*prefix, self.ctl_tool, *map(str, args)], env=self.bus.env,
                   timeout=timeout, **kw)

    def busctl(self, *args, user=None, timeout=None):
        prefix = as_user(user) if user else []
        return run([*prefix, "busctl", f"--address={self.address}", *map(str, args)],
                   timeout=timeout)

    def busctl_call(self, path, iface, method, signature="", *args, user=None, timeout=None):
        """busctl call; returns the Result (stdout is JSON: {"type": .., "data": [..]})."""
        sig = [signature] if signature else []
        return self.busctl("--json=short", f"--timeout={int(seconds(300))}", "call", BUS_NAME,
                           path, iface, method, *sig, *args, user=user, timeout=timeout)

    def busctl_get(self, path, iface, prop):
        r = self.busctl("--json=short", "get-property", BUS_NAME, path, iface, prop)
        if r.returncode != 0:
            raise AssertionError(f"busctl get-property failed:\n{r}")
        return unvariant(r.json["data"])

    def gdbus_call(self, path, method, *args):
        """gdbus call: unlike busctl it prints the error's name."""
        return run(["gdbus", "call", "--address", self.address, "--dest", BUS_NAME,
                    "--object-path", path, "--method", method, *args])

    def dbus_send(self, path, method, *args):
        """dbus-send: sends arguments of any type and prints the error's name."""
        # --address would skip the Hello and get NoReply: DBUS_SYSTEM_BUS_ADDRESS it is
        return run(["dbus-send", "--system", "--print-reply", f"--dest={BUS_NAME}", path,
                    method, *args], env=self.bus.env)

    def monitor(self, *args):
        """vfio-migctl --json monitor in the background, returned once it is subscribed."""
        return Monitor(self, [self.ctl_tool, "--json", *args, "monitor"])


def read_shared(f):
    """All of f, read without moving its offset. A child given f as stdout or stderr shares
    that offset: seek(0) while it runs would make its next write overwrite the start."""
    chunks, offset = [], 0
    while True:
        chunk = os.pread(f.fileno(), 65536, offset)
        if not chunk:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(chunk)
        offset += len(chunk)


class Monitor:
    """A background signal monitor; stop() returns what it printed, one JSON per line."""

    def __init__(self, host, argv, ready_text="Monitoring"):
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(argv, env=host.bus.env, stdout=self.out, stderr=self.err,
                                     text=True)
        deadline = time.monotonic() + seconds(10)
        while time.monotonic() < deadline:
            if ready_text in read_shared(self.err):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{argv} did not start monitoring: {read_shared(self.err)}")

    def lines(self):
        """The JSON lines printed so far, while it runs; a line being written is left out."""
        text = read_shared(self.out)
        return [json.loads(x) for x in text[:text.rfind("\n") + 1].splitlines() if x.strip()]

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.returncode = self.proc.wait(seconds(10))
        self.out.seek(0)
        text = self.out.read()
        self.out.close()
        self.err.close()
        return text

    def stop_json(self):
        return [json.loads(line) for line in self.stop().splitlines() if line.strip()]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")


# The presets of vfio-migsim and the flags they advertise (reference/vfio-uapi.md).
P2P_PRESETS = ("mlx5", "pds", "xe", "virtio")


class MigdTestCase(unittest.TestCase):
    """Each test gets fresh hosts; a daemon that does not exit cleanly fails the test, and
    a failing test prints the daemon's log."""

    maxDiff = None

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="migd-dbus-")
        os.chmod(self.workdir, 0o755)
        self.hosts = []
        self.addCleanup(self._cleanup)

    def new_host(self, label="host", daemon_args=(), start=True, devices=()):
        """A host; devices are (name, preset[, {create kwargs}]) made before the daemon starts."""
        h = Host(self.workdir, label, daemon_args)
        self.hosts.append(h)
        for d in devices:
            h.sim.create(d[0], d[1], **(d[2] if len(d) > 2 else {}))
        if start:
            h.start_daemon()
        return h

    def _cleanup(self):
        problems = []
        for h in self.hosts:
            code = h.stop()
            if code != 0:
                problems.append(f"{h.daemon.label} exited with {code} on SIGTERM"
                                + (" (valgrind found errors or leaks)" if code == 99 else ""))
        self._logs = [(h.daemon.label, h.daemon.read_log()) for h in self.hosts if h.daemon]
        if os.environ.get("MIGD_TEST_KEEP"):
            print(f"\nkept {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise AssertionError("; ".join(problems))

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        self._logs = []
        super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for label, text in self._logs:
                sys.stderr.write(f"\n===== {label} log ({self.id()}) =====\n{text}"
                                 f"===== end of {label} log =====\n")
        return result

    # --- assertions ---

    def assertExit(self, r, code, error=None):
        """An exact exit code; with error, the D-Bus error name vfio-migctl printed."""
        self.assertEqual(r.returncode, code, f"wrong exit code:\n{r}")
        if error:
            name = error if "." in error else ERROR + error
            self.assertIn(name, r.stderr, f"error {name} not named:\n{r}")

    def assertOk(self, r):
        self.assertExit(r, 0)
        return r

    def assertBusctlFails(self, r, *texts):
        """busctl prints only the error's message: check the exit and the words."""
        self.assertEqual(r.returncode, 1, f"busctl should fail:\n{r}")
        for t in texts:
            self.assertIn(t, r.stderr, f"'{t}' not in busctl's error:\n{r}")

    def assertGdbusError(self, r, name):
        self.assertNotEqual(r.returncode, 0, f"gdbus call should fail:\n{r}")
        full = name if "." in name else ERROR + name
        self.assertIn(f"GDBus.Error:{full}:", r.stderr, f"gdbus call: wrong error:\n{r}")

    def assertDbusSendError(self, r, name):
        self.assertNotEqual(r.returncode, 0, f"dbus-send should fail:\n{r}")
        full = name if "." in name else ERROR + name
        self.assertIn(f"Error {full}", r.stderr, f"dbus-send: wrong error:\n{r}")

    def assertStates(self, host, names, state):
        states = host.sim.states(names)
        self.assertEqual(states, {n: state for n in names}, "device states (vfio-migsim)")


def main():
    unittest.main(verbosity=2)
