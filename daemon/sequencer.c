/* sequencer: runs a plan over a VM's devices, in parallel within phases, with rollback */
#include "sequencer.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "core/invariant.h"
#include "log.h"
#include "crash-point.h"
#include "migstream.h"
#include "util.h"

#define CANCEL_GRACE_DEFAULT_US 1000000u
/* How often a phase barrier looks at the abort request while it waits for its steps. */
#define ABORT_POLL_US 20000

/*
 * A step's worker may outlive the sequence: a device that ignores cancel keeps its worker
 * blocked in the backend. So everything a worker touches is reference counted (the job,
 * its phase's barrier, the device) and nothing of the caller's: results go into the job,
 * and the sequencing thread alone moves them into data_fds and the report.
 */
typedef enum JobStatus {
        JOB_QUEUED,
        JOB_RUNNING,
        JOB_DONE,
        JOB_SKIPPED, /* the deadline passed before a worker took it: never started */
        JOB_HUNG,    /* given up on; the worker cleans up after itself if it ever returns */
} JobStatus;

/* The barrier of one phase, shared with its workers. */
typedef struct PhaseSync {
        gint refcount;
        GMutex lock;
        GCond cond;
        size_t n_pending; /* jobs neither DONE, SKIPPED nor HUNG */
        size_t n_done;    /* completion order */
        /* For the workers' device-state events, sent only while their job counts. */
        char *phase;
        size_t phase_index, n_phases;
        uint64_t t0;
        SeqEventFunc on_event;
        void *userdata;
        /* For a hung step that returns late; the job holds its own late reference. */
        SeqLateFunc on_late;
        void (*late_unref)(void *late_userdata);
} PhaseSync;

typedef struct StepJob {
        gint refcount;
        PhaseSync *sync;
        Device *device;
        size_t index; /* into the caller's devices */
        enum plan_phase_kind kind;
        enum mig_state from, target; /* as planned */
        MigStreamWriter *writer;     /* SAVE: owned by the sequence, which waits for SAVE jobs */
        int data_fd;                 /* SAVE: borrowed, as above */
        /* Guarded by sync->lock. */
        JobStatus status;
        size_t order;
        /* Written by the worker before it reports DONE. */
        enum mig_state actual_from, reached;
        char path[128];
        char plan_path[128]; /* the planned walk, for a step that never reported back */
        enum mig_state walk[MIG_PATH_MAX]; /* the same as states, for the invariant */
        size_t walk_len;
        void *late; /* a late reference (SeqOptions.late_ref) once the job is HUNG */
        int error;
        char *message;
        int new_fd;
        bool state_lost; /* a RESET step took the device out of ERROR */
        uint64_t start_us, end_us, bytes;
} StepJob;

typedef struct SeqRun {
        Device **devices;
        int *data_fds;
        size_t n;
        const SeqOptions *opts;
        SeqReport *report;
        uint64_t t0;
        GThreadPool *pool;
        unsigned pool_size;
        unsigned n_hung;
        bool *hung; /* per device: its worker was abandoned */
        MigStreamWriter *writer;
        size_t last_save; /* index of the plan's last SAVE phase, or SIZE_MAX */
        enum mig_state *known;    /* per device: where it was last seen (the invariant) */
        InvariantSpan *hung_span; /* per hung device: anywhere on its step's walk */
        bool in_rollback;         /* an abort request no longer preempts */
} SeqRun;

/* How a phase's barrier wait ended. */
typedef enum PhaseWait {
        WAIT_ALL,      /* every step finished */
        WAIT_DEADLINE, /* the phase deadline passed */
        WAIT_ABORTED,  /* opts->abort was signalled */
} PhaseWait;

/* What one phase run came to. */
typedef struct PhaseOutcome {
        int error;
        char *message;
} PhaseOutcome;

static uint64_t elapsed(uint64_t t0)
{
        return now_usec() - t0;
}

static const char *device_name(const SeqRun *run, size_t i)
{
        return run->devices[i]->info.name;
}

static void emit(const SeqRun *run, SeqEventKind kind, const char *phase, size_t index,
                 size_t count)
{
        SeqEvent ev = {.kind = kind, .phase = phase, .phase_index = index, .n_phases = count};

        if (!run->opts->on_event)
                return;
        ev.elapsed_us = elapsed(run->t0);
        run->opts->on_event(&ev, run->opts->userdata);
}

static PhaseSync *phase_sync_new(const SeqRun *run, const char *phase, size_t index, size_t count)
{
        PhaseSync *s = g_new0(PhaseSync, 1);

        s->refcount = 1;
        g_mutex_init(&s->lock);
        g_cond_init(&s->cond);
        s->phase = g_strdup(phase);
        s->phase_index = index;
        s->n_phases = count;
        s->t0 = run->t0;
        s->on_event = run->opts->on_event;
        s->userdata = run->opts->userdata;
        s->on_late = run->opts->on_late;
        s->late_unref = run->opts->late_unref;
        return s;
}

static void phase_sync_unref(PhaseSync *s)
{
        if (!g_atomic_int_dec_and_test(&s->refcount))
                return;
        g_mutex_clear(&s->lock);
        g_cond_clear(&s->cond);
        g_free(s->phase);
        g_free(s);
}

static StepJob *job_ref(StepJob *job)
{
        g_atomic_int_inc(&job->refcount);
        return job;
}

static void job_unref(StepJob *job)
{
        if (!g_atomic_int_dec_and_test(&job->refcount))
                return;
        closep(&job->new_fd);
        if (job->late && job->sync->late_unref)
                job->sync->late_unref(job->late);
        phase_sync_unref(job->sync);
        device_unref(job->device);
        g_free(job->message);
        g_free(job);
}

static void G_GNUC_PRINTF(3, 4) job_fail(StepJob *job, int error, const char *fmt, ...)
{
        va_list ap;

        job->error = error;
        va_start(ap, fmt);
        job->message = g_strdup_vprintf(fmt, ap);
        va_end(ap);
}

static void job_format_path(StepJob *job, const enum mig_state *path, size_t len)
{
        mig_path_format(path, len, job->path, sizeof(job->path));
}

/* What the device really reports; a device that cannot say is treated as broken. */
static enum mig_state job_read_state(StepJob *job)
{
        enum mig_state s;

        if (device_get_state(job->device, &s) < 0)
                return MIG_STATE_ERROR;
        return s;
}

/*
 * The plan predicted the state the device starts from; when the device is elsewhere the
 * kernel's path from where it really is must still exist, or nothing is sent.
 */
static bool job_check_start(StepJob *job)
{
        enum mig_state path[MIG_PATH_MAX];
        size_t len;

        job->actual_from = job_read_state(job);
        job->reached = job->actual_from;
        if (mig_path(job->device->info.migration_flags, job->actual_from, job->target, path, &len) <
            0) {
                job_fail(job, -EBADFD,
                         "device %s is in %s, not %s as planned, and the kernel has no path "
                         "from there to %s; nothing was sent",
                         job->device->info.name, mig_state_to_string(job->actual_from),
                         mig_state_to_string(job->from), mig_state_to_string(job->target));
                return false;
        }
        job_format_path(job, path, len);
        return true;
}

static void job_transition(StepJob *job)
{
        int r;

        if (!job_check_start(job))
                return;
        r = device_set_state(job->device, job->target, &job->new_fd);
        /* The uAPI: a SET that succeeds leaves the device in the requested state; only a
         * failed one leaves it somewhere we must ask about. */
        job->reached = r >= 0 ? job->target : job_read_state(job);
        if (r < 0)
                job_fail(job, r, "%s failed: %s; the device is now in %s", job->path,
                         g_strerror(-r), mig_state_to_string(job->reached));
}

static void job_reset(StepJob *job)
{
        int r;

        job->actual_from = job_read_state(job);
        /* Not a walk: the path shows where VFIO_DEVICE_RESET lands, as the plan does. */
        if (job->actual_from == MIG_STATE_RUNNING)
                g_strlcpy(job->path, "RUNNING", sizeof(job->path));
        else
                g_snprintf(job->path, sizeof(job->path), "%s>RUNNING",
                           mig_state_to_string(job->actual_from));
        r = device_reset(job->device);
        job->reached = job_read_state(job);
        job->state_lost = r >= 0 && job->actual_from == MIG_STATE_ERROR;
        if (r < 0)
                job_fail(job, r, "reset failed: %s; the device is now in %s", g_strerror(-r),
                         mig_state_to_string(job->reached));
}

static void job_save(StepJob *job)
{
        g_autoptr(GError) error = NULL;
        int r;

        job->actual_from = job->reached = job->from;
        g_strlcpy(job->path, mig_state_to_string(job->from), sizeof(job->path));
        if (job->data_fd < 0) {
                job_fail(job, -EBADF, "device %s has no open save session (data fd)",
                         job->device->info.name);
                return;
        }
        r = migstream_writer_pump(job->writer, job->index, job->data_fd, &job->bytes, &error);
        if (r < 0)
                job_fail(job, r, "%s", error->message);
}

/* A worker takes a job unless the deadline already gave it up. */
static bool job_begin(StepJob *job)
{
        bool run;

        g_mutex_lock(&job->sync->lock);
        run = job->status == JOB_QUEUED;
        if (run)
                job->status = JOB_RUNNING;
        g_mutex_unlock(&job->sync->lock);
        return run;
}

static void job_emit_state(const StepJob *job)
{
        const PhaseSync *s = job->sync;
        SeqEvent ev = {
            .kind = SEQ_EVENT_DEVICE_STATE,
            .phase = s->phase,
            .phase_index = s->phase_index,
            .n_phases = s->n_phases,
            .device = job->index,
            .old_state = job->actual_from,
            .new_state = job->reached,
        };

        if (!s->on_event || job->actual_from == job->reached)
                return;
        ev.elapsed_us = elapsed(s->t0);
        s->on_event(&ev, s->userdata);
}

static void job_finish(StepJob *job)
{
        PhaseSync *s = job->sync;

        g_mutex_lock(&s->lock);
        if (job->status == JOB_HUNG) {
                /* The sequence gave up on this job: its result goes to whoever finishes the
                 * rollback it held back (on_late), under the lock, so after the HUNG event. */
                log_warning("device %s returned from its step after it was declared hung; it "
                            "is in %s",
                            job->device->info.name, mig_state_to_string(job->reached));
                if (job->late && s->on_late)
                        s->on_late(job->index, job->reached, job->error, job->late);
        } else {
                job->status = JOB_DONE;
                job->order = s->n_done++;
                job_emit_state(job);
                /* The barrier waits for the last one: waking it for each of 64 devices
                 * would cost a context switch per device on the critical path. */
                if (--s->n_pending == 0)
                        g_cond_broadcast(&s->cond);
        }
        g_mutex_unlock(&s->lock);
}

static void job_run(gpointer data, gpointer unused)
{
        StepJob *job = data;

        if (job_begin(job)) {
                job->start_us = elapsed(job->sync->t0);
                crash_point("step-begin");
                if (job->kind == PLAN_PHASE_RESET)
                        job_reset(job);
                else if (job->kind == PLAN_PHASE_SAVE)
                        job_save(job);
                else
                        job_transition(job);
                job->end_us = elapsed(job->sync->t0);
                crash_point("step-end");
                job_finish(job);
        }
        job_unref(job);
}

static StepJob *job_new(SeqRun *run, PhaseSync *sync, const PlanPhase *ph, const PlanStep *st,
                        size_t index)
{
        StepJob *job = g_new0(StepJob, 1);

        job->refcount = 1;
        job->sync = sync;
        g_atomic_int_inc(&sync->refcount);
        job->device = device_ref(run->devices[index]);
        job->index = index;
        job->kind = ph->kind;
        job->from = job->actual_from = job->reached = st->from;
        job->target = st->target;
        job->writer = run->writer;
        job->data_fd = run->data_fds[index];
        job->new_fd = -1;
        job->status = JOB_QUEUED;
        mig_path_format(st->path, st->path_len, job->path, sizeof(job->path));
        g_strlcpy(job->plan_path, job->path, sizeof(job->plan_path));
        memcpy(job->walk, st->path, sizeof(job->walk));
        job->walk_len = st->path_len;
        return job;
}

static int pool_ensure(SeqRun *run)
{
        g_autoptr(GError) error = NULL;

        if (run->pool)
                return 0;
        run->pool_size = run->opts->parallelism ? MIN(run->opts->parallelism, run->n) : run->n;
        run->pool_size = MAX(run->pool_size, 1u);
        /* Shared (non-exclusive) threads start on demand and are reused across phases. */
        run->pool = g_thread_pool_new(job_run, NULL, (gint)run->pool_size, FALSE, &error);
        if (!run->pool) {
                log_error("cannot create the sequencer's worker pool: %s", error->message);
                return -EAGAIN;
        }
        return 0;
}

/*
 * Waits for every job of the phase, until the deadline (0: none) or an abort request (NULL:
 * none). The workers wake the barrier only for the last job, so the abort request is looked
 * at every ABORT_POLL_US: an eventfd cannot wake a GCond.
 */
static PhaseWait phase_wait(PhaseSync *s, int64_t deadline, const SeqAbort *abort)
{
        PhaseWait w = WAIT_ALL;

        g_mutex_lock(&s->lock);
        while (s->n_pending > 0) {
                int64_t until = deadline;

                if (abort) {
                        int64_t slice = g_get_monotonic_time() + ABORT_POLL_US;

                        if (seq_abort_requested(abort)) {
                                w = WAIT_ABORTED;
                                break;
                        }
                        if (until == 0 || slice < until)
                                until = slice;
                }
                if (until == 0)
                        g_cond_wait(&s->cond, &s->lock);
                else if (!g_cond_wait_until(&s->cond, &s->lock, until) && until == deadline) {
                        w = WAIT_DEADLINE;
                        break;
                }
        }
        if (s->n_pending == 0)
                w = WAIT_ALL;
        g_mutex_unlock(&s->lock);
        return w;
}

/* Jobs no worker took yet are dropped; running ones are asked to stop (if cancel_running). */
static void phase_cancel(GPtrArray *jobs, PhaseSync *s, PhaseWait why, bool cancel_running)
{
        g_autoptr(GPtrArray) running = g_ptr_array_new();

        g_mutex_lock(&s->lock);
        for (guint i = 0; i < jobs->len; i++) {
                StepJob *job = jobs->pdata[i];

                if (job->status == JOB_QUEUED) {
                        job->status = JOB_SKIPPED;
                        if (why == WAIT_ABORTED)
                                job_fail(job, -ECANCELED, "not started: the sequence was aborted");
                        else
                                job_fail(job, -ETIMEDOUT, "not started before the phase deadline");
                        s->n_pending--;
                } else if (job->status == JOB_RUNNING && cancel_running)
                        g_ptr_array_add(running, job);
        }
        g_mutex_unlock(&s->lock);
        /* Outside the lock: a backend's cancel may wait for the step it interrupts. */
        for (guint i = 0; i < running->len; i++) {
                StepJob *job = running->pdata[i];
                log_warning("device %s %s; cancelling its step", job->device->info.name,
                            why == WAIT_ABORTED ? "is still in its step and the sequence was "
                                                  "aborted"
                                                : "passed the phase deadline");
                device_cancel(job->device);
        }
}

static void emit_device(const SeqRun *run, SeqEventKind kind, const char *phase, const StepJob *job)
{
        SeqEvent ev = {.kind = kind,
                       .phase = phase,
                       .device = job->index,
                       .old_state = job->from,
                       .new_state = job->target};

        if (!run->opts->on_event)
                return;
        ev.elapsed_us = elapsed(run->t0);
        run->opts->on_event(&ev, run->opts->userdata);
}

/* A hung device may be anywhere on its step's walk until it returns. */
static void hung_mark(SeqRun *run, const StepJob *job)
{
        InvariantSpan *span = &run->hung_span[job->index];

        run->hung[job->index] = true;
        run->n_hung++;
        g_ptr_array_add(run->report->hung, g_strdup(job->device->info.name));
        span->flags = job->device->info.migration_flags;
        span->discards = false;
        span->n_states = 0;
        span->states[span->n_states++] = run->known[job->index];
        for (size_t i = 0; i < job->walk_len; i++)
                if (job->walk[i] != run->known[job->index])
                        span->states[span->n_states++] = job->walk[i];
}

/* After the grace period, whatever still runs is hung: its worker is left to itself. */
static void phase_abandon(SeqRun *run, GPtrArray *jobs, PhaseSync *s)
{
        g_mutex_lock(&s->lock);
        for (guint i = 0; i < jobs->len; i++) {
                StepJob *job = jobs->pdata[i];

                if (job->status != JOB_RUNNING)
                        continue;
                job->status = JOB_HUNG;
                s->n_pending--;
                hung_mark(run, job);
                if (run->opts->on_late)
                        job->late = run->opts->late_ref
                                        ? run->opts->late_ref(run->opts->late_userdata)
                                        : run->opts->late_userdata;
                /* Under the lock: the HUNG event goes out before the late return can. */
                emit_device(run, SEQ_EVENT_DEVICE_HUNG, s->phase, job);
                log_error("device %s did not return from its step (%s) even after cancel; "
                          "it is left alone and its peers wait for it",
                          job->device->info.name, job->plan_path);
        }
        g_mutex_unlock(&s->lock);
        /* A hung worker holds a pool thread forever; later phases still get their share. */
        if (run->n_hung > 0)
                g_thread_pool_set_max_threads(run->pool, (gint)(run->pool_size + run->n_hung),
                                              NULL);
}

static bool in_session(enum mig_state s)
{
        return mig_state_is_saving(s) || s == MIG_STATE_RESUMING;
}

/* Sessions follow the device: a new fd replaces the old; leaving a session closes it. */
static void apply_data_fd(SeqRun *run, StepJob *job)
{
        int *slot = &run->data_fds[job->index];

        if (job->kind == PLAN_PHASE_SAVE)
                return;
        if (job->new_fd >= 0 && in_session(job->reached)) {
                closep(slot);
                *slot = steal_fd(&job->new_fd);
        } else if (!in_session(job->reached))
                closep(slot);
}

static void report_step(SeqRun *run, const char *phase, StepJob *job)
{
        SeqStep st = {
            .device = job->index,
            .phase = g_strdup(phase),
            .from = job->actual_from,
            .target = job->target,
            .reached = job->reached,
            .path = g_strdup(job->path),
            .start_us = job->start_us,
            .duration_us = job->end_us > job->start_us ? job->end_us - job->start_us : 0,
            .error = job->error,
            .message = g_strdup(job->message),
            .bytes = job->bytes,
        };

        g_array_append_val(run->report->steps, st);
}

static gint job_cmp_order(gconstpointer a, gconstpointer b)
{
        const StepJob *x = *(StepJob *const *)a, *y = *(StepJob *const *)b;
        int rx = x->status == JOB_DONE ? 0 : 1, ry = y->status == JOB_DONE ? 0 : 1;

        if (rx != ry)
                return rx - ry;
        return x->order < y->order ? -1 : x->order > y->order;
}

/* A device reset out of ERROR lost its state; say so once, whichever phase reset it. */
static void report_lost_state(SeqRun *run, size_t index)
{
        const char *name = device_name(run, index);

        for (guint i = 0; i < run->report->lost_state->len; i++)
                if (g_str_equal(g_ptr_array_index(run->report->lost_state, i), name))
                        return;
        g_ptr_array_add(run->report->lost_state, g_strdup(name));
}

static char *names_of(const SeqRun *run, GPtrArray *jobs, bool (*pick)(const StepJob *))
{
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < jobs->len; i++) {
                const StepJob *job = jobs->pdata[i];
                if (pick(job))
                        g_string_append_printf(s, "%s%s", s->len ? ", " : "",
                                               device_name(run, job->index));
        }
        return g_string_free(s, FALSE);
}

static bool job_late(const StepJob *job)
{
        return job->status != JOB_DONE || job->error == -ECANCELED;
}

/* Moves results into data_fds and the report, in completion order; returns the outcome. */
static PhaseOutcome phase_collect(SeqRun *run, const char *phase, GPtrArray *jobs,
                                  uint64_t phase_start, PhaseWait wait)
{
        PhaseOutcome out = {0};
        bool timed_out = wait != WAIT_ALL;

        g_ptr_array_sort(jobs, job_cmp_order);
        for (guint i = 0; i < jobs->len; i++) {
                StepJob *job = jobs->pdata[i];

                if (job->status == JOB_HUNG) {
                        /* Only what the worker cannot be writing right now. */
                        StepJob tmp = {.index = job->index,
                                       .actual_from = job->from,
                                       .target = job->target,
                                       .reached = job->from,
                                       .error = -ETIMEDOUT,
                                       .start_us = phase_start,
                                       .end_us = elapsed(run->t0)};
                        g_strlcpy(tmp.path, job->plan_path, sizeof(tmp.path));
                        tmp.message = (char *)"did not return, even after cancel";
                        report_step(run, phase, &tmp);
                        continue;
                }
                if (job->status == JOB_DONE) {
                        apply_data_fd(run, job);
                        run->known[job->index] = job->reached;
                }
                if (job->status == JOB_DONE && job->state_lost)
                        report_lost_state(run, job->index);
                report_step(run, phase, job);
                if (job->error < 0 && out.error == 0 && !timed_out) {
                        out.error = job->error;
                        out.message = g_strdup_printf("phase %s: device %s: %s", phase,
                                                      device_name(run, job->index), job->message);
                }
        }
        if (wait == WAIT_ABORTED) {
                g_autofree char *late = names_of(run, jobs, job_late);
                out.error = -ECANCELED;
                out.message = g_strdup_printf("phase %s was aborted (Abort)%s%s", phase,
                                              *late ? "; cancelled: " : "", late);
        } else if (timed_out) {
                g_autofree char *late = names_of(run, jobs, job_late);
                out.error = -ETIMEDOUT;
                /* Every step may have returned, just too late: the budget is still blown. */
                out.message = g_strdup_printf(
                    "phase %s passed its deadline of %" G_GUINT64_FORMAT " ms; %s%s", phase,
                    run->opts->phase_deadline_us / 1000,
                    *late ? "unfinished: " : "every device finished, but after the deadline",
                    late);
        }
        return out;
}

static bool phase_has_deadline(const SeqRun *run, const PlanPhase *ph)
{
        /* Streams are bounded by their stall timeout instead: a big device over a slow link
         * legitimately takes longer than any phase deadline. */
        return run->opts->phase_deadline_us > 0 &&
               (ph->kind == PLAN_PHASE_TRANSITION || ph->kind == PLAN_PHASE_RESET);
}

static PhaseOutcome run_jobs(SeqRun *run, const PlanPhase *ph, const char *name, size_t index,
                             size_t count, const size_t *map)
{
        g_autoptr(GPtrArray) jobs = g_ptr_array_new_with_free_func((GDestroyNotify)job_unref);
        PhaseSync *sync = phase_sync_new(run, name, index, count);
        uint64_t start = elapsed(run->t0);
        int64_t deadline = 0;
        PhaseOutcome out;
        PhaseWait wait;

        if (phase_has_deadline(run, ph))
                deadline = g_get_monotonic_time() + (int64_t)run->opts->phase_deadline_us;
        for (size_t i = 0; i < ph->n_steps; i++) {
                size_t dev = map ? map[ph->steps[i].device] : ph->steps[i].device;
                g_ptr_array_add(jobs, job_new(run, sync, ph, &ph->steps[i], dev));
        }
        sync->n_pending = jobs->len;
        for (guint i = 0; i < jobs->len; i++)
                if (!g_thread_pool_push(run->pool, job_ref(jobs->pdata[i]), NULL))
                        log_warning("phase %s: no new worker thread; the step waits for one", name);
        wait = phase_wait(sync, deadline, run->in_rollback ? NULL : run->opts->abort);
        if (wait != WAIT_ALL && ph->kind == PLAN_PHASE_SAVE) {
                /* The writer is the sequence's and its pumps end on the abort themselves
                 * (the stream I/O polls it): wait for them, never abandon one. */
                phase_cancel(jobs, sync, wait, false);
                (void)phase_wait(sync, 0, NULL);
        } else if (wait != WAIT_ALL) {
                uint64_t grace = run->opts->cancel_grace_us ? run->opts->cancel_grace_us
                                                            : CANCEL_GRACE_DEFAULT_US;
                phase_cancel(jobs, sync, wait, true);
                if (phase_wait(sync, g_get_monotonic_time() + (int64_t)grace, NULL) != WAIT_ALL)
                        phase_abandon(run, jobs, sync);
        }
        out = phase_collect(run, name, jobs, start, wait);
        phase_sync_unref(sync);
        return out;
}

static PhaseOutcome outcome(int error, char *message)
{
        return (PhaseOutcome){error, message};
}

/* Streams wait under the phase deadline, taken as a stall bound, and stop on an abort. */
static MigStreamIo stream_io(const SeqRun *run)
{
        return (MigStreamIo){
            .stall_us = run->opts->phase_deadline_us,
            .abort_fd = seq_abort_fd(run->opts->abort),
            .max_device_bytes = run->opts->max_device_state_bytes,
            .setting = "max-device-state-bytes",
            .vm_name = run->opts->vm_name,
        };
}

static PhaseOutcome writer_start(SeqRun *run)
{
        g_autofree MigStreamDevice *devs = g_new0(MigStreamDevice, run->n ? run->n : 1);
        g_autoptr(GError) error = NULL;
        uint8_t id[MIGSTREAM_ID_SIZE];
        MigStreamIo io;
        int r;

        for (size_t i = 0; i < run->n; i++) {
                const DeviceInfo *info = &run->devices[i]->info;
                devs[i] = (MigStreamDevice){info->name, info->migration_flags, info->vendor_id,
                                            info->device_id};
        }
        if (run->opts->save_fd < 0)
                return outcome(-EBADF, g_strdup("no stream to save into (save_fd is -1)"));
        migstream_id_generate(id);
        io = stream_io(run);
        r = migstream_writer_new(run->opts->save_fd, run->opts->vm_name, id, devs, run->n, &io,
                                 &run->writer, &error);
        if (r < 0)
                return outcome(r, g_strdup(error->message));
        run->report->migration_id = migstream_id_to_string(id);
        return outcome(0, NULL);
}

static PhaseOutcome run_save(SeqRun *run, const PlanPhase *ph, const char *name, size_t index,
                             size_t count, const size_t *map)
{
        g_autoptr(GError) error = NULL;
        PhaseOutcome out;
        int r;

        if (!run->writer) {
                out = writer_start(run);
                if (out.error < 0) {
                        g_autofree char *why = out.message;
                        return outcome(out.error, g_strdup_printf("phase %s: %s", name, why));
                }
        }
        out = run_jobs(run, ph, name, index, count, map);
        if (out.error < 0 || index != run->last_save)
                return out;
        /* The hand-off: after the trailer a destination may run the VM (journal.h). */
        crash_point("save-before-commit");
        r = run->opts->before_trailer ? run->opts->before_trailer(run->opts->userdata) : 0;
        if (r < 0)
                return outcome(r, g_strdup_printf("phase %s: the hand-off could not be recorded "
                                                  "(%s), so the stream's trailer was not written",
                                                  name, g_strerror(-r)));
        crash_point("save-before-trailer");
        r = migstream_writer_finish(run->writer, &error);
        if (r < 0)
                return outcome(r, g_strdup_printf("phase %s: %s", name, error->message));
        run->report->handed_off = true;
        crash_point("save-after-trailer");
        return out;
}

/* The stream must be for devices like these: same identity and migration flags, in order. */
static int load_check_devices(SeqRun *run, MigStreamReader *r, char **ret_message)
{
        if (migstream_reader_n_devices(r) != run->n) {
                *ret_message = g_strdup_printf("the stream carries %zu devices, the VM has %zu",
                                               migstream_reader_n_devices(r), run->n);
                return -EBADMSG;
        }
        for (size_t i = 0; i < run->n; i++) {
                const MigStreamDevice *s = migstream_reader_device(r, i);
                const DeviceInfo *d = &run->devices[i]->info;

                if (s->vendor_id == d->vendor_id && s->device_id == d->device_id &&
                    s->flags == d->migration_flags)
                        continue;
                *ret_message = g_strdup_printf(
                    "stream device %zu '%s' (%04x:%04x, %s) does not match device %s "
                    "(%04x:%04x, %s)",
                    i, s->name, s->vendor_id, s->device_id, mig_flags_to_string(s->flags), d->name,
                    d->vendor_id, d->device_id, mig_flags_to_string(d->migration_flags));
                return -EBADMSG;
        }
        return 0;
}

/* A stream belongs to the VM that saved it: resuming it elsewhere would run two copies of
 * one guest, or a guest with another's device state. */
static int load_check_vm(SeqRun *run, MigStreamReader *r, char **ret_message)
{
        const char *saved = migstream_reader_vm_name(r), *vm = run->opts->vm_name;
        const char *renamed = run->opts->renamed_from;

        if (!vm || g_str_equal(saved, vm) || (renamed && g_str_equal(saved, renamed)))
                return 0;
        if (renamed)
                *ret_message = g_strdup_printf(
                    "the stream was saved by VM '%s', neither VM '%s' nor '%s' (renamed-from); "
                    "resume it into the VM it was saved from",
                    saved, vm, renamed);
        else
                *ret_message = g_strdup_printf(
                    "the stream was saved by VM '%s', not VM '%s'; resume it into VM '%s', or, "
                    "if '%s' is '%s' renamed, pass the option renamed-from='%s'",
                    saved, vm, saved, vm, saved, saved);
        return -EBADMSG;
}

static int load_stream(SeqRun *run, uint64_t *bytes, char **ret_message)
{
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        MigStreamIo io;
        int k;

        if (run->opts->load_fd < 0) {
                *ret_message = g_strdup("no stream to load from (load_fd is -1)");
                return -EBADF;
        }
        io = stream_io(run);
        k = migstream_reader_new(run->opts->load_fd, &io, &r, &error);
        if (k == 0) {
                run->report->migration_id =
                    migstream_id_to_string(migstream_reader_migration_id(r));
                run->report->stream_vm = g_strdup(migstream_reader_vm_name(r));
                k = load_check_vm(run, r, ret_message);
                if (k < 0)
                        return k;
                k = load_check_devices(run, r, ret_message);
                if (k < 0)
                        return k;
                k = migstream_reader_pump(r, run->data_fds, run->n, bytes, &error);
        }
        if (k < 0)
                *ret_message = g_strdup(error->message);
        return k;
}

/* The stream is one sequential read, so the load runs here; every device's step shares it. */
static PhaseOutcome run_load(SeqRun *run, const PlanPhase *ph, const char *name, const size_t *map)
{
        g_autofree uint64_t *bytes = g_new0(uint64_t, run->n ? run->n : 1);
        uint64_t start = elapsed(run->t0);
        g_autofree char *message = NULL;
        int k = load_stream(run, bytes, &message);
        uint64_t end = elapsed(run->t0);

        for (size_t i = 0; i < ph->n_steps; i++) {
                size_t dev = map ? map[ph->steps[i].device] : ph->steps[i].device;
                StepJob tmp = {.index = dev,
                               .actual_from = ph->steps[i].from,
                               .target = ph->steps[i].target,
                               .reached = ph->steps[i].from,
                               .error = k,
                               .message = message,
                               .start_us = start,
                               .end_us = end,
                               .bytes = bytes[dev]};
                g_strlcpy(tmp.path, mig_state_to_string(tmp.actual_from), sizeof(tmp.path));
                report_step(run, name, &tmp);
                /* The load session ends with the stream; RESUMING->STOP needs no fd. */
                closep(&run->data_fds[dev]);
        }
        return outcome(k, k < 0 ? g_strdup_printf("phase %s: %s", name, message) : NULL);
}

static void report_phase(SeqRun *run, const char *name, uint64_t start, int error)
{
        SeqPhaseTiming t = {g_strdup(name), start, elapsed(run->t0) - start, error};

        g_array_append_val(run->report->phases, t);
}

static PhaseOutcome run_phase(SeqRun *run, const PlanPhase *ph, const char *name, size_t index,
                              size_t count, const size_t *map)
{
        uint64_t start = elapsed(run->t0);
        PhaseOutcome out;

        emit(run, SEQ_EVENT_PHASE_START, name, index, count);
        crash_point("phase-begin");
        log_info("phase %s (%zu/%zu) started: %zu steps", name, index + 1, count, ph->n_steps);
        if (ph->kind == PLAN_PHASE_LOAD)
                out = run_load(run, ph, name, map);
        else if (pool_ensure(run) < 0)
                out = outcome(-EAGAIN, g_strdup("no worker threads for the sequence"));
        else if (ph->kind == PLAN_PHASE_SAVE)
                out = run_save(run, ph, name, index, count, map);
        else
                out = run_jobs(run, ph, name, index, count, map);
        report_phase(run, name, start, out.error);
        if (out.error < 0) {
                log_error("%s", out.message);
                emit(run, SEQ_EVENT_PHASE_FAILED, name, index, count);
        } else {
                log_info("phase %s done in %.3f ms", name,
                         (double)(elapsed(run->t0) - start) / 1000.0);
                emit(run, SEQ_EVENT_PHASE_DONE, name, index, count);
        }
        crash_point("phase-end");
        return out;
}

/* A phase that would break the invariant is not issued: that is a bug, said as one. */
static PhaseOutcome phase_refused(SeqRun *run, const char *name, size_t index, size_t count,
                                  const char *breach)
{
        report_phase(run, name, elapsed(run->t0), -EPROTO);
        emit(run, SEQ_EVENT_PHASE_FAILED, name, index, count);
        log_error("%s; the phase was not issued: this is a bug in vfio-migd's plan", breach);
        return outcome(-EPROTO, g_strdup_printf("%s; the phase was not issued (a bug in "
                                                "vfio-migd, please report it)",
                                                breach));
}

static char *hung_names(const SeqRun *run)
{
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < run->report->hung->len; i++)
                g_string_append_printf(s, "%s%s", i ? ", " : "",
                                       (const char *)run->report->hung->pdata[i]);
        return g_string_free(s, FALSE);
}

/* The device a plan's step names: rollback plans cover a subset of the run's devices. */
static size_t step_device(const PlanStep *st, const size_t *map)
{
        return map ? map[st->device] : st->device;
}

/* Where each device may be while phase index of plan runs (core/invariant.h). */
static void phase_spans(const SeqRun *run, const Plan *plan, size_t index, const size_t *map,
                        InvariantSpan *spans)
{
        const PlanPhase *ph = &plan->phases[index];

        for (size_t i = 0; i < run->n; i++) {
                spans[i] = (InvariantSpan){.flags = run->devices[i]->info.migration_flags};
                if (run->hung[i])
                        spans[i] = run->hung_span[i];
                else if (!device_is_gone(run->devices[i]))
                        spans[i].states[spans[i].n_states++] = run->known[i];
        }
        /* A device reset later in this plan holds nothing a peer could spoil meanwhile. */
        for (size_t k = index; k < plan->n_phases; k++)
                for (size_t j = 0;
                     plan->phases[k].kind == PLAN_PHASE_RESET && j < plan->phases[k].n_steps; j++)
                        spans[step_device(&plan->phases[k].steps[j], map)].discards = true;
        for (size_t j = 0; j < ph->n_steps; j++) {
                const PlanStep *st = &ph->steps[j];
                size_t dev = step_device(st, map);
                InvariantSpan *sp = &spans[dev];
                enum mig_state walk[MIG_PATH_MAX];
                size_t len = 0;

                if (run->hung[dev] || sp->n_states == 0)
                        continue;
                if (ph->kind == PLAN_PHASE_TRANSITION &&
                    mig_path(sp->flags, sp->states[0], st->target, walk, &len) == 0) {
                        for (size_t k = 1; k < len; k++)
                                sp->states[sp->n_states++] = walk[k];
                } else if (st->target != sp->states[0]) {
                        /* A reset lands in RUNNING; a refused walk at least ends there. */
                        sp->states[sp->n_states++] = st->target;
                }
        }
}

/*
 * Would issuing phase index of plan break the P2P invariant? NULL if not, else a sentence.
 * QEMU's serial order breaks it on purpose, and streams move no device.
 */
static char *phase_check(const SeqRun *run, const Plan *plan, size_t index, const char *name,
                         const size_t *map)
{
        const PlanPhase *ph = &plan->phases[index];
        g_autofree InvariantSpan *spans = NULL;
        InvariantConflict c;

        if (plan->strategy == PLAN_STRATEGY_NAIVE ||
            (ph->kind != PLAN_PHASE_TRANSITION && ph->kind != PLAN_PHASE_RESET))
                return NULL;
        spans = g_new0(InvariantSpan, run->n ? run->n : 1);
        phase_spans(run, plan, index, map, spans);
        if (invariant_phase_ok(spans, run->n, run->opts->p2p_mode, &c))
                return NULL;
        return g_strdup_printf("phase %s could leave device %s in %s while device %s is in %s "
                               "and can initiate P2P DMA into it (the P2P invariant)",
                               name, device_name(run, c.victim),
                               mig_state_to_string(c.victim_state), device_name(run, c.initiator),
                               mig_state_to_string(c.initiator_state));
}

/* Where every device that still answers really is, for the rollback plan. */
static size_t rollback_devices(SeqRun *run, PlanDevice *pd, size_t *map, bool *in_error)
{
        size_t m = 0;

        for (size_t i = 0; i < run->n; i++) {
                enum mig_state s;

                /* A device the host removed has nothing to roll back (device_set_gone()). */
                if (run->hung[i] || device_is_gone(run->devices[i]))
                        continue;
                if (device_get_state(run->devices[i], &s) < 0)
                        s = MIG_STATE_ERROR;
                run->known[i] = s;
                in_error[i] = s == MIG_STATE_ERROR;
                pd[m] = (PlanDevice){device_name(run, i), run->devices[i]->info.migration_flags, s};
                map[m++] = i;
        }
        return m;
}

/*
 * Brings the devices back to where the VM was consistent, with the always-safe parallel
 * order and deadlines. true when every device got there; else *ret_problem says why not.
 */
static bool rollback(SeqRun *run, enum plan_op op, char **ret_problem)
{
        g_autofree PlanDevice *pd = g_new0(PlanDevice, run->n ? run->n : 1);
        g_autofree size_t *map = g_new0(size_t, run->n ? run->n : 1);
        g_autofree bool *in_error = g_new0(bool, run->n ? run->n : 1);
        g_autofree char *reason = NULL;
        enum plan_op rb_op = run->opts->rollback_reset ? PLAN_OP_RESET : plan_op_rollback(op);
        Plan *rb = NULL;
        size_t m;
        bool ok = true;

        m = rollback_devices(run, pd, map, in_error);
        log_warning("rolling back with %s over %zu devices", plan_op_to_string(rb_op), m);
        if (plan_build(rb_op, PLAN_STRATEGY_PARALLEL, run->opts->p2p_mode, pd, m, &rb, &reason) <
            0) {
                *ret_problem = g_strdup_printf("no rollback plan: %s", reason);
                return false;
        }
        for (size_t i = 0; i < rb->n_phases && ok; i++) {
                g_autofree char *name = g_strdup_printf("rollback:%s", rb->phases[i].name);
                g_autofree char *breach = phase_check(run, rb, i, name, map);
                PhaseOutcome out;

                if (breach && run->n_hung > 0) {
                        /* Not a bug: the hung step may still land anywhere on its walk. The
                         * rest waits for it (SeqLateFunc). */
                        g_autofree char *names = hung_names(run);
                        log_warning("rollback deferred: %s", breach);
                        run->report->rollback_deferred = true;
                        *ret_problem = g_strdup_printf(
                            "rollback deferred from phase %s: the other devices are held where "
                            "no device can DMA into a stopped one until the outstanding step "
                            "of %s returns",
                            name, names);
                        ok = false;
                        break;
                }
                if (breach) {
                        out = phase_refused(run, name, i, rb->n_phases, breach);
                } else
                        out = run_phase(run, &rb->phases[i], name, i, rb->n_phases, map);
                ok = out.error == 0;
                if (!ok)
                        *ret_problem = out.message;
        }
        /* Resetting a source device discards its state, whatever state it was in; on the
         * destination (a failed resume) there was none to lose but what fell into ERROR. */
        for (size_t i = 0; i < run->n; i++)
                if (in_error[i] ||
                    (rb_op == PLAN_OP_RESET && op != PLAN_OP_RESUME && !run->hung[i]))
                        report_lost_state(run, i);
        plan_free(rb);
        if (ok && run->n_hung > 0)
                *ret_problem = g_strdup_printf("%u device(s) hung and were left alone; the "
                                               "rollback finishes when their steps return",
                                               run->n_hung);
        return ok && run->n_hung == 0;
}

static SeqReport *report_new(const Plan *plan)
{
        SeqReport *r = g_new0(SeqReport, 1);

        r->op = plan->op;
        r->strategy = plan->strategy;
        r->phases = g_array_new(FALSE, TRUE, sizeof(SeqPhaseTiming));
        r->steps = g_array_new(FALSE, TRUE, sizeof(SeqStep));
        r->lost_state = g_ptr_array_new_with_free_func(g_free);
        r->hung = g_ptr_array_new_with_free_func(g_free);
        return r;
}

static size_t last_save_phase(const Plan *plan)
{
        size_t last = SIZE_MAX;

        for (size_t i = 0; i < plan->n_phases; i++)
                if (plan->phases[i].kind == PLAN_PHASE_SAVE)
                        last = i;
        return last;
}

static void fail_and_roll_back(SeqRun *run, const Plan *plan, size_t failed, PhaseOutcome out)
{
        g_autofree char *problem = NULL;

        run->report->error = out.error;
        run->report->message = out.message;
        run->report->aborted = seq_abort_requested(run->opts->abort);
        run->in_rollback = true;
        emit(run, SEQ_EVENT_ROLLBACK_START, plan->phases[failed].name, failed, plan->n_phases);
        run->report->rolled_back = rollback(run, plan->op, &problem);
        if (problem) {
                log_error("rollback incomplete: %s", problem);
                run->report->message =
                    g_strdup_printf("%s; rollback incomplete: %s", out.message, problem);
                g_free(out.message);
        }
}

static void run_free_resources(SeqRun *run)
{
        migstream_writer_free(run->writer);
        /* Queued jobs still run (a skipped one only drops its reference). With a hung
         * worker, waiting would hang the caller too: the last thread frees the pool. */
        if (run->pool)
                g_thread_pool_free(run->pool, FALSE, run->n_hung == 0);
        g_free(run->hung);
        g_free(run->known);
        g_free(run->hung_span);
}

/* Where each device starts: its first step's planned origin, else what it says. */
static void known_init(SeqRun *run, const Plan *plan)
{
        g_autofree bool *seen = g_new0(bool, run->n ? run->n : 1);

        for (size_t i = 0; i < plan->n_phases; i++)
                for (size_t j = 0; j < plan->phases[i].n_steps; j++) {
                        const PlanStep *st = &plan->phases[i].steps[j];
                        if (!seen[st->device]) {
                                seen[st->device] = true;
                                run->known[st->device] = st->from;
                        }
                }
        for (size_t i = 0; i < run->n; i++)
                if (!seen[i] && device_get_state(run->devices[i], &run->known[i]) < 0)
                        run->known[i] = MIG_STATE_ERROR;
}

/* A plan built for other devices would index past the caller's arrays. */
static bool plan_fits(const Plan *plan, size_t n)
{
        for (size_t i = 0; i < plan->n_phases; i++)
                for (size_t j = 0; j < plan->phases[i].n_steps; j++)
                        if (plan->phases[i].steps[j].device >= n)
                                return false;
        return true;
}

int sequencer_run(const Plan *plan, Device **devices, int *data_fds, size_t n,
                  const SeqOptions *opts, SeqReport **ret_report)
{
        SeqRun run = {
            .devices = devices,
            .data_fds = data_fds,
            .n = n,
            .opts = opts,
            .report = report_new(plan),
            .t0 = now_usec(),
            .hung = g_new0(bool, n ? n : 1),
            .last_save = last_save_phase(plan),
            .known = g_new0(enum mig_state, n ? n : 1),
            .hung_span = g_new0(InvariantSpan, n ? n : 1),
        };
        int error;

        if (!plan_fits(plan, n)) {
                run.report->error = -EINVAL;
                run.report->message = g_strdup_printf(
                    "the plan names a device beyond the VM's %zu devices; nothing was run", n);
                log_error("%s", run.report->message);
        } else
                known_init(&run, plan);
        for (size_t i = 0; i < plan->n_phases && run.report->error == 0; i++) {
                const char *name = plan->phases[i].name;
                g_autofree char *breach = phase_check(&run, plan, i, name, NULL);
                PhaseOutcome out;

                if (seq_abort_requested(opts->abort)) {
                        log_warning("aborted before phase %s", name);
                        out = outcome(-ECANCELED,
                                      g_strdup_printf("aborted (Abort) before phase %s", name));
                } else if (breach)
                        out = phase_refused(&run, name, i, plan->n_phases, breach);
                else
                        out = run_phase(&run, &plan->phases[i], name, i, plan->n_phases, NULL);
                if (out.error < 0 && run.report->handed_off) {
                        /* The stream may be running elsewhere: nothing returns to RUNNING. */
                        run.report->error = out.error;
                        run.report->message = g_strdup_printf(
                            "%s; the stream was handed off (its trailer is written), so no "
                            "device was rolled back",
                            out.message);
                        g_free(out.message);
                        break;
                }
                if (out.error < 0) {
                        fail_and_roll_back(&run, plan, i, out);
                        break;
                }
        }
        run_free_resources(&run);
        run.report->total_us = elapsed(run.t0);
        error = run.report->error;
        *ret_report = run.report;
        return error;
}

static void step_clear(SeqStep *s)
{
        g_free(s->phase);
        g_free(s->path);
        g_free(s->message);
}

void seq_report_free(SeqReport *r)
{
        if (!r)
                return;
        for (guint i = 0; r->phases && i < r->phases->len; i++)
                g_free(g_array_index(r->phases, SeqPhaseTiming, i).name);
        for (guint i = 0; r->steps && i < r->steps->len; i++)
                step_clear(&g_array_index(r->steps, SeqStep, i));
        if (r->phases)
                g_array_unref(r->phases);
        if (r->steps)
                g_array_unref(r->steps);
        if (r->lost_state)
                g_ptr_array_unref(r->lost_state);
        if (r->hung)
                g_ptr_array_unref(r->hung);
        g_free(r->migration_id);
        g_free(r->stream_vm);
        g_free(r->message);
        g_free(r);
}
