/* recovery: the journal kept while the daemon runs, and what a restart does with it */
#include "recovery.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "bus/bus-util.h"
#include "core/recovery-decide.h"
#include "crash-point.h"
#include "daemon.h"
#include "log.h"
#include "model/manager.h"

/* What the start did with one VM of the journal: an entry of LastRecovery's "vms". */
typedef struct RecoveredVm {
        char *vm, *origin;
        char *operation, *phase;     /* the interrupted sequence; "" when none */
        char *after_crash;           /* the policy applied; "" when no sequence was interrupted */
        GPtrArray *devices, *states; /* char*: what the start found */
        char *action;                /* "restored", "not-restored", "rollback", "finish", "none" */
        char *outcome;   /* "ok", "state-lost", "failed", "consistent", "device-missing", ... */
        GPtrArray *lost; /* char*: devices whose state was lost */
        char *message;
        bool signal;  /* a Recovered signal is due */
        bool pending; /* its recovery sequence runs */
        enum plan_op run_op;
        JournalSequence *seq; /* the interrupted sequence (owned), NULL when none */
        size_t n_devices;
        JournalHandoff handoff; /* the journal's: a Save may have reached a destination */
        bool retry;             /* not restored: tried again on Rescan, hotplug */
} RecoveredVm;

struct Recovery {
        Journal *journal; /* NULL when the state directory could not be used */
        const char *status;
        char *message, *moved_to;
        uint64_t when_us;
        GPtrArray *vms; /* RecoveredVm* */
        unsigned pending;
        bool started;                  /* recovery_start() ran: the name is owned */
        sd_event_source *flush_source; /* writes the phases reached, once the loop is idle */
        sd_event_source *retry_source; /* writes again what a failed write left dirty */
        uint64_t retry_us;             /* its next delay: 1 s doubling to 30 s */
};

typedef struct RecoveryRun {
        Daemon *daemon;
        RecoveredVm *entry;
} RecoveryRun;

static void recovered_vm_free(RecoveredVm *e)
{
        g_free(e->vm);
        g_free(e->origin);
        g_free(e->operation);
        g_free(e->phase);
        g_free(e->after_crash);
        g_ptr_array_unref(e->devices);
        g_ptr_array_unref(e->states);
        g_free(e->action);
        g_free(e->outcome);
        g_ptr_array_unref(e->lost);
        g_free(e->message);
        journal_sequence_free(e->seq);
        g_free(e);
}

static RecoveredVm *recovered_vm_new(Recovery *rec, const JournalVm *v)
{
        RecoveredVm *e = g_new0(RecoveredVm, 1);

        e->vm = g_strdup(v->name);
        e->origin = g_strdup(v->origin);
        e->operation = g_strdup(v->seq ? plan_op_to_string(v->seq->op) : "");
        e->phase = g_strdup(v->seq && v->seq->phase ? v->seq->phase : "");
        e->after_crash = g_strdup("");
        e->devices = g_ptr_array_new_with_free_func(g_free);
        e->states = g_ptr_array_new_with_free_func(g_free);
        e->lost = g_ptr_array_new_with_free_func(g_free);
        e->seq = v->seq ? journal_sequence_copy(v->seq, v->n_devices) : NULL;
        e->n_devices = v->n_devices;
        e->handoff = v->handoff;
        g_ptr_array_add(rec->vms, e);
        return e;
}

static void set_result(RecoveredVm *e, const char *action, const char *outcome, char *message)
{
        g_free(e->action);
        e->action = g_strdup(action);
        g_free(e->outcome);
        e->outcome = g_strdup(outcome);
        g_free(e->message);
        e->message = message ? message : g_strdup("");
}

void recovery_free(Recovery *rec)
{
        if (!rec)
                return;
        sd_event_source_disable_unref(rec->flush_source);
        sd_event_source_disable_unref(rec->retry_source);
        if (rec->journal && journal_flush(rec->journal, NULL) < 0)
                log_error("Journal %s: the last changes could not be written at exit; the next "
                          "start reads the journal as it was.",
                          journal_path(rec->journal));
        journal_free(rec->journal);
        g_ptr_array_unref(rec->vms);
        g_free(rec->message);
        g_free(rec->moved_to);
        g_free(rec);
}

/* ---- while running: the journal follows registrations and sequences ---- */

#define RETRY_FIRST_US (1000 * 1000)
#define RETRY_MAX_US   (30 * 1000 * 1000)

static void schedule_retry(Daemon *d);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        Daemon *d = userdata;
        Recovery *rec = d->recovery;
        g_autoptr(GError) e = NULL;

        if (journal_flush(rec->journal, &e) < 0) {
                rec->retry_us = MIN(rec->retry_us * 2, (uint64_t)RETRY_MAX_US);
                log_warning("%s Trying again in %" PRIu64 " s.", e->message,
                            rec->retry_us / 1000000);
                schedule_retry(d);
                return 0;
        }
        log_notice("Journal %s: written again after a failed write; nothing was lost.",
                   journal_path(rec->journal));
        rec->retry_us = 0;
        return 0;
}

/* A write failed: the records stay dirty in memory (journal.h) until one succeeds. */
static void schedule_retry(Daemon *d)
{
        Recovery *rec = d->recovery;
        uint64_t now;
        int r;

        if (!journal_dirty(rec->journal))
                return;
        if (rec->retry_us == 0)
                rec->retry_us = RETRY_FIRST_US;
        if (rec->retry_source && sd_event_source_get_enabled(rec->retry_source, NULL) > 0)
                return;
        (void)sd_event_now(d->event, CLOCK_MONOTONIC, &now);
        if (!rec->retry_source) {
                r = sd_event_add_time(d->event, &rec->retry_source, CLOCK_MONOTONIC,
                                      now + rec->retry_us, 0, on_retry, d);
                if (r >= 0)
                        (void)sd_event_source_set_description(rec->retry_source, "journal-retry");
        } else {
                r = sd_event_source_set_time(rec->retry_source, now + rec->retry_us);
                if (r >= 0)
                        r = sd_event_source_set_enabled(rec->retry_source, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error("Journal %s: cannot schedule another write: %s",
                          journal_path(rec->journal), strerror(-r));
}

static int on_flush(sd_event_source *s, void *userdata)
{
        Daemon *d = userdata;
        g_autoptr(GError) e = NULL;

        crash_point("journal-flush");
        if (journal_flush(d->recovery->journal, &e) < 0) {
                log_warning("%s", e->message);
                schedule_retry(d);
        }
        return 0;
}

/* Phases that follow each other quickly (or the end) share one write. */
static void schedule_flush(Daemon *d)
{
        Recovery *rec = d->recovery;
        int r = 0;

        if (!rec->flush_source) {
                r = sd_event_add_defer(d->event, &rec->flush_source, on_flush, d);
                if (r >= 0)
                        (void)sd_event_source_set_description(rec->flush_source, "journal-flush");
        }
        if (r >= 0)
                r = sd_event_source_set_enabled(rec->flush_source, SD_EVENT_ONESHOT);
        if (r < 0)
                (void)on_flush(NULL, d);
}

static int on_vm_journal(Vm *vm, VmJournalPoint point, const VmJournalInfo *info, void *userdata,
                         GError **error)
{
        Daemon *d = userdata;
        Journal *j = d->recovery->journal;
        g_autoptr(GError) e = NULL;
        const JournalVm *old;
        JournalHandoff handoff;
        int r = 0;

        if (point == VM_JOURNAL_COMMIT) {
                r = journal_commit(j, vm_name(vm), &e);
                if (r < 0) {
                        schedule_retry(d);
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                                    "VM %s: the Save's commit could not be recorded in the crash "
                                    "journal, so its stream was not completed: %s",
                                    vm_name(vm), e->message);
                }
                return r;
        }
        if (point == VM_JOURNAL_BEGIN) {
                g_autoptr(GPtrArray) phases = g_ptr_array_new();
                JournalSequence seq = {
                    .op = info->op,
                    .begin_states = (enum mig_state *)info->states,
                    .phase_index = -1,
                    .started_us = (uint64_t)g_get_real_time(),
                };

                for (size_t i = 0; i < info->plan->n_phases; i++)
                        g_ptr_array_add(phases, info->plan->phases[i].name);
                g_ptr_array_add(phases, NULL);
                seq.phases = (char **)phases->pdata;
                /* Start on a handed-off VM is the caller's decision, recorded with the begin:
                 * from here a crash finishes or rolls back an ordinary Start. */
                old = journal_get_vm(j, vm_name(vm));
                handoff = old ? old->handoff : JOURNAL_HANDOFF_NONE;
                if (info->op == PLAN_OP_START)
                        (void)journal_set_handoff(j, vm_name(vm), JOURNAL_HANDOFF_NONE, NULL);
                r = journal_begin(j, vm_name(vm), &seq, &e);
                if (r < 0 && old)
                        (void)journal_set_handoff(j, vm_name(vm), handoff, NULL);
                if (r < 0) {
                        schedule_retry(d);
                        log_error("VM %s: %s refused before any device moved: %s", vm_name(vm),
                                  plan_op_to_string(info->op), e->message);
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EIO),
                                    "VM %s cannot %s: the sequence could not be recorded in the "
                                    "crash journal first, and no device moved. %s",
                                    vm_name(vm), plan_op_to_string(info->op), e->message);
                        return -EIO;
                }
                return 0;
        }
        if (point == VM_JOURNAL_PHASE) {
                r = journal_phase(j, vm_name(vm), info->ev->phase, (int64_t)info->ev->phase_index,
                                  info->ev->kind == SEQ_EVENT_ROLLBACK_START, &e);
                if (r >= 0 && journal_dirty(j))
                        schedule_flush(d);
        } else {
                /* A Save whose trailer failed after its commit did not hand off. */
                if (info->handed_off)
                        (void)journal_set_handoff(j, vm_name(vm), JOURNAL_HANDOFF_HANDED_OFF, NULL);
                else if (info->op == PLAN_OP_SAVE)
                        (void)journal_set_handoff(j, vm_name(vm), JOURNAL_HANDOFF_NONE, NULL);
                crash_point("journal-end");
                r = journal_end(j, vm_name(vm), &e);
                if (r >= 0 && journal_dirty(j))
                        r = journal_flush(j, &e);
        }
        if (r < 0) {
                log_warning("VM %s: %s The record stays in memory and is written again.",
                            vm_name(vm), e->message);
                schedule_retry(d);
        }
        return 0;
}

void recovery_track_vm(Daemon *d, Vm *vm)
{
        g_autofree const char **names = g_new0(const char *, vm_n_devices(vm) + 1);
        g_autoptr(GError) e = NULL;
        const JournalVm *old;
        const char *origin = vm_origin(vm);
        Journal *j;

        if (!d->recovery || !d->recovery->journal)
                return;
        j = d->recovery->journal;
        /* A VM restored from the journal keeps the origin it was first registered with. */
        old = journal_get_vm(j, vm_name(vm));
        if (old && g_strcmp0(origin, "journal") == 0)
                origin = old->origin;
        for (size_t i = 0; i < vm_n_devices(vm); i++)
                names[i] = vm_device(vm, i)->info.name;
        /* Registered again after a hand-off (a restart, libvirt): it stays handed off. */
        if (old && old->handoff != JOURNAL_HANDOFF_NONE)
                vm_set_handed_off(vm, true);
        crash_point("journal-register");
        if (journal_put_vm(j, vm_name(vm), origin, names, vm_n_devices(vm), vm_options(vm), &e) <
            0) {
                log_warning("VM %s: %s The registration is written again later.", vm_name(vm),
                            e->message);
                schedule_retry(d);
        }
        vm_set_journal_func(vm, on_vm_journal, d);
}

static RecoveredVm *find_entry(Recovery *rec, const char *name)
{
        for (guint i = 0; i < rec->vms->len; i++)
                if (strcmp(((RecoveredVm *)rec->vms->pdata[i])->vm, name) == 0)
                        return rec->vms->pdata[i];
        return NULL;
}

bool recovery_has_unrestored(const Daemon *d, const char *name)
{
        RecoveredVm *e;

        if (!d->recovery || !d->recovery->journal || !journal_get_vm(d->recovery->journal, name))
                return false;
        e = find_entry(d->recovery, name);
        return e && e->retry;
}

int recovery_untrack_vm(Daemon *d, const char *name, GError **error)
{
        g_autoptr(GError) e = NULL;
        RecoveredVm *entry;
        int r;

        if (!d->recovery || !d->recovery->journal)
                return 0;
        crash_point("journal-unregister");
        r = journal_remove_vm(d->recovery->journal, name, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                schedule_retry(d);
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EIO),
                            "VM %s is not unregistered: its removal could not be written to the "
                            "crash journal, so it would come back after a restart. %s Free space "
                            "in the state directory and unregister it again.",
                            name, e->message);
                return -EIO;
        }
        entry = find_entry(d->recovery, name);
        if (entry)
                entry->retry = false;
        return 0;
}

/* ---- the decision ---- */

bool recovery_choose(enum policy_after_crash policy, const JournalSequence *seq,
                     const enum mig_state *states, size_t n, enum plan_op *ret_op,
                     const char **ret_action, char **ret_reason)
{
        const RecoveryInterrupted interrupted = {
            .op = seq->op,
            .phases = seq->phases,
            .phase_index = seq->phase_index,
            .rollback = seq->rollback,
        };

        return recovery_decide(policy, &interrupted, states, n, ret_op, ret_action, ret_reason);
}

/* ---- on start, before the name: the journal read, the VMs registered again ---- */

static void restore_vm(Daemon *d, Recovery *rec, const JournalVm *v)
{
        RecoveredVm *e = recovered_vm_new(rec, v);
        g_autoptr(GError) err = NULL;
        VmOptions options = *registry_defaults(d->registry);
        Vm *vm;
        int r;

        vm_options_overlay(&options, &v->options);
        /* The registrant's origin, so the libvirt tracker keeps managing the VMs it made. */
        r = manager_register_vm(&d->manager, v->name, (const char *const *)v->devices, v->n_devices,
                                &options, v->origin ? v->origin : "journal", &vm, &err);
        if (r < 0) {
                log_error("Journal %s: VM %s (registered by %s%s%s) is not restored: %s",
                          journal_path(rec->journal), v->name, v->origin,
                          v->seq ? ", interrupted during " : "",
                          v->seq ? plan_op_to_string(v->seq->op) : "", err->message);
                set_result(e, "not-restored", r == -ENODEV ? "device-missing" : "failed",
                           g_strdup_printf("%s It stays in the journal and is tried again on "
                                           "Rescan, when a device is hotplugged and at the next "
                                           "start; UnregisterVM forgets it.",
                                           err->message));
                e->signal = true;
                /* Never forgotten: its devices may be stopped, and only the record says so. */
                e->retry = true;
                return;
        }
        log_info("VM %s restored from the journal (registered by %s).", v->name, v->origin);
        set_result(e, "restored", "ok", NULL);
}

int recovery_restore(Daemon *d, const char *state_dir, GError **error)
{
        g_autoptr(GPtrArray) vms = NULL;
        g_autoptr(GError) err = NULL;
        Recovery *rec = g_new0(Recovery, 1);
        int r;

        rec->vms = g_ptr_array_new_with_free_func((GDestroyNotify)recovered_vm_free);
        rec->when_us = (uint64_t)g_get_real_time();
        rec->status = "none";
        rec->message = g_strdup("");
        rec->moved_to = g_strdup("");
        d->recovery = rec;
        r = journal_open(state_dir ? state_dir : RECOVERY_STATE_DIR_DEFAULT, &rec->journal, error);
        if (r < 0)
                return r;

        r = journal_load(rec->journal, &vms, &err);
        if (r == -ENOENT) {
                log_info("Journal %s: none yet; nothing to recover.", journal_path(rec->journal));
                return 0;
        }
        if (r < 0) {
                g_autofree char *moved = NULL;
                g_autoptr(GError) move_err = NULL;

                rec->status = "journal-corrupt";
                g_free(rec->message);
                rec->message = g_strdup(err->message);
                if (journal_quarantine(rec->journal, &moved, &move_err) >= 0) {
                        log_error("%s It was moved aside to %s and not acted on: no VM was "
                                  "restored and no device touched; check the VMs' devices "
                                  "(vfio-migctl list-devices) and register the VMs again.",
                                  err->message, moved);
                        g_free(rec->moved_to);
                        rec->moved_to = g_steal_pointer(&moved);
                } else {
                        log_error("%s It is not acted on, and could not be moved aside: %s",
                                  err->message, move_err->message);
                }
                return 0;
        }

        rec->status = "clean";
        for (guint i = 0; i < vms->len; i++)
                restore_vm(d, rec, vms->pdata[i]);
        log_info("Journal %s: %u VM(s) recorded.", journal_path(rec->journal), vms->len);
        return 0;
}

/* ---- on start, once the name is owned: the interrupted sequences dealt with ---- */

static void emit_recovered(Daemon *d, const RecoveredVm *e)
{
        int r = sd_bus_emit_signal(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER, "Recovered", "sss",
                                   e->vm, e->action, e->outcome);
        if (r < 0)
                log_debug("Cannot emit Recovered: %s", strerror(-r));
}

static void emit_vm_changed(Daemon *d, const char *vm, bool last_sequence)
{
        g_autofree char *path = bus_vm_path(vm);

        if (path)
                (void)sd_bus_emit_properties_changed(d->bus, path, BUS_IFACE_VM, "State",
                                                     last_sequence ? "LastSequence" : NULL, NULL);
}

static void recovery_settle(Daemon *d)
{
        Recovery *rec = d->recovery;

        if (rec->pending > 0)
                return;
        if (g_strcmp0(rec->status, "recovering") == 0 || g_strcmp0(rec->status, "clean") == 0) {
                rec->status = "clean";
                for (guint i = 0; i < rec->vms->len; i++)
                        if (((RecoveredVm *)rec->vms->pdata[i])->signal)
                                rec->status = "recovered";
        }
        (void)sd_bus_emit_properties_changed(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER,
                                             "LastRecovery", NULL);
}

static void on_recovery_event(Vm *vm, const SeqEvent *ev, void *userdata)
{
        RecoveryRun *run = userdata;

        manager_sequence_event(&run->daemon->manager, vm, run->entry->run_op, ev);
}

static void on_recovery_done(Vm *vm, int error, const SeqReport *rep, void *userdata)
{
        RecoveryRun *run = userdata;
        RecoveredVm *e = run->entry;
        Daemon *d = run->daemon;
        Device *dev;

        if (e->run_op == PLAN_OP_RESET && error == 0)
                VM_FOREACH_DEVICE (vm, i, dev)
                        g_ptr_array_add(e->lost, g_strdup(dev->info.name));
        for (guint i = 0; rep && rep->lost_state && i < rep->lost_state->len; i++)
                g_ptr_array_add(e->lost, g_strdup(rep->lost_state->pdata[i]));
        g_free(e->outcome);
        e->outcome = g_strdup(error < 0 ? "failed" : e->lost->len > 0 ? "state-lost" : "ok");
        if (error < 0) {
                g_autofree char *before = g_steal_pointer(&e->message);
                e->message = g_strdup_printf(
                    "%s The recovery's %s failed: %s", before, plan_op_to_string(e->run_op),
                    rep && rep->message ? rep->message : g_strerror(-error));
        }
        if (e->lost->len > 0) {
                g_ptr_array_add(e->lost, NULL);
                g_autofree char *names = g_strjoinv(", ", (char **)e->lost->pdata);
                g_ptr_array_remove_index(e->lost, e->lost->len - 1);
                log_notice("VM %s: recovery %s (%s): %s; the state of %s is lost.", e->vm,
                           e->action, plan_op_to_string(e->run_op), e->outcome, names);
        } else {
                log_notice("VM %s: recovery %s (%s): %s.", e->vm, e->action,
                           plan_op_to_string(e->run_op), e->outcome);
        }
        e->pending = false;
        d->recovery->pending--;
        emit_vm_changed(d, e->vm, true);
        emit_recovered(d, e);
        recovery_settle(d);
        g_free(run);
        daemon_sequence_finished(d);
}

static char *describe_states(const RecoveredVm *e)
{
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < e->devices->len; i++)
                g_string_append_printf(s, "%s%s %s", i ? ", " : "",
                                       (const char *)e->devices->pdata[i],
                                       (const char *)e->states->pdata[i]);
        return g_string_free(s, false);
}

static int start_recovery_op(Daemon *d, Vm *vm, RecoveredVm *e, enum plan_op op, GError **error)
{
        RecoveryRun *run = g_new0(RecoveryRun, 1);
        int r;

        run->daemon = d;
        run->entry = e;
        e->run_op = op;
        r = vm_start_operation(vm, op, -1, on_recovery_event, on_recovery_done, run, error);
        if (r < 0) {
                g_free(run);
                return r;
        }
        e->pending = true;
        d->recovery->pending++;
        emit_vm_changed(d, e->vm, false);
        return 0;
}

/*
 * A Save that recorded its commit may have completed its stream, and a destination may run
 * the VM: after-crash does not apply, and nothing returns this source to RUNNING.
 */
static void recover_handed_off(Daemon *d, RecoveredVm *e, Vm *vm)
{
        g_autofree char *found = describe_states(e);

        vm_set_handed_off(vm, true);
        (void)journal_set_handoff(d->recovery->journal, e->vm, JOURNAL_HANDOFF_HANDED_OFF, NULL);
        if (journal_end(d->recovery->journal, e->vm, NULL) < 0 ||
            journal_flush(d->recovery->journal, NULL) < 0)
                schedule_retry(d);
        g_free(e->after_crash);
        e->after_crash = g_strdup("");
        log_notice("VM %s: vfio-migd stopped during %s after the Save's commit (journal: %s); "
                   "devices found: %s; the stream may have reached a destination, so the VM "
                   "stays stopped, handed off, until Start or UnregisterVM.",
                   e->vm, e->operation, journal_handoff_to_string(e->handoff), found);
        set_result(e, "none", "handed-off",
                   g_strdup_printf("The Save had recorded its commit (%s): its stream may have "
                                   "reached a destination, so after-crash does not apply and "
                                   "no device was moved. The VM stays stopped in state "
                                   "handed-off: call Start if the destination failed, or "
                                   "UnregisterVM if it runs the VM.",
                                   journal_handoff_to_string(e->handoff)));
        e->signal = true;
        emit_vm_changed(d, e->vm, false);
        emit_recovered(d, e);
}

static void recover_vm(Daemon *d, RecoveredVm *e)
{
        g_autofree enum mig_state *states = g_new0(enum mig_state, e->n_devices + 1);
        g_autoptr(PolicyDecision) dec = NULL;
        g_autoptr(GError) err = NULL;
        g_autofree char *reason = NULL, *found = NULL;
        Vm *vm = registry_get_vm(d->registry, e->vm);
        enum plan_op op = PLAN_OP_ABORT;
        const char *action;
        bool act;

        g_ptr_array_set_size(e->devices, 0);
        g_ptr_array_set_size(e->states, 0);
        for (size_t i = 0; i < vm_n_devices(vm); i++) {
                if (vm_device_state(vm, i, &states[i]) < 0)
                        states[i] = MIG_STATE_ERROR;
                g_ptr_array_add(e->devices, g_strdup(vm_device(vm, i)->info.name));
                g_ptr_array_add(e->states, g_strdup(mig_state_to_string(states[i])));
        }
        if (e->handoff != JOURNAL_HANDOFF_NONE) {
                recover_handed_off(d, e, vm);
                return;
        }
        dec = registry_decide(d->registry, vm, false);
        g_free(e->after_crash);
        e->after_crash = g_strdup(policy_after_crash_to_string(dec->settings.after_crash));
        act = recovery_choose(dec->settings.after_crash, e->seq, states, vm_n_devices(vm), &op,
                              &action, &reason);
        found = describe_states(e);
        log_notice("VM %s: vfio-migd stopped during %s (last phase begun: %s%s); devices found: "
                   "%s; after-crash %s: %s",
                   e->vm, e->operation, e->phase[0] ? e->phase : "none",
                   e->seq->rollback ? ", rolling back" : "", found, e->after_crash, reason);
        e->signal = true;
        if (!act) {
                set_result(e, action, "consistent", g_steal_pointer(&reason));
                (void)journal_end(d->recovery->journal, e->vm, NULL);
                emit_recovered(d, e);
                return;
        }
        set_result(e, action, "running", g_steal_pointer(&reason));
        if (start_recovery_op(d, vm, e, op, &err) >= 0)
                return;
        if (strcmp(action, "finish") == 0) {
                /* Finishing was refused (blockers, states): the policy's fallback is rollback. */
                g_autofree char *before = g_steal_pointer(&e->message);
                log_notice("VM %s: finishing with %s is refused (%s); rolling back instead.", e->vm,
                           plan_op_to_string(op), err->message);
                set_result(e, "rollback", "running",
                           g_strdup_printf("%s Finishing was refused: %s Rolled back instead.",
                                           before, err->message));
                g_clear_error(&err);
                if (start_recovery_op(d, vm, e, plan_op_rollback(e->seq->op), &err) >= 0)
                        return;
        }
        log_error("VM %s: the recovery cannot start: %s", e->vm, err->message);
        {
                g_autofree char *before = g_steal_pointer(&e->message);
                set_result(e, e->action, "failed",
                           g_strdup_printf("%s It could not start: %s", before, err->message));
        }
        emit_recovered(d, e);
}

void recovery_start(Daemon *d)
{
        Recovery *rec = d->recovery;

        if (!rec)
                return;
        rec->started = true;
        if (g_strcmp0(rec->status, "clean") == 0)
                rec->status = "recovering";
        for (guint i = 0; i < rec->vms->len; i++) {
                RecoveredVm *e = rec->vms->pdata[i];

                if (strcmp(e->action, "not-restored") == 0)
                        emit_recovered(d, e);
                else if (e->seq)
                        recover_vm(d, e);
        }
        recovery_settle(d);
}

/* ---- LastRecovery ---- */

static int append_entry(sd_bus_message *m, const RecoveredVm *e)
{
        int r = sd_bus_message_open_container(m, 'a', "{sv}");

        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}", "vm", "s", e->vm,
                                          "origin", "s", e->origin, "operation", "s", e->operation,
                                          "phase", "s", e->phase, "after-crash", "s",
                                          e->after_crash, "action", "s", e->action, "outcome", "s",
                                          e->outcome, "message", "s", e->message);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "states");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a{ss}");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{ss}");
        for (guint i = 0; r >= 0 && i < e->devices->len; i++)
                r = sd_bus_message_append(m, "{ss}", e->devices->pdata[i], e->states->pdata[i]);
        for (int i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "lost-state");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "s");
        for (guint i = 0; r >= 0 && i < e->lost->len; i++)
                r = sd_bus_message_append(m, "s", e->lost->pdata[i]);
        for (int i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(m);
        return r < 0 ? r : sd_bus_message_close_container(m);
}

int recovery_append_last(sd_bus_message *m, const Daemon *d)
{
        const Recovery *rec = d->recovery;
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(
                    m, "{sv}{sv}{sv}{sv}{sv}", "status", "s", rec ? rec->status : "none", "time-us",
                    "t", rec ? rec->when_us : 0, "journal", "s",
                    rec && rec->journal ? journal_path(rec->journal) : "", "message", "s",
                    rec ? rec->message : "", "moved-to", "s", rec ? rec->moved_to : "");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "vms");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "aa{sv}");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "a{sv}");
        for (guint i = 0; r >= 0 && rec && i < rec->vms->len; i++)
                r = append_entry(m, rec->vms->pdata[i]);
        for (int i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(m);
        return r < 0 ? r : sd_bus_message_close_container(m);
}

/* ---- not restored: tried again ---- */

void recovery_retry(Daemon *d, const char *why)
{
        Recovery *rec = d->recovery;
        bool changed = false;

        if (!rec || !rec->journal)
                return;
        for (guint i = 0; i < rec->vms->len; i++) {
                RecoveredVm *e = rec->vms->pdata[i];
                g_autoptr(GError) err = NULL;
                VmOptions options = *registry_defaults(d->registry);
                const JournalVm *rv;
                Vm *vm;
                int r;

                if (!e->retry)
                        continue;
                rv = journal_get_vm(rec->journal, e->vm);
                /* Unregistered meanwhile, or registered afresh by a caller: not ours now. */
                if (!rv || registry_get_vm(d->registry, e->vm)) {
                        e->retry = false;
                        continue;
                }
                vm_options_overlay(&options, &rv->options);
                r = manager_register_vm(&d->manager, rv->name, (const char *const *)rv->devices,
                                        rv->n_devices, &options,
                                        rv->origin ? rv->origin : "journal", &vm, &err);
                if (r < 0) {
                        log_info("VM %s: still not restored (%s): %s", e->vm, why, err->message);
                        continue;
                }
                e->retry = false;
                changed = true;
                log_notice("VM %s restored from the journal on a second try (%s).", e->vm, why);
                set_result(e, "restored", "ok",
                           g_strdup_printf("Restored from the journal on a later try (%s).", why));
                e->signal = true;
                if (rec->started && e->seq) {
                        if (g_strcmp0(rec->status, "recovered") == 0 ||
                            g_strcmp0(rec->status, "clean") == 0)
                                rec->status = "recovering";
                        recover_vm(d, e);
                } else {
                        emit_recovered(d, e);
                }
        }
        if (changed)
                recovery_settle(d);
}
