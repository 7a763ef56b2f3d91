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
 * left alone (its worker keeps a reference).
 *
 * data_fds[i] is device i's open data session fd or -1; the sequencer updates it (new fds
 * from set_state, closes them when a session ends) so the caller can keep sessions across
 * calls (PreCopy, then Quiesce, then Save).
 *
 * Errors: 0 when the plan completed; -ETIMEDOUT, -ECANCELED or the failing step's errno
 * otherwise, with the report always filled in.
 */

#include <glib.h>
#include <stdint.h>

#include "core/plan.h"
#include "devices/device.h"

typedef enum SeqEventKind {
        SEQ_EVENT_PHASE_START,
        SEQ_EVENT_PHASE_DONE,
        SEQ_EVENT_PHASE_FAILED,
        SEQ_EVENT_DEVICE_STATE, /* a device reached a new state (after any step or rollback) */
        SEQ_EVENT_ROLLBACK_START,
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

typedef struct SeqOptions {
        unsigned parallelism;      /* worker threads; 0: one per device */
        uint64_t phase_deadline_us; /* 0: no deadline */
        uint64_t cancel_grace_us;  /* wait after cancel before declaring a device hung; 0: 1 s */
        enum plan_p2p_mode p2p_mode; /* for the rollback plan (always the parallel strategy) */
        bool rollback_reset;       /* policy on-failure "reset": roll back by resetting all */
        int save_fd;               /* PLAN_PHASE_SAVE writes the migstream here */
        int load_fd;               /* PLAN_PHASE_LOAD reads it from here */
        SeqEventFunc on_event;
        void *userdata;
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
        GPtrArray *lost_state;     /* char*: names of devices reset out of ERROR */
        GPtrArray *hung;           /* char*: names of devices whose step never returned */
} SeqReport;

int sequencer_run(const Plan *plan, Device **devices, int *data_fds, size_t n,
                  const SeqOptions *opts, SeqReport **ret_report);
void seq_report_free(SeqReport *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SeqReport, seq_report_free)
