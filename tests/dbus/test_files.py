#!/usr/bin/env python3
"""Files in hostile directories (issue 12): vfio-migd and vfio-migsim refuse a state or sim
directory another user could write (exit 73, naming it and the fix), and links planted in a
good directory (as a previous compromise would leave them) are never written through: each
victim, a root 0600 file outside, keeps its content and mode, and nothing appears where a
dangling link points."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migdtest import BUS_NAME, Daemon, MigdTestCase, binary, main, run, seconds  # noqa: E402

EXIT_CANTCREAT = 73
NOBODY = 65534
SECRET = "root's secret\n"


class Victims:
    """Root 0600 files and absent paths outside the directories under attack."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "victims")
        os.mkdir(self.dir, 0o700)
        self.n = 0

    def file(self):
        self.n += 1
        path = os.path.join(self.dir, f"secret{self.n}")
        with open(path, "w") as f:
            f.write(SECRET)
        os.chmod(path, 0o600)
        return path

    def absent(self):
        self.n += 1
        return os.path.join(self.dir, f"absent{self.n}")


class HostileDirTest(MigdTestCase):

    def setUp(self):
        super().setUp()
        self.victims = Victims(self.workdir)

    def plant(self, directory, name, target):
        path = os.path.join(directory, name)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)

    def assertUntouched(self, victim):
        with open(victim) as f:
            self.assertEqual(f.read(), SECRET, f"{victim} was written through a link")
        st = os.stat(victim)
        self.assertEqual(st.st_mode & 0o7777, 0o600, victim)
        self.assertEqual(st.st_nlink, 1, victim)

    def assertRegularMode(self, path, mode):
        st = os.lstat(path)
        self.assertTrue(os.path.isfile(path) and not os.path.islink(path), path)
        self.assertEqual(st.st_mode & 0o7777, mode, path)

    def start_refused(self, h, *args):
        """Runs vfio-migd to its exit; returns the CompletedProcess."""
        d = Daemon(h.bus, h.sim.dir, h.workdir, list(args), label="refused")
        r = subprocess.run(d.argv, env=h.bus.env, capture_output=True, text=True,
                           timeout=seconds(30))
        self.assertFalse(h.bus.has_owner(BUS_NAME))
        return r

    def migsim(self, directory, *args):
        return run([binary("MIGSIM"), "--dir", directory, *map(str, args)])


class StateDirTest(HostileDirTest):
    """Reproduction: a state directory pre-created by nobody; the daemon must not start."""

    def bad_state_dir(self, h, name, mode=0o700, owner=0):
        path = os.path.join(h.workdir, name)
        os.mkdir(path)
        os.chmod(path, mode)
        os.chown(path, owner, owner)
        return path

    def test_state_dir_of_another_user_exits_73(self):
        h = self.new_host(start=False)
        state = self.bad_state_dir(h, "state-nobody", owner=NOBODY)
        r = self.start_refused(h, f"--state-dir={state}")
        self.assertEqual(r.returncode, EXIT_CANTCREAT, r.stderr)
        self.assertIn(f"The state directory {state} is owned by uid {NOBODY}", r.stderr)
        self.assertIn(f"chown root: {state} && chmod go-w {state}", r.stderr)
        self.assertEqual(os.listdir(state), [], "the refused directory was written")

    def test_world_writable_state_dir_exits_73(self):
        h = self.new_host(start=False)
        state = self.bad_state_dir(h, "state-0777", mode=0o777)
        r = self.start_refused(h, f"--state-dir={state}")
        self.assertEqual(r.returncode, EXIT_CANTCREAT, r.stderr)
        self.assertIn(f"The state directory {state} is writable by others (mode 0777)", r.stderr)
        self.assertIn(f"chmod go-w {state}", r.stderr)
        self.assertEqual(os.listdir(state), [])

    def test_state_dir_link_exits_73(self):
        h = self.new_host(start=False)
        real = self.bad_state_dir(h, "state-real")
        link = os.path.join(h.workdir, "state-link")
        os.symlink(real, link)
        r = self.start_refused(h, f"--state-dir={link}")
        self.assertEqual(r.returncode, EXIT_CANTCREAT, r.stderr)
        self.assertIn(f"The state directory {link} is a symbolic link", r.stderr)

    def test_planted_journal_links_are_not_followed(self):
        """journal.json.tmp -> a root file was truncated; journal.json became the link."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5")])
        state = os.path.join(h.workdir, "state")
        os.mkdir(state, 0o755)
        tmp_victim, journal_victim = self.victims.file(), self.victims.file()
        self.plant(state, "journal.json.tmp", tmp_victim)
        self.plant(state, "journal.json", journal_victim)
        h.start_daemon()
        # the link at journal.json is no journal: moved aside, never read or acted on
        moved = [n for n in os.listdir(state) if n.startswith("journal.json.corrupt-")]
        self.assertEqual(len(moved), 1, os.listdir(state))
        self.assertTrue(os.path.islink(os.path.join(state, moved[0])))
        self.assertOk(h.ctl("register", "vm1", "nic0"))
        self.assertOk(h.ctl("quiesce", "vm1"))
        self.assertUntouched(tmp_victim)
        self.assertUntouched(journal_victim)
        self.assertRegularMode(os.path.join(state, "journal.json"), 0o600)
        self.assertFalse(os.path.lexists(os.path.join(state, "journal.json.tmp")))
        # a dangling link creates no file where it points
        absent = self.victims.absent()
        self.plant(state, "journal.json.tmp", absent)
        self.assertOk(h.ctl("start", "vm1"))
        self.assertFalse(os.path.lexists(absent))


class SimDirTest(HostileDirTest):
    """Reproduction: the docs' own --sim-dir=/tmp/sim, world-writable."""

    def test_world_writable_sim_dir_is_refused_by_the_daemon(self):
        h = self.new_host(start=False, devices=[("nic0", "mlx5")])
        os.chmod(h.sim.dir, 0o777)
        r = self.start_refused(h)
        self.assertEqual(r.returncode, EXIT_CANTCREAT, r.stderr)
        self.assertIn(f"The sim directory {h.sim.dir} is writable by others", r.stderr)
        self.assertIn(f"chmod go-w {h.sim.dir}", r.stderr)
        os.chmod(h.sim.dir, 0o755)
        link = os.path.join(h.workdir, "sim-link")
        os.symlink(h.sim.dir, link)
        d = Daemon(h.bus, link, h.workdir, label="refused-link")
        r = subprocess.run(d.argv, env=h.bus.env, capture_output=True, text=True,
                           timeout=seconds(30))
        self.assertEqual(r.returncode, EXIT_CANTCREAT, r.stderr)
        self.assertIn(f"The sim directory {link} is a symbolic link", r.stderr)

    def test_vfio_migsim_refuses_a_bad_dir_with_73(self):
        h = self.new_host(start=False, devices=[("nic0", "mlx5")])
        self.assertIn("73 the directory is", run([binary("MIGSIM"), "--help"]).stdout)
        cases = [(0o777, 0, "writable by others (mode 0777)"),
                 (0o775, 0, "writable by its group (mode 0775)"),
                 (0o1777, 0, "mktemp -d"),
                 (0o755, NOBODY, f"owned by uid {NOBODY}")]
        for mode, owner, words in cases:
            os.chmod(h.sim.dir, mode)
            os.chown(h.sim.dir, owner, owner)
            for args in (["list"], ["show", "nic0"], ["create", "nic1"],
                         ["set-state", "nic0", "STOP"]):
                r = self.migsim(h.sim.dir, *args)
                self.assertEqual(r.returncode, EXIT_CANTCREAT, f"{oct(mode)} {args}: {r}")
                self.assertIn(h.sim.dir, r.stderr)
                self.assertIn(words, r.stderr)
        self.assertEqual(sorted(n for n in os.listdir(h.sim.dir) if not n.startswith(".")),
                         ["nic0.json", "nic0.state"])
        link = os.path.join(h.workdir, "sim-link")
        os.symlink(h.sim.dir, link)
        r = self.migsim(link, "list")
        self.assertEqual(r.returncode, EXIT_CANTCREAT, r)
        self.assertIn(f"{link} is a symbolic link", r.stderr)

    def test_planted_sim_links_are_not_followed(self):
        """.nic9.json.tmp -> a root 0600 file was overwritten; .nic9.lock -> 8 bytes of a
        root file changed; a dangling link created a root-owned file."""
        h = self.new_host(start=False, devices=[("nic0", "mlx5"), ("nic1", "mlx5")])
        os.chmod(h.sim.dir, 0o755)
        spare_victim, state_absent = self.victims.file(), self.victims.absent()
        self.plant(h.sim.dir, ".nic0.json.tmp", spare_victim)
        self.plant(h.sim.dir, ".nic0.state.tmp", state_absent)
        h.start_daemon()
        self.assertOk(h.ctl("register", "vm1", "nic0"))
        self.assertOk(h.ctl("quiesce", "vm1"))
        self.assertOk(h.ctl("start", "vm1"))
        r = self.migsim(h.sim.dir, "set-state", "nic0", "ERROR")
        self.assertEqual(r.returncode, 0, r)
        self.assertOk(h.ctl("abort", "vm1"))  # resets nic0: its state blob is rewritten
        self.assertUntouched(spare_victim)
        self.assertFalse(os.path.lexists(state_absent))
        for name in ("nic0.json", "nic0.state", ".nic0.lock", ".nic0.json.tmp"):
            self.assertRegularMode(os.path.join(h.sim.dir, name), 0o600)

        lock_victim, lock_absent = self.victims.file(), self.victims.absent()
        self.plant(h.sim.dir, ".nic1.lock", lock_victim)
        self.plant(h.sim.dir, ".nic2.lock", lock_absent)
        r = self.migsim(h.sim.dir, "set-state", "nic1", "STOP")
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn(".nic1.lock is a symbolic link", r.stderr)
        r = self.migsim(h.sim.dir, "create", "nic2", "--preset", "mlx5")
        self.assertNotEqual(r.returncode, 0, r)
        self.assertUntouched(lock_victim)
        self.assertFalse(os.path.lexists(lock_absent))


if __name__ == "__main__":
    main()
