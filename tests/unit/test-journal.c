/* test-journal: the crash journal's file (atomic, checksummed) and the recovery decision
 *
 * Real files in a temporary directory; a write is made to fail with RLIMIT_FSIZE, which
 * stops even root in the middle of a write, as a full disk would. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "recovery.h"
#include "victim.h"

static const char *const DEVICES[] = {"nic0", "gpu0"};

typedef struct Fixture {
        char *dir;   /* the temporary directory */
        char *state; /* dir/a/b: missing until the journal creates it */
        Journal *j;
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        f->dir = g_dir_make_tmp("test-journal-XXXXXX", &error);
        g_assert_no_error(error);
        f->state = g_build_filename(f->dir, "a", "b", NULL);
        g_assert_cmpint(journal_open(f->state, &f->j, &error), ==, 0);
        g_assert_no_error(error);
}

static void teardown(Fixture *f, gconstpointer data)
{
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

        journal_free(f->j);
        g_assert_cmpint(system(cmd), ==, 0);
        g_free(f->state);
        g_free(f->dir);
}

static char *file_text(const Fixture *f)
{
        g_autoptr(GError) error = NULL;
        char *text = NULL;

        g_assert_true(g_file_get_contents(journal_path(f->j), &text, NULL, &error));
        return text;
}

static void write_text(const Fixture *f, const char *text)
{
        g_autoptr(GError) error = NULL;

        g_assert_true(g_file_set_contents(journal_path(f->j), text, -1, &error));
}

/* A fresh Journal on the same directory, loaded: what a restarted daemon sees. */
static int reload(const Fixture *f, GPtrArray **ret, GError **error)
{
        g_autoptr(Journal) j = NULL;

        g_assert_cmpint(journal_open(f->state, &j, NULL), ==, 0);
        return journal_load(j, ret, error);
}

static void put_vm1(Fixture *f)
{
        VmOptions o;

        vm_options_init(&o);
        o.p2p_mode = PLAN_P2P_BLOCKED;
        o.phase_deadline_ms = 777;
        o.parallelism = 3; /* not explicit: not recorded */
        o.explicit_mask = VM_OPT_P2P_MODE | VM_OPT_PHASE_DEADLINE;
        g_assert_cmpint(journal_put_vm(f->j, "vm1", "libvirt", DEVICES, 2, &o, NULL), ==, 0);
}

static void begin_quiesce(Fixture *f, GError **error, int expect)
{
        enum mig_state states[] = {MIG_STATE_RUNNING, MIG_STATE_PRE_COPY};
        char *phases[] = {"p2p", "stop", NULL};
        JournalSequence seq = {.op = PLAN_OP_QUIESCE,
                               .begin_states = states,
                               .phases = phases,
                               .phase_index = -1,
                               .started_us = 1234567};

        g_assert_cmpint(journal_begin(f->j, "vm1", &seq, error), ==, expect);
}

/* ---- the state directory ---- */

static void test_missing_dir_is_created_0700(Fixture *f, gconstpointer data)
{
        struct stat st;

        g_assert_cmpint(stat(f->state, &st), ==, 0);
        g_assert_true(S_ISDIR(st.st_mode));
        g_assert_cmpint(st.st_mode & 07777, ==, 0700);
}

static void test_no_file_is_enoent(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(journal_load(f->j, NULL, &error), ==, -ENOENT);
        g_assert_nonnull(strstr(error->message, journal_path(f->j)));
}

static void test_unusable_dir_is_refused_by_name(void)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *dir = g_dir_make_tmp("test-journal-XXXXXX", NULL);
        g_autofree char *file = g_build_filename(dir, "file", NULL);
        g_autofree char *below = g_build_filename(file, "state", NULL);
        Journal *j = NULL;

        g_assert_true(g_file_set_contents(file, "", 0, NULL));
        g_assert_cmpint(journal_open(below, &j, &error), <, 0);
        g_assert_null(j);
        g_assert_nonnull(strstr(error->message, below));
        g_assert_nonnull(strstr(error->message, "--state-dir"));
        g_unlink(file);
        g_rmdir(dir);
}

/* ---- one daemon per state directory ---- */

/* Reproduction 6: a second daemon on the same --state-dir rewrote the first one's journal. */
static void test_second_lock_is_refused_naming_the_holder(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *pid = g_strdup_printf("pid %ld", (long)getpid());
        g_autofree char *lock = g_build_filename(f->state, JOURNAL_LOCK_FILE, NULL);
        int fd = -1, fd2 = -1;
        struct stat st;

        g_assert_cmpint(journal_lock_dir(f->state, &fd, NULL), ==, 0);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(lstat(lock, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0600);
        g_assert_cmpint(journal_lock_dir(f->state, &fd2, &error), ==, -EWOULDBLOCK);
        g_assert_cmpint(fd2, ==, -1);
        g_assert_nonnull(strstr(error->message, pid));
        g_assert_nonnull(strstr(error->message, "--state-dir"));
        close(fd);
        /* Released with the holder's fd: the next daemon takes it. */
        g_assert_cmpint(journal_lock_dir(f->state, &fd2, NULL), ==, 0);
        close(fd2);
}

/* A lock file that is a symlink is not followed (someone else's file). */
static void test_lock_symlink_is_refused(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *lock = g_build_filename(f->state, JOURNAL_LOCK_FILE, NULL);
        g_autofree char *target = g_build_filename(f->dir, "elsewhere", NULL);
        int fd = -1;

        g_assert_cmpint(symlink(target, lock), ==, 0);
        g_assert_cmpint(journal_lock_dir(f->state, &fd, &error), ==, -ELOOP);
        g_assert_nonnull(strstr(error->message, lock));
        g_assert_false(g_file_test(target, G_FILE_TEST_EXISTS));
}

/* ---- round trip ---- */

static void test_round_trip(Fixture *f, gconstpointer data)
{
        g_autoptr(GPtrArray) vms = NULL;
        const JournalVm *v;
        VmOptions o;

        put_vm1(f);
        vm_options_init(&o);
        g_assert_cmpint(journal_put_vm(f->j, "a-vm", "dbus", DEVICES + 1, 1, &o, NULL), ==, 0);
        begin_quiesce(f, NULL, 0);
        g_assert_cmpint(journal_phase(f->j, "vm1", "stop", 1, false, NULL), ==, 0);
        g_assert_cmpint(journal_flush(f->j, NULL), ==, 0);

        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        g_assert_cmpuint(vms->len, ==, 2);
        v = vms->pdata[1];
        g_assert_cmpstr(((JournalVm *)vms->pdata[0])->name, ==, "a-vm"); /* sorted */
        g_assert_null(((JournalVm *)vms->pdata[0])->seq);
        g_assert_cmpstr(v->name, ==, "vm1");
        g_assert_cmpstr(v->origin, ==, "libvirt");
        g_assert_cmpuint(v->n_devices, ==, 2);
        g_assert_cmpstr(v->devices[0], ==, "nic0");
        g_assert_cmpstr(v->devices[1], ==, "gpu0");
        g_assert_null(v->devices[2]);
        g_assert_cmpuint(v->options.explicit_mask, ==, VM_OPT_P2P_MODE | VM_OPT_PHASE_DEADLINE);
        g_assert_cmpint(v->options.p2p_mode, ==, PLAN_P2P_BLOCKED);
        g_assert_cmpuint(v->options.phase_deadline_ms, ==, 777);
        g_assert_cmpuint(v->options.parallelism, ==, 0);
        g_assert_nonnull(v->seq);
        g_assert_cmpint(v->seq->op, ==, PLAN_OP_QUIESCE);
        g_assert_cmpint(v->seq->begin_states[0], ==, MIG_STATE_RUNNING);
        g_assert_cmpint(v->seq->begin_states[1], ==, MIG_STATE_PRE_COPY);
        g_assert_cmpstr(v->seq->phases[1], ==, "stop");
        g_assert_cmpstr(v->seq->phase, ==, "stop");
        g_assert_cmpint(v->seq->phase_index, ==, 1);
        g_assert_false(v->seq->rollback);
        g_assert_cmpuint(v->seq->started_us, ==, 1234567);
}

/* A crash between a sequence's begin and its first phase leaves "phase": null. */
static void test_sequence_before_its_first_phase_loads(Fixture *f, gconstpointer data)
{
        g_autoptr(GPtrArray) vms = NULL;
        const JournalVm *v;

        put_vm1(f);
        begin_quiesce(f, NULL, 0);
        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        g_assert_cmpuint(vms->len, ==, 1);
        v = vms->pdata[0];
        g_assert_nonnull(v->seq);
        g_assert_cmpint(v->seq->op, ==, PLAN_OP_QUIESCE);
        g_assert_null(v->seq->phase);
        g_assert_cmpint(v->seq->phase_index, ==, -1);
}

static void test_end_and_remove_are_written(Fixture *f, gconstpointer data)
{
        g_autoptr(GPtrArray) vms = NULL, none = NULL;

        put_vm1(f);
        begin_quiesce(f, NULL, 0);
        g_assert_cmpint(journal_end(f->j, "vm1", NULL), ==, 0);
        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        g_assert_null(((JournalVm *)vms->pdata[0])->seq);
        g_assert_cmpint(journal_remove_vm(f->j, "vm1", NULL), ==, 0);
        g_assert_cmpint(reload(f, &none, NULL), ==, 0);
        g_assert_cmpuint(none->len, ==, 0);
        g_assert_cmpint(journal_remove_vm(f->j, "vm1", NULL), ==, -ENOENT);
        g_assert_cmpint(journal_begin(f->j, "nope", &(JournalSequence){0}, NULL), ==, -ENOENT);
}

/* Registration and begin: durable at once. Phases: noted, then one write for all. */
static void test_writes_per_sequence(Fixture *f, gconstpointer data)
{
        g_autoptr(GPtrArray) vms = NULL;

        put_vm1(f);
        begin_quiesce(f, NULL, 0);
        g_assert_cmpuint(journal_n_writes(f->j), ==, 2);
        g_assert_cmpuint(journal_n_syncs(f->j), ==, 2);
        g_assert_cmpint(journal_phase(f->j, "vm1", "p2p", 0, false, NULL), ==, 0);
        g_assert_cmpint(journal_phase(f->j, "vm1", "stop", 1, true, NULL), ==, 0);
        g_assert_true(journal_dirty(f->j));
        g_assert_cmpuint(journal_n_writes(f->j), ==, 2);
        g_assert_cmpint(journal_flush(f->j, NULL), ==, 0);
        g_assert_false(journal_dirty(f->j));
        g_assert_cmpuint(journal_n_writes(f->j), ==, 3);
        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        g_assert_cmpstr(((JournalVm *)vms->pdata[0])->seq->phase, ==, "stop");
        g_assert_true(((JournalVm *)vms->pdata[0])->seq->rollback);
        g_assert_cmpint(journal_flush(f->j, NULL), ==, 0);
        g_assert_cmpint(journal_end(f->j, "vm1", NULL), ==, 0);
        g_assert_cmpuint(journal_n_writes(f->j), ==, 4);
        g_assert_cmpuint(journal_n_syncs(f->j), ==, 2);
        /* Nothing in flight: nothing to write. */
        g_assert_cmpint(journal_end(f->j, "vm1", NULL), ==, 0);
        g_assert_cmpuint(journal_n_writes(f->j), ==, 4);
}

static void test_put_keeps_the_sequence_in_flight(Fixture *f, gconstpointer data)
{
        put_vm1(f);
        begin_quiesce(f, NULL, 0);
        put_vm1(f);
        g_assert_nonnull(journal_get_vm(f->j, "vm1")->seq);
}

/* ---- atomic writes ---- */

static void fsize_limit(rlim_t limit)
{
        struct rlimit rl;

        g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &rl), ==, 0);
        rl.rlim_cur = limit;
        g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &rl), ==, 0);
}

static void test_failed_write_leaves_the_old_file(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *before = NULL, *after = NULL, *tmp = NULL;
        g_autoptr(GPtrArray) vms = NULL;

        put_vm1(f);
        before = file_text(f);
        signal(SIGXFSZ, SIG_IGN);
        fsize_limit(strlen(before) / 2);
        begin_quiesce(f, &error, -EFBIG);
        fsize_limit(RLIM_INFINITY);
        g_assert_nonnull(strstr(error->message, journal_path(f->j)));
        g_assert_nonnull(strstr(error->message, "the previous journal stays"));
        after = file_text(f);
        g_assert_cmpstr(after, ==, before);
        tmp = g_strconcat(journal_path(f->j), ".tmp", NULL);
        g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
        /* The refused begin left no sequence behind, in memory or on disk. */
        g_assert_null(journal_get_vm(f->j, "vm1")->seq);
        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        g_assert_null(((JournalVm *)vms->pdata[0])->seq);
}

/* ---- files not to trust ---- */

static void assert_refused(Fixture *f, const char *text, int err, const char *words)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(Journal) j = NULL;

        write_text(f, text);
        g_assert_cmpint(journal_open(f->state, &j, NULL), ==, 0);
        g_assert_cmpint(journal_load(j, NULL, &error), ==, err);
        g_assert_nonnull(strstr(error->message, journal_path(j)));
        if (!strstr(error->message, words))
                g_error("'%s' not in: %s", words, error->message);
        g_assert_cmpuint(journal_n_vms(j), ==, 0);
}

static void test_torn_file_is_refused(Fixture *f, gconstpointer data)
{
        g_autofree char *text = NULL;

        put_vm1(f);
        text = file_text(f);
        text[strlen(text) / 2] = '\0';
        assert_refused(f, text, -EBADMSG, "not valid JSON");
}

static void test_flipped_byte_fails_the_checksum(Fixture *f, gconstpointer data)
{
        g_autofree char *text = NULL;
        char *p;

        put_vm1(f);
        text = file_text(f);
        p = strstr(text, "\"nic0\"");
        g_assert_nonnull(p);
        p[2] = 'j'; /* "njc0": valid JSON still */
        assert_refused(f, text, -EBADMSG, "checksum");
}

static void test_other_version_is_refused(Fixture *f, gconstpointer data)
{
        g_autofree char *text = NULL;
        g_autofree char *changed = NULL;
        g_auto(GStrv) parts = NULL;

        put_vm1(f);
        text = file_text(f);
        parts = g_strsplit(text, "\"version\":1,", 2);
        changed = g_strjoinv("\"version\":2,", parts);
        assert_refused(f, changed, -EPROTO, "version 2");
}

static void test_other_format_is_refused(Fixture *f, gconstpointer data)
{
        assert_refused(f, "{\"vms\": {}}", -EBADMSG, "not a vfio-migd journal");
}

/* A payload with a good checksum and a bad record: written by something else. */
static void test_malformed_record_is_refused(Fixture *f, gconstpointer data)
{
        const char *payload = "{\"vms\":{\"vm1\":{\"devices\":[\"nic0\"],\"options\":{},"
                              "\"origin\":\"dbus\",\"sequence\":{\"operation\":\"fly\"}}}}";
        g_autofree char *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256, payload, -1);
        g_autofree char *text = g_strdup_printf("{\"format\":\"vfio-migd-journal\","
                                                "\"version\":1,\"checksum\":\"%s\","
                                                "\"payload\":%s}",
                                                sum, payload);

        assert_refused(f, text, -EBADMSG, "VM 'vm1' has a malformed sequence record");
}

static void test_quarantine_moves_the_file_aside(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *moved = NULL, *text = NULL;

        write_text(f, "{torn");
        g_assert_cmpint(journal_quarantine(f->j, &moved, &error), ==, 0);
        g_assert_true(g_str_has_prefix(moved, journal_path(f->j)));
        g_assert_nonnull(strstr(moved, ".corrupt-"));
        g_assert_true(g_file_get_contents(moved, &text, NULL, NULL));
        g_assert_cmpstr(text, ==, "{torn");
        g_assert_false(g_file_test(journal_path(f->j), G_FILE_TEST_EXISTS));
        g_assert_cmpint(journal_quarantine(f->j, NULL, &error), ==, -ENOENT);
}

/* ---- a failed write drops nothing ---- */

/* Reproduction 1: on ENOSPC the end record was dropped and a restart rolled a finished Save
 * back. The end stays in memory, dirty, and the next write carries it. */
static void test_failed_end_is_kept_for_the_next_write(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) before = NULL, after = NULL;

        put_vm1(f);
        begin_quiesce(f, NULL, 0);
        signal(SIGXFSZ, SIG_IGN);
        fsize_limit(10);
        g_assert_cmpint(journal_end(f->j, "vm1", &error), ==, -EFBIG);
        g_assert_true(journal_dirty(f->j));
        g_assert_null(journal_get_vm(f->j, "vm1")->seq);
        g_assert_cmpint(journal_flush(f->j, NULL), ==, -EFBIG); /* still full: still dirty */
        g_assert_true(journal_dirty(f->j));
        fsize_limit(RLIM_INFINITY);
        g_assert_cmpint(reload(f, &before, NULL), ==, 0);
        g_assert_nonnull(((JournalVm *)before->pdata[0])->seq); /* the old file, as on disk */
        g_assert_cmpint(journal_flush(f->j, NULL), ==, 0);
        g_assert_false(journal_dirty(f->j));
        g_assert_cmpint(reload(f, &after, NULL), ==, 0);
        g_assert_null(((JournalVm *)after->pdata[0])->seq);
}

/* Any later write carries an earlier change whose own write failed. */
static void test_next_write_carries_a_failed_change(Fixture *f, gconstpointer data)
{
        g_autoptr(GPtrArray) vms = NULL;
        VmOptions o;

        put_vm1(f);
        begin_quiesce(f, NULL, 0);
        signal(SIGXFSZ, SIG_IGN);
        fsize_limit(10);
        g_assert_cmpint(journal_end(f->j, "vm1", NULL), ==, -EFBIG);
        fsize_limit(RLIM_INFINITY);
        vm_options_init(&o);
        g_assert_cmpint(journal_put_vm(f->j, "vm2", "dbus", DEVICES, 1, &o, NULL), ==, 0);
        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        g_assert_cmpuint(vms->len, ==, 2);
        g_assert_null(((JournalVm *)vms->pdata[0])->seq);
}

/* Reproduction 1, UnregisterVM on a full disk: refused, and the VM stays recorded. */
static void test_failed_remove_keeps_the_vm(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) vms = NULL;

        put_vm1(f);
        signal(SIGXFSZ, SIG_IGN);
        fsize_limit(10);
        g_assert_cmpint(journal_remove_vm(f->j, "vm1", &error), ==, -EFBIG);
        fsize_limit(RLIM_INFINITY);
        g_assert_nonnull(strstr(error->message, journal_path(f->j)));
        g_assert_nonnull(journal_get_vm(f->j, "vm1"));
        g_assert_cmpuint(journal_n_vms(f->j), ==, 1);
        g_assert_cmpint(journal_flush(f->j, NULL), ==, 0);
        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        g_assert_cmpuint(vms->len, ==, 1);
        g_assert_cmpint(journal_remove_vm(f->j, "vm1", NULL), ==, 0);
}

/* ---- the Save hand-off ---- */

static void begin_save(Fixture *f)
{
        enum mig_state states[] = {MIG_STATE_RUNNING, MIG_STATE_RUNNING};
        char *phases[] = {"p2p", "stop", "stop-copy", "save", "stopped", NULL};
        JournalSequence seq = {.op = PLAN_OP_SAVE,
                               .begin_states = states,
                               .phases = phases,
                               .phase_index = -1,
                               .started_us = 1};

        g_assert_cmpint(journal_begin(f->j, "vm1", &seq, NULL), ==, 0);
}

static JournalHandoff handoff_on_disk(Fixture *f)
{
        g_autoptr(GPtrArray) vms = NULL;

        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        return ((JournalVm *)vms->pdata[0])->handoff;
}

static void test_commit_is_durable_and_outlives_the_save(Fixture *f, gconstpointer data)
{
        g_autofree char *text = NULL;
        uint64_t syncs;

        put_vm1(f);
        begin_save(f);
        g_assert_cmpint(handoff_on_disk(f), ==, JOURNAL_HANDOFF_NONE);
        syncs = journal_n_syncs(f->j);
        g_assert_cmpint(journal_commit(f->j, "vm1", NULL), ==, 0);
        g_assert_cmpuint(journal_n_syncs(f->j), ==, syncs + 1);
        g_assert_cmpint(handoff_on_disk(f), ==, JOURNAL_HANDOFF_COMMITTING);
        g_assert_cmpint(journal_set_handoff(f->j, "vm1", JOURNAL_HANDOFF_HANDED_OFF, NULL), ==, 0);
        g_assert_cmpint(journal_end(f->j, "vm1", NULL), ==, 0);
        g_assert_cmpuint(journal_n_syncs(f->j), ==, syncs + 1); /* the end: no fsync */
        g_assert_cmpint(handoff_on_disk(f), ==, JOURNAL_HANDOFF_HANDED_OFF);
        /* Registered again (libvirt, a restart): still handed off. */
        put_vm1(f);
        g_assert_cmpint(journal_get_vm(f->j, "vm1")->handoff, ==, JOURNAL_HANDOFF_HANDED_OFF);
        g_assert_cmpint(handoff_on_disk(f), ==, JOURNAL_HANDOFF_HANDED_OFF);
        g_assert_cmpint(journal_set_handoff(f->j, "vm1", JOURNAL_HANDOFF_NONE, NULL), ==, 0);
        g_assert_cmpint(journal_flush(f->j, NULL), ==, 0);
        g_assert_cmpint(handoff_on_disk(f), ==, JOURNAL_HANDOFF_NONE);
        text = file_text(f);
        g_assert_null(strstr(text, "handoff")); /* absent when none */
        g_assert_cmpint(journal_commit(f->j, "nope", NULL), ==, -ENOENT);
}

static void test_failed_commit_keeps_the_old_record(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        put_vm1(f);
        begin_save(f);
        signal(SIGXFSZ, SIG_IGN);
        fsize_limit(10);
        g_assert_cmpint(journal_commit(f->j, "vm1", &error), ==, -EFBIG);
        fsize_limit(RLIM_INFINITY);
        g_assert_nonnull(strstr(error->message, journal_path(f->j)));
        g_assert_cmpint(journal_get_vm(f->j, "vm1")->handoff, ==, JOURNAL_HANDOFF_NONE);
        g_assert_cmpint(handoff_on_disk(f), ==, JOURNAL_HANDOFF_NONE);
}

static void test_unknown_handoff_is_refused(Fixture *f, gconstpointer data)
{
        const char *payload = "{\"vms\":{\"vm1\":{\"devices\":[\"nic0\"],\"handoff\":\"maybe\","
                              "\"options\":{},\"origin\":\"dbus\"}}}";
        g_autofree char *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256, payload, -1);
        g_autofree char *text = g_strdup_printf("{\"format\":\"vfio-migd-journal\","
                                                "\"version\":1,\"checksum\":\"%s\","
                                                "\"payload\":%s}",
                                                sum, payload);

        assert_refused(f, text, -EBADMSG, "VM 'vm1' has an unknown hand-off state");
}

/* ---- the recovery decision ---- */

typedef struct ChooseCase {
        const char *name;
        enum policy_after_crash policy;
        enum plan_op op;
        int64_t phase_index; /* of {"p2p", "stop"} or the resume phases */
        enum mig_state states[2];
        bool act;
        enum plan_op run;
        const char *action;
} ChooseCase;

#define R  MIG_STATE_RUNNING
#define P2 MIG_STATE_RUNNING_P2P
#define ST MIG_STATE_STOP
#define SC MIG_STATE_STOP_COPY
#define RS MIG_STATE_RESUMING
#define ER MIG_STATE_ERROR
#define RB POLICY_AFTER_CRASH_ROLLBACK
#define FI POLICY_AFTER_CRASH_FINISH

static const ChooseCase choose_cases[] = {
    {"rollback/quiesce-mixed", RB, PLAN_OP_QUIESCE, 1, {ST, P2}, true, PLAN_OP_ABORT, "rollback"},
    {"rollback/nothing-moved", RB, PLAN_OP_QUIESCE, 0, {R, R}, false, 0, "none"},
    {"rollback/save-stop-copy", RB, PLAN_OP_SAVE, 3, {SC, SC}, true, PLAN_OP_ABORT, "rollback"},
    {"rollback/error-is-aborted",
     RB,
     PLAN_OP_QUIESCE,
     1,
     {ER, P2},
     true,
     PLAN_OP_ABORT,
     "rollback"},
    {"rollback/resume-resets", RB, PLAN_OP_RESUME, 1, {RS, RS}, true, PLAN_OP_RESET, "rollback"},
    {"rollback/resume-done-or-not-begun", RB, PLAN_OP_RESUME, 6, {R, R}, false, 0, "none"},
    {"finish/quiesce", FI, PLAN_OP_QUIESCE, 1, {ST, P2}, true, PLAN_OP_QUIESCE, "finish"},
    {"finish/quiesce-done", FI, PLAN_OP_QUIESCE, 1, {ST, ST}, false, 0, "none"},
    {"finish/quiesce-with-error-rolls-back",
     FI,
     PLAN_OP_QUIESCE,
     1,
     {ER, P2},
     true,
     PLAN_OP_ABORT,
     "rollback"},
    {"finish/save-rolls-back", FI, PLAN_OP_SAVE, 3, {SC, SC}, true, PLAN_OP_ABORT, "rollback"},
    {"finish/start", FI, PLAN_OP_START, 0, {P2, ST}, true, PLAN_OP_START, "finish"},
    {"finish/start-done", FI, PLAN_OP_START, 1, {R, R}, false, 0, "none"},
    {"finish/resume-before-validate-resets",
     FI,
     PLAN_OP_RESUME,
     1,
     {RS, RS},
     true,
     PLAN_OP_RESET,
     "rollback"},
    {"finish/resume-after-validate-starts",
     FI,
     PLAN_OP_RESUME,
     4,
     {P2, P2},
     true,
     PLAN_OP_START,
     "finish"},
};

static void test_choose(gconstpointer data)
{
        const ChooseCase *c = data;
        char *quiesce[] = {"p2p", "stop", NULL};
        char *save[] = {"p2p", "stop", "stop-copy", "save", "stopped", NULL};
        char *resume[] = {"resuming", "load", "validate", "p2p", "run", NULL};
        JournalSequence seq = {
            .op = c->op,
            .phases = c->op == PLAN_OP_RESUME ? resume
                      : c->op == PLAN_OP_SAVE ? save
                                              : quiesce,
            .phase_index = c->phase_index,
        };
        g_autofree char *reason = NULL;
        const char *action = NULL;
        enum plan_op op = PLAN_OP_COUNT;
        bool act;

        act = recovery_choose(c->policy, &seq, c->states, 2, &op, &action, &reason);
        g_assert_cmpint(act, ==, c->act);
        g_assert_cmpstr(action, ==, c->action);
        g_assert_nonnull(reason);
        if (act)
                g_assert_cmpint(op, ==, c->run);
}

/* ---- a state directory another user could write ---- */


static char *victim_new(const Fixture *f)
{
        char *path = g_build_filename(f->dir, "victim", NULL);

        victim_create(path);
        return path;
}

static void assert_dir_refused(const Fixture *f, const char *words)
{
        g_autoptr(GError) error = NULL, open_error = NULL;
        Journal *j = NULL;
        int fd = -1;

        g_assert_cmpint(journal_lock_dir(f->state, &fd, &error), ==, -EPERM);
        g_assert_nonnull(strstr(error->message, f->state));
        g_assert_nonnull(strstr(error->message, "--state-dir"));
        g_assert_nonnull(strstr(error->message, words));
        g_assert_cmpint(journal_open(f->state, &j, &open_error), ==, -EPERM);
        g_assert_null(j);
}

/* Reproduction: a state directory pre-created by nobody. */
static void test_other_users_dir_is_refused(Fixture *f, gconstpointer data)
{
        g_assert_cmpint(chown(f->state, 65534, 65534), ==, 0);
        assert_dir_refused(f, "chown root:");
}

static void test_world_writable_dir_is_refused(Fixture *f, gconstpointer data)
{
        g_assert_cmpint(chmod(f->state, 0777), ==, 0);
        assert_dir_refused(f, "chmod go-w");
}

/* Reproduction: journal.json.tmp -> a root file was truncated. */
static void test_planted_temporary_is_not_followed(Fixture *f, gconstpointer data)
{
        g_autofree char *victim = victim_new(f);
        g_autofree char *absent = g_build_filename(f->dir, "absent", NULL);
        g_autofree char *tmp = g_strconcat(journal_path(f->j), ".tmp", NULL);
        g_autoptr(GPtrArray) vms = NULL;
        struct stat st;

        g_assert_cmpint(symlink(victim, tmp), ==, 0);
        put_vm1(f);
        g_assert_cmpint(unlink(tmp) < 0 ? errno : 0, ==, ENOENT);
        g_assert_cmpint(symlink(absent, tmp), ==, 0);
        begin_quiesce(f, NULL, 0);
        victim_assert_untouched(victim);
        g_assert_false(g_file_test(absent, G_FILE_TEST_EXISTS));
        g_assert_cmpint(lstat(journal_path(f->j), &st), ==, 0);
        g_assert_true(S_ISREG(st.st_mode));
        g_assert_cmpint(st.st_mode & 07777, ==, 0600);
        g_assert_cmpint(reload(f, &vms, NULL), ==, 0);
        g_assert_cmpuint(vms->len, ==, 1);
}

/* Reproduction: journal.json became the attacker's link. It is not read, and moves aside. */
static void test_journal_link_is_refused_and_moved_aside(Fixture *f, gconstpointer data)
{
        g_autofree char *victim = victim_new(f);
        g_autofree char *moved = NULL;
        g_autoptr(GError) error = NULL;
        struct stat st;

        g_assert_cmpint(symlink(victim, journal_path(f->j)), ==, 0);
        g_assert_cmpint(journal_load(f->j, NULL, &error), ==, -EBADMSG);
        g_assert_nonnull(strstr(error->message, "symbolic link"));
        g_assert_cmpint(journal_quarantine(f->j, &moved, NULL), ==, 0);
        g_assert_cmpint(lstat(moved, &st), ==, 0);
        g_assert_true(S_ISLNK(st.st_mode));
        put_vm1(f);
        victim_assert_untouched(victim);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
        ADD("/journal/dir/missing-is-created-0700", test_missing_dir_is_created_0700);
        ADD("/journal/load/no-file-is-enoent", test_no_file_is_enoent);
        g_test_add_func("/journal/dir/unusable-is-refused-by-name",
                        test_unusable_dir_is_refused_by_name);
        ADD("/journal/dir/second-lock-is-refused-naming-the-holder",
            test_second_lock_is_refused_naming_the_holder);
        ADD("/journal/dir/lock-symlink-is-refused", test_lock_symlink_is_refused);
        ADD("/journal/dir/other-users-dir-is-refused", test_other_users_dir_is_refused);
        ADD("/journal/dir/world-writable-dir-is-refused", test_world_writable_dir_is_refused);
        ADD("/journal/write/planted-temporary-is-not-followed",
            test_planted_temporary_is_not_followed);
        ADD("/journal/load/journal-link-is-refused-and-moved-aside",
            test_journal_link_is_refused_and_moved_aside);
        ADD("/journal/round-trip", test_round_trip);
        ADD("/journal/round-trip-before-the-first-phase",
            test_sequence_before_its_first_phase_loads);
        ADD("/journal/end-and-remove-are-written", test_end_and_remove_are_written);
        ADD("/journal/writes-per-sequence", test_writes_per_sequence);
        ADD("/journal/put-keeps-the-sequence-in-flight", test_put_keeps_the_sequence_in_flight);
        ADD("/journal/write/failure-leaves-the-old-file", test_failed_write_leaves_the_old_file);
        ADD("/journal/load/torn-file-is-refused", test_torn_file_is_refused);
        ADD("/journal/load/flipped-byte-fails-the-checksum", test_flipped_byte_fails_the_checksum);
        ADD("/journal/load/other-version-is-refused", test_other_version_is_refused);
        ADD("/journal/load/other-format-is-refused", test_other_format_is_refused);
        ADD("/journal/load/malformed-record-is-refused", test_malformed_record_is_refused);
        ADD("/journal/quarantine/moves-the-file-aside", test_quarantine_moves_the_file_aside);
        ADD("/journal/write/failed-end-is-kept-for-the-next-write",
            test_failed_end_is_kept_for_the_next_write);
        ADD("/journal/write/next-write-carries-a-failed-change",
            test_next_write_carries_a_failed_change);
        ADD("/journal/write/failed-remove-keeps-the-vm", test_failed_remove_keeps_the_vm);
        ADD("/journal/handoff/commit-is-durable-and-outlives-the-save",
            test_commit_is_durable_and_outlives_the_save);
        ADD("/journal/handoff/failed-commit-keeps-the-old-record",
            test_failed_commit_keeps_the_old_record);
        ADD("/journal/load/unknown-handoff-is-refused", test_unknown_handoff_is_refused);
        for (size_t i = 0; i < G_N_ELEMENTS(choose_cases); i++) {
                g_autofree char *path =
                    g_strdup_printf("/recovery/choose/%s", choose_cases[i].name);
                g_test_add_data_func(path, &choose_cases[i], test_choose);
        }
        return g_test_run();
}
