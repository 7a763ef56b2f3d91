/* vm: one VM's devices, options and data sessions, and the sequences run on them */
#include "vm.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/policy.h"
#include "crash-point.h"
#include "log.h"
#include "util.h"

/* One operation in flight: owned by the Vm while busy, read by the worker thread. */
typedef struct VmRun {
        Vm *vm;
        enum plan_op op;
        Plan *plan;
        int fd; /* Save destination / Resume source, owned */
        char *renamed_from; /* Resume: the other VM name its stream may carry */
        SeqOptions seq;
        SeqAbort *abort; /* signalled by vm_abort_running() */
        GArray *waiters; /* VmWaiter: Abort callers waiting for this run to end */
        GThread *thread;
        VmEventFunc on_event;
        VmDoneFunc on_done;
        void *userdata;
        /* The Save's commit, asked by the worker and answered by the loop (vm->lock). */
        enum { COMMIT_NONE, COMMIT_ASKED, COMMIT_WRITING, COMMIT_DONE, COMMIT_ABANDONED } commit;
        int commit_result;
        /* Written by the worker before it queues the completion. */
        int error;
        SeqReport *report;
} VmRun;

/* Someone else waiting for a run's end (Abort on a sequencing VM). */
typedef struct VmWaiter {
        VmDoneFunc on_done;
        void *userdata;
} VmWaiter;

/*
 * Where a hung step's late return goes (SeqLateFunc): shared by the Vm and the workers of
 * its hung steps, which may outlive it. vm is NULL once the Vm is freed.
 */
typedef struct VmLateSink {
        gint refcount;
        GMutex lock;
        Vm *vm;
} VmLateSink;

/* What the worker hands to the loop: a progress event, the return of a hung step, or the
 * completion when done. */
/*
 * A read of the devices' states on a thread of its own, so the loop never waits on a device
 * (a kernel driver holding its state lock blocks MIG_DEVICE_STATE GET). Shared by the Vm and
 * the thread; vm_free() detaches it (vm = NULL, under lock) rather than waiting, since a read
 * may never return.
 */
typedef struct VmRefresh {
        gint refcount;
        GMutex lock;
        Vm *vm;              /* NULL once the Vm is gone */
        unsigned generation; /* the Vm's run generation when the read began */
        size_t n;
        Device **devices; /* referenced; NULL for a device not to ask (a hung step holds it) */
        enum mig_state *states;
        bool *read;          /* states[i] was read */
        int *failed;         /* the read of device i failed with this negative errno, or 0 */
        uint64_t *read_usec; /* when */
} VmRefresh;

/* What the worker hands to the loop: a progress event, or the completion when done. */
typedef struct VmQueued {
        bool done;
        bool late; /* ev.device returned late into ev.new_state */
        bool commit; /* the worker waits for the Save's commit record */
        SeqEvent ev;
        char *phase;        /* ev.phase points here */
        VmRefresh *refresh; /* set: a refresh of the cached states finished */
} VmQueued;

struct Vm {
        char *name;
        char *origin;
        Device **devices;
        size_t n;
        int *data_fds;          /* open data sessions, -1 when none; the worker's while busy */
        enum mig_state *states; /* last known state of each device */
        uint64_t *state_usec;   /* when each was learned (CLOCK_MONOTONIC), 0: never */
        int *state_unread;      /* the last read failed with this negative errno (ERROR then
                                 * stands for "unknown"), or 0 */
        unsigned run_generation; /* counts started runs: a refresh older than a run is stale */
        VmRefresh *refresh;      /* the read of the states in flight, or NULL */
        VmOptions options;

        sd_event_source *wake_source;
        int wake_fd;  /* eventfd: the worker's "look at the queue" */
        GMutex lock;  /* guards queue and run->commit */
        GQueue queue; /* VmQueued* */
        GCond commit_cond;
        bool handed_off; /* vm_is_handed_off() */

        VmRun *run; /* NULL when idle */
        SeqReport *last_report;
        char *state_text;

        VmBlockersFunc blockers_func;
        void *blockers_userdata;
        VmJournalFunc journal_func;
        void *journal_userdata;

        /* Steps given up on (hung) whose worker has not returned: the devices' peers are
         * held and no sequence may start until the deferred rollback has run. */
        VmLateSink *late;
        bool *outstanding;
        size_t n_outstanding;
        bool completion_pending; /* the deferred rollback waits to run */
        enum plan_op completion_op;
        bool stopping; /* vm_abort_for_shutdown(): no deferred rollback starts any more */
        VmEventFunc observer_event;
        VmDoneFunc observer_done;
        void *observer_userdata;
};

void vm_options_overlay(VmOptions *base, const VmOptions *over)
{
        if (over->explicit_mask & VM_OPT_STRATEGY)
                base->strategy = over->strategy;
        if (over->explicit_mask & VM_OPT_P2P_MODE)
                base->p2p_mode = over->p2p_mode;
        if (over->explicit_mask & VM_OPT_PHASE_DEADLINE)
                base->phase_deadline_ms = over->phase_deadline_ms;
        if (over->explicit_mask & VM_OPT_PARALLELISM)
                base->parallelism = over->parallelism;
        base->explicit_mask = over->explicit_mask;
}

void vm_set_blockers_func(Vm *vm, VmBlockersFunc func, void *userdata)
{
        vm->blockers_func = func;
        vm->blockers_userdata = userdata;
}

void vm_set_journal_func(Vm *vm, VmJournalFunc func, void *userdata)
{
        vm->journal_func = func;
        vm->journal_userdata = userdata;
}

/* Journal failures after BEGIN are the hook's to log: the sequence goes on regardless. */
static void vm_journal(Vm *vm, VmJournalPoint point, enum plan_op op, const SeqEvent *ev)
{
        VmJournalInfo info = {.op = op,
                              .ev = ev,
                              .handed_off = point == VM_JOURNAL_END && vm->last_report &&
                                            vm->last_report->handed_off};

        if (vm->journal_func)
                (void)vm->journal_func(vm, point, &info, vm->journal_userdata, NULL);
}

void vm_set_options(Vm *vm, const VmOptions *options)
{
        vm->options = *options;
}

void vm_options_init(VmOptions *o)
{
        *o = (VmOptions){
            .strategy = PLAN_STRATEGY_PARALLEL,
            .p2p_mode = PLAN_P2P_REQUIRE,
            .phase_deadline_ms = 10000,
            .parallelism = 0,
            .max_device_state_bytes = POLICY_MAX_DEVICE_STATE_DEFAULT,
        };
}

int vm_options_check(const VmOptions *o, GError **error)
{
        if (o->strategy != PLAN_STRATEGY_PARALLEL && o->strategy != PLAN_STRATEGY_QEMU &&
            o->strategy != PLAN_STRATEGY_NAIVE) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "Option 'strategy' must be 'parallel', 'qemu' or 'naive'.");
                return -EINVAL;
        }
        if (o->p2p_mode != PLAN_P2P_REQUIRE && o->p2p_mode != PLAN_P2P_BLOCKED) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "Option 'p2p-mode' must be 'require-p2p' or 'p2p-blocked'.");
                return -EINVAL;
        }
        if (o->phase_deadline_ms < 1 || o->phase_deadline_ms > VM_PHASE_DEADLINE_MAX) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "Option 'phase-deadline-ms' is %" PRIu32
                            "; give a value from 1 to %" PRIu32 ".",
                            o->phase_deadline_ms, VM_PHASE_DEADLINE_MAX);
                return -EINVAL;
        }
        if (o->parallelism > VM_PARALLELISM_MAX) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "Option 'parallelism' is %" PRIu32
                            "; give a value from 0 (one thread per device) to %" PRIu32 ".",
                            o->parallelism, VM_PARALLELISM_MAX);
                return -EINVAL;
        }
        return 0;
}

const char *vm_name_problem(const char *name)
{
        size_t len = name ? strlen(name) : 0;

        if (len < 1)
                return "the name is empty";
        if (len > VM_NAME_MAX)
                return "it is longer than " G_STRINGIFY(VM_NAME_MAX) " bytes";
        if (!g_utf8_validate(name, (gssize)len, NULL))
                return "it is not valid UTF-8";
        for (const char *p = name; *p; p = g_utf8_next_char(p)) {
                if (g_unichar_iscntrl(g_utf8_get_char(p)))
                        return "it contains a control character";
                if (*p == '/')
                        return "it contains '/'";
        }
        return NULL;
}

bool vm_name_is_valid(const char *name)
{
        return !vm_name_problem(name);
}

int vm_name_check(const char *name, const char *what, const char *fix, GError **error)
{
        const char *problem = vm_name_problem(name);
        g_autofree char *shown = NULL;

        if (!problem)
                return 0;
        if (!name || !*name) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "The %s is empty; %s.", what, fix);
                return -EINVAL;
        }
        shown = vm_name_shown(name);
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                    "%c%s '%s' cannot be a VM name: %s; %s.", g_ascii_toupper(what[0]), what + 1,
                    shown, problem, fix);
        return -EINVAL;
}

char *vm_name_shown(const char *name)
{
        GString *s = g_string_new(NULL);
        const char *p = name ? name : "";
        size_t chars = 0;

        while (*p) {
                gunichar c = g_utf8_get_char_validated(p, -1);

                if (chars == VM_NAME_SHOWN) {
                        g_string_append(s, "\xe2\x80\xa6"); /* … */
                        break;
                }
                chars++;
                if (c == (gunichar)-1 || c == (gunichar)-2) {
                        g_string_append_printf(s, "\\x%02x", (unsigned char)*p++);
                } else if (g_unichar_iscntrl(c) && c < 0x100) {
                        g_string_append_printf(s, "\\x%02x", (unsigned)c);
                        p = g_utf8_next_char(p);
                } else {
                        const char *next = g_utf8_next_char(p);
                        g_string_append_len(s, p, next - p);
                        p = next;
                }
        }
        return g_string_free(s, FALSE);
}

char *vm_no_such_vm_message(const char *name)
{
        g_autofree char *shown = NULL;

        if (!name || !*name)
                return g_strdup("The VM name is empty; ListVMs shows the registered VMs.");
        shown = vm_name_shown(name);
        return g_strdup_printf("No VM named '%s' is registered; ListVMs shows the registered ones.",
                               shown);
}

static int vm_wake_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static void vm_queue_push(Vm *vm, VmQueued *q);

static void *late_sink_ref(void *userdata)
{
        VmLateSink *sink = userdata;

        g_atomic_int_inc(&sink->refcount);
        return sink;
}

static void late_sink_unref(void *userdata)
{
        VmLateSink *sink = userdata;

        if (!sink || !g_atomic_int_dec_and_test(&sink->refcount))
                return;
        g_mutex_clear(&sink->lock);
        g_free(sink);
}

/* A hung step's worker returned (any thread): the loop learns it through the queue. */
static void late_sink_return(size_t device, enum mig_state reached, int error, void *userdata)
{
        VmLateSink *sink = userdata;

        g_mutex_lock(&sink->lock);
        if (sink->vm) {
                VmQueued *q = g_new0(VmQueued, 1);

                q->late = true;
                q->ev.device = device;
                q->ev.new_state = reached;
                vm_queue_push(sink->vm, q);
        }
        g_mutex_unlock(&sink->lock);
}

int vm_new(sd_event *event, const char *name, Device *const *devices, size_t n,
           const VmOptions *options, Vm **ret)
{
        g_autoptr(Vm) vm = g_new0(Vm, 1);
        int r;

        g_mutex_init(&vm->lock);
        g_cond_init(&vm->commit_cond);
        g_queue_init(&vm->queue);
        vm->wake_fd = -1;
        vm->name = g_strdup(name);
        vm->origin = g_strdup("dbus");
        vm->options = *options;
        vm->devices = g_new0(Device *, n);
        vm->outstanding = g_new0(bool, n ? n : 1);
        vm->late = g_new0(VmLateSink, 1);
        vm->late->refcount = 1;
        g_mutex_init(&vm->late->lock);
        vm->late->vm = vm;
        vm->data_fds = g_new(int, n);
        vm->states = g_new(enum mig_state, n);
        vm->state_usec = g_new0(uint64_t, n);
        vm->state_unread = g_new0(int, n);
        for (size_t i = 0; i < n; i++) {
                vm->devices[i] = device_ref(devices[i]);
                vm->data_fds[i] = -1;
                vm->state_unread[i] = MIN(device_get_state(devices[i], &vm->states[i]), 0);
                if (vm->state_unread[i])
                        vm->states[i] = MIG_STATE_ERROR;
                vm->state_usec[i] = now_usec();
        }
        vm->n = n;

        vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vm->wake_fd < 0)
                return -errno;
        r = sd_event_add_io(event, &vm->wake_source, vm->wake_fd, EPOLLIN, vm_wake_handler, vm);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(vm->wake_source, "vm-sequence");

        *ret = g_steal_pointer(&vm);
        return 0;
}

static void vm_refresh_unref(VmRefresh *f);
static void vm_drain(Vm *vm);

void vm_free(Vm *vm)
{
        if (!vm)
                return;
        vm_wait_idle(vm);
        /* A hung step that returns from now on finds nobody: it only logs. */
        if (vm->late) {
                g_mutex_lock(&vm->late->lock);
                vm->late->vm = NULL;
                g_mutex_unlock(&vm->late->lock);
                late_sink_unref(vm->late);
        }
        if (vm->refresh) {
                g_mutex_lock(&vm->refresh->lock);
                vm->refresh->vm = NULL;
                g_mutex_unlock(&vm->refresh->lock);
                g_clear_pointer(&vm->refresh, vm_refresh_unref);
                /* What the read queued before it saw the Vm go. */
                vm_drain(vm);
        }
        for (size_t i = 0; i < vm->n; i++) {
                if (vm->data_fds[i] >= 0)
                        close(vm->data_fds[i]);
                device_unref(vm->devices[i]);
        }
        sd_event_source_disable_unref(vm->wake_source);
        if (vm->wake_fd >= 0)
                close(vm->wake_fd);
        g_mutex_clear(&vm->lock);
        g_cond_clear(&vm->commit_cond);
        seq_report_free(vm->last_report);
        g_free(vm->devices);
        g_free(vm->outstanding);
        g_free(vm->data_fds);
        g_free(vm->states);
        g_free(vm->state_usec);
        g_free(vm->state_unread);
        g_free(vm->state_text);
        g_free(vm->name);
        g_free(vm->origin);
        g_free(vm);
}

void vm_set_origin(Vm *vm, const char *origin)
{
        g_free(vm->origin);
        vm->origin = g_strdup(origin);
}

const char *vm_origin(const Vm *vm)
{
        return vm->origin;
}

const char *vm_name(const Vm *vm)
{
        return vm->name;
}

size_t vm_n_devices(const Vm *vm)
{
        return vm->n;
}

Device *vm_device(const Vm *vm, size_t i)
{
        return i < vm->n ? vm->devices[i] : NULL;
}

ssize_t vm_device_index(const Vm *vm, const char *name)
{
        for (size_t i = 0; i < vm->n; i++)
                if (strcmp(vm->devices[i]->info.name, name) == 0)
                        return (ssize_t)i;
        return -1;
}

const VmOptions *vm_options(const Vm *vm)
{
        return &vm->options;
}

bool vm_is_busy(const Vm *vm, enum plan_op *ret_op)
{
        if (vm->run && ret_op)
                *ret_op = vm->run->op;
        return vm->run != NULL;
}

const SeqReport *vm_last_report(const Vm *vm)
{
        return vm->last_report;
}

static void vm_refresh_start(Vm *vm);

int vm_device_state(Vm *vm, size_t i, enum mig_state *ret)
{
        if (i >= vm->n)
                return -EINVAL;
        vm_refresh_start(vm);
        *ret = vm->states[i];
        return 0;
}

bool vm_device_state_unread(const Vm *vm, size_t i)
{
        return i < vm->n && vm->state_unread[i] < 0;
}

void vm_device_state_forget(Vm *vm, size_t i)
{
        if (i < vm->n)
                vm->state_usec[i] = 0;
}

int vm_device_state_error(const Vm *vm, size_t i)
{
        return i < vm->n ? vm->state_unread[i] : -EINVAL;
}

uint64_t vm_states_age_usec(const Vm *vm)
{
        uint64_t oldest = UINT64_MAX, now = now_usec();

        for (size_t i = 0; i < vm->n; i++)
                oldest = MIN(oldest, vm->state_usec[i]);
        if (vm->n == 0 || oldest == 0 || oldest > now)
                return oldest == 0 && vm->n ? UINT64_MAX : 0;
        return now - oldest;
}

/* Reads every device's state into the cache; a device that cannot be read counts as ERROR. */
static void vm_refresh_states(Vm *vm, const SeqReport *skip_hung)
{
        for (size_t i = 0; i < vm->n; i++) {
                /* A hung step still holds the device: asking it would wait as long. */
                if (skip_hung && skip_hung->hung) {
                        bool hung = false;
                        for (guint j = 0; j < skip_hung->hung->len; j++)
                                hung |= g_strcmp0(skip_hung->hung->pdata[j],
                                                  vm->devices[i]->info.name) == 0;
                        if (hung)
                                continue;
                }
                vm->state_unread[i] = MIN(device_get_state(vm->devices[i], &vm->states[i]), 0);
                if (vm->state_unread[i])
                        vm->states[i] = MIG_STATE_ERROR;
                vm->state_usec[i] = now_usec();
        }
}

/* The VM's state named after the least advanced state every device shares. */
static const char *vm_state_from_devices(const Vm *vm)
{
        size_t running = 0, precopy = 0, p2p = 0, stop = 0, stop_copy = 0, resuming = 0;
        size_t running_without_p2p = 0;

        for (size_t i = 0; i < vm->n; i++) {
                bool has_p2p = vm->devices[i]->info.migration_flags & MIG_FLAG_P2P;

                switch (vm->states[i]) {
                case MIG_STATE_ERROR:
                        return "error";
                case MIG_STATE_RUNNING:
                        running++;
                        running_without_p2p += !has_p2p;
                        break;
                case MIG_STATE_PRE_COPY:
                        precopy++;
                        running_without_p2p += !has_p2p;
                        break;
                case MIG_STATE_RUNNING_P2P:
                case MIG_STATE_PRE_COPY_P2P:
                        p2p++;
                        break;
                case MIG_STATE_STOP:
                        stop++;
                        break;
                case MIG_STATE_STOP_COPY:
                        stop_copy++;
                        break;
                case MIG_STATE_RESUMING:
                        resuming++;
                        break;
                default:
                        return "mixed";
                }
        }
        if (running == vm->n)
                return "running";
        if (running + precopy == vm->n && precopy > 0 && p2p == 0)
                return "pre-copy";
        /* Devices without P2P keep running through the p2p phase (p2p-blocked mode). */
        if (p2p > 0 && p2p + running_without_p2p == vm->n)
                return "p2p-quiesced";
        if (stop == vm->n)
                return "stopped";
        if (stop + stop_copy == vm->n)
                return "saving";
        if (resuming == vm->n)
                return "resuming";
        return "mixed";
}

bool vm_is_handed_off(const Vm *vm)
{
        return vm->handed_off;
}

void vm_set_handed_off(Vm *vm, bool handed_off)
{
        vm->handed_off = handed_off;
}

const char *vm_state(Vm *vm)
{
        if (vm->run) {
                g_free(vm->state_text);
                vm->state_text = g_strdup_printf("sequencing:%s", plan_op_to_string(vm->run->op));
                return vm->state_text;
        }
        vm_refresh_start(vm);
        if (vm->handed_off)
                return "handed-off";
        return vm_state_from_devices(vm);
}

/* ---- the cached states, refreshed off the loop ---- */

static void vm_refresh_unref(VmRefresh *f)
{
        if (!f || !g_atomic_int_dec_and_test(&f->refcount))
                return;
        for (size_t i = 0; i < f->n; i++)
                device_unref(f->devices[i]);
        g_mutex_clear(&f->lock);
        g_free(f->devices);
        g_free(f->states);
        g_free(f->read);
        g_free(f->failed);
        g_free(f->read_usec);
        g_free(f);
}

static void vm_queue_push(Vm *vm, VmQueued *q);

static gpointer vm_refresh_thread(gpointer userdata)
{
        VmRefresh *f = userdata;

        for (size_t i = 0; i < f->n; i++) {
                if (!f->devices[i])
                        continue;
                /* A device that cannot be read counts as ERROR, as everywhere. */
                f->failed[i] = MIN(device_get_state(f->devices[i], &f->states[i]), 0);
                if (f->failed[i])
                        f->states[i] = MIG_STATE_ERROR;
                f->read[i] = true;
                f->read_usec[i] = now_usec();
        }
        g_mutex_lock(&f->lock);
        if (f->vm) {
                VmQueued *q = g_new0(VmQueued, 1);
                q->refresh = f; /* the queue's reference */
                g_atomic_int_inc(&f->refcount);
                vm_queue_push(f->vm, q);
        }
        g_mutex_unlock(&f->lock);
        vm_refresh_unref(f);
        return NULL;
}

/* A device whose step never returned is still inside the backend: asking it would hang too. */
static bool vm_device_hung(const Vm *vm, size_t i)
{
        const SeqReport *rep = vm->last_report;

        for (guint j = 0; rep && rep->hung && j < rep->hung->len; j++)
                if (g_strcmp0(rep->hung->pdata[j], vm->devices[i]->info.name) == 0)
                        return true;
        return false;
}

/*
 * Reads the states again on a thread when the cache is older than VM_STATES_FRESH_USEC and no
 * read or sequence is under way; the loop never waits for it. A refresh that cannot start
 * leaves the cache as it is (its age says so).
 */
static void vm_refresh_start(Vm *vm)
{
        g_autoptr(GError) error = NULL;
        VmRefresh *f;
        GThread *thread;

        if (vm->run || vm->refresh || vm->n == 0 || vm_states_age_usec(vm) < VM_STATES_FRESH_USEC)
                return;
        f = g_new0(VmRefresh, 1);
        f->refcount = 2; /* the Vm's and the thread's */
        g_mutex_init(&f->lock);
        f->vm = vm;
        f->generation = vm->run_generation;
        f->n = vm->n;
        f->devices = g_new0(Device *, vm->n);
        f->states = g_new0(enum mig_state, vm->n);
        f->read = g_new0(bool, vm->n);
        f->failed = g_new0(int, vm->n);
        f->read_usec = g_new0(uint64_t, vm->n);
        for (size_t i = 0; i < vm->n; i++)
                if (!vm_device_hung(vm, i))
                        f->devices[i] = device_ref(vm->devices[i]);
        vm->refresh = f;
        thread = g_thread_try_new("vm-states", vm_refresh_thread, f, &error);
        if (!thread) {
                log_warning("VM %s: cannot read its devices' states: %s; serving the cached "
                            "ones.",
                            vm->name, error->message);
                vm->refresh = NULL;
                vm_refresh_unref(f);
                vm_refresh_unref(f);
                return;
        }
        g_thread_unref(thread);
}

/* On the loop: the read's answers replace the cache unless a sequence began since. */
static void vm_refresh_finished(Vm *vm, VmRefresh *f)
{
        if (vm->refresh == f)
                g_clear_pointer(&vm->refresh, vm_refresh_unref);
        if (vm->run || f->generation != vm->run_generation)
                return;
        for (size_t i = 0; i < vm->n && i < f->n; i++)
                if (f->read[i] && f->read_usec[i] > vm->state_usec[i]) {
                        vm->states[i] = f->states[i];
                        vm->state_unread[i] = f->failed[i];
                        vm->state_usec[i] = f->read_usec[i];
                }
}

static int compare_strings(gconstpointer a, gconstpointer b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

GPtrArray *vm_groups(const Vm *vm)
{
        GPtrArray *groups = g_ptr_array_new_with_free_func(g_free);

        for (size_t i = 0; i < vm->n; i++) {
                const char *g = vm->devices[i]->info.iommu_group;
                bool seen = false;

                if (!g)
                        continue;
                for (guint j = 0; j < groups->len; j++)
                        seen |= strcmp(groups->pdata[j], g) == 0;
                if (!seen)
                        g_ptr_array_add(groups, g_strdup(g));
        }
        g_ptr_array_sort(groups, compare_strings);
        return groups;
}

/* "gpu0, nic1": the devices whose step is outstanding; NULL when none. */
char *vm_outstanding_devices(const Vm *vm)
{
        GString *names;

        if (vm->n_outstanding == 0)
                return NULL;
        names = g_string_new(NULL);
        for (size_t i = 0; i < vm->n; i++)
                if (vm->outstanding[i])
                        g_string_append_printf(names, "%s%s", names->len ? ", " : "",
                                               vm->devices[i]->info.name);
        return g_string_free(names, FALSE);
}

static char *step_outstanding_blocker(const Vm *vm)
{
        g_autofree char *names = vm_outstanding_devices(vm);

        if (!names)
                return NULL;
        return g_strdup_printf("step-outstanding: Device %s has not returned from a step that "
                               "passed its deadline; its peers are held at RUNNING_P2P and the "
                               "rollback finishes once it returns.",
                               names);
}

static GPtrArray *vm_compute_static_blockers(const Vm *vm);

GPtrArray *vm_compute_blockers(const Vm *vm)
{
        GPtrArray *blockers = vm->blockers_func ? vm->blockers_func(vm, vm->blockers_userdata)
                                                : vm_compute_static_blockers(vm);
        char *outstanding = step_outstanding_blocker(vm);

        if (outstanding)
                g_ptr_array_add(blockers, outstanding);
        return blockers;
}

/* Without a policy (the model used on its own): the devices' flags alone. */
static GPtrArray *vm_compute_static_blockers(const Vm *vm)
{
        GPtrArray *blockers = g_ptr_array_new_with_free_func(g_free);

        for (size_t i = 0; i < vm->n; i++) {
                const DeviceInfo *info = &vm->devices[i]->info;

                if (!(info->migration_flags & MIG_FLAG_STOP_COPY))
                        g_ptr_array_add(blockers,
                                        g_strdup_printf("Device %s cannot migrate: its driver %s "
                                                        "reports no VFIO migration support "
                                                        "(no STOP_COPY).",
                                                        info->name,
                                                        info->driver ? info->driver : "(unknown)"));
                else if (vm->n > 1 && vm->options.p2p_mode == PLAN_P2P_REQUIRE &&
                         !(info->migration_flags & MIG_FLAG_P2P))
                        g_ptr_array_add(
                            blockers, g_strdup_printf(
                                          "Device %s has no P2P quiesce state (RUNNING_P2P), which "
                                          "p2p-mode require-p2p needs on each of the VM's %zu "
                                          "devices; register the VM with p2p-mode p2p-blocked if "
                                          "its IOMMU context has no P2P mappings.",
                                          info->name, vm->n));
        }
        return blockers;
}

int vm_close_sessions(Vm *vm)
{
        if (vm->run || vm->n_outstanding > 0 || vm->completion_pending)
                return -EAGAIN;
        for (size_t i = 0; i < vm->n; i++)
                closep(&vm->data_fds[i]);
        return 0;
}

/* ---- worker thread side ---- */

static void vm_queue_push(Vm *vm, VmQueued *q)
{
        static const uint64_t one = 1;
        bool was_empty;

        g_mutex_lock(&vm->lock);
        was_empty = g_queue_is_empty(&vm->queue);
        g_queue_push_tail(&vm->queue, q);
        g_mutex_unlock(&vm->lock);
        /* The loop drains until the queue is empty, so only the first event after that needs
         * to wake it: one wake-up per step of 64 devices is a context switch per device. */
        if (was_empty)
                (void)!write(vm->wake_fd, &one, sizeof(one));
}

static void vm_seq_event(const SeqEvent *ev, void *userdata)
{
        VmRun *run = userdata;
        VmQueued *q = g_new0(VmQueued, 1);

        q->ev = *ev;
        q->phase = g_strdup(ev->phase);
        q->ev.phase = q->phase;
        vm_queue_push(run->vm, q);
}

/*
 * The Save's trailer waits for its durable commit record, which only the loop thread
 * writes: ask the loop and wait for its answer, up to the phase deadline (a loop that does
 * not answer fails the Save without its trailer, which is safe).
 */
static int vm_before_trailer(void *userdata)
{
        VmRun *run = userdata;
        Vm *vm = run->vm;
        VmQueued *q = g_new0(VmQueued, 1);
        uint64_t wait_us = run->seq.phase_deadline_us ? run->seq.phase_deadline_us : 10000000u;
        gint64 deadline = g_get_monotonic_time() + (gint64)wait_us;
        int r;

        q->commit = true;
        g_mutex_lock(&vm->lock);
        run->commit = COMMIT_ASKED;
        g_mutex_unlock(&vm->lock);
        vm_queue_push(vm, q);
        g_mutex_lock(&vm->lock);
        for (;;) {
                /* Once the loop is writing, the record may land: wait for the outcome. */
                if (run->commit == COMMIT_WRITING)
                        g_cond_wait(&vm->commit_cond, &vm->lock);
                else if (run->commit != COMMIT_ASKED)
                        break;
                else if (!g_cond_wait_until(&vm->commit_cond, &vm->lock, deadline) &&
                         run->commit == COMMIT_ASKED)
                        run->commit = COMMIT_ABANDONED;
        }
        r = run->commit == COMMIT_DONE ? run->commit_result : -ETIMEDOUT;
        g_mutex_unlock(&vm->lock);
        return r;
}

static gpointer vm_run_thread(gpointer userdata)
{
        VmRun *run = userdata;
        Vm *vm = run->vm;
        VmQueued *done = g_new0(VmQueued, 1);

        run->error =
            sequencer_run(run->plan, vm->devices, vm->data_fds, vm->n, &run->seq, &run->report);
        /* Close our copy now: a reader of the Save stream sees EOF only once every copy of
         * the writing end is closed. */
        closep(&run->fd);
        done->done = true;
        vm_queue_push(vm, done);
        return NULL;
}

/* ---- loop thread side ---- */

static void vm_run_free(VmRun *run)
{
        if (!run)
                return;
        seq_abort_free(run->abort);
        if (run->waiters)
                g_array_unref(run->waiters);
        plan_free(run->plan);
        closep(&run->fd);
        seq_report_free(run->report);
        g_free(run->renamed_from);
        g_free(run);
}

/* The sequencer promises a report; should it return none, the failure still gets one. */
static SeqReport *report_new_bare(const VmRun *run)
{
        SeqReport *r = g_new0(SeqReport, 1);

        r->op = run->op;
        r->strategy = run->vm->options.strategy;
        r->error = run->error;
        r->message = g_strdup_printf("The sequencer failed to run: %s.", g_strerror(-run->error));
        r->phases = g_array_new(false, true, sizeof(SeqPhaseTiming));
        r->steps = g_array_new(false, true, sizeof(SeqStep));
        r->lost_state = g_ptr_array_new_with_free_func(g_free);
        r->hung = g_ptr_array_new_with_free_func(g_free);
        return r;
}

static void vm_log_outcome(const Vm *vm, const SeqReport *rep, int error)
{
        g_autoptr(GString) phases = g_string_new(NULL);
        const char *result = error == 0 ? "ok" : rep->rolled_back ? "rolled-back" : "failed";

        for (guint i = 0; rep->phases && i < rep->phases->len; i++) {
                const SeqPhaseTiming *t = &g_array_index(rep->phases, SeqPhaseTiming, i);
                g_string_append_printf(phases, "%s%s %.3f ms%s", i ? ", " : "", t->name,
                                       (double)t->duration_us / 1000.0,
                                       t->error ? " (failed)" : "");
        }
        log_info("VM %s: %s (%s, %zu devices) %s in %.3f ms; phases: %s", vm->name,
                 plan_op_to_string(rep->op), plan_strategy_to_string(rep->strategy), vm->n, result,
                 (double)rep->total_us / 1000.0, phases->len ? phases->str : "none");
        if (error == 0)
                return;
        log_error("VM %s: %s failed: %s", vm->name, plan_op_to_string(rep->op),
                  rep->message ? rep->message : g_strerror(-error));
        for (guint i = 0; rep->lost_state && i < rep->lost_state->len; i++)
                log_error("VM %s: device %s fell into ERROR and was reset; its state is lost.",
                          vm->name, (const char *)rep->lost_state->pdata[i]);
        for (guint i = 0; rep->hung && i < rep->hung->len; i++)
                log_error("VM %s: device %s never returned from its step, even after cancel.",
                          vm->name, (const char *)rep->hung->pdata[i]);
}

/*
 * A device that refuses the loaded data on RESUMING -> STOP (-EINVAL, the kernel's answer)
 * was handed a bad stream just as when the stream's own checks fail (-EBADMSG): one outcome.
 */
static int resume_outcome(const SeqReport *rep, int error)
{
        if (rep->op != PLAN_OP_RESUME || error != -EINVAL || !rep->phases)
                return error;
        for (guint i = 0; i < rep->phases->len; i++) {
                const SeqPhaseTiming *t = &g_array_index(rep->phases, SeqPhaseTiming, i);
                if (t->error != 0)
                        return g_strcmp0(t->name, "validate") == 0 ? -EBADMSG : error;
        }
        return error;
}

/* A device the host removed (device_set_gone()) is the cause, whatever step noticed it. */
static void report_name_gone(const Vm *vm, SeqReport *rep)
{
        g_autoptr(GString) gone = g_string_new(NULL);
        char *message;

        for (size_t i = 0; i < vm->n; i++)
                if (device_is_gone(vm->devices[i]))
                        g_string_append_printf(gone, "%s%s", gone->len ? ", " : "",
                                               vm->devices[i]->info.name);
        if (!gone->len || rep->error == 0)
                return;
        message = g_strdup_printf("device %s was removed from the host during the sequence "
                                  "(hotplug)%s; %s",
                                  gone->str,
                                  rep->rolled_back ? " and the other devices were rolled back" : "",
                                  rep->message ? rep->message : g_strerror(-rep->error));
        g_free(rep->message);
        rep->message = message;
}

static int vm_start(Vm *vm, enum plan_op op, int fd, const char *renamed_from,
                    VmEventFunc on_event, VmDoneFunc on_done, void *userdata, GError **error);

/* An Abort caller waited for a run: what it is told (0: the VM is back to RUNNING). */
static int waiter_outcome(const SeqReport *rep, int error)
{
        if (rep->op == PLAN_OP_ABORT || rep->rolled_back)
                return error == 0 || rep->rolled_back ? 0 : error;
        return error ? error : -EIO;
}

static void waiters_done(Vm *vm, GArray *waiters, int error, const SeqReport *rep)
{
        for (guint i = 0; waiters && i < waiters->len; i++) {
                const VmWaiter *w = &g_array_index(waiters, VmWaiter, i);
                w->on_done(vm, error, rep, w->userdata);
        }
}

/* The chained Abort of vm_finish_run() ended: its waiters get its outcome. */
static void waiters_chain_done(Vm *vm, int error, const SeqReport *rep, void *userdata)
{
        g_autoptr(GArray) waiters = userdata;

        waiters_done(vm, waiters, error, rep);
}

/*
 * The run Abort callers waited for ended. Rolled back (or itself an abort): they share its
 * outcome. Finished before the abort could preempt it: they get an Abort of their own.
 */
static void vm_answer_waiters(Vm *vm, GArray *waiters, int error, const SeqReport *rep)
{
        g_autoptr(GError) e = NULL;

        if (!waiters || waiters->len == 0)
                return;
        if (error != 0 || rep->op == PLAN_OP_ABORT || vm->completion_pending) {
                waiters_done(vm, waiters, waiter_outcome(rep, error), rep);
                return;
        }
        if (vm_start(vm, PLAN_OP_ABORT, -1, NULL, vm->observer_event, waiters_chain_done,
                     g_array_ref(waiters), &e) < 0) {
                log_error("VM %s: the Abort after %s could not start: %s", vm->name,
                          plan_op_to_string(rep->op), e->message);
                g_array_unref(waiters);
                waiters_done(vm, waiters, -EIO, rep);
        }
}

/* The deferred rollback, once every outstanding step returned and nothing else runs. */
static void vm_maybe_complete(Vm *vm)
{
        g_autoptr(GError) e = NULL;

        if (vm->run || !vm->completion_pending || vm->n_outstanding > 0 || vm->stopping)
                return;
        vm->completion_pending = false;
        log_notice("VM %s: every outstanding step returned; finishing the deferred rollback "
                   "(%s)",
                   vm->name, plan_op_to_string(vm->completion_op));
        if (vm_start(vm, vm->completion_op, -1, NULL, vm->observer_event, vm->observer_done,
                     vm->observer_userdata, &e) < 0)
                log_error("VM %s: the deferred rollback could not start: %s; run Abort", vm->name,
                          e->message);
}

static void vm_finish_run(Vm *vm)
{
        VmRun *run = g_steal_pointer(&vm->run);
        VmDoneFunc on_done = run->on_done;
        void *userdata = run->userdata;
        g_autoptr(GArray) waiters = g_steal_pointer(&run->waiters);
        bool rollback_reset = run->seq.rollback_reset;
        int error = run->error;

        if (run->thread)
                g_thread_join(g_steal_pointer(&run->thread));
        if (!run->report)
                run->report = report_new_bare(run);
        seq_report_free(vm->last_report);
        vm->last_report = g_steal_pointer(&run->report);
        vm_run_free(run);
        error = resume_outcome(vm->last_report, error);
        report_name_gone(vm, vm->last_report);

        vm_refresh_states(vm, vm->last_report);
        vm_log_outcome(vm, vm->last_report, error);
        if (vm->last_report->handed_off) {
                vm->handed_off = true;
                log_notice("VM %s: handed off: its stream is complete and may run on a "
                           "destination; it stays stopped until Start (the destination failed) "
                           "or UnregisterVM (the destination runs).",
                           vm->name);
        }
        if (vm->last_report->hung && vm->last_report->hung->len > 0) {
                /* The journal keeps the sequence in flight until the rollback is done, so a
                 * crash meanwhile is recovered from a record that explains the devices. */
                vm->completion_pending = true;
                vm->completion_op =
                    rollback_reset ? PLAN_OP_RESET : plan_op_rollback(vm->last_report->op);
                log_warning("VM %s: the rollback waits for %u outstanding step(s)", vm->name,
                            (unsigned)vm->n_outstanding);
        } else {
                vm_journal(vm, VM_JOURNAL_END, vm->last_report->op, NULL);
        }
        if (on_done)
                on_done(vm, error, vm->last_report, userdata);
        vm_answer_waiters(vm, waiters, error, vm->last_report);
        vm_maybe_complete(vm);
}

/* A hung step returned: the device is where it landed; the rollback may go on. */
static void vm_late_return(Vm *vm, size_t device, enum mig_state reached)
{
        SeqEvent ev = {.kind = SEQ_EVENT_DEVICE_STATE, .phase = "late", .device = device};

        if (device >= vm->n || !vm->outstanding[device])
                return;
        vm->outstanding[device] = false;
        vm->n_outstanding--;
        ev.old_state = vm->states[device];
        ev.new_state = vm->states[device] = reached;
        log_notice("VM %s: device %s returned from its outstanding step in %s", vm->name,
                   vm->devices[device]->info.name, mig_state_to_string(reached));
        if (vm->observer_event)
                vm->observer_event(vm, &ev, vm->observer_userdata);
        vm_maybe_complete(vm);
}

/* Loop thread: the worker waits in vm_before_trailer() for this record. */
static void vm_commit(Vm *vm, VmRun *run)
{
        g_autoptr(GError) error = NULL;
        VmJournalInfo info = {.op = run->op};
        int r = 0;

        g_mutex_lock(&vm->lock);
        if (run->commit != COMMIT_ASKED) { /* the worker gave up waiting */
                g_mutex_unlock(&vm->lock);
                return;
        }
        run->commit = COMMIT_WRITING;
        g_mutex_unlock(&vm->lock);
        crash_point("journal-commit");
        if (vm->journal_func)
                r = vm->journal_func(vm, VM_JOURNAL_COMMIT, &info, vm->journal_userdata, &error);
        if (r < 0)
                log_error("VM %s: the Save's stream is not completed: %s", vm->name,
                          error ? error->message : g_strerror(-r));
        else
                crash_point("journal-committed");
        g_mutex_lock(&vm->lock);
        run->commit_result = r;
        run->commit = COMMIT_DONE;
        g_cond_broadcast(&vm->commit_cond);
        g_mutex_unlock(&vm->lock);
}

static void vm_dispatch(Vm *vm, VmQueued *q)
{
        if (q->refresh) {
                vm_refresh_finished(vm, q->refresh);
                vm_refresh_unref(q->refresh);
        } else if (q->done) {
                vm_finish_run(vm);
        } else if (q->late) {
                vm_late_return(vm, q->ev.device, q->ev.new_state);
        } else if (q->commit) {
                if (vm->run)
                        vm_commit(vm, vm->run);
        } else {
                if (q->ev.kind == SEQ_EVENT_DEVICE_STATE && q->ev.device < vm->n) {
                        vm->states[q->ev.device] = q->ev.new_state;
                        vm->state_usec[q->ev.device] = now_usec();
                }
                if (q->ev.kind == SEQ_EVENT_DEVICE_HUNG && q->ev.device < vm->n &&
                    !vm->outstanding[q->ev.device]) {
                        vm->outstanding[q->ev.device] = true;
                        vm->n_outstanding++;
                }
                if (vm->run &&
                    (q->ev.kind == SEQ_EVENT_PHASE_START || q->ev.kind == SEQ_EVENT_ROLLBACK_START))
                        vm_journal(vm, VM_JOURNAL_PHASE, vm->run->op, &q->ev);
                if (vm->run && vm->run->on_event)
                        vm->run->on_event(vm, &q->ev, vm->run->userdata);
        }
        g_free(q->phase);
        g_free(q);
}

static void vm_drain(Vm *vm)
{
        for (;;) {
                VmQueued *q;

                g_mutex_lock(&vm->lock);
                q = g_queue_pop_head(&vm->queue);
                g_mutex_unlock(&vm->lock);
                if (!q)
                        return;
                vm_dispatch(vm, q);
        }
}

static int vm_wake_handler(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        uint64_t count;

        (void)!read(fd, &count, sizeof(count));
        vm_drain(userdata);
        return 0;
}

void vm_wait_idle(Vm *vm)
{
        /* Not a join: the worker may wait for the loop (a Save's commit), so keep draining
         * until its completion, queued last, has been delivered. */
        while (vm->run) {
                struct pollfd p = {.fd = vm->wake_fd, .events = POLLIN};
                uint64_t count;

                if (poll(&p, 1, 100) > 0)
                        (void)!read(vm->wake_fd, &count, sizeof(count));
                vm_drain(vm);
        }
}

static int vm_plan_from_states(Vm *vm, enum plan_op op, Plan **ret, GError **error);

int vm_plan(Vm *vm, enum plan_op op, Plan **ret, GError **error)
{
        int r;

        for (size_t i = 0; i < vm->n; i++) {
                Device *d = vm->devices[i];

                /* Its step never returned: a read would hang the loop too; plan from the
                 * last state the sequencer reported, and the sequence meets the hang. */
                if (vm_device_hung(vm, i))
                        continue;
                r = device_get_state(d, &vm->states[i]);
                vm->state_unread[i] = r < 0;
                if (r < 0) {
                        g_autofree char *why = device_describe_error(d);
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                                    "Cannot read the migration state of device %s: %s%s%s.",
                                    d->info.name, g_strerror(-r), why ? ": " : "", why ? why : "");
                        return r;
                }
                vm->state_usec[i] = now_usec();
        }
        return vm_plan_from_states(vm, op, ret, error);
}

int vm_plan_cached(Vm *vm, enum plan_op op, Plan **ret, GError **error)
{
        vm_refresh_start(vm);
        return vm_plan_from_states(vm, op, ret, error);
}

/* The plan from the states in the cache (vm->states). */
static int vm_plan_from_states(Vm *vm, enum plan_op op, Plan **ret, GError **error)
{
        g_autofree PlanDevice *pd = g_new0(PlanDevice, vm->n);
        g_autofree char *reason = NULL;
        int r;

        for (size_t i = 0; i < vm->n; i++) {
                Device *d = vm->devices[i];

                pd[i] = (PlanDevice){
                    .name = d->info.name, .flags = d->info.migration_flags, .state = vm->states[i]};
                /* A session this daemon did not open (the VM was registered again, or the
                 * daemon restarted, after PreCopy) has no fd here: its data cannot be saved. */
                if ((op == PLAN_OP_QUIESCE || op == PLAN_OP_SAVE) &&
                    mig_state_is_saving(vm->states[i]) && vm->data_fds[i] < 0) {
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBADFD),
                                    "VM %s cannot %s: device %s is in %s, but this daemon holds "
                                    "no data session for it (the VM was registered again or "
                                    "the daemon restarted after PreCopy); run Abort to bring "
                                    "the VM back to RUNNING, then migrate again.",
                                    vm->name, plan_op_to_string(op), d->info.name,
                                    mig_state_to_string(vm->states[i]));
                        return -EBADFD;
                }
        }
        r = plan_build(op, vm->options.strategy, vm->options.p2p_mode, pd, vm->n, ret, &reason);
        if (r == -EINVAL) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "VM %s cannot %s from here: %s", vm->name, plan_op_to_string(op),
                            reason ? reason : "the devices' states do not allow it.");
                return -EBADFD;
        }
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EPERM),
                            "VM %s cannot %s: %s", vm->name, plan_op_to_string(op),
                            reason ? reason : g_strerror(-r));
                return r;
        }
        return 0;
}

static bool op_needs_migratable(enum plan_op op)
{
        /* Start and Abort bring a VM back to RUNNING: they must work whatever it holds. */
        return op == PLAN_OP_PRECOPY || op == PLAN_OP_QUIESCE || op == PLAN_OP_SAVE ||
               op == PLAN_OP_RESUME;
}

static int start_operation(Vm *vm, enum plan_op op, int fd, const char *renamed_from,
                           VmEventFunc on_event, VmDoneFunc on_done, void *userdata,
                           GError **error);

int vm_start_operation(Vm *vm, enum plan_op op, int fd, VmEventFunc on_event, VmDoneFunc on_done,
                       void *userdata, GError **error)
{
        return start_operation(vm, op, fd, NULL, on_event, on_done, userdata, error);
}

int vm_start_resume(Vm *vm, int fd, const char *renamed_from, VmEventFunc on_event,
                    VmDoneFunc on_done, void *userdata, GError **error)
{
        return start_operation(vm, PLAN_OP_RESUME, fd, renamed_from, on_event, on_done, userdata,
                               error);
}

static int start_operation(Vm *vm, enum plan_op op, int fd, const char *renamed_from,
                           VmEventFunc on_event, VmDoneFunc on_done, void *userdata, GError **error)
{
        _cleanup_close_ int owned_fd = fd;
        g_autofree char *outstanding = vm_outstanding_devices(vm);

        if (vm->run) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBUSY),
                            "VM %s is running a %s sequence; wait for it to finish.", vm->name,
                            plan_op_to_string(vm->run->op));
                return -EAGAIN;
        }
        if (vm->handed_off && op != PLAN_OP_START) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBADFD),
                            "VM %s was handed off: its Save stream is complete and may be "
                            "running on a destination, so %s is refused and its devices stay "
                            "stopped. Call Start if the destination failed (the VM runs here "
                            "again), or UnregisterVM if the destination runs it.",
                            vm->name, plan_op_to_string(op));
                return -EBADFD;
        }
        /* The device is still in its worker's hands: no second request may reach it. */
        if (outstanding || vm->completion_pending) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBUSY),
                            "VM %s %s%s%s; its peers are held at RUNNING_P2P and the rollback "
                            "finishes on its own once the step returns (watch LastSequence).",
                            vm->name,
                            outstanding ? "has a step outstanding on device "
                                        : "waits for its "
                                          "deferred rollback",
                            outstanding ? outstanding : "",
                            outstanding ? " (it passed its deadline and ignored cancel)" : "");
                return -EAGAIN;
        }
        return vm_start(vm, op, steal_fd(&owned_fd), renamed_from, on_event, on_done, userdata,
                        error);
}

int vm_abort_running(Vm *vm, VmDoneFunc on_done, void *userdata)
{
        VmWaiter w = {on_done, userdata};

        if (!vm->run)
                return -ESRCH;
        /* An abort (or reset) under way is what the caller asks for: wait for it. */
        if (vm->run->op != PLAN_OP_ABORT && vm->run->op != PLAN_OP_RESET) {
                log_notice("VM %s: Abort during %s: preempting it", vm->name,
                           plan_op_to_string(vm->run->op));
                seq_abort_signal(vm->run->abort);
        }
        if (!vm->run->waiters)
                vm->run->waiters = g_array_new(FALSE, FALSE, sizeof(VmWaiter));
        g_array_append_val(vm->run->waiters, w);
        return 0;
}

void vm_abort_for_shutdown(Vm *vm)
{
        vm->stopping = true;
        if (vm->run && vm->run->op != PLAN_OP_ABORT && vm->run->op != PLAN_OP_RESET) {
                log_notice("VM %s: shutting down: aborting its %s", vm->name,
                           plan_op_to_string(vm->run->op));
                seq_abort_signal(vm->run->abort);
        }
}

void vm_set_observer(Vm *vm, VmEventFunc on_event, VmDoneFunc on_done, void *userdata)
{
        vm->observer_event = on_event;
        vm->observer_done = on_done;
        vm->observer_userdata = userdata;
}

/* vm_start_operation() once the VM is known to be free. */
static int vm_start(Vm *vm, enum plan_op op, int fd, const char *renamed_from,
                    VmEventFunc on_event, VmDoneFunc on_done, void *userdata, GError **error)
{
        _cleanup_close_ int owned_fd = fd;
        g_autoptr(GError) thread_error = NULL;
        VmRun *run;
        Plan *plan = NULL;
        int r;

        for (size_t i = 0; i < vm->n; i++)
                if (device_is_gone(vm->devices[i])) {
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(ENODEV),
                                    "VM %s cannot %s: its device %s was removed from the host; "
                                    "unregister VM %s and register it again with the devices "
                                    "it has.",
                                    vm->name, plan_op_to_string(op), vm->devices[i]->info.name,
                                    vm->name);
                        return -ENODEV;
                }
        if (op_needs_migratable(op)) {
                g_autoptr(GPtrArray) blockers = vm_compute_blockers(vm);
                if (blockers->len > 0) {
                        g_ptr_array_add(blockers, NULL);
                        g_autofree char *all = g_strjoinv(" ", (char **)blockers->pdata);
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EPERM),
                                    "VM %s cannot migrate: %s", vm->name, all);
                        log_notice("VM %s: %s refused before any device moved: %s", vm->name,
                                   plan_op_to_string(op), all);
                        return -EPERM;
                }
        }
        r = vm_plan(vm, op, &plan, error);
        if (r < 0)
                return r;
        /* The record is on disk before any device moves, or nothing moves. */
        if (vm->journal_func) {
                VmJournalInfo info = {.op = op, .plan = plan, .states = vm->states};
                r = vm->journal_func(vm, VM_JOURNAL_BEGIN, &info, vm->journal_userdata, error);
                if (r < 0) {
                        plan_free(plan);
                        return r;
                }
        }
        crash_point("journal-begin");
        /* Start on a handed-off VM is the caller's decision: the destination failed. */
        if (op == PLAN_OP_START && vm->handed_off) {
                log_notice("VM %s: Start after a hand-off: the VM runs here again.", vm->name);
                vm->handed_off = false;
        }

        run = g_new0(VmRun, 1);
        run->vm = vm;
        run->op = op;
        run->plan = plan;
        run->fd = steal_fd(&owned_fd);
        run->renamed_from = g_strdup(renamed_from);
        run->on_event = on_event;
        run->on_done = on_done;
        run->userdata = userdata;
        run->abort = seq_abort_new();
        if (!run->abort) {
                r = -errno;
                vm_run_free(run);
                vm_journal(vm, VM_JOURNAL_END, op, NULL);
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "Cannot set up VM %s's sequence: %s.", vm->name, g_strerror(-r));
                return r;
        }
        run->seq = (SeqOptions){
            .parallelism = vm->options.parallelism,
            .phase_deadline_us = (uint64_t)vm->options.phase_deadline_ms * 1000u,
            .p2p_mode = vm->options.p2p_mode,
            .rollback_reset = vm->options.rollback_reset,
            .save_fd = op == PLAN_OP_SAVE ? run->fd : -1,
            .load_fd = op == PLAN_OP_RESUME ? run->fd : -1,
            .vm_name = vm->name,
            .renamed_from = run->renamed_from,
            .max_device_state_bytes = vm->options.max_device_state_bytes,
            .abort = run->abort,
            .on_event = vm_seq_event,
            .before_trailer = op == PLAN_OP_SAVE ? vm_before_trailer : NULL,
            .userdata = run,
            .on_late = late_sink_return,
            .late_ref = late_sink_ref,
            .late_unref = late_sink_unref,
            .late_userdata = vm->late,
        };

        vm->run = run;
        vm->run_generation++;
        log_info("VM %s: %s (%s, %zu phases, %zu devices) started", vm->name, plan_op_to_string(op),
                 plan_strategy_to_string(plan->strategy), plan->n_phases, vm->n);
        run->thread = g_thread_try_new("vm-sequence", vm_run_thread, run, &thread_error);
        if (!run->thread) {
                vm->run = NULL;
                vm_run_free(run);
                vm_journal(vm, VM_JOURNAL_END, op, NULL);
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(ENOMEM),
                            "Cannot start a thread for VM %s's sequence: %s", vm->name,
                            thread_error->message);
                return -ENOMEM;
        }
        return 0;
}
