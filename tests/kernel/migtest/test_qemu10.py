# SPDX-License-Identifier: GPL-2.0
"""The real QEMU 10 against vfio_migtest devices, and vfio-migd on the same devices, in the guest.

usage: python3 test_qemu10.py [--bench-only] [--rounds N] MODULE.ko

QEMU10, QEMU10_DATA and QEMU10_BIOS (fetch-qemu.sh) name the binary and its -L directories;
MIGD and MIGCTL vfio-migd and vfio-migctl. An L2 VM holding migtest P2P mdevs (vfio-pci
sysfsdev=) never boots an OS: SeaBIOS spins, which is enough, because what moves the devices
is QEMU's VM stop and start, not the guest. It migrates out to a file: and a second QEMU
(-incoming) loads it. The driver's records are the witness: digests saved and loaded, peer
writes into stopped devices, and the arcs walked with their times (arc_times). Output is TAP;
the benchmark prints '# bench:' lines.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from migtest import Mdev, check, eq, load_modules, tap_step  # noqa: E402
import test_migtest_daemon as migd  # noqa: E402  (the daemon and vfio-migctl helpers)

QEMU = os.environ.get("QEMU10", "qemu-system-x86_64")
FIRMWARE = [os.environ[v] for v in ("QEMU10_DATA", "QEMU10_BIOS") if os.environ.get(v)]
RUN = "/run/qemu10"  # QMP sockets and the migration file: a tmpfs (9p cannot hold a socket,
#                     and writing the stream over 9p takes a minute)
STOPPED = ("STOP", "STOP_COPY", "RESUMING")


class Env:
    work = None
    src = []  # migtest-p2p, peers "src"
    dst = []  # migtest-p2p, peers "dst"
    qemu_logs = {}  # uuid: the timed arcs QEMU issued in the test migration
    tests = []


def test(fn):
    Env.tests.append(fn)
    return fn


# ---- QEMU and its QMP ----

class Qmp:
    def __init__(self, path, proc, log):
        self.proc, self.log = proc, log
        end = time.monotonic() + 60
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if proc.poll() is not None or time.monotonic() > end:
                    raise AssertionError(f"QEMU did not start (exit {proc.poll()}):\n{self.log_text()}")
                time.sleep(0.05)
        self.f = self.sock.makefile("rw")
        self.f.readline()  # the greeting
        self.cmd("qmp_capabilities")

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()[-4000:]

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise AssertionError(f"QEMU closed QMP during {name}:\n{self.log_text()}")
            r = json.loads(line)
            if "event" in r:
                continue
            if "error" in r:
                raise AssertionError(f"QMP {name}: {r['error']}\n{self.log_text()}")
            return r["return"]

    def wait(self, what, pred, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = pred()
            if r:
                return r
            time.sleep(0.02)
        raise AssertionError(f"QEMU: {what} not reached in {timeout} s:\n{self.log_text()}")

    def quit(self):
        try:
            self.cmd("quit")
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


def qemu(name, devs, *extra):
    """An L2 VM holding devs as vfio-pci devices: QMP on a socket, its log in the work dir."""
    sock, log = f"{RUN}/{name}.qmp", f"{Env.work}/{name}.qemu.log"
    args = [QEMU, *sum((["-L", d] for d in FIRMWARE), []), "-M", "q35", "-accel", "tcg",
            "-m", "32", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-qmp", f"unix:{sock},server=on,wait=off", *extra]
    for d in devs:
        # migtest has no dirty tracking (neither does type1 for an emulated-IOMMU mdev):
        # enable-migration=on accepts that, and x-pre-copy-dirty-page-tracking=off keeps
        # QEMU from counting all of RAM dirty on every pre-copy pass.
        args += ["-device", f"vfio-pci,sysfsdev={d.sysfs},id={d.name},enable-migration=on,"
                            "x-pre-copy-dirty-page-tracking=off"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    return Qmp(sock, proc, log)


def qemu_migrate(src, dst, before_start=None):
    """QEMU 10 migrates an L2 VM holding src into a second one holding dst (file:), which
    starts once loaded. Returns {uuid: timed arcs} of every device from the migration's
    start to the destination's start (the source VM's start and the destination's quit
    excluded). before_start (if any) runs while the destination is loaded and paused."""
    stream = f"{RUN}/vm.mig"
    q = qemu("source", src)
    # The VM start walked RUNNING>RUNNING_P2P>RUNNING on each device already.
    q.wait("running", lambda: q.cmd("query-status")["status"] == "running")
    clear(src)
    # 6.1 cannot tell QEMU a device's data size (no MIG_DATA_SIZE), so QEMU assumes 100 GiB
    # per device; a switchover bandwidth this large lets it stop the VM after one RAM pass.
    q.cmd("migrate-set-parameters", **{"downtime-limit": 60000,
                                       "avail-switchover-bandwidth": 1 << 50})
    q.cmd("migrate", uri=f"file:{stream}")
    st = q.wait("migration end", lambda: finished(q, ("completed", "failed", "cancelled")))
    eq(st["status"], "completed", f"source migration ({st.get('error-desc', '')})")
    logs = {d.uuid: timed_arcs(d) for d in src}
    q.quit()
    d = qemu("destination", dst, "-S", "-incoming", "defer")
    clear(dst)
    d.cmd("migrate-incoming", uri=f"file:{stream}")
    st = d.wait("incoming end", lambda: finished(d, ("completed", "failed")))
    eq(st["status"], "completed", "incoming migration")
    if before_start:
        before_start()
    d.cmd("cont")
    d.wait("running", lambda: d.cmd("query-status")["status"] == "running")
    logs.update({x.uuid: timed_arcs(x) for x in dst})
    d.quit()  # stops the VM: the devices walk to STOP again
    os.unlink(stream)
    return logs


def finished(q, states):
    st = q.cmd("query-migrate")
    return st if st.get("status") in states else None


# ---- the driver's records ----

def clear(devs):
    for d in devs:
        d.clear_log()
        d.set_attr("peer_writes_while_stopped", "0")


def peer_writes(devs):
    return {d.name: int(d.attr("peer_writes_while_stopped")) for d in devs}


def timed_arcs(d):
    """[(start_us, end_us, 'FROM>TO')] of d's completed arcs (no OPEN or RESET lines)."""
    out = []
    for line in d.attr("arc_times").split("\n"):
        parts = line.split(" ", 2)
        if len(parts) == 3 and ">" in parts[2] and "failed" not in parts[2]:
            out.append((int(parts[0]), int(parts[1]), parts[2]))
    return out


def driver_logs(devs):
    return {d.uuid: timed_arcs(d) for d in devs}


def arcs(logs, d):
    return [a for _, _, a in logs[d.uuid]]


def window(logs, devs, leaving, reaching):
    """ms from the first arc leaving a state in `leaving` to the last reaching `reaching`."""
    all_arcs = [a for d in devs for a in logs[d.uuid]]
    starts = [s for s, _, a in all_arcs if a.split(">")[0] in leaving]
    ends = [e for _, e, a in all_arcs if a.split(">")[1] == reaching]
    check(starts and ends, f"arcs leaving {leaving} and reaching {reaching} in {all_arcs}")
    return (max(ends) - min(starts)) / 1000


def stop_window(logs, devs):
    return window(logs, devs, ("RUNNING", "PRE_COPY"), "STOP_COPY")


def start_window(logs, devs):
    # From the first validation (RESUMING>STOP): QEMU validates each device as the first arc
    # of its start, vfio-migd before its start; both windows hold the same three arcs.
    return window(logs, devs, ("RESUMING",), "RUNNING")


def shape(logs, devs):
    """The arcs of all devices in the order they began, device names replaced by position."""
    pos = {d.uuid: i for i, d in enumerate(devs)}
    seq = sorted((s, pos[d.uuid], a) for d in devs for s, _, a in logs[d.uuid])
    return [(i, a) for _, i, a in seq]


def check_one_arc_at_a_time(logs, devs, what):
    """No two arcs overlap in time: each began after the one before it ended."""
    seq = sorted((s, e, d.name, a) for d in devs for s, e, a in logs[d.uuid])
    for x, y in zip(seq, seq[1:]):
        check(y[0] >= x[1], f"{what}: {y[2]} {y[3]} began at {y[0]} us, before {x[2]} {x[3]} "
                            f"ended at {x[1]} us")


def shape_text(sh):
    return ", ".join(f"{i}:{a}" for i, a in sh)


def check_no_overlap_with_running_peer(logs, devs, what, since=0):
    """From the times alone: no device reached a stopped state (after `since`, µs) while a
    peer was RUNNING: the invariant, which the peer-write counters witness too through the
    driver's DMA model."""
    spans = {d.name: logs[d.uuid] for d in devs}
    for d in devs:
        for s, e, a in spans[d.name]:
            if a.split(">")[1] not in STOPPED or e < since:
                continue
            for p in devs:
                if p is d:
                    continue
                if state_at(spans[p.name], e) == "RUNNING":
                    raise AssertionError(f"{what}: {d.name} reached {a} at {e} us while "
                                         f"{p.name} was RUNNING")


def state_at(log, t):
    """Where a device was at time t by its timed arcs: where its last arc ended by t took it,
    else where its first arc started (an arc in progress has not left its state yet)."""
    done = [a for _, e, a in log if e <= t]
    if done:
        return done[-1].split(">")[1]
    return log[0][2].split(">")[0] if log else None


# ---- tests ----

@test
def qemu10_migrates_p2p_devices_between_two_vms():
    n = 3
    Env.src = [Mdev("migtest-p2p", f"src{i}") for i in range(n)]
    Env.dst = [Mdev("migtest-p2p", f"dst{i}") for i in range(n)]
    for d in Env.src:
        d.set_attr("peer_group", "src")
        d.set_attr("delay_ms", 2)  # arcs apart in time, so their order is unambiguous
    for d in Env.dst:
        d.set_attr("peer_group", "dst")
        d.set_attr("delay_ms", 2)

    def before_start():
        # The destination is loaded and paused. Before the load, QEMU took each fresh device
        # from RUNNING to RESUMING alone (harmless: its guest never ran, though migtest's
        # model lets a fresh RUNNING device "DMA"); what matters is the start.
        for s, d in zip(Env.src, Env.dst):
            eq(d.attr("state"), "RESUMING", f"{d.name} waits in RESUMING for the start")
        for d in Env.dst:
            d.set_attr("peer_writes_while_stopped", "0")

    logs = qemu_migrate(Env.src, Env.dst, before_start)
    for s in Env.src:
        eq(s.attr("state"), "STOP", f"{s.name} after the migration")
        eq(s.attr("state_digest"), s.attr("saved_digest"), f"{s.name}: the state did not move after the save")
    for s, d in zip(Env.src, Env.dst):
        eq(d.attr("loaded_digest"), s.attr("saved_digest"), f"{d.name} holds {s.name}'s state")
        eq(d.attr("loaded_from"), s.attr("id"), f"{d.name} loaded_from")
        eq(d.attr("stream_error"), "", f"{d.name} stream_error")
    eq(peer_writes(Env.src), {d.name: 0 for d in Env.src}, "source: no peer write hit a stopped device")
    eq(peer_writes(Env.dst), {d.name: 0 for d in Env.dst}, "destination start: no peer write hit a stopped device")
    check_no_overlap_with_running_peer(logs, Env.src, "source")
    load = min(s for d in Env.dst for s, _, a in logs[d.uuid] if a == "RESUMING>STOP")
    check_no_overlap_with_running_peer(logs, Env.dst, "destination start", since=load)
    for s in Env.src:
        eq(arcs(logs, s), ["RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP", "STOP>STOP_COPY",
                           "STOP_COPY>STOP"], f"{s.name}: QEMU's arcs")
    Env.qemu_logs = logs
    for side, devs in (("src", Env.src), ("dst", Env.dst)):
        print(f"# QEMU 10 {side}: {shape_text(shape(logs, devs))}")


@test
def qemu_strategy_issues_the_arcs_qemu10_issued():
    """vfio-migd --strategy qemu saves the same source devices and resumes into the same
    destination devices: each device walks exactly the arcs QEMU 10 made it walk."""
    check(Env.qemu_logs, "QEMU's migration ran")
    migd.start_daemon()
    migd.register("src", Env.src, "--strategy", "qemu")
    migd.register("dst", Env.dst, "--strategy", "qemu")
    clear(Env.src + Env.dst)
    stream = f"{RUN}/migd.stream"
    migd.ctl_ok("save", "src", stream)
    migd.ctl_ok("--renamed-from", "src", "resume", "dst", stream)
    os.unlink(stream)
    for s, d in zip(Env.src, Env.dst):
        eq(d.attr("loaded_digest"), s.attr("saved_digest"), f"{d.name} holds {s.name}'s state")
    eq(peer_writes(Env.src + Env.dst), {d.name: 0 for d in Env.src + Env.dst},
       "no peer write hit a stopped device")
    logs, qlogs = driver_logs(Env.src + Env.dst), Env.qemu_logs
    for d in Env.src + Env.dst:
        eq(arcs(logs, d), arcs(qlogs, d), f"{d.name}: vfio-migd's qemu strategy against QEMU 10")
    for side, devs in (("src", Env.src), ("dst", Env.dst)):
        got, want = shape(logs, devs), shape(qlogs, devs)
        print(f"# vfio-migd qemu {side}: {shape_text(got)}")
        if side == "dst":
            # The fresh destination devices: QEMU takes each alone from RUNNING to RESUMING,
            # vfio-migd quiesces them all in P2P order first (docs/architecture.md); compare
            # from the load on.
            got, want = (x[x.index(next(y for y in x if y[1] == "RESUMING>STOP")):] for x in (got, want))
        # One arc at a time, and across devices the same arcs of the same devices in the same
        # order (QEMU stops the VM's last device first, and so does the qemu strategy).
        check_one_arc_at_a_time(qlogs, devs, f"QEMU 10 {side}")
        check_one_arc_at_a_time(logs, devs, f"vfio-migd qemu {side}")
        eq(got, want, f"{side}: the order of arcs across devices (device position:arc)")
    migd.ctl_ok("unregister", "src")
    migd.ctl_ok("unregister", "dst")


# ---- the benchmark ----

def bench(rounds, sizes=(1, 2, 4, 8), delay_ms=20):
    """QEMU 10 migrating the L2 VM and vfio-migd (parallel) saving and resuming, on the same
    devices; both windows measured from the driver's arc times."""
    nmax = max(sizes)
    src = [Mdev("migtest-p2p", f"bsrc{i}") for i in range(nmax)]
    dst = [Mdev("migtest-p2p", f"bdst{i}") for i in range(nmax)]
    for d in src + dst:
        d.set_attr("delay_ms", delay_ms)
    if migd.Env.migd is None:
        migd.start_daemon()
    else:
        migd.ctl_ok("rescan")
    rows = []
    for n in sizes:
        s, d = src[:n], dst[:n]
        for x in src + dst:  # only this VM's devices are peers (an idle peer would "DMA")
            x.set_attr("peer_group", "")
        for x in s:
            x.set_attr("peer_group", "bsrc")
        for x in d:
            x.set_attr("peer_group", "bdst")
        fig = {"qemu": {"stop": [], "start": []}, "migd": {"stop": [], "start": []}}
        for _ in range(rounds):
            logs = qemu_migrate(s, d)
            fig["qemu"]["stop"].append(stop_window(logs, s))
            fig["qemu"]["start"].append(start_window(logs, d))
            check(sum(peer_writes(s).values()) == 0, f"QEMU, {n} devices: no peer write on the source")
            migd.register("bsrc", s, "--strategy", "parallel")
            migd.register("bdst", d, "--strategy", "parallel")
            clear(s + d)
            stream = f"{RUN}/bench.stream"
            migd.ctl_ok("save", "bsrc", stream)
            migd.ctl_ok("--renamed-from", "bsrc", "resume", "bdst", stream)
            os.unlink(stream)
            logs = driver_logs(s + d)
            fig["migd"]["stop"].append(stop_window(logs, s))
            fig["migd"]["start"].append(start_window(logs, d))
            eq(peer_writes(s + d), {x.name: 0 for x in s + d}, f"vfio-migd, {n} devices: peer writes")
            for a, b in zip(s, d):
                eq(b.attr("loaded_digest"), a.attr("saved_digest"), f"{b.name} holds {a.name}'s state")
            migd.ctl_ok("unregister", "bsrc")
            migd.ctl_ok("unregister", "bdst")
        for w in ("stop", "start"):
            q, m = statistics.median(fig["qemu"][w]), statistics.median(fig["migd"][w])
            rows.append((n, w, q, m, 3 * delay_ms, fig["qemu"][w], fig["migd"][w]))
    print(f"# bench: QEMU 10 against vfio-migd (parallel) on the same migtest-p2p devices, "
          f"{delay_ms} ms per arc, {rounds} round(s) each, medians, from the driver's arc times")
    print("# bench: stop = source, first arc leaving RUNNING to the last device in STOP_COPY; "
          "start = destination, first arc leaving RESUMING to the last device RUNNING")
    print(f"# bench: {'N':>2} {'window':<6} {'QEMU ms':>8} {'vfio-migd ms':>12} {'floor ms':>8} {'ratio':>6}")
    for n, w, q, m, floor, qs, ms in rows:
        print(f"# bench: {n:>2} {w:<6} {q:>8.1f} {m:>12.1f} {floor:>8} {q / m:>5.2f}x"
              f"   (QEMU {', '.join(f'{x:.0f}' for x in qs)}; vfio-migd {', '.join(f'{x:.0f}' for x in ms)})")
    for x in src + dst:
        x.remove()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-only", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("ko")
    args = ap.parse_args()
    Env.work = migd.Env.work = tempfile.mkdtemp(prefix="qemu10.")
    os.makedirs(RUN, exist_ok=True)
    r = subprocess.run([QEMU, "--version"], capture_output=True, text=True)
    print(f"# {r.stdout.splitlines()[0] if r.returncode == 0 else QEMU + ': ' + r.stderr.strip()}")
    dmesg_start = len(subprocess.run(["dmesg"], capture_output=True, text=True).stdout)
    load_modules(args.ko)
    steps = [] if args.bench_only else list(Env.tests)

    def benchmark():
        rows = bench(args.rounds)
        for n, w, q, m, floor, *_ in rows:
            # Lower bounds, no upper ones: QEMU walks the three arcs of each device one device
            # at a time, so its window holds all 3 x N of them; with four devices or more that
            # is twice the parallel floor, which no scheduling noise closes.
            check(q >= n * floor, f"{n} devices, {w}: QEMU {q:.1f} ms, under {n} x {floor} ms")
            check(m >= floor, f"{n} devices, {w}: vfio-migd {m:.1f} ms, under the floor {floor} ms")
            check(n < 4 or q > m, f"{n} devices, {w}: QEMU's one-at-a-time order is slower")

    def daemon_exits_cleanly_and_kernel_stays_quiet():
        migd.stop_daemon()
        out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout[dmesg_start:]
        for bad in ("WARNING:", "BUG:", "Oops", "Call Trace"):
            check(bad not in out, f"dmesg has {bad}")

    if args.bench_only:
        steps.append(benchmark)
    steps.append(daemon_exits_cleanly_and_kernel_stays_quiet)
    print(f"1..{len(steps)}", flush=True)
    failed = 0
    for i, fn in enumerate(steps, 1):
        failed += not tap_step(i, fn.__name__, fn)
    if failed:
        for name in ("source", "destination"):
            p = f"{Env.work}/{name}.qemu.log"
            if os.path.exists(p):
                sys.stderr.write(f"--- {p}\n" + open(p, errors="replace").read()[-3000:])
        if os.path.exists(migd.Env.migd_log):
            sys.stderr.write(f"--- vfio-migd log\n" + open(migd.Env.migd_log, errors="replace").read()[-6000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
