/* recovery: the journal kept while the daemon runs, and what a restart does with it */
#pragma once

/*
 * While the daemon runs, every registered VM and every sequence in flight is in the journal
 * (journal.h): recovery_track_vm() records a registration and hooks the VM's sequences
 * (vm_set_journal_func()), so the record is on disk before a sequence's first device moves,
 * updated when each phase begins, and cleared when it ends.
 *
 * On start, in two steps around the bus name (daemon.c):
 *  1. recovery_restore(), after the objects are registered and before the name is
 *     requested: reads the journal. A torn or corrupt file (not JSON, bad checksum, wrong
 *     version, malformed record) is logged, moved aside to journal.json.corrupt-<time> and
 *     not acted on. A valid one: every VM is registered again (origin "journal"; the journal
 *     keeps the original origin). A VM that cannot be registered (a device gone, unbound,
 *     unreadable) is reported and stays in the journal: recovery_retry() tries it again
 *     (Rescan, hotplug), and so does the next start, until it is restored or unregistered.
 *  2. recovery_start(), once the name is owned, so whoever watches the name sees what
 *     follows: for each VM whose sequence was interrupted, reads every device's real state
 *     and applies the policy's after-crash: rollback (Abort on the source, Reset on a
 *     destination whose Resume was cut short: its state is lost) or finish (Quiesce, Start,
 *     PreCopy run to their end; Abort is finished; Resume past its validate phase is
 *     started; Save cannot be finished without its stream and is rolled back). A VM whose
 *     Save recorded its commit (journal.h, the hand-off) is not acted on: it stays stopped,
 *     handed off (vm_is_handed_off()), whatever after-crash says. A VM whose
 *     devices are already where the chosen action would take them is left alone. The
 *     sequences run as any other (their report becomes LastSequence, their progress is
 *     signalled); each VM acted on gets a Recovered signal and a notice in the log.
 *
 * LastRecovery (recovery_append_last()) tells it all: docs/dbus-api.md.
 *
 * Errors: negative errno with a GError sentence (recovery_restore(): the state directory
 * cannot be used). A bad journal is no error: it is reported, and the daemon starts.
 */

#include <glib.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "core/policy.h"
#include "journal.h"

#define RECOVERY_STATE_DIR_DEFAULT "/var/lib/vfio-migd"

typedef struct Daemon Daemon;
typedef struct Recovery Recovery;

int recovery_restore(Daemon *d, const char *state_dir, GError **error);
void recovery_start(Daemon *d);
void recovery_free(Recovery *rec);

/*
 * Registration bookkeeping (manager_register_vm()/_unregister_vm()); no-ops without a
 * journal. A registration whose write fails is logged and stands, and the write is retried
 * on a timer (1 s doubling to 30 s) as is every failed write. An unregistration whose write
 * fails is refused (-EIO with a sentence): the VM would come back after a restart.
 */
void recovery_track_vm(Daemon *d, Vm *vm);
int recovery_untrack_vm(Daemon *d, const char *name, GError **error);
/* The journal holds name, not restored at start (UnregisterVM may forget it). */
bool recovery_has_unrestored(const Daemon *d, const char *name);
/* Tries again to restore the VMs the start could not (Rescan, hotplug; why is logged). */
void recovery_retry(Daemon *d, const char *why);

/* The LastRecovery a{sv}. */
int recovery_append_last(sd_bus_message *m, const Daemon *d);

/*
 * The decision on the journal's record of an interrupted sequence: recovery_decide()
 * (core/recovery-decide.h), pure, with the same results.
 */
bool recovery_choose(enum policy_after_crash policy, const JournalSequence *seq,
                     const enum mig_state *states, size_t n, enum plan_op *ret_op,
                     const char **ret_action, char **ret_reason);
