# SPDX-License-Identifier: GPL-2.0
"""The vfio_migtest driver through raw VFIO ioctls, run as root in the test guest.

usage: python3 test_migtest_raw.py MODULE.ko FSM_PATHS.tsv

Every test is one behaviour of the device or of the kernel's migration path; output is TAP.
"""

import errno
import hashlib
import os
import sys
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migtest import (MIG_P2P, MIG_STOP_COPY, STATES, STREAM_HDR, TYPES, Container, Mdev,  # noqa: E402
                     check, eq, expect_errno, fsm_paths, load_modules, path_arcs, read_all,
                     stream_parse, tap_step, test, tests, wait_for, write_all)

KO, TSV = sys.argv[1], sys.argv[2]
class Env:
    container = None
    devs = {}


def dev(name):
    return Env.devs[name]


def fresh(d):
    """RUNNING, no fault, no delay, empty log, counters cleared."""
    d.set_attr("fault", "none")
    d.set_attr("delay_ms", "-1")
    d.set_attr("peer_group", "")
    if d.get_state() != "RUNNING":
        if d.get_state() in ("ERROR", "RESUMING"):
            d.reset()
        else:
            d.set_state("RUNNING")
    d.set_attr("peer_writes_while_stopped", "0")
    d.clear_log()


@test
def types_are_registered():
    for t, flags in TYPES.items():
        base = f"/sys/class/mdev_bus/migtest/mdev_supported_types/{t}"
        with open(f"{base}/device_api") as f:
            eq(f.read().strip(), "vfio-pci", f"{t} device_api")
        with open(f"{base}/description") as f:
            check(f"0x{flags:x}" in f.read(), f"{t} description names its flags")


@test
def devices_open_through_their_groups():
    Env.container = Container()
    for name, t in (("sc1", "migtest-sc"), ("sc2", "migtest-sc"), ("p2p1", "migtest-p2p"),
                    ("p2p2", "migtest-p2p"), ("p2p3", "migtest-p2p")):
        d = Mdev(t, name)
        d.open(Env.container)
        Env.devs[name] = d
    groups = {d.group for d in Env.devs.values()}
    eq(len(groups), len(Env.devs), "every mdev has an IOMMU group of its own")
    for d in Env.devs.values():
        with open(f"/sys/kernel/iommu_groups/{d.group}/name") as f:
            eq(f.read().strip(), "vfio-noiommu", "emulated IOMMU group name")


@test
def get_info_reports_a_pci_device_with_reset():
    for d in Env.devs.values():
        flags, nregions, nirqs = d.info()
        eq(flags, 3, "VFIO_DEVICE_FLAGS_PCI|RESET")
        eq(nregions, 9, "num_regions")
        _, size, offset = d.region_info(7)
        eq(size, 256, "config region size")
        vendor = os.pread(d.fd, 4, offset)
        eq(vendor, bytes.fromhex("361b577e"), "config space vendor:device 1b36:7e57")


@test
def migration_flags_are_the_types():
    for d in Env.devs.values():
        eq(d.migration_flags(), TYPES[d.type], f"{d.name} VFIO_DEVICE_FEATURE_MIGRATION")
        eq(int(d.attr("flags")), TYPES[d.type], f"{d.name} sysfs flags")
        eq(d.get_state(), "RUNNING", f"{d.name} opens RUNNING")


def enter(d, state):
    """Bring d to state; RESUMING with a valid stream already written (so it can leave)."""
    if state == "RESUMING":
        data = d.save()
        fd = d.set_state("RESUMING")
        write_all(fd, data)
        os.close(fd)
    else:
        fd = d.set_state(state)
        if fd is not None:
            os.close(fd)
    eq(d.get_state(), state, f"{d.name} reached {state}")


@test
def every_path_is_the_kernels_table():
    """For each 6.1 state pair, the arcs the driver saw are the path vfio-fsm-paths.tsv gives."""
    paths = fsm_paths(TSV)
    states61 = [s for s in STATES if s not in ("PRE_COPY", "PRE_COPY_P2P")]
    n = 0
    for d in (dev("sc1"), dev("p2p1")):
        flags = TYPES[d.type]
        for src in states61[1:]:
            for dst in STATES:
                if (flags, src, dst) not in paths:
                    continue
                want = paths[(flags, src, dst)]
                if src == "RUNNING_P2P" and not flags & MIG_P2P:
                    continue
                fresh(d)
                enter(d, src)
                d.clear_log()
                if want is None:
                    expect_errno(errno.EINVAL, d.set_state, dst)
                    eq(d.get_state(), src, f"{d.type} {src}->{dst} refused: state kept")
                    eq(d.arcs(), [], f"{d.type} {src}->{dst} refused: no arc walked")
                else:
                    fd = d.set_state(dst)
                    opens = dst in ("STOP_COPY", "RESUMING")
                    eq(fd is not None, opens, f"{d.type} {src}->{dst} returns a data fd")
                    if fd is not None:
                        os.close(fd)
                    eq(d.get_state(), dst, f"{d.type} {src}->{dst} arrives")
                    eq(d.arcs(), path_arcs(want), f"{d.type} {src}->{dst} arcs")
                n += 1
        fresh(d)
    check(n >= 50, f"only {n} transitions checked")


@test
def pre_copy_does_not_exist_in_6_1():
    for d in (dev("sc1"), dev("p2p1")):
        fresh(d)
        for s in ("PRE_COPY", "PRE_COPY_P2P", "ERROR"):
            expect_errno(errno.EINVAL, d.set_state, s)
        eq(d.arcs(), [], "nothing walked")


@test
def state_moves_while_running_and_freezes_when_stopped():
    d = dev("p2p1")
    fresh(d)
    g0 = int(d.attr("generation"))
    d.get_state()  # a GET while running counts as activity, even without the clock
    check(wait_for(lambda: int(d.attr("generation")) > g0 + 1), "generation moves while RUNNING")
    d.set_state("RUNNING_P2P")
    g1 = int(d.attr("generation"))
    check(wait_for(lambda: int(d.attr("generation")) > g1), "and while RUNNING_P2P")
    d.set_state("STOP")
    digest, g2 = d.attr("state_digest"), int(d.attr("generation"))
    time.sleep(0.05)
    d.get_state()
    eq((d.attr("state_digest"), int(d.attr("generation"))), (digest, g2), "STOP: state frozen")
    fresh(d)


@test
def stop_copy_stream_carries_the_state():
    d = dev("p2p1")
    fresh(d)
    fd = d.set_state("STOP_COPY")
    data = read_all(fd)
    eq(os.read(fd, 100), b"", "end of stream stays end of stream")
    hdr, state = stream_parse(data)
    eq((hdr["type"], hdr["flags"], hdr["id"]), ("migtest-p2p", 3, int(d.attr("id"))), "identity")
    eq(hdr["state_len"], len(state), "state length")
    digest = hashlib.sha256(state).hexdigest()
    eq(d.attr("saved_digest"), digest, "saved_digest is the stream's state")
    eq(d.attr("state_digest"), digest, "a stopped device's state is what was saved")
    d.set_state("STOP")
    expect_errno(errno.ENODEV, os.read, fd, 1)  # STOP_COPY->STOP ended the session
    os.close(fd)
    Env.stream = data
    Env.stream_digest = digest
    fresh(d)


@test
def resume_loads_a_stream_byte_for_byte():
    src, dst = dev("p2p1"), dev("p2p2")
    fresh(dst)
    check(dst.attr("state_digest") != Env.stream_digest, "destination starts different")
    dst.resume(Env.stream, chunk=1000)  # chunking does not matter
    eq(dst.get_state(), "STOP", "RESUMING->STOP validated")
    eq(dst.attr("loaded_digest"), Env.stream_digest, "loaded_digest")
    eq(dst.attr("state_digest"), Env.stream_digest, "destination state = source's saved state")
    eq(dst.attr("loaded_from"), src.attr("id"), "loaded_from names the source")
    eq(dst.arcs(), ["RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP", "STOP>RESUMING", "RESUMING>STOP"],
       "arcs")
    dst.set_state("RUNNING")
    fresh(dst)


def refused(d, data, why):
    fresh(d)
    fd = d.set_state("RESUMING")
    write_all(fd, data)
    d.clear_log()
    expect_errno(errno.EINVAL, d.set_state, "STOP")
    eq(d.get_state(), "RESUMING", "a refused stream leaves the device RESUMING")
    check(why in d.attr("stream_error"), f"stream_error '{d.attr('stream_error')}' names '{why}'")
    eq(d.arcs(), ["RESUMING>STOP failed -22"], "the arc log shows the refusal")
    expect_errno(errno.EINVAL, d.set_state, "RUNNING")  # every way out starts with RESUMING>STOP
    d.reset()
    eq(d.get_state(), "RUNNING", "reset leaves RESUMING")
    expect_errno(errno.ENODEV, os.write, fd, b"x")
    os.close(fd)
    fresh(d)


@test
def truncated_stream_is_refused():
    refused(dev("p2p2"), Env.stream[:-1], "short")
    refused(dev("p2p2"), Env.stream[:STREAM_HDR.size + 100], "short")
    refused(dev("p2p2"), b"", "short")


@test
def corrupt_stream_is_refused():
    bad = bytearray(Env.stream)
    bad[STREAM_HDR.size + 7] ^= 0x40
    refused(dev("p2p2"), bytes(bad), "checksum")
    refused(dev("p2p2"), b"NOTMIGT!" + Env.stream[8:], "magic")
    refused(dev("p2p2"), Env.stream + b"\0", "after the end")


@test
def foreign_stream_is_refused():
    refused(dev("sc1"), Env.stream, "foreign")  # a migtest-p2p stream into a migtest-sc device


@test
def failing_arc_leaves_the_device_where_the_arc_began():
    d = dev("p2p3")
    fresh(d)
    d.set_attr("fault", "RUNNING_P2P>STOP errno 5")
    eq(d.attr("fault"), "RUNNING_P2P>STOP errno 5", "fault reads back")
    expect_errno(errno.EIO, d.set_state, "STOP_COPY")
    eq(d.get_state(), "RUNNING_P2P", "stopped part way: the last state reached")
    eq(d.arcs(), ["RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP failed -5"], "arcs")
    d.set_state("RUNNING")
    eq(d.get_state(), "RUNNING", "rolls back")
    fresh(d)


@test
def error_fault_lands_in_error_until_reset():
    d = dev("sc2")
    fresh(d)
    before = d.attr("state_digest")
    resets = int(d.attr("resets"))
    d.set_attr("fault", "RUNNING>STOP error")
    expect_errno(errno.EIO, d.set_state, "STOP")
    eq(d.get_state(), "ERROR", "fell into ERROR")
    for s in ("RUNNING", "STOP", "STOP_COPY", "RESUMING", "ERROR"):
        expect_errno(errno.EINVAL, d.set_state, s)  # only reset leaves ERROR
    d.reset()
    eq(d.get_state(), "RUNNING", "reset: RUNNING")
    eq(int(d.attr("resets")), resets + 1, "resets counted")
    check(d.attr("state_digest") != before, "reset: the state is lost")
    eq(d.arcs(), ["RUNNING>STOP failed -5, ERROR", "RESET"], "arcs")
    fresh(d)


@test
def injected_latency_is_per_arc():
    d = dev("p2p3")
    fresh(d)
    d.set_attr("delay_ms", "50")
    t = time.monotonic()
    d.set_state("STOP")  # RUNNING>RUNNING_P2P>STOP: two arcs
    took = time.monotonic() - t
    check(0.1 <= took < 1.0, f"two 50 ms arcs took {took * 1000:.0f} ms")
    fresh(d)


def peer_group(names, group):
    for n in names:
        dev(n).set_attr("peer_group", group)


@test
def p2p_order_keeps_peers_out_of_stopped_devices():
    names = ("p2p1", "p2p2", "p2p3")
    for n in names:
        fresh(dev(n))
    peer_group(names, "vm-a")
    for n in names:
        dev(n).set_state("RUNNING_P2P")
    time.sleep(0.05)  # ticks pass: nobody is RUNNING, so nobody writes
    for n in names:
        dev(n).set_state("STOP")
    for n in names:
        eq(dev(n).attr("peer_writes_while_stopped"), "0", f"{n}: no write while stopped")
    check(all(int(dev(n).attr("writes_in")) > 0 for n in names), "peers did write while running")
    for n in names:
        fresh(dev(n))


@test
def one_at_a_time_lets_peers_write_into_stopped_devices():
    names = ("p2p1", "p2p2", "p2p3")
    for n in names:
        fresh(dev(n))
    peer_group(names, "vm-a")
    for n in names:
        dev(n).set_state("STOP")  # the naive sequence: each device all the way, in turn
    counts = [int(dev(n).attr("peer_writes_while_stopped")) for n in names]
    check(counts[0] >= 2 and counts[1] >= 1, f"writes into stopped devices: {counts}")
    for n in names:
        fresh(dev(n))


@test
def reopen_starts_running_and_ends_data_sessions():
    d = dev("sc1")
    fresh(d)
    fd = d.set_state("STOP_COPY")
    d.close()
    expect_errno(errno.ENODEV, os.read, fd, 1)  # close_device ended the session
    os.close(fd)
    d.open(Env.container)
    eq(d.get_state(), "RUNNING", "open: RUNNING")
    fresh(d)


@test
def module_unloads_cleanly():
    for d in Env.devs.values():
        d.remove()
    Env.devs = {}
    Env.container.close()
    os.system("rmmod vfio_migtest")
    check(not os.path.exists("/sys/class/mdev_bus/migtest"), "module gone")
    out = os.popen("dmesg").read()[Env.dmesg_start:]
    for bad in ("WARNING:", "BUG:", "Oops", "Call Trace"):
        check(bad not in out, f"dmesg has {bad}")


def main():
    Env.dmesg_start = len(os.popen("dmesg").read())
    load_modules(KO)
    print(f"1..{len(tests)}")
    failed = 0
    for i, fn in enumerate(tests, 1):
        failed += not tap_step(i, fn.__name__, fn)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
