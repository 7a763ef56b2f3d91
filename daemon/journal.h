/* journal: the crash-safe record of registered VMs and the sequences in flight */
#pragma once

/*
 * One JSON file, DIR/journal.json, rewritten whole and atomically on every change: a
 * temporary file in the same directory, fsync, rename over the old one, fsync of the
 * directory. A reader therefore finds the old file or the new one, never a mix. The file
 * is
 *
 *   {"format":"vfio-migd-journal","version":1,"checksum":"<sha256 hex>","payload":{...}}
 *
 * where checksum is the SHA-256 of the payload dumped canonically (jansson, compact, keys
 * sorted), so a file that was torn, truncated or edited is detected even when it is still
 * valid JSON. The payload holds every registered VM (name, origin, devices, the options
 * its registrant gave explicitly) and, for a VM with a sequence in flight, the operation,
 * the devices' states when it began, the plan's phase names, the last phase begun and the
 * start time.
 *
 * The in-memory records are the Journal's. Registrations, a sequence's begin, a removal and
 * a Save's commit are written through at once and made durable (fsync of the file and the
 * directory): the record is on disk before any device moves, and before a Save's stream is
 * complete. A phase reached is noted in memory and written by journal_flush() (the caller
 * coalesces: several phases, one write), and a sequence's end is written without the
 * fsyncs: both are atomic against a crash of the daemon, which is what recovery is for,
 * and losing them to a crash of the host costs nothing (recovery reads the devices' real
 * states; a host crash resets real devices anyway). Loop thread only.
 *
 * A write that fails never drops a record: the in-memory records stay what the caller made
 * them (except for journal_begin(), journal_commit() and journal_remove_vm(), which refuse
 * the change and keep the old record), the Journal is dirty, and the next write or
 * journal_flush() writes them all. The caller retries journal_flush() on a timer.
 *
 * The hand-off (JournalHandoff) belongs to the VM, not to a sequence: it outlives the Save
 * that set it until the caller decides (Start clears it at its begin; UnregisterVM removes
 * the VM). COMMITTING is written durably before a Save's stream trailer; HANDED_OFF once the
 * trailer is out. Both mean the stream may have reached a destination, and recovery never
 * returns such a VM to RUNNING.
 *
 * Errors: negative errno with a GError sentence naming the file:
 *   -ENOENT   no journal file (journal_load(): nothing was recorded)
 *   -EBADMSG  the file is not a journal: torn, not JSON, bad checksum, malformed payload
 *   -EPROTO   a journal of another format version
 * plus the errnos of the file system calls, passed up unchanged.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/mig-state.h"
#include "core/plan.h"
#include "vm.h"

#define JOURNAL_FILE    "journal.json"
#define JOURNAL_FORMAT  "vfio-migd-journal"
#define JOURNAL_VERSION 1

typedef struct JournalSequence {
        enum plan_op op;
        enum mig_state *begin_states; /* one per device of the VM, in its order */
        char **phases;                /* the plan's phase names, NULL-terminated */
        char *phase;                  /* the last phase begun; NULL before the first */
        int64_t phase_index;          /* its index in phases; -1 before the first */
        bool rollback;                /* the sequencer began rolling back */
        uint64_t started_us;          /* CLOCK_REALTIME */
} JournalSequence;

typedef enum JournalHandoff {
        JOURNAL_HANDOFF_NONE,
        JOURNAL_HANDOFF_COMMITTING, /* "committing": the trailer is about to be written */
        JOURNAL_HANDOFF_HANDED_OFF, /* "handed-off": the trailer was written */
} JournalHandoff;

const char *journal_handoff_to_string(JournalHandoff h);

typedef struct JournalVm {
        char *name;
        char *origin;
        char **devices; /* NULL-terminated, registration order */
        size_t n_devices;
        VmOptions options;    /* the explicit ones (options.explicit_mask) are what counts */
        JournalSequence *seq; /* NULL: no sequence in flight */
        JournalHandoff handoff;
} JournalVm;

void journal_sequence_free(JournalSequence *s);
JournalSequence *journal_sequence_copy(const JournalSequence *s, size_t n_devices);
void journal_vm_free(JournalVm *v);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(JournalVm, journal_vm_free)

typedef struct Journal Journal;

#define JOURNAL_LOCK_FILE "lock"

/*
 * The state directory is one daemon's: DIR/lock (created 0600, opened O_NOFOLLOW|O_CLOEXEC)
 * locked with flock(LOCK_EX|LOCK_NB) and the holder's pid written in it. *ret_fd holds the
 * lock until it is closed (the daemon keeps it for its life). Creates DIR (0700) first.
 * DIR must be safe_dir_open()'s: owned by root (or the daemon's user), written by nobody else.
 *   -EPERM, -ELOOP  DIR is another user's, writable by others, or a link (safe-dir.h)
 *   -EWOULDBLOCK  another process holds it; the GError names its pid
 *   -EROFS, -EACCES, ...  the directory cannot be written (a read-only state directory
 *                 would lose every record): the GError says so
 */
int journal_lock_dir(const char *dir, int *ret_fd, GError **error);

/*
 * Opens dir, creating it (mode 0700, parents too) when missing, and checks it as
 * journal_lock_dir() does. Reads nothing yet. The journal and its temporary are opened
 * relative to dir and never through a link: a journal.json that is a link reads as
 * -EBADMSG (so recovery moves it aside), and a journal.json.tmp of any kind is unlinked,
 * not written through. The file is 0600.
 */
int journal_open(const char *dir, Journal **ret, GError **error);
void journal_free(Journal *j);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Journal, journal_free)
/* DIR/journal.json */
const char *journal_path(const Journal *j);

/*
 * Reads and checks the file and makes its records the Journal's. *ret_vms (optional) gets
 * copies, sorted by name (JournalVm*, owned by the array). On any error the in-memory
 * records are left as they were and the file as it is.
 */
int journal_load(Journal *j, GPtrArray **ret_vms, GError **error);
/* Renames the file to DIR/journal.json.corrupt-<UTC time>; *ret_path (optional) gets it. */
int journal_quarantine(Journal *j, char **ret_path, GError **error);

const JournalVm *journal_get_vm(const Journal *j, const char *name);
size_t journal_n_vms(const Journal *j);

/* Records the VM's registration (copied), keeping a sequence already recorded for it. */
int journal_put_vm(Journal *j, const char *name, const char *origin, const char *const *devices,
                   size_t n_devices, const VmOptions *options, GError **error);
/* Forgets the VM, durably (-ENOENT when not recorded; nothing written then). On a failed
 * write the VM stays recorded, in memory and on disk: the caller refuses the removal. */
int journal_remove_vm(Journal *j, const char *name, GError **error);
/* A sequence begins (seq copied). On error the record is as before. -ENOENT: no such VM. */
int journal_begin(Journal *j, const char *name, const JournalSequence *seq, GError **error);
/* The sequence reached a phase (rollback: the sequencer is rolling back); in memory only. */
int journal_phase(Journal *j, const char *name, const char *phase, int64_t index, bool rollback,
                  GError **error);
/* The sequence is over. -ENOENT: no such VM; 0 without a write when none was recorded and
 * nothing is dirty. A failed write keeps the end in memory (dirty) for the next write. */
int journal_end(Journal *j, const char *name, GError **error);

/*
 * A Save is about to write its stream's trailer: the VM becomes COMMITTING, durably. On
 * error the record is as before and the trailer must not be written. -ENOENT: no such VM.
 */
int journal_commit(Journal *j, const char *name, GError **error);
/* The VM's hand-off becomes h, in memory (dirty: the next write carries it). -ENOENT. */
int journal_set_handoff(Journal *j, const char *name, JournalHandoff h, GError **error);

/* Writes what journal_phase() noted, if anything (0 without a write). */
int journal_flush(Journal *j, GError **error);
bool journal_dirty(const Journal *j);

/* Files written, and of those made durable, since journal_open() (tests, benchmarks). */
uint64_t journal_n_writes(const Journal *j);
uint64_t journal_n_syncs(const Journal *j);
