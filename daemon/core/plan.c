/* plan: the phases a VM's devices pass through for one operation */
#include "plan.h"

#include <errno.h>
#include <glib.h>
#include <stdarg.h>
#include <string.h>

/*
 * The builder walks the operation phase by phase, predicting every device's state as the
 * steps land, so each step's 'from' and kernel path are what the device will really see.
 */
typedef struct PlanBuilder {
        const PlanDevice *devices;
        size_t n;
        enum mig_state *cur; /* predicted state of each device */
        GArray *phases;      /* PlanPhase */
        PlanPhase *open;     /* the phase being filled, NULL between phases */
        GArray *steps;       /* PlanStep of the open phase */
        int error;
        char *reason;
} PlanBuilder;

static const char *const op_names[PLAN_OP_COUNT] = {
    [PLAN_OP_PRECOPY] = "precopy", [PLAN_OP_QUIESCE] = "quiesce", [PLAN_OP_SAVE] = "save",
    [PLAN_OP_RESUME] = "resume",   [PLAN_OP_START] = "start",     [PLAN_OP_ABORT] = "abort",
    [PLAN_OP_RESET] = "reset",
};

const char *plan_op_to_string(enum plan_op op)
{
        return (unsigned)op < PLAN_OP_COUNT ? op_names[op] : "invalid";
}

int plan_op_from_string(const char *s, enum plan_op *ret)
{
        for (unsigned i = 0; s && i < PLAN_OP_COUNT; i++)
                if (strcmp(s, op_names[i]) == 0) {
                        *ret = (enum plan_op)i;
                        return 0;
                }
        return -EINVAL;
}

const char *plan_strategy_to_string(enum plan_strategy s)
{
        switch (s) {
        case PLAN_STRATEGY_PARALLEL:
                return "parallel";
        case PLAN_STRATEGY_QEMU:
                return "qemu";
        case PLAN_STRATEGY_NAIVE:
                return "naive";
        }
        return "invalid";
}

int plan_strategy_from_string(const char *s, enum plan_strategy *ret)
{
        if (g_strcmp0(s, "parallel") == 0)
                *ret = PLAN_STRATEGY_PARALLEL;
        else if (g_strcmp0(s, "qemu") == 0)
                *ret = PLAN_STRATEGY_QEMU;
        else if (g_strcmp0(s, "naive") == 0)
                *ret = PLAN_STRATEGY_NAIVE;
        else if (g_strcmp0(s, "serial") == 0) {
                /* The old name of the whole-journey order, which it wrongly called QEMU's. */
                *ret = PLAN_STRATEGY_NAIVE;
                return PLAN_STRATEGY_DEPRECATED_NAME;
        } else
                return -EINVAL;
        return 0;
}

const char *plan_p2p_mode_to_string(enum plan_p2p_mode m)
{
        switch (m) {
        case PLAN_P2P_REQUIRE:
                return "require-p2p";
        case PLAN_P2P_BLOCKED:
                return "p2p-blocked";
        }
        return "invalid";
}

int plan_p2p_mode_from_string(const char *s, enum plan_p2p_mode *ret)
{
        if (g_strcmp0(s, "require-p2p") == 0)
                *ret = PLAN_P2P_REQUIRE;
        else if (g_strcmp0(s, "p2p-blocked") == 0)
                *ret = PLAN_P2P_BLOCKED;
        else
                return -EINVAL;
        return 0;
}

enum plan_op plan_op_rollback(enum plan_op op)
{
        /* A destination that failed to resume holds no state worth keeping. */
        return op == PLAN_OP_RESUME ? PLAN_OP_RESET : PLAN_OP_ABORT;
}

static void phase_clear(PlanPhase *ph)
{
        g_free(ph->name);
        g_free(ph->steps);
}

void plan_free(Plan *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->n_phases; i++)
                phase_clear(&p->phases[i]);
        g_free(p->phases);
        g_free(p);
}

static bool has_p2p(const PlanDevice *d)
{
        return d->flags & MIG_FLAG_P2P;
}

/* Records the first failure only: later ones follow from it. */
static void G_GNUC_PRINTF(3, 4) builder_fail(PlanBuilder *b, int error, const char *fmt, ...)
{
        va_list ap;

        if (b->error)
                return;
        b->error = error;
        va_start(ap, fmt);
        b->reason = g_strdup_vprintf(fmt, ap);
        va_end(ap);
}

static void G_GNUC_PRINTF(3, 4)
    phase_begin(PlanBuilder *b, enum plan_phase_kind kind, const char *fmt, ...)
{
        va_list ap;

        g_assert(!b->open);
        b->open = g_new0(PlanPhase, 1);
        b->open->kind = kind;
        va_start(ap, fmt);
        b->open->name = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        b->steps = g_array_new(FALSE, TRUE, sizeof(PlanStep));
}

/* Empty phases are dropped: a barrier with nothing behind it only costs time. */
static void phase_end(PlanBuilder *b)
{
        PlanPhase *ph = b->open;

        ph->n_steps = b->steps->len;
        ph->steps = (PlanStep *)(void *)g_array_free(b->steps, ph->n_steps == 0);
        b->steps = NULL;
        if (ph->n_steps > 0)
                g_array_append_val(b->phases, *ph);
        else
                phase_clear(ph);
        g_free(ph);
        b->open = NULL;
}

/* A transition step: the path is the kernel's own walk, checked here so that no request
 * the kernel would refuse (or spin on) ever reaches a device. */
static void add_transition(PlanBuilder *b, size_t i, enum mig_state target)
{
        const PlanDevice *d = &b->devices[i];
        PlanStep s = {.device = i, .from = b->cur[i], .target = target};

        if (mig_path(d->flags, s.from, target, s.path, &s.path_len) < 0) {
                builder_fail(b, -EINVAL,
                             "no kernel path for device %s (flags %s) from %s to %s; "
                             "this is a bug in the plan",
                             d->name, mig_flags_to_string(d->flags), mig_state_to_string(s.from),
                             mig_state_to_string(target));
                return;
        }
        g_array_append_val(b->steps, s);
        b->cur[i] = target;
}

/* SAVE and LOAD steps stream data and leave the device where it is. */
static void add_stream_step(PlanBuilder *b, size_t i)
{
        PlanStep s = {.device = i, .from = b->cur[i], .target = b->cur[i], .path_len = 1};

        s.path[0] = s.from;
        g_array_append_val(b->steps, s);
}

/* VFIO_DEVICE_RESET is not a walk of the state machine; the path shows where it lands. */
static void add_reset(PlanBuilder *b, size_t i)
{
        PlanStep s = {.device = i, .from = b->cur[i], .target = MIG_STATE_RUNNING};

        s.path[s.path_len++] = s.from;
        if (s.from != MIG_STATE_RUNNING)
                s.path[s.path_len++] = MIG_STATE_RUNNING;
        g_array_append_val(b->steps, s);
        b->cur[i] = MIG_STATE_RUNNING;
}

static bool is_pre_copying(enum mig_state s)
{
        return s == MIG_STATE_PRE_COPY || s == MIG_STATE_PRE_COPY_P2P;
}

/* Where the stop phase takes a device: a pre-copy session continues into STOP_COPY. */
static enum mig_state stop_target(enum mig_state s)
{
        return is_pre_copying(s) ? MIG_STATE_STOP_COPY : MIG_STATE_STOP;
}

static bool precopy_wanted(const PlanBuilder *b, size_t i)
{
        return (b->devices[i].flags & MIG_FLAG_PRE_COPY) && b->cur[i] == MIG_STATE_RUNNING;
}

/* QEMU's save_setup handlers start each device's pre-copy in turn. */
static void build_precopy(PlanBuilder *b, enum plan_strategy strategy)
{
        if (strategy == PLAN_STRATEGY_QEMU) {
                for (size_t i = 0; i < b->n; i++) {
                        phase_begin(b, PLAN_PHASE_TRANSITION, "pre-copy %s", b->devices[i].name);
                        if (precopy_wanted(b, i))
                                add_transition(b, i, MIG_STATE_PRE_COPY);
                        phase_end(b);
                }
                return;
        }
        phase_begin(b, PLAN_PHASE_TRANSITION, "pre-copy");
        for (size_t i = 0; i < b->n; i++)
                if (precopy_wanted(b, i))
                        add_transition(b, i, MIG_STATE_PRE_COPY);
        phase_end(b);
}

/* A P2P device that can still initiate P2P stops doing so: RUNNING_P2P, or PRE_COPY_P2P when
 * it is pre-copying. */
static void add_p2p_quiesce(PlanBuilder *b, size_t i)
{
        if (!has_p2p(&b->devices[i]))
                return;
        if (b->cur[i] == MIG_STATE_RUNNING)
                add_transition(b, i, MIG_STATE_RUNNING_P2P);
        else if (b->cur[i] == MIG_STATE_PRE_COPY)
                add_transition(b, i, MIG_STATE_PRE_COPY_P2P);
}

/* prefix names the phases apart where a plan quiesces and later runs again (resume): a
 * report shows every phase by name, so no two may share one. */
static void phase_quiesce_p2p(PlanBuilder *b, const char *prefix)
{
        phase_begin(b, PLAN_PHASE_TRANSITION, "%sp2p", prefix);
        for (size_t i = 0; i < b->n; i++)
                add_p2p_quiesce(b, i);
        phase_end(b);
}

static bool any_p2p(const PlanBuilder *b)
{
        for (size_t i = 0; i < b->n; i++)
                if (has_p2p(&b->devices[i]))
                        return true;
        return false;
}

/*
 * Devices without P2P (p2p-blocked) stop in a phase of their own, after every P2P device
 * quiesced and before any P2P device stops: a P2P device can then never stop while one of
 * them still runs. It costs a phase, and only VMs that have such devices pay it.
 */
static void phase_quiesce_stop(PlanBuilder *b, const char *prefix)
{
        if (any_p2p(b)) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "%sstop-no-p2p", prefix);
                for (size_t i = 0; i < b->n; i++)
                        if (!has_p2p(&b->devices[i]) && mig_state_is_running(b->cur[i]))
                                add_transition(b, i, stop_target(b->cur[i]));
                phase_end(b);
        }
        phase_begin(b, PLAN_PHASE_TRANSITION, "%sstop", prefix);
        for (size_t i = 0; i < b->n; i++)
                if (mig_state_is_running(b->cur[i]))
                        add_transition(b, i, stop_target(b->cur[i]));
        phase_end(b);
}

/*
 * QEMU >= 8.1: a "prepare" VM state handler per P2P device takes it to RUNNING_P2P (or
 * PRE_COPY_P2P), and every prepare handler runs before any main handler, which then takes
 * each device to STOP (or STOP_COPY when pre-copying). One device at a time: a phase each.
 * On a VM stop QEMU walks its handlers backwards (vm_state_notify), so the VM's last device
 * goes first; QEMU 10 does so to migtest devices in the guest (tests/kernel, test-qemu10).
 */
static void qemu_quiesce(PlanBuilder *b, const char *prefix)
{
        for (size_t k = b->n; k-- > 0;) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "%sp2p %s", prefix, b->devices[k].name);
                add_p2p_quiesce(b, k);
                phase_end(b);
        }
        for (size_t k = b->n; k-- > 0;) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "%sstop %s", prefix, b->devices[k].name);
                if (mig_state_is_running(b->cur[k]))
                        add_transition(b, k, stop_target(b->cur[k]));
                phase_end(b);
        }
}

static void build_quiesce(PlanBuilder *b, enum plan_strategy strategy)
{
        switch (strategy) {
        case PLAN_STRATEGY_PARALLEL:
                phase_quiesce_p2p(b, "");
                phase_quiesce_stop(b, "");
                return;
        case PLAN_STRATEGY_QEMU:
                qemu_quiesce(b, "");
                return;
        case PLAN_STRATEGY_NAIVE:
                break;
        }
        /* Each device's whole journey alone: the kernel walks RUNNING>RUNNING_P2P>STOP while
         * the next device still runs and can DMA into this one. */
        for (size_t i = 0; i < b->n; i++) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "device %s", b->devices[i].name);
                if (mig_state_is_running(b->cur[i]))
                        add_transition(b, i, stop_target(b->cur[i]));
                phase_end(b);
        }
}

static void phase_all_from(PlanBuilder *b, const char *name, enum mig_state from,
                           enum mig_state target)
{
        phase_begin(b, PLAN_PHASE_TRANSITION, "%s", name);
        for (size_t i = 0; i < b->n; i++)
                if (b->cur[i] == from)
                        add_transition(b, i, target);
        phase_end(b);
}

static void phase_stream(PlanBuilder *b, enum plan_phase_kind kind, const char *name)
{
        phase_begin(b, kind, "%s", name);
        for (size_t i = 0; i < b->n; i++)
                add_stream_step(b, i);
        phase_end(b);
}

static bool any_running(const PlanBuilder *b)
{
        for (size_t i = 0; i < b->n; i++)
                if (mig_state_is_running(b->cur[i]))
                        return true;
        return false;
}

static void build_save_naive(PlanBuilder *b)
{
        for (size_t i = 0; i < b->n; i++) {
                const char *name = b->devices[i].name;

                phase_begin(b, PLAN_PHASE_TRANSITION, "device %s", name);
                if (b->cur[i] != MIG_STATE_STOP_COPY)
                        add_transition(b, i, MIG_STATE_STOP_COPY);
                phase_end(b);
                phase_begin(b, PLAN_PHASE_SAVE, "save %s", name);
                add_stream_step(b, i);
                phase_end(b);
                phase_begin(b, PLAN_PHASE_TRANSITION, "stopped %s", name);
                add_transition(b, i, MIG_STATE_STOP);
                phase_end(b);
        }
}

/* QEMU's complete_precopy handlers: each device in turn to STOP_COPY and its data read out;
 * STOP_COPY -> STOP waits for the cleanup handlers, after every device's data is out. */
static void build_save_qemu(PlanBuilder *b)
{
        if (any_running(b))
                qemu_quiesce(b, "");
        for (size_t i = 0; i < b->n; i++) {
                const char *name = b->devices[i].name;

                phase_begin(b, PLAN_PHASE_TRANSITION, "stop-copy %s", name);
                if (b->cur[i] != MIG_STATE_STOP_COPY)
                        add_transition(b, i, MIG_STATE_STOP_COPY);
                phase_end(b);
                phase_begin(b, PLAN_PHASE_SAVE, "save %s", name);
                add_stream_step(b, i);
                phase_end(b);
        }
        for (size_t i = 0; i < b->n; i++) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "stopped %s", b->devices[i].name);
                add_transition(b, i, MIG_STATE_STOP);
                phase_end(b);
        }
}

static void build_save(PlanBuilder *b, enum plan_strategy strategy)
{
        switch (strategy) {
        case PLAN_STRATEGY_NAIVE:
                build_save_naive(b);
                return;
        case PLAN_STRATEGY_QEMU:
                build_save_qemu(b);
                return;
        case PLAN_STRATEGY_PARALLEL:
                break;
        }
        if (any_running(b)) {
                phase_quiesce_p2p(b, "");
                phase_quiesce_stop(b, "");
        }
        phase_all_from(b, "stop-copy", MIG_STATE_STOP, MIG_STATE_STOP_COPY);
        phase_stream(b, PLAN_PHASE_SAVE, "save");
        phase_all_from(b, "stopped", MIG_STATE_STOP_COPY, MIG_STATE_STOP);
}

static bool run_p2p_wanted(const PlanBuilder *b, size_t i)
{
        enum mig_state s = b->cur[i];

        return has_p2p(&b->devices[i]) && !mig_state_initiates_p2p(s) && s != MIG_STATE_RUNNING_P2P;
}

/* Stopped P2P devices first reach RUNNING_P2P, so no device runs (and initiates P2P DMA)
 * while a peer is still stopped. */
static void phase_run_p2p(PlanBuilder *b)
{
        phase_begin(b, PLAN_PHASE_TRANSITION, "p2p");
        for (size_t i = 0; i < b->n; i++)
                if (run_p2p_wanted(b, i))
                        add_transition(b, i, MIG_STATE_RUNNING_P2P);
        phase_end(b);
}

/* The mirror of the stop order: devices without P2P run while every P2P device still holds
 * back in RUNNING_P2P, so none of those runs (and DMAs) into a device that is stopped. */
static void phase_run(PlanBuilder *b)
{
        if (any_p2p(b)) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "run-no-p2p");
                for (size_t i = 0; i < b->n; i++)
                        if (!has_p2p(&b->devices[i]) && b->cur[i] != MIG_STATE_RUNNING)
                                add_transition(b, i, MIG_STATE_RUNNING);
                phase_end(b);
        }
        phase_begin(b, PLAN_PHASE_TRANSITION, "run");
        for (size_t i = 0; i < b->n; i++)
                if (b->cur[i] != MIG_STATE_RUNNING)
                        add_transition(b, i, MIG_STATE_RUNNING);
        phase_end(b);
}

/*
 * QEMU >= 8.1 starting the VM (a destination after load, or a source whose migration was
 * cancelled): the prepare handlers take each P2P device to RUNNING_P2P in turn, then the
 * main handlers each device to RUNNING. Devices without P2P (one alone, or p2p-blocked) have
 * no prepare handler; their main handlers are taken first, as phase_run() does, so none of
 * them runs into a P2P device that is not yet running.
 */
static void qemu_run(PlanBuilder *b)
{
        for (size_t i = 0; i < b->n; i++) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "p2p %s", b->devices[i].name);
                if (run_p2p_wanted(b, i))
                        add_transition(b, i, MIG_STATE_RUNNING_P2P);
                phase_end(b);
        }
        for (int with_p2p = 0; with_p2p <= 1; with_p2p++)
                for (size_t i = 0; i < b->n; i++) {
                        if (has_p2p(&b->devices[i]) != (bool)with_p2p)
                                continue;
                        phase_begin(b, PLAN_PHASE_TRANSITION, "run %s", b->devices[i].name);
                        if (b->cur[i] != MIG_STATE_RUNNING)
                                add_transition(b, i, MIG_STATE_RUNNING);
                        phase_end(b);
                }
}

/*
 * QEMU's destination: load_setup takes each device to RESUMING in turn, the stream loads,
 * and the VM starts (qemu_run; RESUMING -> RUNNING_P2P walks through STOP, which validates).
 * QEMU asks a fresh device for RESUMING straight from RUNNING, harmless there only because
 * the guest has never run; a RUNNING device's state cannot tell vfio-migd that, so fresh
 * devices first quiesce in QEMU's source order. Per device the kernel sees the same arcs.
 */
static void build_resume_qemu(PlanBuilder *b)
{
        if (any_running(b))
                qemu_quiesce(b, "quiesce-");
        for (size_t i = 0; i < b->n; i++) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "resuming %s", b->devices[i].name);
                add_transition(b, i, MIG_STATE_RESUMING);
                phase_end(b);
        }
        phase_stream(b, PLAN_PHASE_LOAD, "load");
        qemu_run(b);
}

static void build_resume(PlanBuilder *b, enum plan_strategy strategy)
{
        if (strategy == PLAN_STRATEGY_QEMU) {
                build_resume_qemu(b);
                return;
        }
        if (strategy == PLAN_STRATEGY_PARALLEL) {
                /* Fresh destination devices run: stop them in the safe order too, so no device
                 * stops on its way to RESUMING while a peer can still DMA into it. */
                if (any_running(b)) {
                        phase_quiesce_p2p(b, "quiesce-");
                        phase_quiesce_stop(b, "quiesce-");
                }
                phase_begin(b, PLAN_PHASE_TRANSITION, "resuming");
                for (size_t i = 0; i < b->n; i++)
                        add_transition(b, i, MIG_STATE_RESUMING);
                phase_end(b);
                phase_stream(b, PLAN_PHASE_LOAD, "load");
                phase_all_from(b, "validate", MIG_STATE_RESUMING, MIG_STATE_STOP);
                phase_run_p2p(b);
                phase_run(b);
                return;
        }
        for (size_t i = 0; i < b->n; i++) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "resuming %s", b->devices[i].name);
                add_transition(b, i, MIG_STATE_RESUMING);
                phase_end(b);
        }
        /* One stream carries every device, so the load cannot be split per device. */
        phase_stream(b, PLAN_PHASE_LOAD, "load");
        for (size_t i = 0; i < b->n; i++) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "device %s", b->devices[i].name);
                add_transition(b, i, MIG_STATE_RUNNING);
                phase_end(b);
        }
}

static bool needs_reset(enum mig_state s)
{
        return s == MIG_STATE_ERROR || s == MIG_STATE_RESUMING;
}

static bool abort_p2p_wanted(const PlanBuilder *b, size_t i)
{
        enum mig_state s = b->cur[i];

        return has_p2p(&b->devices[i]) && !needs_reset(s) && !mig_state_initiates_p2p(s) &&
               s != MIG_STATE_RUNNING_P2P;
}

static bool abort_run_no_p2p_wanted(const PlanBuilder *b, size_t i)
{
        return !has_p2p(&b->devices[i]) && !needs_reset(b->cur[i]) &&
               b->cur[i] != MIG_STATE_RUNNING;
}

/*
 * A reset lands in RUNNING, so it comes after every device that keeps its state has left
 * STOP (P2P devices to RUNNING_P2P, devices without P2P to RUNNING): a device being reset
 * then never DMAs into a peer whose state is kept (core/invariant.h). The devices to be
 * reset hold nothing worth keeping meanwhile. Under qemu the same order runs one device per
 * phase, as QEMU's main loop moves its devices one at a time.
 */
static void build_abort(PlanBuilder *b, enum plan_strategy strategy)
{
        if (strategy == PLAN_STRATEGY_QEMU) {
                for (size_t i = 0; i < b->n; i++) {
                        phase_begin(b, PLAN_PHASE_TRANSITION, "p2p %s", b->devices[i].name);
                        if (abort_p2p_wanted(b, i))
                                add_transition(b, i, MIG_STATE_RUNNING_P2P);
                        phase_end(b);
                }
                for (size_t i = 0; i < b->n; i++) {
                        phase_begin(b, PLAN_PHASE_TRANSITION, "run-no-p2p %s", b->devices[i].name);
                        if (abort_run_no_p2p_wanted(b, i))
                                add_transition(b, i, MIG_STATE_RUNNING);
                        phase_end(b);
                }
                for (size_t i = 0; i < b->n; i++) {
                        phase_begin(b, PLAN_PHASE_RESET, "reset %s", b->devices[i].name);
                        if (needs_reset(b->cur[i]))
                                add_reset(b, i);
                        phase_end(b);
                }
                for (size_t i = 0; i < b->n; i++) {
                        phase_begin(b, PLAN_PHASE_TRANSITION, "run %s", b->devices[i].name);
                        if (b->cur[i] != MIG_STATE_RUNNING)
                                add_transition(b, i, MIG_STATE_RUNNING);
                        phase_end(b);
                }
                return;
        }
        phase_begin(b, PLAN_PHASE_TRANSITION, "p2p");
        for (size_t i = 0; i < b->n; i++)
                if (abort_p2p_wanted(b, i))
                        add_transition(b, i, MIG_STATE_RUNNING_P2P);
        phase_end(b);
        if (any_p2p(b)) {
                phase_begin(b, PLAN_PHASE_TRANSITION, "run-no-p2p");
                for (size_t i = 0; i < b->n; i++)
                        if (abort_run_no_p2p_wanted(b, i))
                                add_transition(b, i, MIG_STATE_RUNNING);
                phase_end(b);
        }
        phase_begin(b, PLAN_PHASE_RESET, "reset");
        for (size_t i = 0; i < b->n; i++)
                if (needs_reset(b->cur[i]))
                        add_reset(b, i);
        phase_end(b);
        phase_begin(b, PLAN_PHASE_TRANSITION, "run");
        for (size_t i = 0; i < b->n; i++)
                if (b->cur[i] != MIG_STATE_RUNNING)
                        add_transition(b, i, MIG_STATE_RUNNING);
        phase_end(b);
}

static void build_reset(PlanBuilder *b)
{
        phase_begin(b, PLAN_PHASE_RESET, "reset");
        for (size_t i = 0; i < b->n; i++)
                add_reset(b, i);
        phase_end(b);
}

/* The states each operation may start from, and how to say so in a refusal. */
static bool op_accepts(enum plan_op op, enum mig_state s, const char **ret_expected)
{
        switch (op) {
        case PLAN_OP_PRECOPY:
                *ret_expected = "RUNNING or PRE_COPY";
                return s == MIG_STATE_RUNNING || s == MIG_STATE_PRE_COPY;
        case PLAN_OP_QUIESCE:
        case PLAN_OP_SAVE:
                *ret_expected = "RUNNING, PRE_COPY or an already quiesced state "
                                "(RUNNING_P2P, PRE_COPY_P2P, STOP, STOP_COPY)";
                return s != MIG_STATE_ERROR && s != MIG_STATE_RESUMING;
        case PLAN_OP_RESUME:
                *ret_expected = "RUNNING (fresh) or STOP";
                return s == MIG_STATE_RUNNING || s == MIG_STATE_STOP;
        case PLAN_OP_START:
                *ret_expected = "STOP, STOP_COPY or a running state; use abort for ERROR "
                                "and RESUMING";
                return s != MIG_STATE_ERROR && s != MIG_STATE_RESUMING;
        default:
                *ret_expected = "any";
                return true;
        }
}

/*
 * The strategy an operation really takes. naive exists for the operations that stop or start
 * devices around a stream, the comparison it is for; qemu for every operation QEMU performs.
 * Every other case (pre-copy and recovery under naive, a destination's reset under any)
 * takes the parallel order.
 */
static enum plan_strategy effective_strategy(enum plan_op op, enum plan_strategy strategy)
{
        switch (strategy) {
        case PLAN_STRATEGY_NAIVE:
                if (op == PLAN_OP_QUIESCE || op == PLAN_OP_SAVE || op == PLAN_OP_RESUME)
                        return strategy;
                break;
        case PLAN_STRATEGY_QEMU:
                if (op != PLAN_OP_RESET)
                        return strategy;
                break;
        case PLAN_STRATEGY_PARALLEL:
                break;
        }
        return PLAN_STRATEGY_PARALLEL;
}

/* The operations that begin a migration, which QEMU refuses for several devices unless every
 * one has P2P. */
static bool op_begins_migration(enum plan_op op)
{
        return op == PLAN_OP_PRECOPY || op == PLAN_OP_QUIESCE || op == PLAN_OP_SAVE ||
               op == PLAN_OP_RESUME;
}

static bool op_moves_data(enum plan_op op)
{
        return op != PLAN_OP_ABORT && op != PLAN_OP_RESET;
}

/* The multi-device rule: refused with -EPERM before any state is looked at. */
static void check_migratable(PlanBuilder *b, enum plan_op op, enum plan_strategy strategy,
                             enum plan_p2p_mode mode)
{
        for (size_t i = 0; i < b->n && !b->error; i++) {
                const PlanDevice *d = &b->devices[i];

                if (!(d->flags & MIG_FLAG_STOP_COPY))
                        builder_fail(b, -EPERM,
                                     "device %s (flags %s) cannot migrate: it does not "
                                     "advertise STOP_COPY",
                                     d->name, mig_flags_to_string(d->flags));
                else if (mode == PLAN_P2P_REQUIRE && b->n > 1 && !has_p2p(d))
                        builder_fail(b, -EPERM,
                                     "device %s (flags %s) has no P2P quiesce; with several "
                                     "devices every device needs P2P, or the VM must be "
                                     "registered with p2p-mode p2p-blocked",
                                     d->name, mig_flags_to_string(d->flags));
                else if (strategy == PLAN_STRATEGY_QEMU && op_begins_migration(op) && b->n > 1 &&
                         !has_p2p(d))
                        builder_fail(b, -EPERM,
                                     "device %s (flags %s) has no P2P quiesce; the qemu strategy "
                                     "follows QEMU, which migrates several devices only if every "
                                     "one has P2P; register the VM with strategy parallel (or "
                                     "naive) to migrate it in p2p-blocked mode",
                                     d->name, mig_flags_to_string(d->flags));
        }
}

static void check_states(PlanBuilder *b, enum plan_op op)
{
        for (size_t i = 0; i < b->n && !b->error; i++) {
                const char *expected;

                if (!op_accepts(op, b->cur[i], &expected))
                        builder_fail(b, -EINVAL, "device %s is in %s; %s needs every device in %s",
                                     b->devices[i].name, mig_state_to_string(b->cur[i]),
                                     plan_op_to_string(op), expected);
        }
}

static void build_phases(PlanBuilder *b, enum plan_op op, enum plan_strategy strategy)
{
        switch (op) {
        case PLAN_OP_PRECOPY:
                build_precopy(b, strategy);
                break;
        case PLAN_OP_QUIESCE:
                build_quiesce(b, strategy);
                break;
        case PLAN_OP_SAVE:
                build_save(b, strategy);
                break;
        case PLAN_OP_RESUME:
                build_resume(b, strategy);
                break;
        case PLAN_OP_START:
                if (strategy == PLAN_STRATEGY_QEMU) {
                        qemu_run(b);
                        break;
                }
                phase_run_p2p(b);
                phase_run(b);
                break;
        case PLAN_OP_ABORT:
                build_abort(b, strategy);
                break;
        case PLAN_OP_RESET:
        case PLAN_OP_COUNT:
                build_reset(b);
                break;
        }
}

static Plan *plan_from_builder(PlanBuilder *b, enum plan_op op, enum plan_strategy strategy)
{
        Plan *p = g_new0(Plan, 1);

        p->op = op;
        p->strategy = strategy;
        p->n_phases = b->phases->len;
        p->phases = (PlanPhase *)(void *)g_array_free(g_steal_pointer(&b->phases), FALSE);
        return p;
}

static void builder_clear(PlanBuilder *b)
{
        if (b->phases) {
                for (size_t i = 0; i < b->phases->len; i++)
                        phase_clear(&g_array_index(b->phases, PlanPhase, i));
                g_array_free(b->phases, TRUE);
        }
        g_free(b->cur);
        g_free(b->reason);
}

int plan_build(enum plan_op op, enum plan_strategy strategy, enum plan_p2p_mode mode,
               const PlanDevice *devices, size_t n, Plan **ret, char **ret_reason)
{
        PlanBuilder b = {.devices = devices, .n = n};
        int r;

        if ((unsigned)op >= PLAN_OP_COUNT) {
                if (ret_reason)
                        *ret_reason = g_strdup_printf("unknown operation %d", (int)op);
                return -EINVAL;
        }
        strategy = effective_strategy(op, strategy);
        b.cur = g_new(enum mig_state, n ? n : 1);
        for (size_t i = 0; i < n; i++)
                b.cur[i] = devices[i].state;
        b.phases = g_array_new(FALSE, TRUE, sizeof(PlanPhase));

        if (op_moves_data(op)) {
                check_migratable(&b, op, strategy, mode);
                check_states(&b, op);
        }
        if (!b.error)
                build_phases(&b, op, strategy);
        r = b.error;
        if (r == 0)
                *ret = plan_from_builder(&b, op, strategy);
        else if (ret_reason)
                *ret_reason = g_steal_pointer(&b.reason);
        builder_clear(&b);
        return r;
}
