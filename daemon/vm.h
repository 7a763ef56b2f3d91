/* vm: one VM's devices, options and data sessions, and the sequences run on them */
#pragma once

/*
 * Model only: knows nothing of D-Bus. A Vm holds references to its devices (in registration
 * order) and their open data sessions, which live across operations (PreCopy, Quiesce, Save).
 *
 * vm_start_operation() reads the devices' states and builds the plan on the calling thread,
 * the event loop's, then runs the sequencer on a worker thread. The worker's progress events
 * and its outcome travel back through an eventfd watched by the sd-event loop, so every
 * callback runs on the loop thread and the loop never waits for a device.
 *
 * Errors: negative errno, with a GError whose message names the input and the fix:
 *   -EINVAL  bad arguments (VM name, options)
 *   -EAGAIN  a sequence is already running on this VM, or a step of an earlier one is
 *            outstanding (hung) and its deferred rollback has not run yet
 *   -EBADFD  the devices are not in a state the operation starts from, or the VM was
 *            handed off and the operation is not Start
 *   -EPERM   the VM has blockers (vm_compute_blockers())
 *   -ENODEV  a device of the VM was removed from the host (device_is_gone())
 *   -EIO     the journal hook could not record the sequence (nothing moved)
 * A sequence's outcome (VmDoneFunc) is 0, -ETIMEDOUT (a phase passed its deadline),
 * -EBADMSG (the resume stream was bad), -ECANCELED (Abort preempted it) or the failing
 * step's errno.
 *
 * A hung step (SeqReport.hung): the sequence ends with the device's peers held where the
 * invariant allows (RUNNING_P2P) and the device marked outstanding (the step-outstanding
 * blocker, vm_outstanding_devices()); every operation is refused until its worker returns.
 * Then the VM runs the rest of the rollback on its own (plan_op_rollback(op): the late
 * device back to RUNNING_P2P, then every device RUNNING) through the observer callbacks
 * (vm_set_observer()), and that report becomes vm_last_report(). The journal's record of
 * the hung sequence stays in flight until then.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "core/plan.h"
#include "devices/device.h"
#include "sequencer.h"

/* A VM's name is its libvirt domain's name, so it takes what libvirt takes: UTF-8 without
 * control characters or '/'. libvirt sets no length limit; ours is documented. */
#define VM_NAME_MAX           1024
#define VM_NAME_SHOWN         64 /* characters of a bad name an error message echoes */
#define VM_DEVICES_MAX        256
#define VM_PHASE_DEADLINE_MAX UINT32_C(3600000)
#define VM_PARALLELISM_MAX    UINT32_C(256)

/* Which options a caller gave explicitly (RegisterVM): those win over the policy's. */
enum {
        VM_OPT_STRATEGY = 1 << 0,
        VM_OPT_P2P_MODE = 1 << 1,
        VM_OPT_PHASE_DEADLINE = 1 << 2,
        VM_OPT_PARALLELISM = 1 << 3,
};

typedef struct VmOptions {
        enum plan_strategy strategy;
        enum plan_p2p_mode p2p_mode;
        uint32_t phase_deadline_ms; /* 1..VM_PHASE_DEADLINE_MAX */
        uint32_t parallelism;       /* worker threads per phase; 0: one per device */
        bool rollback_reset;        /* policy on-failure "reset" */
        uint64_t max_device_state_bytes; /* policy: a stream's device with more is refused */
        unsigned explicit_mask;     /* VM_OPT_* given by the caller */
} VmOptions;

/* base with every option explicit in over overlaid; the result keeps over's mask. */
void vm_options_overlay(VmOptions *base, const VmOptions *over);

/* parallel, require-p2p, 10000 ms, parallelism 0. */
void vm_options_init(VmOptions *o);
int vm_options_check(const VmOptions *o, GError **error);
/* 1..VM_NAME_MAX bytes of UTF-8 without control characters or '/' (libvirt refuses those in a
 * domain name too): NULL when name is valid, else why not, as a sentence fragment. */
const char *vm_name_problem(const char *name);
bool vm_name_is_valid(const char *name);
/* -EINVAL with "<what> '<name shown>' cannot be a VM name: <problem>; <fix>." when name is not
 * valid ("The VM name is empty; <fix>." for ""), else 0. */
int vm_name_check(const char *name, const char *what, const char *fix, GError **error);
/* name as a message echoes input: at most VM_NAME_SHOWN characters then an ellipsis, UTF-8 as
 * UTF-8, control characters and bytes that are not UTF-8 as \xNN. Never NULL. */
char *vm_name_shown(const char *name);
/* "No VM named '<name shown>' is registered; ListVMs shows the registered ones." (or that the
 * name is empty), for every NoSuchVM. */
char *vm_no_such_vm_message(const char *name);

typedef struct Vm Vm;

/* Loop thread. ev->device indexes vm_device(); the Vm's cached states are already updated. */
typedef void (*VmEventFunc)(Vm *vm, const SeqEvent *ev, void *userdata);
/* Loop thread, exactly once per started operation, after the Vm is no longer busy and
 * vm_last_report() is the report given here. */
typedef void (*VmDoneFunc)(Vm *vm, int error, const SeqReport *report, void *userdata);

/* Takes a reference on each device. */
int vm_new(sd_event *event, const char *name, Device *const *devices, size_t n,
           const VmOptions *options, Vm **ret);
/* Waits for a running sequence (and delivers its callbacks) first. */
void vm_free(Vm *vm);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Vm, vm_free)

const char *vm_name(const Vm *vm);
size_t vm_n_devices(const Vm *vm);
Device *vm_device(const Vm *vm, size_t i);
/* Index of the device of that name, or -1. */
ssize_t vm_device_index(const Vm *vm, const char *name);
const VmOptions *vm_options(const Vm *vm);

#define VM_FOREACH_DEVICE(vm, i, d)                                                                \
        for (size_t i = 0; i < vm_n_devices(vm) && ((d) = vm_device((vm), i), true); i++)

/* A sequence is running; *ret_op (optional) is its operation. */
bool vm_is_busy(const Vm *vm, enum plan_op *ret_op);

/*
 * The device states the loop serves are a cache, never a read on the loop (a kernel driver
 * holding its state lock would block MIG_DEVICE_STATE GET, and with it every caller): the
 * sequencer's reports while a sequence runs, the reads at registration, before a sequence
 * (vm_plan) and after it, and reads on a thread of their own that vm_device_state(),
 * vm_state() and vm_plan_cached() start when the cache is older than VM_STATES_FRESH_USEC
 * (one at a time; a device whose step hung is not asked). The answer is the cache as it is;
 * vm_states_age_usec() says how old its oldest entry is.
 */
#define VM_STATES_FRESH_USEC (UINT64_C(100) * 1000u)
int vm_device_state(Vm *vm, size_t i, enum mig_state *ret);
/* The last read of device i failed: its cached ERROR means "unknown", not the kernel's ERROR. */
bool vm_device_state_unread(const Vm *vm, size_t i);
/* Why that last read failed (a negative errno), or 0 when it succeeded. */
int vm_device_state_error(const Vm *vm, size_t i);
/* Device i changed under the cache (its fd was handed over): the next read refreshes it. */
void vm_device_state_forget(Vm *vm, size_t i);
/* Microseconds since the least recently learned device state; UINT64_MAX: never learned. */
uint64_t vm_states_age_usec(const Vm *vm);

/*
 * "running", "pre-copy", "p2p-quiesced", "stopped", "saving" (a save session is open on
 * some device, the others are stopped), "resuming", "error", "mixed", "handed-off" (below),
 * or "sequencing:<operation>" while a sequence runs. From the cached states (above). Valid
 * until the next call.
 */
const char *vm_state(Vm *vm);

/*
 * The Save hand-off, as QEMU leaves a migrated source in postmigrate: once a Save has
 * recorded its commit (VM_JOURNAL_COMMIT) and written its stream's trailer, a destination
 * may run the VM, so nothing returns this one to RUNNING but a caller's decision. A
 * handed-off VM refuses every operation but Start (-EBADFD, with a sentence); Start (the
 * destination failed: run here again) clears the hand-off as it begins; UnregisterVM (the
 * destination runs) forgets the VM. Recovery sets it on a VM its journal records so.
 */
bool vm_is_handed_off(const Vm *vm);
void vm_set_handed_off(Vm *vm, bool handed_off);

/* IOMMU groups of the devices, sorted, without duplicates (char*, owned by the array). */
GPtrArray *vm_groups(const Vm *vm);

/*
 * Why this VM cannot migrate, one sentence per rule broken, naming the device (char*, owned
 * by the array; empty when it can). Today the rules come from the devices' migration flags
 * and the VM's p2p mode; this is the one place a policy engine plugs in.
 */
GPtrArray *vm_compute_blockers(const Vm *vm);

/* Who decides the blockers instead of the flags alone (the registry's policy decision). */
typedef GPtrArray *(*VmBlockersFunc)(const Vm *vm, void *userdata);
void vm_set_blockers_func(Vm *vm, VmBlockersFunc func, void *userdata);
/*
 * The crash journal's hook (journal.h, recovery.h), loop thread. BEGIN: the plan is built,
 * states[] are the devices' states, no worker runs yet; an error refuses the operation
 * before any device moves. PHASE: ev is the SEQ_EVENT_PHASE_START or _ROLLBACK_START just
 * delivered. COMMIT: a Save's stream holds every device's data and its trailer waits for
 * this durable record; an error fails the Save without the trailer (the worker waits for
 * the answer, up to the phase deadline). END: the sequence is over, before on_done;
 * handed_off says the Save's trailer was written.
 */
typedef enum VmJournalPoint {
        VM_JOURNAL_BEGIN,
        VM_JOURNAL_PHASE,
        VM_JOURNAL_COMMIT,
        VM_JOURNAL_END,
} VmJournalPoint;
typedef struct VmJournalInfo {
        enum plan_op op;
        const Plan *plan;             /* BEGIN only */
        const enum mig_state *states; /* BEGIN only: one per device */
        const SeqEvent *ev;           /* PHASE only */
        bool handed_off;              /* END only */
} VmJournalInfo;
typedef int (*VmJournalFunc)(Vm *vm, VmJournalPoint point, const VmJournalInfo *info,
                             void *userdata, GError **error);
void vm_set_journal_func(Vm *vm, VmJournalFunc func, void *userdata);

/* New options (a policy reload); a running sequence keeps the ones it started with. */
void vm_set_options(Vm *vm, const VmOptions *options);

/*
 * Who registered the VM: "dbus" (RegisterVM), "libvirt" (the daemon's libvirt connection),
 * "libvirt-xml" (RegisterVMFromXML). A VM restored from the journal after a restart keeps its
 * registrant's origin ("journal" only when the journal had none). Default "dbus".
 * The string is copied.
 */
void vm_set_origin(Vm *vm, const char *origin);
const char *vm_origin(const Vm *vm);

/* The report of the last sequence, or NULL before the first. */
const SeqReport *vm_last_report(const Vm *vm);

/*
 * Starts op. fd is the Save destination or the Resume source and is taken over (closed when
 * the sequence ends or on error); -1 for the other operations. On 0 the Vm is busy and
 * on_done will be called; on error nothing was started and no callback is called.
 */
int vm_start_operation(Vm *vm, enum plan_op op, int fd, VmEventFunc on_event, VmDoneFunc on_done,
                       void *userdata, GError **error);
/* A Resume that also accepts a stream saved by VM renamed_from (the VM was renamed), not
 * only one saved under this VM's name; NULL is vm_start_operation(PLAN_OP_RESUME). */
int vm_start_resume(Vm *vm, int fd, const char *renamed_from, VmEventFunc on_event,
                    VmDoneFunc on_done, void *userdata, GError **error);

/* The plan op would run now, from the devices' current states (-EBADFD/-EPERM as above). */
int vm_plan(Vm *vm, enum plan_op op, Plan **ret, GError **error);
/* The same from the cached states, reading nothing on the loop (CheckMigration). */
int vm_plan_cached(Vm *vm, enum plan_op op, Plan **ret, GError **error);

/*
 * Abort on a VM that is sequencing: preempts the running sequence (its SeqAbort; an abort
 * or reset under way is just waited for) and calls on_done once it ends: with 0 and the
 * report when the VM was rolled back to RUNNING, else with the sequence's error (its
 * report names a device whose step is outstanding: the rollback waits for it). A sequence
 * that finished before the preemption took effect is followed by an Abort whose outcome
 * on_done gets. -ESRCH when no sequence runs (start PLAN_OP_ABORT instead).
 */
int vm_abort_running(Vm *vm, VmDoneFunc on_done, void *userdata);

/* Shutdown: preempt a running sequence and start no deferred rollback from now on. */
void vm_abort_for_shutdown(Vm *vm);

/* "gpu0, nic1": devices whose step is outstanding (hung); NULL when none. Caller frees. */
char *vm_outstanding_devices(const Vm *vm);

/*
 * Who hears of sequences the VM starts on its own (the deferred rollback) and of a hung
 * step's late return (a SEQ_EVENT_DEVICE_STATE of phase "late"): the bus layer's signals.
 */
void vm_set_observer(Vm *vm, VmEventFunc on_event, VmDoneFunc on_done, void *userdata);

/* Blocks until no sequence runs, delivering pending callbacks (shutdown only). */
void vm_wait_idle(Vm *vm);

/* Closes every open data session (UnregisterVM); refused with -EAGAIN while busy. */
int vm_close_sessions(Vm *vm);
