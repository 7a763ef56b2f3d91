#!/usr/bin/env python3
"""Migration between two hosts (two private buses, two sim directories, two daemons):
PreCopy, Quiesce, Save on the source, Resume on the destination; every destination device
ends with its source device's state and no device sees corruption. Bad streams (corrupt,
truncated, for other devices) are refused with StreamInvalid and the destination is reset,
ready for another Resume."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (BUS_NAME, EXIT_FAILURE, EXIT_ROLLED_BACK, VM_IFACE,  # noqa: E402
                      MigdTestCase, Monitor, main, unvariant, vm_path)

# presets in registration order; the destination has the same kinds under other names
PRESETS = [("nic0", "mlx5"), ("nic1", "pds"), ("gpu0", "xe"), ("vio0", "virtio")]
SRC = [n for n, _ in PRESETS]
DST = ["d" + n for n in SRC]


class MigrationTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.src = self.new_host("source", devices=[(n, p, {"p2p_group": "vm1"})
                                                    for n, p in PRESETS])
        self.dst = self.new_host("destination", devices=[("d" + n, p, {"p2p_group": "vm1"})
                                                         for n, p in PRESETS])
        self.assertOk(self.src.ctl("register", "vm1", *SRC))
        self.assertOk(self.dst.ctl("register", "vm1", *DST))
        self.stream = os.path.join(self.workdir, "vm1.mig")

    def save(self):
        report = self.assertOk(self.src.ctl("--json", "save", "vm1", self.stream)).json
        self.assertEqual((report["operation"], report["result"]), ("save", "ok"))
        return report

    def assertMigrated(self):
        """Every destination device RUNNING with its source device's state.

        A sim device changes its state on every arc out of a running state, RUNNING_P2P>RUNNING
        included (the device ran), so a resumed device no longer shows the digest it loaded.
        Starting the stopped source walks its devices along the same arcs from the saved state
        (STOP>RUNNING_P2P>RUNNING): equal digests then mean equal state bits."""
        self.assertStates(self.dst, DST, "RUNNING")
        if self.src.sim.state(SRC[0]) != "RUNNING":
            self.assertOk(self.src.ctl("start", "vm1"))
        src = [self.src.sim.show(n) for n in SRC]
        dst = [self.dst.sim.show(n) for n in DST]
        self.assertEqual([(d["seed"], d["generation"], d["blob_sha256"]) for d in dst],
                         [(d["seed"], d["generation"], d["blob_sha256"]) for d in src])

    def assertNoCorruption(self):
        for host, names in ((self.src, SRC), (self.dst, DST)):
            for n in names:
                self.assertEqual(host.sim.events(n), [], f"corruption events on {n}")

    def test_migrate_a_vm_between_two_daemons(self):
        """precopy, quiesce, save, resume: digests equal, no corruption, signals and
        property changes seen on both sides."""
        src_mon = self.src.monitor()
        dst_mon = Monitor(self.dst, ["busctl", f"--address={self.dst.address}", "--json=short",
                                     "monitor", BUS_NAME])
        self.assertEqual(self.src.ctl("--json", "precopy", "vm1").json["result"], "ok")
        self.assertEqual(self.src.ctl("--json", "quiesce", "vm1").json["result"], "ok")
        report = self.save()
        for n in SRC:
            moved = sum(s["bytes"] for s in report["steps"] if s["device"] == n)
            self.assertGreater(moved, 0, f"no bytes saved for {n}")
        self.assertGreater(os.path.getsize(self.stream), 0)
        self.assertEqual(os.stat(self.stream).st_mode & 0o777, 0o600)
        self.assertStates(self.src, SRC, "STOP")
        # the stream is complete: the source is handed off until Start or UnregisterVM
        self.assertEqual(self.src.busctl_get(vm_path("vm1"), VM_IFACE, "State"), "handed-off")

        r = self.assertOk(self.dst.ctl("resume", "vm1", self.stream))
        self.assertIn("VM vm1: resume (parallel): ok", r.stdout)
        last = self.dst.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence")
        self.assertEqual((last["operation"], last["result"]), ("resume", "ok"))
        self.assertEqual(self.dst.busctl_get(vm_path("vm1"), VM_IFACE, "State"), "running")
        for n in DST:
            self.assertEqual(self.dst.sim.show(n)["loads"], 1)

        time.sleep(0.3)
        src_sigs = src_mon.stop_json()
        ops = {(s["fields"]["operation"], s["fields"]["status"]) for s in src_sigs
               if s["signal"] == "SequenceProgress"}
        for op in ("precopy", "quiesce", "save"):
            self.assertIn((op, "done"), ops)
        self.assertIn(("nic0", "RUNNING", "PRE_COPY"),
                      {tuple(s["args"][i] for i in (0, 2, 3)) for s in src_sigs
                       if s["signal"] == "DeviceStateChanged"})
        states = [s["args"][1]["State"] for s in src_sigs if s["signal"] == "PropertiesChanged"
                  and s["path"] == vm_path("vm1") and "State" in s["args"][1]]
        self.assertIn("sequencing:save", states)

        dst_msgs = dst_mon.stop_json()
        progress = [unvariant(m["payload"]["data"]) for m in dst_msgs
                    if m.get("member") == "SequenceProgress"]
        self.assertTrue(progress, "no SequenceProgress on the destination")
        self.assertTrue(all(p[2] == "resume" for p in progress))
        self.assertIn("DeviceStateChanged", {m.get("member") for m in dst_msgs})

        self.assertMigrated()
        self.assertNoCorruption()

    def test_resume_records_no_corruption_between_destination_peers(self):
        """Resume onto fresh (RUNNING) peers: every destination device quiesces P2P before any
        stops on its way to RESUMING, so no peer can DMA into a stopped device."""
        self.save()
        report = self.assertOk(self.dst.ctl("--json", "resume", "vm1", self.stream)).json
        self.assertEqual(report["result"], "ok")
        for n in DST:
            self.assertEqual(self.dst.sim.events(n), [], f"corruption events on {n}")

    def test_save_quiesces_a_running_vm_first(self):
        """Save straight from RUNNING quiesces first (p2p before stop), then streams."""
        report = self.save()
        names = [p["name"] for p in report["phases"]]
        self.assertLess(names.index("p2p"), names.index("stop"))
        self.assertStates(self.src, SRC, "STOP")
        self.assertOk(self.dst.ctl("resume", "vm1", self.stream))
        self.assertMigrated()

    def test_save_prints_bytes_per_device(self):
        """The human timeline of a save shows the bytes each device streamed."""
        r = self.assertOk(self.src.ctl("save", "vm1", self.stream))
        self.assertRegex(r.stdout, r"\d+(\.\d)? (B|KiB|MiB)\s+\|")
        self.assertIn("result: ok", r.stdout)

    def test_save_to_stdout_and_resume_from_stdin(self):
        """'-' streams through stdout and stdin; the report then goes to stderr."""
        with open(self.stream, "wb") as f:
            r = self.src.ctl("save", "vm1", "-", stdout=f)
        self.assertExit(r, 0)
        self.assertIn("result: ok", r.stderr)
        with open(self.stream, "rb") as f:
            self.assertTrue(f.read(8).startswith(b"VFIOMIG1"))
        with open(self.stream, "rb") as f:
            r = self.dst.ctl("resume", "vm1", "-", stdin=f)
        self.assertOk(r)
        self.assertMigrated()

    def test_corrupted_stream_is_stream_invalid_and_destination_is_reset(self):
        """A flipped byte mid-stream: resume exits 7 StreamInvalid, destination devices reset
        to RUNNING; a second resume with the good stream succeeds."""
        self.save()
        with open(self.stream, "rb") as f:
            good = f.read()
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        bad_path = self.stream + ".bad"
        with open(bad_path, "wb") as f:
            f.write(bad)
        resets = {n: self.dst.sim.show(n)["resets"] for n in DST}
        r = self.dst.ctl("resume", "vm1", bad_path)
        self.assertExit(r, EXIT_ROLLED_BACK, "StreamInvalid")
        self.assertIn("VM vm1: resume (parallel): ", r.stdout)
        self.assertStates(self.dst, DST, "RUNNING")
        self.assertTrue(any(self.dst.sim.show(n)["resets"] > resets[n] for n in DST))
        last = self.dst.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence")
        self.assertEqual((last["operation"], last["result"]), ("resume", "rolled-back"))
        self.assertTrue(os.path.exists(bad_path), "resume must not touch its input")

        self.assertOk(self.dst.ctl("resume", "vm1", self.stream))
        self.assertMigrated()

    def test_truncated_stream_is_stream_invalid(self):
        """A stream cut in half: StreamInvalid, destination reset, the full stream resumes."""
        self.save()
        with open(self.stream, "rb") as f:
            good = f.read()
        cut = self.stream + ".cut"
        with open(cut, "wb") as f:
            f.write(good[:len(good) // 2])
        self.assertExit(self.dst.ctl("resume", "vm1", cut), EXIT_ROLLED_BACK, "StreamInvalid")
        self.assertStates(self.dst, DST, "RUNNING")
        self.assertOk(self.dst.ctl("resume", "vm1", self.stream))
        self.assertMigrated()

    def test_empty_stream_is_stream_invalid(self):
        """An empty file: StreamInvalid, destination RUNNING."""
        empty = self.stream + ".empty"
        open(empty, "wb").close()
        self.assertExit(self.dst.ctl("resume", "vm1", empty), EXIT_ROLLED_BACK, "StreamInvalid")
        self.assertStates(self.dst, DST, "RUNNING")

    def test_stream_for_other_devices_is_stream_invalid(self):
        """A stream of devices in another order (other identities): StreamInvalid."""
        self.save()
        self.assertOk(self.dst.ctl("unregister", "vm1"))
        self.assertOk(self.dst.ctl("register", "vm2", *reversed(DST)))
        r = self.dst.ctl("resume", "vm2", self.stream)
        self.assertExit(r, EXIT_ROLLED_BACK, "StreamInvalid")
        self.assertStates(self.dst, DST, "RUNNING")

    def test_failed_save_rolls_the_source_back_and_removes_the_file(self):
        """A device failing STOP>STOP_COPY: save exits 7, the source runs again and the
        incomplete stream file is removed."""
        self.src.sim.fault("gpu0", "STOP>STOP_COPY", "fail")
        r = self.src.ctl("save", "vm1", self.stream)
        self.assertExit(r, EXIT_ROLLED_BACK, "SequenceFailed")
        self.assertIn("gpu0", r.stderr)
        self.assertFalse(os.path.exists(self.stream))
        self.assertStates(self.src, SRC, "RUNNING")

    def test_save_to_an_unwritable_path_moves_nothing(self):
        """save into a missing directory: exit 1 before any call; devices untouched."""
        r = self.src.ctl("save", "vm1", os.path.join(self.workdir, "no", "such", "dir"))
        self.assertExit(r, EXIT_FAILURE)
        self.assertIn("cannot open", r.stderr)
        self.assertStates(self.src, SRC, "RUNNING")
        self.assertEqual(self.src.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence"), {})

    def test_resume_of_a_missing_file_moves_nothing(self):
        """resume from a file that does not exist: exit 1; devices untouched."""
        r = self.dst.ctl("resume", "vm1", self.stream + ".missing")
        self.assertExit(r, EXIT_FAILURE)
        self.assertStates(self.dst, DST, "RUNNING")

    def test_save_refuses_a_terminal(self):
        """save VM - with stdout on a terminal is a usage error (exit 2)."""
        import pty
        master, slave = pty.openpty()
        try:
            r = subprocess.run([self.src.ctl_tool, "save", "vm1", "-"], env=self.src.bus.env,
                               stdout=slave, stderr=subprocess.PIPE, text=True, timeout=30)
        finally:
            os.close(slave)
            os.close(master)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("terminal", r.stderr)
        self.assertStates(self.src, SRC, "RUNNING")


if __name__ == "__main__":
    main()
