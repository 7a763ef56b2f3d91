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
 * The in-memory records are the Journal's. Registrations and a sequence's begin are written
 * through at once and made durable (fsync of the file and the directory): the record is on
 * disk before any device moves. A phase reached is noted in memory and written by
 * journal_flush() (the caller coalesces: several phases, one write), and a sequence's end
 * is written without the fsyncs: both are atomic against a crash of the daemon, which is
 * what recovery is for, and losing them to a crash of the host costs nothing (recovery
 * reads the devices' real states; a host crash resets real devices anyway). Loop thread
 * only.
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

typedef struct JournalVm {
        char *name;
        char *origin;
        char **devices; /* NULL-terminated, registration order */
        size_t n_devices;
        VmOptions options;    /* the explicit ones (options.explicit_mask) are what counts */
        JournalSequence *seq; /* NULL: no sequence in flight */
} JournalVm;

void journal_sequence_free(JournalSequence *s);
JournalSequence *journal_sequence_copy(const JournalSequence *s, size_t n_devices);
void journal_vm_free(JournalVm *v);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(JournalVm, journal_vm_free)

typedef struct Journal Journal;

/* Opens dir, creating it (mode 0700, parents too) when missing. Reads nothing yet. A dir
 * that another user owns or may write to is refused (-EPERM, safe-dir.h): the journal's
 * files are reached through dir's fd only, never through a link. */
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
/* Forgets the VM (-ENOENT when not recorded; nothing written then). */
int journal_remove_vm(Journal *j, const char *name, GError **error);
/* A sequence begins (seq copied). On error the record is as before. -ENOENT: no such VM. */
int journal_begin(Journal *j, const char *name, const JournalSequence *seq, GError **error);
/* The sequence reached a phase (rollback: the sequencer is rolling back); in memory only. */
int journal_phase(Journal *j, const char *name, const char *phase, int64_t index, bool rollback,
                  GError **error);
/* The sequence is over. -ENOENT: no such VM; 0 without a write when none was recorded. */
int journal_end(Journal *j, const char *name, GError **error);

/* Writes what journal_phase() noted, if anything (0 without a write). */
int journal_flush(Journal *j, GError **error);
bool journal_dirty(const Journal *j);

/* Files written, and of those made durable, since journal_open() (tests, benchmarks). */
uint64_t journal_n_writes(const Journal *j);
uint64_t journal_n_syncs(const Journal *j);
