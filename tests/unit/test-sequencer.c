/* test-sequencer: phases in parallel, barriers, deadlines, rollback and streams, on sim devices */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/plan.h"
#include "devices/sim-stream.h"
#include "devices/sim.h"
#include "log.h"
#include "migstream.h"
#include "sequencer.h"
#include "util.h"

#define MLX5 (MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY)
#define HISI (MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY)
#define PDS  (MIG_FLAG_STOP_COPY | MIG_FLAG_P2P)
#define AP   MIG_FLAG_STOP_COPY

/* ---- a VM of sim devices in a temporary directory ---- */

typedef struct DevSpec {
        uint32_t flags;
        uint16_t device_id;
} DevSpec;

typedef struct TestVm {
        char *dir;
        Backend *backend;
        size_t n;
        char **names;
        Device **devs;
        int *fds;
} TestVm;

static char *tmp_dir(void)
{
        g_autoptr(GError) error = NULL;
        char *dir = g_dir_make_tmp("test-sequencer-XXXXXX", &error);

        g_assert_no_error(error);
        return dir;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path) < 0 ? -errno : 0;
}

/* The sim directory has subdirectories (its peer index). */
static void rm_rf(const char *dir)
{
        g_assert_cmpint(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
}

/* n devices "<prefix>0".. with specs[i % n_specs]; peers when group is set. */
static TestVm *vm_new(const char *dir, const char *prefix, size_t n, const DevSpec *specs,
                      size_t n_specs, uint32_t latency_ms, const char *group)
{
        g_autoptr(GError) error = NULL;
        TestVm *vm = g_new0(TestVm, 1);

        vm->dir = g_strdup(dir);
        vm->n = n;
        vm->names = g_new0(char *, n + 1);
        vm->devs = g_new0(Device *, n);
        vm->fds = g_new(int, n);
        g_assert_cmpint(sim_backend_new(dir, &vm->backend, &error), ==, 0);
        for (size_t i = 0; i < n; i++) {
                const DevSpec *s = &specs[i % n_specs];
                SimSpec spec = {
                    .name = vm->names[i] = g_strdup_printf("%s%zu", prefix, i),
                    .vendor_id = 0x15b3,
                    .device_id = s->device_id ? s->device_id : 0x101e,
                    .flags = s->flags,
                    .p2p_group = group,
                    .blob_size = 16384,
                    .latency_ms = latency_ms,
                };
                g_assert_cmpint(sim_device_create(dir, &spec, &error), ==, 0);
                g_assert_cmpint(vm->backend->open_device(vm->backend, spec.name, &vm->devs[i]), ==,
                                0);
                vm->fds[i] = -1;
        }
        return vm;
}

static TestVm *vm_uniform(const char *dir, const char *prefix, size_t n, uint32_t flags,
                          uint32_t latency_ms, const char *group)
{
        DevSpec s = {flags, 0};

        return vm_new(dir, prefix, n, &s, 1, latency_ms, group);
}

static void vm_free(TestVm *vm)
{
        for (size_t i = 0; i < vm->n; i++) {
                closep(&vm->fds[i]);
                device_unref(vm->devs[i]);
        }
        backend_free(vm->backend);
        g_strfreev(vm->names);
        g_free(vm->devs);
        g_free(vm->fds);
        g_free(vm->dir);
        g_free(vm);
}

static SimDevice *vm_read(const TestVm *vm, size_t i)
{
        g_autoptr(GError) error = NULL;
        SimDevice *d = NULL;

        g_assert_cmpint(sim_device_read(vm->dir, vm->names[i], &d, &error), ==, 0);
        return d;
}

static void assert_all_in(const TestVm *vm, enum mig_state s)
{
        for (size_t i = 0; i < vm->n; i++) {
                g_autoptr(SimDevice) d = vm_read(vm, i);
                g_assert_cmpstr(mig_state_to_string(d->state), ==, mig_state_to_string(s));
        }
}

static size_t corruption_events(const TestVm *vm)
{
        size_t n = 0;

        for (size_t i = 0; i < vm->n; i++) {
                g_autoptr(SimDevice) d = vm_read(vm, i);
                n += d->events->len;
        }
        return n;
}

static Plan *vm_plan(const TestVm *vm, enum plan_op op, enum plan_strategy strategy,
                     enum plan_p2p_mode mode)
{
        g_autofree PlanDevice *pd = g_new0(PlanDevice, vm->n);
        g_autofree char *reason = NULL;
        Plan *plan = NULL;

        for (size_t i = 0; i < vm->n; i++) {
                pd[i].name = vm->names[i];
                pd[i].flags = vm->devs[i]->info.migration_flags;
                g_assert_cmpint(device_get_state(vm->devs[i], &pd[i].state), ==, 0);
        }
        if (plan_build(op, strategy, mode, pd, vm->n, &plan, &reason) < 0)
                g_error("plan refused: %s", reason);
        return plan;
}

static SeqOptions options(void)
{
        return (SeqOptions){.phase_deadline_us = 10 * G_USEC_PER_SEC,
                            .p2p_mode = PLAN_P2P_REQUIRE,
                            .save_fd = -1,
                            .load_fd = -1,
                            .vm_name = "vm1"};
}

static int vm_run(TestVm *vm, enum plan_op op, enum plan_strategy strategy, const SeqOptions *opts,
                  SeqReport **ret)
{
        Plan *plan = vm_plan(vm, op, strategy, opts->p2p_mode);
        int r = sequencer_run(plan, vm->devs, vm->fds, vm->n, opts, ret);

        g_assert_nonnull(*ret);
        g_assert_cmpint((*ret)->error, ==, r);
        plan_free(plan);
        return r;
}

static const SeqPhaseTiming *phase_named(const SeqReport *r, const char *name)
{
        for (guint i = 0; i < r->phases->len; i++) {
                const SeqPhaseTiming *t = &g_array_index(r->phases, SeqPhaseTiming, i);
                if (strcmp(t->name, name) == 0)
                        return t;
        }
        g_error("no phase %s in the report", name);
}

/*
 * No test asserts a wall-clock upper bound: a loaded machine stretches any of them.
 * Parallelism shows in the overlap of step intervals, barriers in their order, and the
 * latencies the sim injects set lower bounds; the times themselves are only printed.
 */
static uint64_t step_end(const SeqStep *st)
{
        return st->start_us + st->duration_us;
}

/* The most steps of a phase that were running at one instant. */
static unsigned max_concurrent(const SeqReport *r, const char *phase)
{
        unsigned best = 0;

        for (guint i = 0; i < r->steps->len; i++) {
                const SeqStep *a = &g_array_index(r->steps, SeqStep, i);
                unsigned n = 0;

                if (strcmp(a->phase, phase) != 0)
                        continue;
                for (guint j = 0; j < r->steps->len; j++) {
                        const SeqStep *b = &g_array_index(r->steps, SeqStep, j);
                        if (strcmp(b->phase, phase) == 0 && b->start_us <= a->start_us &&
                            a->start_us < step_end(b))
                                n++;
                }
                best = MAX(best, n);
        }
        return best;
}

/* The barrier: every step of phase 'first' ended before any step of 'then' started. */
static void assert_phase_before(const SeqReport *r, const char *first, const char *then)
{
        uint64_t first_end = 0, then_start = UINT64_MAX;
        unsigned n_first = 0, n_then = 0;

        for (guint i = 0; i < r->steps->len; i++) {
                const SeqStep *st = &g_array_index(r->steps, SeqStep, i);
                if (strcmp(st->phase, first) == 0) {
                        first_end = MAX(first_end, step_end(st));
                        n_first++;
                } else if (strcmp(st->phase, then) == 0) {
                        then_start = MIN(then_start, st->start_us);
                        n_then++;
                }
        }
        g_assert_cmpuint(n_first, >, 0);
        g_assert_cmpuint(n_then, >, 0);
        g_assert_cmpuint(first_end, <=, then_start);
}

static double ms(uint64_t us)
{
        return (double)us / 1000.0;
}

/* ---- an event recorder ---- */

typedef struct Recorder {
        GMutex lock;
        GPtrArray *lines;
        const TestVm *vm;
} Recorder;

static void record(const SeqEvent *ev, void *userdata)
{
        static const char *const kinds[] = {"start", "done", "failed", "state", "rollback", "hung"};
        Recorder *rec = userdata;
        char *line;

        if (ev->kind == SEQ_EVENT_DEVICE_STATE)
                line = g_strdup_printf("state %s %s>%s", rec->vm->names[ev->device],
                                       mig_state_to_string(ev->old_state),
                                       mig_state_to_string(ev->new_state));
        else
                line = g_strdup_printf("%s %s %zu/%zu", kinds[ev->kind], ev->phase, ev->phase_index,
                                       ev->n_phases);
        g_mutex_lock(&rec->lock);
        g_ptr_array_add(rec->lines, line);
        g_mutex_unlock(&rec->lock);
}

static bool recorded(Recorder *rec, const char *line)
{
        for (guint i = 0; i < rec->lines->len; i++)
                if (strcmp(rec->lines->pdata[i], line) == 0)
                        return true;
        return false;
}

static void recorder_init(Recorder *rec, const TestVm *vm, SeqOptions *opts)
{
        g_mutex_init(&rec->lock);
        rec->lines = g_ptr_array_new_with_free_func(g_free);
        rec->vm = vm;
        opts->on_event = record;
        opts->userdata = rec;
}

static void recorder_clear(Recorder *rec)
{
        g_ptr_array_unref(rec->lines);
        g_mutex_clear(&rec->lock);
}

/* ---- quiesce: parallel phases against QEMU's order and the naive one ---- */

static void test_parallel_quiesce_costs_one_latency_per_phase(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 8, MLX5, 20, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, 0);
        assert_all_in(vm, MIG_STATE_STOP);
        g_assert_cmpuint(rep->phases->len, ==, 2);
        for (guint i = 0; i < rep->phases->len; i++) {
                const SeqPhaseTiming *t = &g_array_index(rep->phases, SeqPhaseTiming, i);
                g_test_message("phase %s: %.1f ms", t->name, ms(t->duration_us));
                g_assert_cmpuint(t->duration_us, >=, 20000);
        }
        g_test_message("8 devices x 20 ms, parallel quiesce: %.1f ms, at most %u and %u steps "
                       "at once",
                       ms(rep->total_us), max_concurrent(rep, "p2p"), max_concurrent(rep, "stop"));
        /* One latency per phase means the phase's steps ran at the same time. */
        g_assert_cmpuint(max_concurrent(rep, "p2p"), >, 1);
        g_assert_cmpuint(max_concurrent(rep, "stop"), >, 1);
        assert_phase_before(rep, "p2p", "stop");
        g_assert_cmpuint(rep->steps->len, ==, 16);
        g_assert_false(rep->rolled_back);
        g_assert_null(rep->message);
        vm_free(vm);
        rm_rf(dir);
}

static void test_naive_quiesce_costs_the_sum(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 4, MLX5, 20, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_NAIVE, &opts, &rep), ==, 0);
        assert_all_in(vm, MIG_STATE_STOP);
        g_assert_cmpuint(rep->phases->len, ==, 4);
        g_test_message("4 devices x 2 arcs x 20 ms, naive quiesce: %.1f ms", ms(rep->total_us));
        g_assert_cmpuint(rep->total_us, >=, 4 * 2 * 20000);
        /* The naive order: one device's whole journey after another, never two at once. */
        for (guint i = 1; i < rep->steps->len; i++)
                g_assert_cmpuint(g_array_index(rep->steps, SeqStep, i).start_us, >=,
                                 step_end(&g_array_index(rep->steps, SeqStep, i - 1)));
        g_assert_cmpint(rep->strategy, ==, PLAN_STRATEGY_NAIVE);
        vm_free(vm);
        rm_rf(dir);
}

static void test_parallel_quiesce_of_peers_corrupts_nothing(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "gpu", 4, PDS, 5, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, 0);
        g_assert_cmpuint(corruption_events(vm), ==, 0);
        vm_free(vm);
        rm_rf(dir);
}

static void test_naive_quiesce_of_peers_corrupts(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "gpu", 4, PDS, 5, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_NAIVE, &opts, &rep), ==, 0);
        /* every device but the last stopped while a later peer still ran */
        g_assert_cmpuint(corruption_events(vm), >=, 3);
        vm_free(vm);
        rm_rf(dir);
}

/* QEMU >= 8.1's order is safe: every device reaches RUNNING_P2P before any stops. */
static void test_qemu_quiesce_of_peers_corrupts_nothing(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "gpu", 4, PDS, 5, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_QEMU, &opts, &rep), ==, 0);
        assert_all_in(vm, MIG_STATE_STOP);
        g_assert_cmpint(rep->strategy, ==, PLAN_STRATEGY_QEMU);
        g_assert_cmpuint(corruption_events(vm), ==, 0);
        vm_free(vm);
        rm_rf(dir);
}

/* One device per phase, in QEMU's order: N p2p phases, then N stop phases, last device first
 * (QEMU walks its VM-stop handlers backwards), each at least one arc's latency, so the whole
 * costs at least 2 x N arcs. */
static void test_qemu_quiesce_is_one_device_per_phase(void)
{
        static const char *const order[] = {"p2p nic3",  "p2p nic2",  "p2p nic1",  "p2p nic0",
                                            "stop nic3", "stop nic2", "stop nic1", "stop nic0"};
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 4, MLX5, 20, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_QEMU, &opts, &rep), ==, 0);
        g_assert_cmpuint(rep->phases->len, ==, G_N_ELEMENTS(order));
        for (guint i = 0; i < rep->phases->len; i++) {
                const SeqPhaseTiming *t = &g_array_index(rep->phases, SeqPhaseTiming, i);

                g_assert_cmpstr(t->name, ==, order[i]);
                g_assert_cmpuint(t->duration_us, >=, 20000);
                if (i > 0) {
                        const SeqPhaseTiming *prev =
                            &g_array_index(rep->phases, SeqPhaseTiming, i - 1);
                        g_assert_cmpuint(t->start_us, >=, prev->start_us + prev->duration_us);
                }
        }
        g_test_message("4 devices x 2 arcs x 20 ms, qemu quiesce: %.1f ms", ms(rep->total_us));
        g_assert_cmpuint(rep->total_us, >=, 4 * 2 * 20000);
        g_assert_cmpuint(corruption_events(vm), ==, 0);
        vm_free(vm);
        rm_rf(dir);
}

static void test_start_after_quiesce_runs_p2p_first(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "gpu", 4, PDS, 2, "ctx");
        g_autoptr(SeqReport) q = NULL;
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &q), ==, 0);
        g_assert_cmpint(vm_run(vm, PLAN_OP_START, PLAN_STRATEGY_NAIVE, &opts, &rep), ==, 0);
        assert_all_in(vm, MIG_STATE_RUNNING);
        g_assert_cmpstr(g_array_index(rep->phases, SeqPhaseTiming, 0).name, ==, "p2p");
        g_assert_cmpstr(g_array_index(rep->phases, SeqPhaseTiming, 1).name, ==, "run");
        g_assert_cmpuint(corruption_events(vm), ==, 0);
        vm_free(vm);
        rm_rf(dir);
}

static void test_parallelism_limits_workers(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 4, PDS, 20, NULL);
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        const SeqPhaseTiming *p2p;

        opts.parallelism = 2;
        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, 0);
        p2p = phase_named(rep, "p2p");
        /* four 20 ms steps on two workers: two rounds */
        g_assert_cmpuint(p2p->duration_us, >=, 40000);
        g_assert_cmpuint(max_concurrent(rep, "p2p"), ==, 2);
        vm_free(vm);
        rm_rf(dir);
}

static void test_events_follow_the_phases(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 2, PDS, 0, NULL);
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        Recorder rec;

        recorder_init(&rec, vm, &opts);
        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, 0);
        g_assert_cmpstr(rec.lines->pdata[0], ==, "start p2p 0/2");
        g_assert_true(recorded(&rec, "state nic0 RUNNING>RUNNING_P2P"));
        g_assert_true(recorded(&rec, "state nic1 RUNNING>RUNNING_P2P"));
        g_assert_cmpstr(rec.lines->pdata[3], ==, "done p2p 0/2");
        g_assert_cmpstr(rec.lines->pdata[4], ==, "start stop 1/2");
        g_assert_true(recorded(&rec, "state nic0 RUNNING_P2P>STOP"));
        g_assert_cmpstr(rec.lines->pdata[7], ==, "done stop 1/2");
        g_assert_cmpuint(rec.lines->len, ==, 8);
        recorder_clear(&rec);
        vm_free(vm);
        rm_rf(dir);
}

/* ---- failures and rollback ---- */

static void add_fault(const TestVm *vm, size_t i, enum mig_state from, enum mig_state to,
                      enum sim_fault_action action)
{
        g_autoptr(GError) error = NULL;
        SimFault f = {.from = from, .to = to, .action = action, .error = EIO};

        g_assert_cmpint(sim_device_add_fault(vm->dir, vm->names[i], &f, &error), ==, 0);
}

static void test_failing_arc_rolls_back_to_running(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 4, MLX5, 1, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        Recorder rec;

        add_fault(vm, 2, MIG_STATE_RUNNING_P2P, MIG_STATE_STOP, SIM_FAULT_FAIL);
        recorder_init(&rec, vm, &opts);
        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, -EIO);
        assert_all_in(vm, MIG_STATE_RUNNING);
        g_assert_true(rep->rolled_back);
        g_assert_nonnull(strstr(rep->message, "phase stop: device nic2: RUNNING_P2P>STOP failed"));
        g_assert_cmpuint(rep->lost_state->len, ==, 0);
        g_assert_cmpint(phase_named(rep, "stop")->error, ==, -EIO);
        phase_named(rep, "rollback:p2p");
        phase_named(rep, "rollback:run");
        g_assert_true(recorded(&rec, "failed stop 1/2"));
        g_assert_true(recorded(&rec, "rollback stop 1/2"));
        g_assert_true(recorded(&rec, "state nic0 STOP>RUNNING_P2P"));
        g_assert_true(recorded(&rec, "state nic2 RUNNING_P2P>RUNNING"));
        recorder_clear(&rec);
        vm_free(vm);
        rm_rf(dir);
}

static void test_error_state_is_reset_and_reported_lost(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 3, PDS, 0, NULL);
        g_autoptr(SeqReport) rep = NULL;
        g_autoptr(SimDevice) d = NULL;
        SeqOptions opts = options();

        add_fault(vm, 1, MIG_STATE_RUNNING_P2P, MIG_STATE_STOP, SIM_FAULT_ERROR);
        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, -EIO);
        assert_all_in(vm, MIG_STATE_RUNNING);
        g_assert_true(rep->rolled_back);
        g_assert_cmpuint(rep->lost_state->len, ==, 1);
        g_assert_cmpstr(rep->lost_state->pdata[0], ==, "nic1");
        phase_named(rep, "rollback:reset");
        d = vm_read(vm, 1);
        g_assert_cmpuint(d->resets, ==, 1);
        vm_free(vm);
        rm_rf(dir);
}

static void test_hang_passes_deadline_then_rolls_back(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 4, PDS, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        uint64_t t0;

        add_fault(vm, 3, MIG_STATE_RUNNING_P2P, MIG_STATE_STOP, SIM_FAULT_HANG);
        opts.phase_deadline_us = 200000;
        t0 = now_usec();
        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -ETIMEDOUT);
        g_test_message("hang with a 200 ms deadline: returned after %.1f ms", ms(now_usec() - t0));
        g_assert_cmpuint(rep->total_us, >=, 200000);
        /* The rollback came after the deadline gave up on the hung step. */
        assert_phase_before(rep, "stop", "rollback:run");
        g_assert_cmpint(phase_named(rep, "stop")->error, ==, -ETIMEDOUT);
        g_assert_nonnull(strstr(rep->message, "passed its deadline of 200 ms; unfinished: nic3"));
        g_assert_true(rep->rolled_back);
        g_assert_cmpuint(rep->hung->len, ==, 0);
        assert_all_in(vm, MIG_STATE_RUNNING);
        vm_free(vm);
        rm_rf(dir);
}

/* Signals the abort once the named phase has started (from the sequencing thread). */
typedef struct AbortAt {
        const char *phase;
        SeqAbort *abort;
        uint64_t signalled_us;
} AbortAt;

static void abort_at_phase(const SeqEvent *ev, void *userdata)
{
        AbortAt *a = userdata;

        if (ev->kind != SEQ_EVENT_PHASE_START || strcmp(ev->phase, a->phase) != 0)
                return;
        a->signalled_us = ev->elapsed_us;
        seq_abort_signal(a->abort);
}

/*
 * Issue 11, reproduction 4: a hang with a 20 s deadline; an abort during the stop phase
 * preempts the barrier, cancels the hang and rolls back: the stop phase ends -ECANCELED
 * long before its deadline (a lower bound on the deadline's side only: the phase ended
 * under it, which is what "the deadline was never reached" means).
 */
static void test_abort_preempts_a_hang(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 4, PDS, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        AbortAt at = {.phase = "stop", .abort = seq_abort_new()};
        const SeqPhaseTiming *stop;

        g_assert_nonnull(at.abort);
        add_fault(vm, 3, MIG_STATE_RUNNING_P2P, MIG_STATE_STOP, SIM_FAULT_HANG);
        opts.phase_deadline_us = 20 * G_USEC_PER_SEC;
        opts.abort = at.abort;
        opts.on_event = abort_at_phase;
        opts.userdata = &at;
        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -ECANCELED);
        g_assert_true(rep->aborted);
        g_assert_true(rep->rolled_back);
        g_assert_false(rep->rollback_deferred);
        g_assert_cmpuint(rep->hung->len, ==, 0);
        stop = phase_named(rep, "stop");
        g_assert_cmpint(stop->error, ==, -ECANCELED);
        g_assert_cmpuint(stop->duration_us, <, opts.phase_deadline_us);
        g_assert_nonnull(strstr(rep->message, "aborted"));
        g_assert_nonnull(strstr(rep->message, "nic3"));
        phase_named(rep, "rollback:run");
        assert_all_in(vm, MIG_STATE_RUNNING);
        g_assert_cmpuint(corruption_events(vm), ==, 0);
        seq_abort_free(at.abort);
        vm_free(vm);
        rm_rf(dir);
}

/* An abort signalled before the run: no device moves, the sequence ends -ECANCELED. */
static void test_abort_before_the_first_phase_moves_nothing(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 2, PDS, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        opts.abort = seq_abort_new();
        seq_abort_signal(opts.abort);
        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -ECANCELED);
        g_assert_true(rep->aborted);
        g_assert_cmpuint(rep->steps->len, ==, 0);
        assert_all_in(vm, MIG_STATE_RUNNING);
        seq_abort_free(opts.abort);
        vm_free(vm);
        rm_rf(dir);
}

/*
 * A plan whose phase would stop a device while its peer runs (QEMU's serial walk labelled
 * parallel) is not issued: -EPROTO, named as a bug, and nothing moved to STOP.
 */
static void test_phase_breaking_the_invariant_is_not_issued(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 2, PDS, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        Plan *plan = vm_plan(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_NAIVE, PLAN_P2P_REQUIRE);

        plan->strategy = PLAN_STRATEGY_PARALLEL;
        g_assert_cmpint(sequencer_run(plan, vm->devs, vm->fds, vm->n, &opts, &rep), ==, -EPROTO);
        g_assert_nonnull(strstr(rep->message, "P2P invariant"));
        g_assert_nonnull(strstr(rep->message, "bug"));
        g_assert_cmpint(phase_named(rep, "device nic0")->error, ==, -EPROTO);
        g_assert_cmpuint(rep->steps->len, ==, 0);
        assert_all_in(vm, MIG_STATE_RUNNING);
        g_assert_cmpuint(corruption_events(vm), ==, 0);
        plan_free(plan);
        vm_free(vm);
        rm_rf(dir);
}

static void test_device_moved_behind_the_plan_gets_no_request(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *vm = vm_uniform(dir, "nic", 2, PDS, 0, NULL);
        g_autoptr(SeqReport) rep = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(SimDevice) d = NULL;
        SeqOptions opts = options();
        Plan *plan = vm_plan(vm, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, PLAN_P2P_REQUIRE);

        /* after the plan was made: nothing leads from ERROR to RUNNING_P2P */
        g_assert_cmpint(sim_device_force_state(dir, "nic1", MIG_STATE_ERROR, &error), ==, 0);
        g_assert_cmpint(sequencer_run(plan, vm->devs, vm->fds, vm->n, &opts, &rep), ==, -EBADFD);
        g_assert_nonnull(strstr(rep->message, "device nic1 is in ERROR, not RUNNING as planned"));
        g_assert_true(rep->rolled_back);
        g_assert_cmpuint(rep->lost_state->len, ==, 1);
        assert_all_in(vm, MIG_STATE_RUNNING);
        d = vm_read(vm, 1);
        g_assert_cmpuint(d->resets, ==, 1);
        plan_free(plan);
        vm_free(vm);
        rm_rf(dir);
}

/* ---- a device that ignores cancel: the sequence returns, its worker stays behind ---- */

typedef struct Fake {
        GMutex lock;
        GCond cond;
        enum mig_state state;
        bool block_stop; /* a request for STOP blocks until released, whatever cancel says */
        bool released;
        unsigned cancels;
} Fake;

static int fake_get_state(Device *d, enum mig_state *ret)
{
        Fake *f = d->backend_data;

        g_mutex_lock(&f->lock);
        *ret = f->state;
        g_mutex_unlock(&f->lock);
        return 0;
}

static int fake_set_state(Device *d, enum mig_state target, int *ret_fd)
{
        Fake *f = d->backend_data;

        *ret_fd = -1;
        g_mutex_lock(&f->lock);
        while (target == MIG_STATE_STOP && f->block_stop && !f->released)
                g_cond_wait(&f->cond, &f->lock);
        f->state = target;
        g_mutex_unlock(&f->lock);
        return 0;
}

static int fake_reset(Device *d)
{
        Fake *f = d->backend_data;

        g_mutex_lock(&f->lock);
        f->state = MIG_STATE_RUNNING;
        g_mutex_unlock(&f->lock);
        return 0;
}

static void fake_cancel(Device *d)
{
        Fake *f = d->backend_data;

        g_mutex_lock(&f->lock);
        f->cancels++;
        g_mutex_unlock(&f->lock);
}

static void fake_close(Device *d)
{
        Fake *f = d->backend_data;

        g_mutex_clear(&f->lock);
        g_cond_clear(&f->cond);
        g_free(f);
}

static const DeviceOps fake_ops = {
    .get_state = fake_get_state,
    .set_state = fake_set_state,
    .reset = fake_reset,
    .cancel = fake_cancel,
    .close = fake_close,
};

static Device *fake_new(const char *name)
{
        Device *d = g_new0(Device, 1);
        Fake *f = g_new0(Fake, 1);

        g_mutex_init(&f->lock);
        g_cond_init(&f->cond);
        f->state = MIG_STATE_RUNNING;
        d->ops = &fake_ops;
        d->backend_data = f;
        d->refcount = 1;
        d->info.name = g_strdup(name);
        d->info.migration_flags = PDS;
        return d;
}

static Plan *fake_plan(Device **devs, size_t n, enum plan_op op)
{
        g_autofree PlanDevice *pd = g_new0(PlanDevice, n);
        Plan *plan = NULL;

        for (size_t i = 0; i < n; i++) {
                pd[i].name = devs[i]->info.name;
                pd[i].flags = devs[i]->info.migration_flags;
                g_assert_cmpint(device_get_state(devs[i], &pd[i].state), ==, 0);
        }
        g_assert_cmpint(
            plan_build(op, PLAN_STRATEGY_PARALLEL, PLAN_P2P_REQUIRE, pd, n, &plan, NULL), ==, 0);
        return plan;
}

static void test_plan_for_other_devices_is_refused(void)
{
        Device *devs[2] = {fake_new("f0"), fake_new("f1")};
        int fds[2] = {-1, -1};
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        Plan *plan = fake_plan(devs, 2, PLAN_OP_QUIESCE);
        enum mig_state s;

        g_assert_cmpint(sequencer_run(plan, devs, fds, 1, &opts, &rep), ==, -EINVAL);
        g_assert_cmpuint(rep->phases->len, ==, 0);
        g_assert_cmpint(device_get_state(devs[0], &s), ==, 0);
        g_assert_cmpint(s, ==, MIG_STATE_RUNNING);
        plan_free(plan);
        device_unref(devs[0]);
        device_unref(devs[1]);
}

/* What a hung step's late return reported (SeqLateFunc), and the late references. */
typedef struct Late {
        GMutex lock;
        GCond cond;
        int calls, refs;
        size_t device;
        enum mig_state reached;
} Late;

static void late_record(size_t device, enum mig_state reached, int error, void *userdata)
{
        Late *l = userdata;

        g_mutex_lock(&l->lock);
        l->calls++;
        l->device = device;
        l->reached = reached;
        g_cond_broadcast(&l->cond);
        g_mutex_unlock(&l->lock);
}

static void *late_ref(void *userdata)
{
        Late *l = userdata;

        g_mutex_lock(&l->lock);
        l->refs++;
        g_mutex_unlock(&l->lock);
        return l;
}

static void late_unref(void *userdata)
{
        Late *l = userdata;

        g_mutex_lock(&l->lock);
        l->refs--;
        g_cond_broadcast(&l->cond);
        g_mutex_unlock(&l->lock);
}

static void fake_release(Fake *f)
{
        g_mutex_lock(&f->lock);
        f->released = true;
        g_cond_broadcast(&f->cond);
        g_mutex_unlock(&f->lock);
}

static enum mig_state fake_state(Device *d)
{
        enum mig_state s;

        g_assert_cmpint(device_get_state(d, &s), ==, 0);
        return s;
}

/*
 * Issue 11, reproduction 2: a step that ignores cancel returns after the rollback. Its peers
 * must not be RUNNING when it lands in STOP: they are held at RUNNING_P2P, the rollback is
 * deferred, and the late return is handed to the caller to finish it.
 */
static void test_device_ignoring_cancel_holds_its_peers(void)
{
        Device *devs[3] = {fake_new("f0"), fake_new("f1"), fake_new("f2")};
        int fds[3] = {-1, -1, -1};
        Fake *stuck = devs[1]->backend_data;
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        Late late = {0};
        Plan *plan;

        g_mutex_init(&late.lock);
        g_cond_init(&late.cond);
        stuck->block_stop = true;
        opts.phase_deadline_us = 50000;
        opts.cancel_grace_us = 50000;
        opts.on_late = late_record;
        opts.late_ref = late_ref;
        opts.late_unref = late_unref;
        opts.late_userdata = &late;
        plan = fake_plan(devs, 3, PLAN_OP_QUIESCE);
        g_assert_cmpint(sequencer_run(plan, devs, fds, 3, &opts, &rep), ==, -ETIMEDOUT);
        g_assert_cmpuint(rep->hung->len, ==, 1);
        g_assert_cmpstr(rep->hung->pdata[0], ==, "f1");
        g_assert_false(rep->rolled_back);
        g_assert_true(rep->rollback_deferred);
        g_assert_nonnull(strstr(rep->message, "deferred"));
        g_assert_nonnull(strstr(rep->message, "f1"));
        g_assert_cmpuint(stuck->cancels, ==, 1);
        /* held, not run: f1 may still land in STOP */
        g_assert_cmpint(fake_state(devs[0]), ==, MIG_STATE_RUNNING_P2P);
        g_assert_cmpint(fake_state(devs[2]), ==, MIG_STATE_RUNNING_P2P);
        /* the run phase of the rollback was never issued */
        for (guint i = 0; i < rep->phases->len; i++)
                g_assert_cmpstr(g_array_index(rep->phases, SeqPhaseTiming, i).name, !=,
                                "rollback:run");
        plan_free(plan);

        /* Its worker still holds the device; once it returns it reports and lets go. */
        g_assert_cmpint(g_atomic_int_get(&devs[1]->refcount), >, 1);
        g_assert_cmpint(late.calls, ==, 0);
        g_assert_cmpint(late.refs, ==, 1);
        fake_release(stuck);
        g_mutex_lock(&late.lock);
        while (late.refs > 0)
                g_cond_wait(&late.cond, &late.lock);
        g_mutex_unlock(&late.lock);
        g_assert_cmpint(late.calls, ==, 1);
        g_assert_cmpuint(late.device, ==, 1);
        g_assert_cmpint(late.reached, ==, MIG_STATE_STOP);
        for (int i = 0; i < 200 && g_atomic_int_get(&devs[1]->refcount) > 1; i++)
                g_usleep(5000);
        g_assert_cmpint(g_atomic_int_get(&devs[1]->refcount), ==, 1);
        for (size_t i = 0; i < 3; i++)
                device_unref(devs[i]);
        g_mutex_clear(&late.lock);
        g_cond_clear(&late.cond);
}

/* One quiesce of 64 instant devices: what remains is the sequencer's own cost. */
static void quiesce_instant(uint64_t *ret_p2p_us, uint64_t *ret_stop_us, uint64_t *ret_total_us)
{
        Device *devs[64];
        int fds[64];
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        Plan *plan;

        for (size_t i = 0; i < 64; i++) {
                g_autofree char *name = g_strdup_printf("f%zu", i);
                devs[i] = fake_new(name);
                fds[i] = -1;
        }
        plan = fake_plan(devs, 64, PLAN_OP_QUIESCE);
        g_assert_cmpint(sequencer_run(plan, devs, fds, 64, &opts, &rep), ==, 0);
        g_assert_cmpuint(rep->steps->len, ==, 128);
        assert_phase_before(rep, "p2p", "stop");
        *ret_p2p_us = MIN(*ret_p2p_us, phase_named(rep, "p2p")->duration_us);
        *ret_stop_us = MIN(*ret_stop_us, phase_named(rep, "stop")->duration_us);
        *ret_total_us = MIN(*ret_total_us, rep->total_us);
        plan_free(plan);
        for (size_t i = 0; i < 64; i++)
                device_unref(devs[i]);
}

static void test_overhead_of_64_instant_steps(void)
{
        uint64_t p2p = UINT64_MAX, stop = UINT64_MAX, total = UINT64_MAX;

        /* The best of a few runs: the bound is on the sequencer, not on a busy machine. */
        for (int i = 0; i < 5; i++)
                quiesce_instant(&p2p, &stop, &total);
        g_test_message("64 instant devices, quiesce: p2p %.3f ms (starts the workers), "
                       "stop %.3f ms, total %.3f ms",
                       ms(p2p), ms(stop), ms(total));
        /* A figure, not a bound (tests/bench has the benchmarks): what is asserted is that
         * 64 steps per phase completed behind their barriers, in quiesce_instant(). */
}

/* ---- save and resume ---- */

static const DevSpec mixed[] = {{MLX5, 0x101e}, {HISI, 0xa22f}, {PDS, 0x1002}, {AP, 0x0001}};

static int stream_fd(void)
{
        int fd = memfd_create("stream", MFD_CLOEXEC);

        g_assert_cmpint(fd, >=, 0);
        return fd;
}

static void save_vm(TestVm *src, int out)
{
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        opts.p2p_mode = PLAN_P2P_BLOCKED;
        opts.save_fd = out;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, 0);
        g_assert_cmpuint(phase_named(rep, "save")->error, ==, 0);
        for (guint i = 0; i < rep->steps->len; i++) {
                const SeqStep *st = &g_array_index(rep->steps, SeqStep, i);
                if (strcmp(st->phase, "save") == 0)
                        g_assert_cmpuint(st->bytes, >, 16384);
        }
        g_assert_cmpint(lseek(out, 0, SEEK_SET), ==, 0);
}

/* The destination's digests when its devices have validated the stream and stopped: after
 * that they run, and a running device changes its own state. */
typedef struct Snapshot {
        const TestVm *vm;
        char *digests[8];
} Snapshot;

static void snapshot_at_validate(const SeqEvent *ev, void *userdata)
{
        Snapshot *snap = userdata;

        if (ev->kind != SEQ_EVENT_PHASE_DONE || strcmp(ev->phase, "validate") != 0)
                return;
        for (size_t i = 0; i < snap->vm->n; i++) {
                g_autoptr(SimDevice) d = vm_read(snap->vm, i);
                snap->digests[i] = g_strdup(d->blob_sha256);
        }
}

static void test_save_then_resume_carries_every_device(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_new(dir, "src", 4, mixed, 4, 1, NULL);
        TestVm *dst = vm_new(dir, "dst", 4, mixed, 4, 1, NULL);
        _cleanup_close_ int stream = stream_fd();
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        Snapshot snap = {dst, {NULL}};

        save_vm(src, stream);
        assert_all_in(src, MIG_STATE_STOP);
        opts.p2p_mode = PLAN_P2P_BLOCKED;
        opts.load_fd = stream;
        opts.on_event = snapshot_at_validate;
        opts.userdata = &snap;
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, 0);
        assert_all_in(dst, MIG_STATE_RUNNING);
        for (size_t i = 0; i < 4; i++) {
                g_autoptr(SimDevice) s = vm_read(src, i);
                g_autoptr(SimDevice) d = vm_read(dst, i);
                g_assert_cmpstr(s->blob_sha256, ==, snap.digests[i]);
                g_free(snap.digests[i]);
                g_assert_cmpuint(s->saves, ==, 1);
                g_assert_cmpuint(d->loads, ==, 1);
                g_assert_cmpint(src->fds[i], ==, -1);
                g_assert_cmpint(dst->fds[i], ==, -1);
        }
        g_assert_cmpuint(phase_named(rep, "load")->error, ==, 0);
        vm_free(src);
        vm_free(dst);
        rm_rf(dir);
}

static void flip_byte(int fd, off_t at)
{
        uint8_t b;

        g_assert_cmpint(pread(fd, &b, 1, at), ==, 1);
        b ^= 0x40;
        g_assert_cmpint(pwrite(fd, &b, 1, at), ==, 1);
}

static void test_corrupted_stream_resets_the_destination(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_new(dir, "src", 2, mixed, 1, 0, NULL);
        TestVm *dst = vm_new(dir, "dst", 2, mixed, 1, 0, NULL);
        _cleanup_close_ int stream = stream_fd();
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        save_vm(src, stream);
        flip_byte(stream, 200);
        opts.load_fd = stream;
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -EBADMSG);
        /* whichever device's data came first in the stream holds the flipped byte */
        g_assert_nonnull(strstr(rep->message, "checksum mismatch for device 'src"));
        g_assert_true(rep->rolled_back);
        phase_named(rep, "rollback:reset");
        assert_all_in(dst, MIG_STATE_RUNNING);
        for (size_t i = 0; i < 2; i++) {
                g_autoptr(SimDevice) d = vm_read(dst, i);
                g_assert_cmpuint(d->resets, ==, 1);
                g_assert_cmpuint(d->loads, ==, 0);
                g_assert_cmpint(dst->fds[i], ==, -1);
        }
        vm_free(src);
        vm_free(dst);
        rm_rf(dir);
}

static void test_stream_for_other_devices_is_refused(void)
{
        static const DevSpec other[] = {{MLX5, 0x2000}};
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_new(dir, "src", 2, mixed, 1, 0, NULL);
        TestVm *dst = vm_new(dir, "dst", 2, other, 1, 0, NULL);
        _cleanup_close_ int stream = stream_fd();
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();

        save_vm(src, stream);
        opts.load_fd = stream;
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -EBADMSG);
        g_assert_nonnull(strstr(rep->message, "stream device 0 'src0' (15b3:101e, "
                                              "STOP_COPY|P2P|PRE_COPY) does not match device "
                                              "dst0 (15b3:2000, STOP_COPY|P2P|PRE_COPY)"));
        assert_all_in(dst, MIG_STATE_RUNNING);
        vm_free(src);
        vm_free(dst);
        rm_rf(dir);
}

static void test_save_to_a_closed_pipe_rolls_back(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_uniform(dir, "src", 3, MLX5, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        int pfd[2];

        g_assert_cmpint(pipe(pfd), ==, 0);
        close(pfd[0]);
        opts.save_fd = pfd[1];
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==, -EPIPE);
        g_assert_nonnull(strstr(rep->message, "broken pipe"));
        g_assert_true(rep->rolled_back);
        assert_all_in(src, MIG_STATE_RUNNING);
        for (size_t i = 0; i < 3; i++)
                g_assert_cmpint(src->fds[i], ==, -1);
        g_assert_cmpuint(corruption_events(src), ==, 0);
        close(pfd[1]);
        vm_free(src);
        rm_rf(dir);
}

/* The records a device's stream carries, read back through the migstream. */
static unsigned records_in_stream(int stream, size_t n, size_t index, const TestVm *vm)
{
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree uint8_t *buf = NULL;
        g_autofree int *fds = g_new(int, n);
        SimStreamFinal fin = {0};
        const DeviceInfo *info = &vm->devs[index]->info;
        SimIdentity id = {info->driver, info->vendor_id, info->device_id};
        size_t len;

        g_assert_cmpint(lseek(stream, 0, SEEK_SET), ==, 0);
        g_assert_cmpint(migstream_reader_new(stream, NULL, &r, &error), ==, 0);
        for (size_t i = 0; i < n; i++)
                fds[i] = memfd_create("d", MFD_CLOEXEC);
        g_assert_cmpint(migstream_reader_pump(r, fds, n, NULL, &error), ==, 0);
        g_assert_cmpint(sim_fd_read_all(fds[index], &buf, &len), ==, 0);
        g_assert_cmpint(sim_stream_parse(buf, len, &id, &fin, &error), ==, 0);
        g_free(fin.blob);
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
        return fin.n_records;
}

static void test_precopy_session_lasts_until_save(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_uniform(dir, "src", 2, MLX5, 0, "ctx");
        _cleanup_close_ int stream = stream_fd();
        g_autoptr(SeqReport) pre = NULL;
        g_autoptr(SeqReport) q = NULL;
        g_autoptr(SeqReport) save = NULL;
        SeqOptions opts = options();
        int session[2];

        g_assert_cmpint(vm_run(src, PLAN_OP_PRECOPY, PLAN_STRATEGY_PARALLEL, &opts, &pre), ==, 0);
        assert_all_in(src, MIG_STATE_PRE_COPY);
        for (size_t i = 0; i < 2; i++) {
                g_assert_cmpint(src->fds[i], >=, 0);
                session[i] = src->fds[i];
        }
        g_assert_cmpint(vm_run(src, PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, &opts, &q), ==, 0);
        assert_all_in(src, MIG_STATE_STOP_COPY);
        for (size_t i = 0; i < 2; i++)
                g_assert_cmpint(src->fds[i], ==, session[i]);
        opts.save_fd = stream;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &save), ==, 0);
        assert_all_in(src, MIG_STATE_STOP);
        g_assert_cmpuint(save->phases->len, ==, 2); /* save, stopped: sessions were open */
        for (size_t i = 0; i < 2; i++) {
                g_assert_cmpint(src->fds[i], ==, -1);
                /* PRECOPY then FINAL, one session */
                g_assert_cmpuint(records_in_stream(stream, 2, i, src), ==, 2);
        }
        vm_free(src);
        rm_rf(dir);
}

static void test_naive_save_then_naive_resume(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_uniform(dir, "src", 3, PDS, 0, NULL);
        TestVm *dst = vm_uniform(dir, "dst", 3, PDS, 0, NULL);
        _cleanup_close_ int stream = stream_fd();
        g_autoptr(SeqReport) save = NULL;
        g_autoptr(SeqReport) res = NULL;
        SeqOptions opts = options();

        opts.save_fd = stream;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_NAIVE, &opts, &save), ==, 0);
        phase_named(save, "save src1");
        g_assert_cmpint(lseek(stream, 0, SEEK_SET), ==, 0);
        opts.save_fd = -1;
        opts.load_fd = stream;
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_NAIVE, &opts, &res), ==, 0);
        assert_all_in(dst, MIG_STATE_RUNNING);
        for (size_t i = 0; i < 3; i++) {
                g_autoptr(SimDevice) s = vm_read(src, i);
                g_autoptr(SimDevice) d = vm_read(dst, i);
                /* the same state, and one generation on: RUNNING_P2P>RUNNING ran it */
                g_assert_cmpuint(d->loads, ==, 1);
                g_assert_cmpuint(d->seed, ==, s->seed);
                g_assert_cmpuint(d->generation, ==, s->generation + 1);
        }
        vm_free(src);
        vm_free(dst);
        rm_rf(dir);
}

/* A whole migration between P2P peers in QEMU's order, pre-copy included: every state
 * arrives, and neither side records a write into a stopped device. */
static void test_qemu_migration_of_peers_corrupts_nothing(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_uniform(dir, "src", 3, MLX5, 0, "src-ctx");
        TestVm *dst = vm_uniform(dir, "dst", 3, MLX5, 0, "dst-ctx");
        _cleanup_close_ int stream = stream_fd();
        g_autoptr(SeqReport) pre = NULL;
        g_autoptr(SeqReport) save = NULL;
        g_autoptr(SeqReport) res = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(src, PLAN_OP_PRECOPY, PLAN_STRATEGY_QEMU, &opts, &pre), ==, 0);
        phase_named(pre, "pre-copy src2");
        opts.save_fd = stream;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_QEMU, &opts, &save), ==, 0);
        phase_named(save, "save src1");
        phase_named(save, "stopped src2");
        assert_all_in(src, MIG_STATE_STOP);
        g_assert_cmpint(lseek(stream, 0, SEEK_SET), ==, 0);
        opts.save_fd = -1;
        opts.load_fd = stream;
        /* fresh destination devices: they run until the resume quiesces them */
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_QEMU, &opts, &res), ==, 0);
        phase_named(res, "quiesce-stop dst2");
        phase_named(res, "p2p dst0");
        phase_named(res, "run dst2");
        assert_all_in(dst, MIG_STATE_RUNNING);
        for (size_t i = 0; i < 3; i++) {
                g_autoptr(SimDevice) s = vm_read(src, i);
                g_autoptr(SimDevice) d = vm_read(dst, i);

                g_assert_cmpuint(d->loads, ==, 1);
                g_assert_cmpuint(d->seed, ==, s->seed);
        }
        g_assert_cmpuint(corruption_events(src), ==, 0);
        g_assert_cmpuint(corruption_events(dst), ==, 0);
        vm_free(src);
        vm_free(dst);
        rm_rf(dir);
}

/* ---- streams: bounded, abortable, bound to their VM, bounded in size ---- */

/* A pipe nobody reads, one page deep: a Save into it stalls after the header. */
static void stalled_pipe(int pfd[2])
{
        g_assert_cmpint(pipe2(pfd, O_CLOEXEC), ==, 0);
        g_assert_cmpint(fcntl(pfd[1], F_SETPIPE_SZ, 4096), >=, 4096);
}

typedef struct AbortLater {
        SeqAbort *abort;
        unsigned delay_ms;
} AbortLater;

static void *abort_later(void *p)
{
        AbortLater *a = p;

        g_usleep(a->delay_ms * 1000);
        seq_abort_signal(a->abort);
        return NULL;
}

static void assert_source_rolled_back(TestVm *src, const SeqReport *rep)
{
        g_assert_true(rep->rolled_back);
        assert_all_in(src, MIG_STATE_RUNNING);
        for (size_t i = 0; i < src->n; i++)
                g_assert_cmpint(src->fds[i], ==, -1);
        g_assert_cmpuint(corruption_events(src), ==, 0);
}

/* Issue 11, reproduction 3: a Save into a FIFO whose reader never reads fails at the phase
 * deadline with the bytes that went through, and the source runs again. */
static void test_save_into_a_stalled_pipe_fails_at_the_deadline(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_uniform(dir, "src", 2, MLX5, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        int pfd[2];

        stalled_pipe(pfd);
        opts.save_fd = pfd[1];
        opts.phase_deadline_us = 100000;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -ETIMEDOUT);
        g_assert_nonnull(strstr(rep->message, "phase save: device src"));
        g_assert_nonnull(strstr(rep->message,
                                "the migration stream of VM 'vm1' accepted no data for 100 ms "
                                "after "));
        g_assert_cmpuint(phase_named(rep, "save")->duration_us, >=, 100000);
        assert_source_rolled_back(src, rep);
        close(pfd[0]);
        close(pfd[1]);
        vm_free(src);
        rm_rf(dir);
}

/* Issue 11, reproduction 4, stream part: with no deadline at all, an abort still ends the
 * stalled Save at once (-ECANCELED), then the rollback runs. */
static void test_abort_preempts_a_stalled_save(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_uniform(dir, "src", 2, MLX5, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        AbortLater later = {seq_abort_new(), 50};
        GThread *t;
        int pfd[2];

        stalled_pipe(pfd);
        opts.save_fd = pfd[1];
        opts.phase_deadline_us = 0;
        opts.abort = later.abort;
        t = g_thread_new("abort", abort_later, &later);
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -ECANCELED);
        g_thread_join(t);
        g_assert_nonnull(strstr(rep->message, "the migration stream of VM 'vm1' was aborted"));
        g_assert_cmpint(phase_named(rep, "save")->error, ==, -ECANCELED);
        assert_source_rolled_back(src, rep);
        seq_abort_free(later.abort);
        close(pfd[0]);
        close(pfd[1]);
        vm_free(src);
        rm_rf(dir);
}

/* Issue 11, reproduction 3: a Resume whose writer opens the pipe and sends nothing, not even
 * the header, fails at the deadline; the destination is reset, ready for another Resume. */
static void test_resume_from_a_silent_writer_fails_at_the_deadline(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *dst = vm_uniform(dir, "dst", 2, MLX5, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        int pfd[2];

        g_assert_cmpint(pipe2(pfd, O_CLOEXEC), ==, 0);
        opts.load_fd = pfd[0];
        opts.phase_deadline_us = 100000;
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -ETIMEDOUT);
        g_assert_nonnull(strstr(rep->message, "phase load: the migration stream of VM 'vm1' sent "
                                              "nothing for 100 ms after 0 bytes"));
        g_assert_true(rep->rolled_back);
        assert_all_in(dst, MIG_STATE_RUNNING);
        close(pfd[0]);
        close(pfd[1]);
        vm_free(dst);
        rm_rf(dir);
}

static void test_abort_preempts_a_silent_resume(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *dst = vm_uniform(dir, "dst", 2, MLX5, 0, "ctx");
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        AbortLater later = {seq_abort_new(), 50};
        GThread *t;
        int pfd[2];

        g_assert_cmpint(pipe2(pfd, O_CLOEXEC), ==, 0);
        opts.load_fd = pfd[0];
        opts.phase_deadline_us = 0;
        opts.abort = later.abort;
        t = g_thread_new("abort", abort_later, &later);
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &rep), ==,
                        -ECANCELED);
        g_thread_join(t);
        g_assert_nonnull(strstr(rep->message, "was aborted after 0 bytes"));
        assert_all_in(dst, MIG_STATE_RUNNING);
        seq_abort_free(later.abort);
        close(pfd[0]);
        close(pfd[1]);
        vm_free(dst);
        rm_rf(dir);
}

/* Issue 11, reproduction 7: the same device shape is not the same VM. */
static void test_stream_of_another_vm_is_refused(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_new(dir, "src", 2, mixed, 1, 0, NULL);
        TestVm *dst = vm_new(dir, "dst", 2, mixed, 1, 0, NULL);
        _cleanup_close_ int stream = stream_fd();
        g_autoptr(SeqReport) save = NULL;
        g_autoptr(SeqReport) refused = NULL;
        g_autoptr(SeqReport) renamed = NULL;
        SeqOptions opts = options();

        opts.vm_name = "beta";
        opts.save_fd = stream;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &save), ==, 0);
        g_assert_nonnull(save->migration_id);
        g_assert_cmpuint(strlen(save->migration_id), ==, 32);
        opts.save_fd = -1;
        opts.vm_name = "alpha";
        opts.load_fd = stream;
        g_assert_cmpint(lseek(stream, 0, SEEK_SET), ==, 0);
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &refused), ==,
                        -EBADMSG);
        g_assert_nonnull(strstr(refused->message, "the stream was saved by VM 'beta', not VM "
                                                  "'alpha'"));
        g_assert_nonnull(strstr(refused->message, "renamed-from='beta'"));
        g_assert_cmpstr(refused->stream_vm, ==, "beta");
        assert_all_in(dst, MIG_STATE_RUNNING);
        for (size_t i = 0; i < 2; i++) {
                g_autoptr(SimDevice) d = vm_read(dst, i);
                g_assert_cmpuint(d->loads, ==, 0);
        }
        /* The caller says alpha is beta renamed: the same stream resumes. */
        opts.renamed_from = "beta";
        g_assert_cmpint(lseek(stream, 0, SEEK_SET), ==, 0);
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &renamed), ==,
                        0);
        g_assert_cmpstr(renamed->migration_id, ==, save->migration_id);
        assert_all_in(dst, MIG_STATE_RUNNING);
        vm_free(src);
        vm_free(dst);
        rm_rf(dir);
}

/* Issue 11, reproduction 9: max-device-state-bytes refuses an oversized device on both ends,
 * naming it; the source runs again, the destination is reset. */
static void test_device_over_the_size_limit_is_refused(void)
{
        g_autofree char *dir = tmp_dir();
        TestVm *src = vm_new(dir, "src", 2, mixed, 1, 0, NULL);
        TestVm *dst = vm_new(dir, "dst", 2, mixed, 1, 0, NULL);
        _cleanup_close_ int stream = stream_fd();
        _cleanup_close_ int small = stream_fd();
        g_autoptr(SeqReport) saved = NULL;
        g_autoptr(SeqReport) big = NULL;
        g_autoptr(SeqReport) loaded = NULL;
        SeqOptions opts = options();

        /* each device's data is a 16 KiB blob plus its record */
        opts.save_fd = small;
        opts.max_device_state_bytes = 8192;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &big), ==, -EFBIG);
        g_assert_nonnull(strstr(big->message, "more than max-device-state-bytes (8192 bytes)"));
        g_assert_nonnull(strstr(big->message, "device 'src"));
        assert_source_rolled_back(src, big);

        opts.max_device_state_bytes = 0;
        opts.save_fd = stream;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &saved), ==, 0);
        g_assert_cmpint(lseek(stream, 0, SEEK_SET), ==, 0);
        opts.save_fd = -1;
        opts.load_fd = stream;
        opts.max_device_state_bytes = 8192;
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &loaded), ==,
                        -EFBIG);
        /* whichever device's data passes the limit first is named */
        g_assert_nonnull(strstr(loaded->message, "phase load: device 'src"));
        g_assert_nonnull(strstr(loaded->message, "carries at least"));
        g_assert_nonnull(strstr(loaded->message, "raise max-device-state-bytes in the policy"));
        assert_all_in(dst, MIG_STATE_RUNNING);
        vm_free(src);
        vm_free(dst);
        rm_rf(dir);
}

/* ---- no fd leaks ---- */

static unsigned open_fds(void)
{
        g_autoptr(GDir) d = g_dir_open("/proc/self/fd", 0, NULL);
        unsigned n = 0;

        while (g_dir_read_name(d))
                n++;
        return n;
}

static void migrate_once(const char *dir, bool corrupt)
{
        TestVm *src = vm_uniform(dir, "src", 3, MLX5, 0, "a");
        TestVm *dst = vm_uniform(dir, "dst", 3, MLX5, 0, "b");
        _cleanup_close_ int stream = stream_fd();
        g_autoptr(SeqReport) pre = NULL;
        g_autoptr(SeqReport) save = NULL;
        g_autoptr(SeqReport) res = NULL;
        SeqOptions opts = options();

        g_assert_cmpint(vm_run(src, PLAN_OP_PRECOPY, PLAN_STRATEGY_PARALLEL, &opts, &pre), ==, 0);
        opts.save_fd = stream;
        g_assert_cmpint(vm_run(src, PLAN_OP_SAVE, PLAN_STRATEGY_PARALLEL, &opts, &save), ==, 0);
        if (corrupt)
                flip_byte(stream, 300);
        g_assert_cmpint(lseek(stream, 0, SEEK_SET), ==, 0);
        opts.load_fd = stream;
        g_assert_cmpint(vm_run(dst, PLAN_OP_RESUME, PLAN_STRATEGY_PARALLEL, &opts, &res), ==,
                        corrupt ? -EBADMSG : 0);
        for (size_t i = 0; i < 3; i++) {
                g_assert_cmpint(src->fds[i], ==, -1);
                g_assert_cmpint(dst->fds[i], ==, -1);
        }
        vm_free(src);
        vm_free(dst);
        for (size_t i = 0; i < 3; i++) {
                g_autofree char *s = g_strdup_printf("src%zu", i);
                g_autofree char *d = g_strdup_printf("dst%zu", i);
                sim_device_remove(dir, s, NULL);
                sim_device_remove(dir, d, NULL);
        }
}

static void test_no_fd_leaks(void)
{
        g_autofree char *dir = tmp_dir();
        unsigned before;

        migrate_once(dir, false); /* warm up whatever the libraries open once */
        before = open_fds();
        migrate_once(dir, false);
        migrate_once(dir, true);
        g_assert_cmpuint(open_fds(), ==, before);
        rm_rf(dir);
}

/* ---- figures for the record ---- */

static uint64_t quiesce_time(const char *dir, const char *prefix, size_t n, uint32_t latency,
                             enum plan_strategy strategy)
{
        TestVm *vm = vm_uniform(dir, prefix, n, MLX5, latency, NULL);
        g_autoptr(SeqReport) rep = NULL;
        SeqOptions opts = options();
        uint64_t t;

        g_assert_cmpint(vm_run(vm, PLAN_OP_QUIESCE, strategy, &opts, &rep), ==, 0);
        t = rep->total_us;
        vm_free(vm);
        return t;
}

static void test_figures_16_devices_parallel_against_naive(void)
{
        g_autofree char *dir = tmp_dir();
        uint64_t par = quiesce_time(dir, "p", 16, 20, PLAN_STRATEGY_PARALLEL);
        uint64_t ser = quiesce_time(dir, "s", 16, 20, PLAN_STRATEGY_NAIVE);
        uint64_t zero = quiesce_time(dir, "z", 64, 0, PLAN_STRATEGY_PARALLEL);

        g_test_message("16 devices x 20 ms quiesce: parallel %.1f ms, naive %.1f ms", ms(par),
                       ms(ser));
        g_test_message("64 zero-latency sim devices quiesce: %.1f ms", ms(zero));
        g_assert_cmpuint(ser, >=, 16 * 2 * 20000);
        rm_rf(dir);
}

int main(int argc, char **argv)
{
        int r;

        g_test_init(&argc, &argv, NULL);
        log_set_max_level(LOG_ERR);
        /* Idle pool threads would outlive main and show up as leaks under valgrind. */
        g_thread_pool_set_max_unused_threads(0);
        g_test_add_func("/sequencer/quiesce/parallel-one-latency-per-phase",
                        test_parallel_quiesce_costs_one_latency_per_phase);
        g_test_add_func("/sequencer/quiesce/naive-costs-the-sum", test_naive_quiesce_costs_the_sum);
        g_test_add_func("/sequencer/quiesce/qemu-one-device-per-phase",
                        test_qemu_quiesce_is_one_device_per_phase);
        g_test_add_func("/sequencer/quiesce/parallel-peers-no-corruption",
                        test_parallel_quiesce_of_peers_corrupts_nothing);
        g_test_add_func("/sequencer/quiesce/naive-peers-corrupt",
                        test_naive_quiesce_of_peers_corrupts);
        g_test_add_func("/sequencer/quiesce/qemu-peers-no-corruption",
                        test_qemu_quiesce_of_peers_corrupts_nothing);
        g_test_add_func("/sequencer/quiesce/parallelism-limits-workers",
                        test_parallelism_limits_workers);
        g_test_add_func("/sequencer/start/p2p-first", test_start_after_quiesce_runs_p2p_first);
        g_test_add_func("/sequencer/events/follow-the-phases", test_events_follow_the_phases);
        g_test_add_func("/sequencer/rollback/failing-arc", test_failing_arc_rolls_back_to_running);
        g_test_add_func("/sequencer/rollback/error-state-reset-lost",
                        test_error_state_is_reset_and_reported_lost);
        g_test_add_func("/sequencer/rollback/device-moved-behind-the-plan",
                        test_device_moved_behind_the_plan_gets_no_request);
        g_test_add_func("/sequencer/plan-for-other-devices",
                        test_plan_for_other_devices_is_refused);
        g_test_add_func("/sequencer/deadline/hang-cancel-rollback",
                        test_hang_passes_deadline_then_rolls_back);
        g_test_add_func("/sequencer/abort/preempts-a-hang", test_abort_preempts_a_hang);
        g_test_add_func("/sequencer/abort/before-the-first-phase",
                        test_abort_before_the_first_phase_moves_nothing);
        g_test_add_func("/sequencer/invariant/breaking-phase-not-issued",
                        test_phase_breaking_the_invariant_is_not_issued);
        g_test_add_func("/sequencer/deadline/ignoring-cancel-holds-its-peers",
                        test_device_ignoring_cancel_holds_its_peers);
        g_test_add_func("/sequencer/overhead/64-instant-steps", test_overhead_of_64_instant_steps);
        g_test_add_func("/sequencer/stream/save-then-resume",
                        test_save_then_resume_carries_every_device);
        g_test_add_func("/sequencer/stream/corrupted-resets-destination",
                        test_corrupted_stream_resets_the_destination);
        g_test_add_func("/sequencer/stream/other-devices-refused",
                        test_stream_for_other_devices_is_refused);
        g_test_add_func("/sequencer/stream/closed-pipe-rolls-back",
                        test_save_to_a_closed_pipe_rolls_back);
        g_test_add_func("/sequencer/stream/precopy-session-until-save",
                        test_precopy_session_lasts_until_save);
        g_test_add_func("/sequencer/stream/naive-save-and-resume",
                        test_naive_save_then_naive_resume);
        g_test_add_func("/sequencer/stream/qemu-migration-of-peers-no-corruption",
                        test_qemu_migration_of_peers_corrupts_nothing);
        g_test_add_func("/sequencer/stream/stalled-save-fails-at-the-deadline",
                        test_save_into_a_stalled_pipe_fails_at_the_deadline);
        g_test_add_func("/sequencer/stream/abort-preempts-a-stalled-save",
                        test_abort_preempts_a_stalled_save);
        g_test_add_func("/sequencer/stream/silent-resume-fails-at-the-deadline",
                        test_resume_from_a_silent_writer_fails_at_the_deadline);
        g_test_add_func("/sequencer/stream/abort-preempts-a-silent-resume",
                        test_abort_preempts_a_silent_resume);
        g_test_add_func("/sequencer/stream/another-vms-stream-refused",
                        test_stream_of_another_vm_is_refused);
        g_test_add_func("/sequencer/stream/device-over-the-size-limit",
                        test_device_over_the_size_limit_is_refused);
        g_test_add_func("/sequencer/fds/no-leaks", test_no_fd_leaks);
        g_test_add_func("/sequencer/figures/16-parallel-vs-naive",
                        test_figures_16_devices_parallel_against_naive);
        r = g_test_run();
        g_thread_pool_stop_unused_threads();
        return r;
}
