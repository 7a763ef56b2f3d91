/* sequencer: runs a plan over a VM's devices, in parallel within phases, with rollback */
#pragma once

/*
 * sequencer_run() blocks the calling thread (the daemon calls it from a worker thread, never
 * from the event loop). Each transition phase hands its steps to a worker pool of
 * 'parallelism' threads and waits at a barrier; a phase that does not finish within
 * 'phase_deadline_us' cancels its devices (device_cancel) and fails. When any step fails,
 * the sequencer reads every device's real state (device_get_state) and runs the rollback
 * plan (plan_op_rollback(op)); devices found in ERROR are reset and reported as having lost
 * their state. A device whose step never returns even after cancel is reported "hung" and
 * left alone (its worker keeps a reference); it counts as being anywhere on its step's walk,
 * so the rollback holds its peers at RUNNING_P2P and stops there (rollback_deferred): the
 * caller finishes it once the step returns (on_late).
 *
 * Every transition and reset phase is checked against the P2P invariant (core/invariant.h)
 * before it is issued, with the states the devices were last seen in; a phase that could
 * break it is not issued (-EPROTO, a bug). The serial strategy breaks it on purpose and is
 * not checked.
 *
 * opts->abort preempts: the sequence starts no further phase, the running phase's barrier
 * wakes, its steps are cancelled (device_cancel; a step that does not return within the
 * grace is hung, as above) and the sequence rolls back (-ECANCELED, report->aborted). The
 * rollback itself is not preemptible: it is what an abort asks for.
 *
 * data_fds[i] is device i's open data session fd or -1; the sequencer updates it (new fds
 * from set_state, closes them when a session ends) so the caller can keep sessions across
 * calls (PreCopy, then Quiesce, then Save).
 *
 * Streams (SAVE and LOAD phases) are bounded by the phase deadline as a stall bound (no byte
 * moves for that long: -ETIMEDOUT) rather than as a total, and stop with -ECANCELED as soon
 * as opts->abort is signalled. A Save generates a random migration id and writes it with
 * vm_name into the header; a Resume refuses (-EBADMSG) a stream of another VM unless it was
 * saved under renamed_from. Both report the id (SeqReport.migration_id).
 *
 * Errors: 0 when the plan completed; -ETIMEDOUT, -ECANCELED (aborted, or a step was
 * cancelled), -EPROTO (a phase would have broken the invariant) or the failing step's errno
 * otherwise, with the report always filled in.
 */

#include <glib.h>
#include <stdint.h>

#include "core/plan.h"
#include "devices/device.h"
#include "seq-abort.h"

typedef enum SeqEventKind {
        SEQ_EVENT_PHASE_START,
        SEQ_EVENT_PHASE_DONE,
        SEQ_EVENT_PHASE_FAILED,
        SEQ_EVENT_DEVICE_STATE, /* a device reached a new state (after any step or rollback) */
        SEQ_EVENT_ROLLBACK_START,
        /* A step passed its deadline and ignored cancel (ev.device): it is outstanding, its
         * peers are held at RUNNING_P2P and the rollback waits for it (SeqLateFunc). Sent
         * before the step's late return can be. */
        SEQ_EVENT_DEVICE_HUNG,
} SeqEventKind;

typedef struct SeqEvent {
        SeqEventKind kind;
        const char *phase;      /* phase name */
        size_t phase_index, n_phases;
        size_t device;          /* SEQ_EVENT_DEVICE_STATE: index into devices */
        enum mig_state old_state, new_state;
        uint64_t elapsed_us;    /* since the sequence started */
} SeqEvent;

/* Called from worker threads and the sequencing thread: must be thread-safe and quick. */
typedef void (*SeqEventFunc)(const SeqEvent *ev, void *userdata);

/*
 * A hung step returned (device indexes the caller's devices; reached is where it left the
 * device, error its outcome), possibly long after sequencer_run() returned. Called from the
 * step's worker thread, once per SEQ_EVENT_DEVICE_HUNG, with a reference taken by
 * late_ref(late_userdata) when the step was declared hung and dropped by late_unref()
 * afterwards (also when it never returns before the process ends).
 */
typedef void (*SeqLateFunc)(size_t device, enum mig_state reached, int error, void *userdata);

typedef struct SeqOptions {
        unsigned parallelism;      /* worker threads; 0: one per device */
        uint64_t phase_deadline_us; /* 0: no deadline */
        uint64_t cancel_grace_us;  /* wait after cancel before declaring a device hung; 0: 1 s */
        enum plan_p2p_mode p2p_mode; /* for the rollback plan (always the parallel strategy) */
        bool rollback_reset;       /* policy on-failure "reset": roll back by resetting all */
        int save_fd;               /* PLAN_PHASE_SAVE writes the migstream here */
        int load_fd;               /* PLAN_PHASE_LOAD reads it from here */
        const char *vm_name;       /* SAVE: named in the stream's header (required);
                                    * LOAD: the stream must name it (NULL: not checked) */
        const char *renamed_from;  /* LOAD: also accept a stream saved by this VM name */
        uint64_t max_device_state_bytes; /* SAVE/LOAD: refuse a device with more; 0: none */
        SeqAbort *abort;           /* NULL, or signalled to preempt the sequence (Abort) */
        /*
         * Save: called on the sequencing thread once every device's data is in the stream,
         * before the trailer that completes it (after which a destination may resume it).
         * Negative errno: the trailer is not written and the Save fails (and rolls back: a
         * stream without its trailer is refused by every reader). NULL: none. Once the trailer
         * is out the report says handed_off, and no later failure rolls a device back.
         */
        int (*before_trailer)(void *userdata);
        SeqEventFunc on_event;
        void *userdata;
        SeqLateFunc on_late;       /* NULL: a late return is only logged */
        void *(*late_ref)(void *late_userdata);
        void (*late_unref)(void *late_userdata);
        void *late_userdata;
} SeqOptions;

typedef struct SeqStep {
        size_t device;
        char *phase;
        enum mig_state from, target, reached;
        char *path;                /* the kernel path, "RUNNING>RUNNING_P2P" */
        uint64_t start_us, duration_us; /* relative to the sequence start */
        int error;                 /* 0 or negative errno */
        char *message;             /* NULL or a sentence */
        uint64_t bytes;            /* SAVE/LOAD phases: bytes streamed for this device */
} SeqStep;

typedef struct SeqPhaseTiming {
        char *name;
        uint64_t start_us, duration_us;
        int error;
} SeqPhaseTiming;

typedef struct SeqReport {
        enum plan_op op;
        enum plan_strategy strategy;
        int error;                 /* 0 or negative errno */
        char *message;             /* NULL on success, else what failed, a sentence */
        uint64_t total_us;
        GArray *phases;            /* SeqPhaseTiming, including rollback phases ("rollback:p2p") */
        GArray *steps;             /* SeqStep, in completion order */
        bool rolled_back;
        bool aborted;              /* opts->abort preempted it (error -ECANCELED) */
        /* Devices hung: the others are held where the invariant lets them be (RUNNING_P2P)
         * and the rest of the rollback waits for the hung steps to return (SeqLateFunc). */
        bool rollback_deferred;
        bool handed_off;           /* Save: the trailer was written; devices left stopped */
        GPtrArray *lost_state;     /* char*: names of devices reset out of ERROR */
        GPtrArray *hung;           /* char*: names of devices whose step never returned */
        char *migration_id;        /* SAVE/RESUME: the stream's migration id in hex, or NULL */
        char *stream_vm;           /* RESUME: the VM that saved the stream, or NULL */
} SeqReport;

int sequencer_run(const Plan *plan, Device **devices, int *data_fds, size_t n,
                  const SeqOptions *opts, SeqReport **ret_report);
void seq_report_free(SeqReport *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SeqReport, seq_report_free)
