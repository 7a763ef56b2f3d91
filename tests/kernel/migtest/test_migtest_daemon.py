# SPDX-License-Identifier: GPL-2.0
"""vfio-migd --backend=kernel over vfio_migtest devices, run as root in the test guest.

usage: python3 test_migtest_daemon.py [--bench-only] [--rounds N] MODULE.ko FSM_PATHS.tsv

A private dbus-daemon (tests/data/demo-bus.conf), vfio-migd --backend=kernel on it, and
vfio-migctl driving VMs made of migtest mdevs. The driver's own records (sysfs) are the
witness: state digests, peer writes into stopped devices, the arcs it walked. Output is TAP;
the quiesce benchmark prints its figures as '# bench:' lines. MIGD and MIGCTL name the
binaries (default: build/ at the top of the tree).
"""

import argparse
import hashlib
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)
from migtest import (TYPES, Mdev, check, eq, fsm_paths, load_modules, path_arcs,  # noqa: E402
                     tap_step, test, tests)

MIGD = os.environ.get("MIGD", f"{TOP}/build/daemon/vfio-migd")
MIGCTL = os.environ.get("MIGCTL", f"{TOP}/build/client/vfio-migctl")
EXIT_REFUSED, EXIT_ROLLED_BACK = 6, 7

class Env:
    work = None
    migd_log = "/dev/null"
    bus = migd = None
    env = None
    paths = None
    src = []  # p2p, p2p, p2p, sc: peers "src" except the sc one
    dst = []  # the same types, peers "dst"
    stream = None
    bench_reports = {}


# ---- the daemon and its client ----

def start_daemon():
    w = Env.work
    with open(f"{TOP}/tests/data/demo-bus.conf") as f:
        conf = f.read().replace("@LISTEN@", f"unix:path={w}/bus.socket")
    with open(f"{w}/bus.conf", "w") as f:
        f.write(conf)
    Env.bus = subprocess.Popen(["dbus-daemon", f"--config-file={w}/bus.conf", "--nofork",
                                "--nopidfile", "--print-address=1"],
                               stdout=subprocess.PIPE, stderr=open(f"{w}/bus.log", "w"),
                               text=True)
    address = Env.bus.stdout.readline().strip()
    check(address, "dbus-daemon printed its address")
    Env.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
    Env.migd_log = f"{w}/vfio-migd.log"
    # The host's policy files must not leak in: point the daemon at empty places.
    with open(f"{w}/policy.json", "w") as f:
        f.write("{}")  # --policy must name an existing file: an empty policy
    Env.migd = subprocess.Popen([MIGD, "--backend=kernel", f"--policy={w}/policy.json",
                                 f"--policy-dir={w}/policy.d", "--log-level=debug"],
                                env=Env.env, stdin=subprocess.DEVNULL,
                                stdout=open(Env.migd_log, "w"), stderr=subprocess.STDOUT)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if Env.migd.poll() is not None:
            with open(Env.migd_log, errors="replace") as f:
                raise AssertionError(f"{MIGD} exited with {Env.migd.returncode}:\n{f.read()}")
        if ctl("status").returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("vfio-migd did not answer within 20 s")


def stop_daemon():
    for p in (Env.migd, Env.bus):
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    if Env.migd and Env.migd.returncode not in (0, None):
        raise AssertionError(f"vfio-migd exited with {Env.migd.returncode} on SIGTERM")


def ctl(*args, input=None):
    return subprocess.run([MIGCTL, *map(str, args)], env=Env.env, capture_output=True,
                          text=input is None, input=input, timeout=120)


def ctl_ok(*args, want=0):
    r = ctl(*args)
    if r.returncode != want:
        raise AssertionError(f"vfio-migctl {' '.join(map(str, args))}: exit {r.returncode}, "
                             f"want {want}\n{r.stdout}{r.stderr}")
    return r


def last(vm):
    return json.loads(ctl_ok("--json", "last", vm).stdout)


def register(vm, devs, *opts):
    ctl_ok("register", vm, *[d.uuid for d in devs], *opts)


# ---- what the driver saw against what vfio-migd planned ----

def driver_arcs(d):
    """The arcs d walked, failed ones marked as the driver logs them (no OPEN lines)."""
    return [a for a in d.arcs() if a != "OPEN"]


def is_reset(step):
    """A reset step (VFIO_DEVICE_RESET, out of ERROR or RESUMING): no kernel path."""
    return "reset" in step["phase"]


def report_arcs(report, d):
    """The arcs vfio-migd's report says d walked, in the driver's log format."""
    out = []
    for st in report["steps"]:
        if st["device"] != d.uuid or st["from"] == st["target"]:
            continue  # another device, or a streaming step (no arc)
        if is_reset(st):
            out += ["RESET"] if st["errno"] == 0 else []
            continue
        states = st["path"].split(">") if st["path"] else []
        if not st["errno"]:
            out += path_arcs(states)
        elif st["reached"] == "ERROR":
            # The report does not say which arc fell into ERROR; in these tests the step
            # has one arc, or the fault sits on its last one.
            out += path_arcs(states)[:-1] + [f"{states[-2]}>{states[-1]} failed -{st['errno']}, ERROR"]
        else:
            # The walk stopped at 'reached'; the kernel's next arc is the one that failed.
            full = Env.paths[(TYPES[d.type], st["from"], st["target"])]
            at = full.index(st["reached"])
            out += path_arcs(full[:at + 1]) + [f"{full[at]}>{full[at + 1]} failed -{st['errno']}"]
    return out


def check_steps_follow_the_table(report, devs):
    """Every successful step's path is the uAPI's path for the device's flags."""
    flags = {d.uuid: TYPES[d.type] for d in devs}
    for st in report["steps"]:
        if (st["errno"] or not st["path"] or st["device"] not in flags or
                st["from"] == st["target"] or is_reset(st)):
            continue
        want = Env.paths.get((flags[st["device"]], st["from"], st["target"]))
        eq(st["path"].split(">"), want, f"{st['device'][:8]} {st['from']}->{st['target']} path")


def check_driver_agrees(vm, devs, report=None):
    report = report or last(vm)
    check_steps_follow_the_table(report, devs)
    for d in devs:
        got, want = driver_arcs(d), report_arcs(report, d)
        if got != want:
            steps = [f"{st['phase']}: {st['from']}->{st['target']} reached {st['reached']} "
                     f"path '{st['path']}' errno {st['errno']}"
                     for st in report["steps"] if st["device"] == d.uuid]
            raise AssertionError(f"{d.name}: driver arc_log {got}\n  vfio-migd's report "
                                 f"{want}\n  steps:\n    " + "\n    ".join(steps))
    return report


def clear(devs):
    for d in devs:
        d.clear_log()
        d.set_attr("peer_writes_while_stopped", "0")
        d.set_attr("fault", "none")


def peer_writes(devs):
    return {d.name: int(d.attr("peer_writes_while_stopped")) for d in devs}


def all_running(vm, devs, what):
    """RUNNING by the driver's sysfs and by vfio-migd's GET (the VM's DeviceDetails)."""
    got = {x["Name"]: x["State"] for x in
           json.loads(ctl_ok("--json", "show", vm).stdout)["DeviceDetails"]}
    for d in devs:
        eq(d.attr("state"), "RUNNING", f"{what}: {d.name} (driver)")
        eq(got.get(d.uuid), "RUNNING", f"{what}: {d.name} (GET through vfio-migd)")


# ---- the VM stream (daemon/migstream.h) ----

def stream_split(data):
    """(header bytes, device count, {index: device data}) of a vfio-migd VM stream."""
    check(data[:8] == b"VFIOMIG1", "VM stream magic")
    (version,) = struct.unpack_from("<I", data, 8)
    eq(version, 2, "VM stream format version")
    # version 2: u16 VM name length, the name, a 16-byte migration id, u32 device count
    (vl,) = struct.unpack_from("<H", data, 12)
    off = 14 + vl + 16
    (n,) = struct.unpack_from("<I", data, off)
    off += 4
    for _ in range(n):
        (nl,) = struct.unpack_from("<H", data, off)
        off += 2 + nl + 8
    header, per_dev = data[:off], {i: b"" for i in range(n)}
    while off < len(data):
        magic, index, kind, length = struct.unpack_from("<IIII", data, off)
        check(magic == 0x52464D56, f"frame magic at {off}")
        off += 16
        if kind == 1:
            per_dev[index] += data[off:off + length]
        off += length
        if kind == 3:
            break
    return header, n, per_dev


def stream_join(header, n, per_dev):
    out = [header]
    for i in range(n):
        out.append(struct.pack("<IIII", 0x52464D56, i, 1, len(per_dev[i])) + per_dev[i])
        out.append(struct.pack("<IIII", 0x52464D56, i, 2, 32) +
                   hashlib.sha256(per_dev[i]).digest())
    out.append(struct.pack("<IIII", 0x52464D56, 0xFFFFFFFF, 3, 0))
    return b"".join(out)


# ---- tests ----

@test
def daemon_lists_the_test_devices():
    Env.src = [Mdev("migtest-p2p", f"src{i}") for i in range(3)] + [Mdev("migtest-sc", "src3")]
    Env.dst = [Mdev("migtest-p2p", f"dst{i}") for i in range(3)] + [Mdev("migtest-sc", "dst3")]
    for d in Env.src[:3]:
        d.set_attr("peer_group", "src")
    for d in Env.dst[:3]:
        d.set_attr("peer_group", "dst")
    start_daemon()
    listed = {x["name"]: x for x in json.loads(ctl_ok("--json", "list-devices").stdout)}
    for d in Env.src + Env.dst:
        check(d.uuid in listed, f"{d.name} listed")
        x = listed[d.uuid]
        # Free: listed from sysfs, never opened (a VMM starting now needs its VFIO group), so
        # neither its migration flags nor its state are read.
        eq((x["driver"], x["flags"], x["state"]), ("vfio_migtest", 0, "unknown"), d.name)
        check(x.get("vm") is None, f"{d.name} is free")


@test
def require_p2p_refuses_a_mixed_vm_before_anything_moves():
    clear(Env.src)
    register("mixed", Env.src, "--p2p-mode", "require-p2p")
    r = ctl_ok("check", "mixed", want=EXIT_REFUSED)
    check("no-p2p" in r.stdout and Env.src[3].uuid in r.stdout, "the blocker names the sc device")
    ctl_ok("quiesce", "mixed", want=EXIT_REFUSED)
    ctl_ok("save", "mixed", f"{Env.work}/never.stream", want=EXIT_REFUSED)
    for d in Env.src:
        eq(driver_arcs(d), [], f"{d.name}: nothing moved")
    all_running("mixed", Env.src, "refused")
    ctl_ok("unregister", "mixed")


@test
def p2p_blocked_vm_migrates_byte_identical():
    register("src", Env.src, "--p2p-mode", "p2p-blocked")
    register("dst", Env.dst, "--p2p-mode", "p2p-blocked")
    clear(Env.src + Env.dst)
    ctl_ok("precopy", "src")  # 6.1 has no PRE_COPY: nothing to do
    for d in Env.src:
        eq(driver_arcs(d), [], f"{d.name}: precopy moved nothing")
    ctl_ok("quiesce", "src")
    check_driver_agrees("src", Env.src)
    clear(Env.src)
    clear(Env.dst)
    stream = f"{Env.work}/src.stream"
    # Save into a pipe that the destination resumes from while the bytes arrive, as a live
    # migration streams them; tee keeps a copy for the damaged-stream tests below.
    pipeline = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$0" save src - | tee "$1" | "$0" --renamed-from src resume dst -',
         MIGCTL, stream], env=Env.env, capture_output=True, text=True, timeout=120)
    eq(pipeline.returncode, 0, f"save | resume through a pipe:\n{pipeline.stderr}")
    report = check_driver_agrees("src", Env.src)
    for d in Env.src:
        eq(d.attr("state"), "STOP", f"{d.name} stopped after save")
        saved = d.attr("saved_digest")
        eq(d.attr("state_digest"), saved, f"{d.name}: nothing touched the state after it was saved")
        sent = sum(st["bytes"] for st in report["steps"] if st["device"] == d.uuid)
        eq(sent, 48 + int(open("/sys/module/vfio_migtest/parameters/state_bytes").read()) + 32,
           f"{d.name}: bytes streamed")
    check_driver_agrees("dst", Env.dst)
    for s, d in zip(Env.src, Env.dst):
        eq(d.attr("loaded_digest"), s.attr("saved_digest"), f"{d.name} holds {s.name}'s state")
        eq(d.attr("loaded_from"), s.attr("id"), f"{d.name} loaded_from")
    all_running("dst", Env.dst, "resumed")
    eq(peer_writes(Env.src + Env.dst), {d.name: 0 for d in Env.src + Env.dst},
       "no peer write hit a stopped device")
    with open(stream, "rb") as f:
        Env.stream = f.read()


@test
def naive_strategy_lets_peers_write_into_stopped_devices():
    ctl_ok("start", "src")
    all_running("src", Env.src, "started")
    ctl_ok("unregister", "src")
    p2p = Env.src[:3]
    register("naive", p2p, "--strategy", "naive")
    clear(p2p)
    ctl_ok("quiesce", "naive")
    check_driver_agrees("naive", p2p)
    writes = peer_writes(p2p)
    check(sum(writes.values()) > 0, f"each device alone: writes into stopped devices {writes}")
    print(f"# naive quiesce: peer writes into stopped devices {writes}")
    ctl_ok("start", "naive")
    ctl_ok("unregister", "naive")
    register("src", Env.src, "--p2p-mode", "p2p-blocked")


@test
def failing_arc_rolls_back_to_running():
    clear(Env.src)
    Env.src[1].set_attr("fault", "RUNNING_P2P>STOP errno 5")
    ctl_ok("quiesce", "src", want=EXIT_ROLLED_BACK)
    report = check_driver_agrees("src", Env.src)
    eq(report["result"], "rolled-back", "report result")
    check("RUNNING_P2P>STOP failed -5" in driver_arcs(Env.src[1]), "the driver failed the arc")
    all_running("src", Env.src, "rolled back")
    eq(peer_writes(Env.src), {d.name: 0 for d in Env.src}, "no write into a stopped device")


@test
def error_is_reset_and_reported_as_state_lost():
    clear(Env.src)
    victim = Env.src[2]
    resets = int(victim.attr("resets"))
    victim.set_attr("fault", "RUNNING_P2P>STOP error")
    ctl_ok("quiesce", "src", want=EXIT_ROLLED_BACK)
    report = check_driver_agrees("src", Env.src)
    eq(report["lost-state"], [victim.uuid], "lost-state")
    eq(int(victim.attr("resets")), resets + 1, "the device was reset")
    all_running("src", Env.src, "after ERROR")


@test
def truncated_vm_stream_is_refused_and_devices_reset():
    clear(Env.dst)
    resets = [int(d.attr("resets")) for d in Env.dst]
    cut = f"{Env.work}/cut.stream"
    with open(cut, "wb") as f:
        f.write(Env.stream[:len(Env.stream) // 2])
    r = ctl_ok("--renamed-from", "src", "resume", "dst", cut, want=EXIT_ROLLED_BACK)
    check("truncated" in r.stdout + r.stderr, "the error says truncated")
    check_driver_agrees("dst", Env.dst)
    for d, n in zip(Env.dst, resets):
        check("RESUMING>STOP" not in d.attr("arc_log"), f"{d.name}: never asked to validate")
        eq(int(d.attr("resets")), n + 1, f"{d.name} reset")
    all_running("dst", Env.dst, "refused stream")


@test
def device_refuses_its_own_short_stream_through_the_kernel():
    """A VM stream that is whole, but carries a device stream one byte short: the driver's
    RESUMING->STOP refuses it, vfio-migd rolls the destination back."""
    clear(Env.dst)
    header, n, per_dev = stream_split(Env.stream)
    per_dev[0] = per_dev[0][:-1]
    bad = f"{Env.work}/short-device.stream"
    with open(bad, "wb") as f:
        f.write(stream_join(header, n, per_dev))
    ctl_ok("--renamed-from", "src", "resume", "dst", bad, want=EXIT_ROLLED_BACK)
    check_driver_agrees("dst", Env.dst)
    check("RESUMING>STOP failed -22" in driver_arcs(Env.dst[0]), "the driver refused")
    check("short" in Env.dst[0].attr("stream_error"), "stream_error says short")
    all_running("dst", Env.dst, "device-refused stream")
    # and the untouched stream still resumes afterwards
    clear(Env.dst)
    good = f"{Env.work}/good.stream"
    with open(good, "wb") as f:
        f.write(stream_join(header, n, stream_split(Env.stream)[2]))
    ctl_ok("--renamed-from", "src", "resume", "dst", good)
    for s, d in zip(Env.src, Env.dst):
        eq(d.attr("loaded_digest"), s.attr("saved_digest"), f"{d.name} holds {s.name}'s state")


def quiesce_times(devs, strategy, rounds):
    """Quiesce then Start, rounds times; the Quiesce wall times in ms (vfio-migd's total-us)."""
    register("bench", devs, "--strategy", strategy)
    times = []
    for _ in range(rounds):
        ctl_ok("quiesce", "bench")
        report = last("bench")
        times.append(report["total-us"] / 1000)
        ctl_ok("start", "bench")
    ctl_ok("unregister", "bench")
    Env.bench_reports[strategy] = report
    return times


def phase_summary(report):
    """Each phase's duration, and how long after its start its last step began (the cost of
    handing steps to workers), from a report."""
    out = []
    for ph in report["phases"][:4]:
        starts = [st["start-us"] for st in report["steps"] if st["phase"] == ph["name"]]
        lag = (max(starts) - ph["start-us"]) / 1000 if starts else 0
        name = " ".join(w[:8] for w in ph["name"].split())  # "device <uuid>": short uuid
        out.append(f"{name} {ph['duration-us'] / 1000:.1f} ms (last step began +{lag:.1f})")
    return "; ".join(out) + (" ..." if len(report["phases"]) > 4 else "")


def bench(rounds, n=8, delay_ms=20):
    devs = [Mdev("migtest-p2p", f"bench{i}") for i in range(n)]
    for d in devs:
        d.set_attr("delay_ms", delay_ms)
        d.set_attr("peer_group", "bench")
    ctl_ok("rescan")
    par, ser = [], []
    for _ in range(rounds):  # interleaved, so drift hits both alike
        par += quiesce_times(devs, "parallel", 1)
        ser += quiesce_times(devs, "naive", 1)
    p, s = statistics.median(par), statistics.median(ser)
    print(f"# bench: quiesce of {n} migtest-p2p devices, {delay_ms} ms per arc, "
          f"{rounds} rounds each, medians")
    print(f"# bench: parallel {p:.1f} ms (runs {', '.join(f'{x:.1f}' for x in par)})")
    print(f"# bench: naive    {s:.1f} ms (runs {', '.join(f'{x:.1f}' for x in ser)})")
    print(f"# bench: naive/parallel {s / p:.2f}x; floor {2 * delay_ms} ms parallel, "
          f"{2 * delay_ms * n} ms naive")
    print(f"# bench: last parallel run: {phase_summary(Env.bench_reports['parallel'])}")
    print(f"# bench: last naive run: {phase_summary(Env.bench_reports['naive'])}")
    for d in devs:
        d.remove()
    return p, s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-only", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("ko")
    ap.add_argument("tsv")
    args = ap.parse_args()
    Env.paths = fsm_paths(args.tsv)
    Env.work = tempfile.mkdtemp(prefix="migtest-daemon.")
    dmesg_start = len(subprocess.run(["dmesg"], capture_output=True, text=True).stdout)
    load_modules(args.ko)
    run = [] if args.bench_only else list(tests)
    print(f"1..{len(run) + 2}")
    failed = 0
    i = 0
    for i, fn in enumerate(run, 1):
        if not tap_step(i, fn.__name__, fn):
            failed += 1
            if Env.migd is None or Env.migd.poll() is not None:
                print("Bail out! vfio-migd is not running")
                return 1

    def quiesce_benchmark():
        if Env.migd is None:
            start_daemon()
        p, s = bench(args.rounds)
        check(s > p, "naive is slower than parallel")

    def daemon_exits_cleanly_and_kernel_stays_quiet():
        stop_daemon()
        out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout[dmesg_start:]
        for bad in ("WARNING:", "BUG:", "Oops", "Call Trace"):
            check(bad not in out, f"dmesg has {bad}")

    failed += not tap_step(i + 1, "quiesce_benchmark", quiesce_benchmark)
    failed += not tap_step(i + 2, "daemon_exits_cleanly_and_kernel_stays_quiet",
                           daemon_exits_cleanly_and_kernel_stays_quiet)
    if failed:
        sys.stderr.write(f"--- vfio-migd log ({Env.migd_log})\n")
        with open(Env.migd_log, errors="replace") as f:
            sys.stderr.write(f.read()[-8000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
