#!/usr/bin/env python3
"""Files in hostile directories: the reproduction of issue 12, run against the real daemon
and vfio-migsim as root. Another user (nobody) makes the sim or state directory, or it is
writable by everyone, and links are planted where the daemon writes (.NAME.json.tmp,
.NAME.lock, a dangling link, journal.json.tmp, journal.json). Each directory is refused with
a sentence naming it, its owner or mode and the fix; the files the links point to, a root
0600 file and a path that does not exist, stay as they were, byte for byte. In a directory
only root can write to, a planted spare is replaced, never followed, while a sequence runs."""

import os
import pwd
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import (Daemon, MigdTestCase, as_user, main, run)  # noqa: E402

VICTIM_TEXT = "root's file, mode 0600: must not change\n"


class HostileDirectoryTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.victim = os.path.join(self.workdir, "victim")
        with open(self.victim, "w") as f:
            f.write(VICTIM_TEXT)
        os.chmod(self.victim, 0o600)
        self.gone = os.path.join(self.workdir, "gone")  # a dangling link's target

    def assertVictimUntouched(self):
        with open(self.victim) as f:
            self.assertEqual(f.read(), VICTIM_TEXT, "a planted link's target was written")
        self.assertEqual(stat.S_IMODE(os.stat(self.victim).st_mode), 0o600)
        self.assertFalse(os.path.lexists(self.gone), "a dangling link created its target")

    def plant(self, directory, name, target):
        path = os.path.join(directory, name)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)

    def as_nobody(self, *argv):
        r = run([*as_user("nobody"), *argv])
        self.assertEqual(r.returncode, 0, f"as nobody:\n{r}")

    def sticky_parent(self):
        """A directory like /tmp: sticky and writable by everyone."""
        parent = os.path.join(self.workdir, "tmp")
        if not os.path.isdir(parent):
            os.mkdir(parent)
            os.chmod(parent, 0o1777)
        return parent

    def nobodys_dir(self):
        """What an unprivileged user can do to a path the docs showed, /tmp/sim: make the
        directory first and plant links in it."""
        d = os.path.join(self.sticky_parent(), "sim")
        self.as_nobody("mkdir", "-m", "0755", d)
        self.as_nobody("ln", "-s", self.victim, os.path.join(d, ".nic9.json.tmp"))
        self.as_nobody("ln", "-s", self.victim, os.path.join(d, ".nic9.lock"))
        self.as_nobody("ln", "-s", self.gone, os.path.join(d, ".nic9.state.tmp"))
        return d

    def start_fails(self, h, *args):
        """The daemon exits with a failure before owning its name; returns its log."""
        d = Daemon(h.bus, h.sim.dir, h.workdir, [*args], label="vfio-migd-refused")
        with self.assertRaises(AssertionError) as cm:
            d.start()
        d.log.close()
        self.assertIn("exited with 1", str(cm.exception))
        return d.read_log()

    # --- vfio-migsim ---

    def test_migsim_refuses_a_directory_nobody_made(self):
        """vfio-migsim --dir DIR create nic9, DIR made by nobody with links planted: refused
        (exit 1), the message names DIR, its owner and the chown that fixes it."""
        h = self.new_host(start=False)
        d = self.nobodys_dir()
        for args in (["create", "nic9", "--preset", "mlx5"], ["list"], ["show", "nic9"]):
            r = run([h.sim.tool, "--dir", d, *args])
            self.assertEqual(r.returncode, 1, f"not refused:\n{r}")
            self.assertIn(d, r.stderr)
            self.assertIn("owned by nobody", r.stderr)
            self.assertIn("chown", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(d, "nic9.json")))
        self.assertVictimUntouched()

    def test_migsim_refuses_a_world_writable_directory(self):
        """A root-owned directory with mode 1777, links planted: refused, naming the mode and
        'chmod o-w'; after the chmod the same command works."""
        h = self.new_host(start=False)
        d = h.sim.dir
        os.makedirs(d)
        os.chmod(d, 0o1777)
        self.plant(d, ".nic9.json.tmp", self.victim)
        self.plant(d, ".nic9.lock", self.gone)
        r = h.sim("create", "nic9", "--preset", "mlx5", check=False)
        self.assertEqual(r.returncode, 1, f"not refused:\n{r}")
        self.assertIn(d, r.stderr)
        self.assertIn("1777", r.stderr)
        self.assertIn("chmod o-w", r.stderr)
        self.assertVictimUntouched()
        os.chmod(d, 0o700)
        r = h.sim("create", "nic9", "--preset", "mlx5", check=False)
        # the planted lock link is still there: refused by name, never followed
        self.assertEqual(r.returncode, 1, f"a planted lock link was followed:\n{r}")
        self.assertIn(".nic9.lock", r.stderr)
        self.assertIn("symbolic link", r.stderr)
        os.unlink(os.path.join(d, ".nic9.lock"))
        h.sim.create("nic9", "mlx5")
        self.assertVictimUntouched()
        for name in ("nic9.json", "nic9.state", ".nic9.lock"):
            mode = stat.S_IMODE(os.lstat(os.path.join(d, name)).st_mode)
            self.assertEqual(mode, 0o600, f"{name} has mode {mode:o}")

    def test_migsim_help_states_the_rule(self):
        h = self.new_host(start=False)
        r = run([h.sim.tool, "--help"])
        self.assertEqual(r.returncode, 0, f"{r}")
        self.assertIn("writable by no one else", r.stdout)

    # --- the daemon ---

    def test_daemon_refuses_a_world_writable_sim_dir(self):
        h = self.new_host(devices=[("nic9", "mlx5")], start=False)
        os.chmod(h.sim.dir, 0o777)
        self.plant(h.sim.dir, ".nic9.json.tmp", self.victim)
        log = self.start_fails(h)
        self.assertIn(h.sim.dir, log)
        self.assertIn("chmod o-w", log)
        self.assertVictimUntouched()

    def test_daemon_refuses_a_state_dir_nobody_made(self):
        """--state-dir pre-created by nobody with journal.json.tmp and journal.json planted:
        the daemon exits 1 naming the directory and the fix; the victim is untouched."""
        h = self.new_host(devices=[("nic0", "mlx5")], start=False)
        state = os.path.join(self.sticky_parent(), "state")
        self.as_nobody("mkdir", "-m", "0755", state)
        self.as_nobody("ln", "-s", self.victim, os.path.join(state, "journal.json.tmp"))
        self.as_nobody("ln", "-s", self.gone, os.path.join(state, "journal.json"))
        log = self.start_fails(h, f"--state-dir={state}")
        self.assertIn(state, log)
        self.assertIn("owned by nobody", log)
        self.assertIn("--state-dir", log)
        self.assertVictimUntouched()
        self.assertTrue(os.path.islink(os.path.join(state, "journal.json")))
        self.assertEqual(pwd.getpwuid(os.stat(state).st_uid).pw_name, "nobody")

    def test_planted_spares_are_harmless_while_a_vm_migrates(self):
        """Root's own directories with links planted at every spare and at journal.json.tmp:
        register, quiesce and abort work, and no link is followed."""
        h = self.new_host(devices=[("nic0", "mlx5", {"p2p_group": "vm1"}),
                                   ("nic1", "pds", {"p2p_group": "vm1"})])
        for n in ("nic0", "nic1"):
            self.plant(h.sim.dir, f".{n}.json.tmp", self.victim)
            self.plant(h.sim.dir, f".{n}.state.tmp", self.gone)
        self.plant(h.daemon.state_dir, "journal.json.tmp", self.victim)
        self.assertOk(h.ctl("register", "vm1", "nic0", "nic1"))
        self.assertOk(h.ctl("quiesce", "vm1"))
        self.assertStates(h, ["nic0", "nic1"], "STOP")
        self.plant(h.daemon.state_dir, "journal.json.tmp", self.gone)
        self.assertOk(h.ctl("abort", "vm1"))
        self.assertStates(h, ["nic0", "nic1"], "RUNNING")
        self.assertVictimUntouched()
        journal = os.path.join(h.daemon.state_dir, "journal.json")
        self.assertTrue(stat.S_ISREG(os.lstat(journal).st_mode))
        self.assertEqual(stat.S_IMODE(os.lstat(journal).st_mode), 0o600)


if __name__ == "__main__":
    main()
