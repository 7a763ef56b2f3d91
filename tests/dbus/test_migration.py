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
        self.assertIn(f"migration id: {report['migration-id']}, saved by VM vm1", r.stdout)
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
        r = self.dst.ctl("--renamed-from", "vm1", "resume", "vm2", self.stream)
        self.assertExit(r, EXIT_ROLLED_BACK, "StreamInvalid")
        self.assertStates(self.dst, DST, "RUNNING")

    def test_failed_save_rolls_the_source_back_and_removes_the_file(self):
        """A device failing STOP>STOP_COPY: save exits 7, the source runs again and the
        incomplete stream (a temporary file) is removed."""
        self.src.sim.fault("gpu0", "STOP>STOP_COPY", "fail")
        r = self.src.ctl("save", "vm1", self.stream)
        self.assertExit(r, EXIT_ROLLED_BACK, "SequenceFailed")
        self.assertIn("gpu0", r.stderr)
        self.assertFalse(os.path.exists(self.stream))
        self.assertEqual([n for n in os.listdir(self.workdir) if n.startswith(".vm1.mig")], [])
        self.assertStates(self.src, SRC, "RUNNING")

    def test_failed_save_keeps_an_earlier_good_file(self):
        """Issue 11, reproduction 8: 'save nosuch FILE' and a failing save both leave an
        earlier good stream in FILE as it was, and no temporary file behind."""
        keep = b"an earlier good stream"
        with open(self.stream, "wb") as f:
            f.write(keep)
        r = self.src.ctl("save", "nosuch", self.stream)
        self.assertExit(r, 4, "NoSuchVM")
        with open(self.stream, "rb") as f:
            self.assertEqual(f.read(), keep)
        self.src.sim.fault("gpu0", "STOP>STOP_COPY", "fail")
        r = self.src.ctl("save", "vm1", self.stream)
        self.assertExit(r, EXIT_ROLLED_BACK, "SequenceFailed")
        self.assertIn("was left as it was", r.stderr)
        with open(self.stream, "rb") as f:
            self.assertEqual(f.read(), keep)
        self.assertEqual([n for n in os.listdir(self.workdir) if n.startswith(".vm1.mig")], [])

    def test_successful_save_replaces_the_file_and_names_the_migration(self):
        """A good save renames its complete stream over FILE; the report carries the
        migration id, and the destination's Resume reports the same id and the VM."""
        with open(self.stream, "wb") as f:
            f.write(b"old")
        report = self.save()
        self.assertRegex(report["migration-id"], r"^[0-9a-f]{32}$")
        self.assertGreater(os.path.getsize(self.stream), 3)
        r = self.assertOk(self.dst.ctl("--json", "resume", "vm1", self.stream))
        self.assertEqual(r.json["migration-id"], report["migration-id"])
        self.assertEqual(r.json["stream-vm"], "vm1")
        self.assertNotEqual(self.save_again_id(), report["migration-id"])

    def save_again_id(self):
        self.assertOk(self.src.ctl("start", "vm1"))
        return self.save()["migration-id"]

    def test_stream_of_another_vm_is_refused(self):
        """Issue 11, reproduction 7: 'save vm1' then 'resume beta' with the same devices:
        StreamInvalid naming both VMs; destination RUNNING; --renamed-from vm1 accepts it."""
        self.save()
        self.assertOk(self.dst.ctl("unregister", "vm1"))
        self.assertOk(self.dst.ctl("register", "beta", *DST))
        r = self.dst.ctl("resume", "beta", self.stream)
        self.assertExit(r, EXIT_ROLLED_BACK, "StreamInvalid")
        self.assertIn("saved by VM 'vm1', not VM 'beta'", r.stderr)
        self.assertIn("renamed-from", r.stderr)
        self.assertStates(self.dst, DST, "RUNNING")
        r = self.dst.ctl("--renamed-from", "other", "resume", "beta", self.stream)
        self.assertExit(r, EXIT_ROLLED_BACK, "StreamInvalid")
        self.assertStates(self.dst, DST, "RUNNING")
        r = self.assertOk(self.dst.ctl("--json", "--renamed-from", "vm1", "resume", "beta",
                                       self.stream))
        self.assertEqual((r.json["result"], r.json["stream-vm"]), ("ok", "vm1"))
        self.assertStates(self.dst, DST, "RUNNING")

    def test_renamed_from_is_validated(self):
        """A bad renamed-from is InvalidArgs before anything moves; only resume takes it."""
        r = self.dst.busctl_call(vm_path("vm1"), VM_IFACE, "ResumeWithOptions", "ha{sv}", "0",
                                 "1", "bogus", "s", "x")
        self.assertNotEqual(r.returncode, 0)
        r = self.dst.ctl("--renamed-from", "vm1", "start", "vm1")
        self.assertExit(r, 2)
        self.assertStates(self.dst, DST, "RUNNING")

    def test_save_to_an_unwritable_path_moves_nothing(self):
        """save into a missing directory: exit 1 before any call; devices untouched."""
        r = self.src.ctl("save", "vm1", os.path.join(self.workdir, "no", "such", "dir"))
        self.assertExit(r, EXIT_FAILURE)
        self.assertIn("cannot create a temporary file beside", r.stderr)
        self.assertStates(self.src, SRC, "RUNNING")
        self.assertEqual(self.src.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence"), {})

    def test_resume_of_a_missing_file_moves_nothing(self):
        """resume from a file that does not exist: exit 1; devices untouched."""
        r = self.dst.ctl("resume", "vm1", self.stream + ".missing")
        self.assertExit(r, EXIT_FAILURE)
        self.assertStates(self.dst, DST, "RUNNING")

    def register_with_deadline(self, host, names, ms):
        self.assertOk(host.ctl("unregister", "vm1"))
        self.assertOk(host.ctl("register", "--phase-deadline-ms", str(ms), "vm1", *names))

    def fifo(self):
        path = os.path.join(self.workdir, "stream.fifo")
        os.mkfifo(path)
        return path

    def assertDaemonServes(self, host, names):
        self.assertIsNone(host.daemon.proc.poll(), "the daemon died")
        self.assertEqual(host.busctl_get(vm_path("vm1"), VM_IFACE, "State"), "running")
        self.assertStates(host, names, "RUNNING")

    def test_save_into_a_fifo_nobody_reads_fails_at_the_deadline(self):
        """Issue 11, reproduction 3: a reader that opens the FIFO and never reads: the Save
        fails at the phase deadline naming the VM's stream and the bytes that went through;
        the source runs again and the daemon takes the next call."""
        self.register_with_deadline(self.src, SRC, 500)
        fifo = self.fifo()
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        r = self.src.ctl("save", "vm1", fifo)
        self.assertExit(r, EXIT_ROLLED_BACK, "Timeout")
        self.assertIn("the migration stream of VM 'vm1' accepted no data for 500 ms after", r.stderr)
        self.assertDaemonServes(self.src, SRC)
        self.assertEqual(self.src.busctl_get(vm_path("vm1"), VM_IFACE, "LastSequence")["result"],
                         "rolled-back")

    def test_reader_dying_mid_save_is_broken_pipe_not_a_dead_daemon(self):
        """Issue 11, reproduction 3: the reader reads a little and goes away mid-write: the
        Save fails with "broken pipe", the daemon lives (SIGPIPE ignored)."""
        fifo = self.fifo()
        save = subprocess.Popen([self.src.ctl_tool, "save", "vm1", fifo], env=self.src.bus.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with open(fifo, "rb", buffering=0) as reader:
            got = 0
            while got < 10000:
                chunk = reader.read(4096)
                self.assertTrue(chunk, "the stream ended early")
                got += len(chunk)
        out, err = save.communicate(timeout=60)
        self.assertEqual(save.returncode, EXIT_ROLLED_BACK, err)
        self.assertIn("broken pipe", err)
        self.assertDaemonServes(self.src, SRC)

    def test_resume_from_a_silent_writer_fails_at_the_deadline(self):
        """Issue 11, reproduction 3: a writer that opens the pipe and sends nothing, not even
        the header: Timeout at the phase deadline; the destination is reset and serves."""
        self.register_with_deadline(self.dst, DST, 500)
        fifo = self.fifo()
        writer = os.open(fifo, os.O_RDWR)  # holds a writer end open, sends nothing
        self.addCleanup(os.close, writer)
        r = self.dst.ctl("resume", "vm1", fifo)
        self.assertExit(r, EXIT_ROLLED_BACK, "Timeout")
        self.assertIn("the migration stream of VM 'vm1' sent nothing for 500 ms after 0 bytes",
                      r.stderr)
        self.assertDaemonServes(self.dst, DST)

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
