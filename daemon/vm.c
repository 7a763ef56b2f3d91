/* vm: one VM's devices, options and data sessions, and the sequences run on them */
#include "vm.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* One operation in flight: owned by the Vm while busy, read by the worker thread. */
typedef struct VmRun {
        Vm *vm;
        enum plan_op op;
        Plan *plan;
        int fd; /* Save destination / Resume source, owned */
        SeqOptions seq;
        GThread *thread;
        VmEventFunc on_event;
        VmDoneFunc on_done;
        void *userdata;
        /* Written by the worker before it queues the completion. */
        int error;
        SeqReport *report;
} VmRun;

/* What the worker hands to the loop: a progress event, or the completion when done. */
typedef struct VmQueued {
        bool done;
        SeqEvent ev;
        char *phase; /* ev.phase points here */
} VmQueued;

struct Vm {
        char *name;
        char *origin;
        Device **devices;
        size_t n;
        int *data_fds;          /* open data sessions, -1 when none; the worker's while busy */
        enum mig_state *states; /* last known state of each device */
        VmOptions options;

        sd_event_source *wake_source;
        int wake_fd;  /* eventfd: the worker's "look at the queue" */
        GMutex lock;  /* guards queue */
        GQueue queue; /* VmQueued* */

        VmRun *run; /* NULL when idle */
        SeqReport *last_report;
        char *state_text;

        VmBlockersFunc blockers_func;
        void *blockers_userdata;
        VmJournalFunc journal_func;
        void *journal_userdata;
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
        VmJournalInfo info = {.op = op, .ev = ev};

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
        };
}

int vm_options_check(const VmOptions *o, GError **error)
{
        if (o->strategy != PLAN_STRATEGY_PARALLEL && o->strategy != PLAN_STRATEGY_SERIAL) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "Option 'strategy' must be 'parallel' or 'serial'.");
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

int vm_new(sd_event *event, const char *name, Device *const *devices, size_t n,
           const VmOptions *options, Vm **ret)
{
        g_autoptr(Vm) vm = g_new0(Vm, 1);
        int r;

        g_mutex_init(&vm->lock);
        g_queue_init(&vm->queue);
        vm->wake_fd = -1;
        vm->name = g_strdup(name);
        vm->origin = g_strdup("dbus");
        vm->options = *options;
        vm->devices = g_new0(Device *, n);
        vm->data_fds = g_new(int, n);
        vm->states = g_new(enum mig_state, n);
        for (size_t i = 0; i < n; i++) {
                vm->devices[i] = device_ref(devices[i]);
                vm->data_fds[i] = -1;
                if (device_get_state(devices[i], &vm->states[i]) < 0)
                        vm->states[i] = MIG_STATE_ERROR;
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

void vm_free(Vm *vm)
{
        if (!vm)
                return;
        vm_wait_idle(vm);
        for (size_t i = 0; i < vm->n; i++) {
                if (vm->data_fds[i] >= 0)
                        close(vm->data_fds[i]);
                device_unref(vm->devices[i]);
        }
        sd_event_source_disable_unref(vm->wake_source);
        if (vm->wake_fd >= 0)
                close(vm->wake_fd);
        g_mutex_clear(&vm->lock);
        seq_report_free(vm->last_report);
        g_free(vm->devices);
        g_free(vm->data_fds);
        g_free(vm->states);
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

int vm_device_state(Vm *vm, size_t i, enum mig_state *ret)
{
        int r;

        if (i >= vm->n)
                return -EINVAL;
        if (!vm->run) {
                r = device_get_state(vm->devices[i], &vm->states[i]);
                if (r < 0)
                        return r;
        }
        *ret = vm->states[i];
        return 0;
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
                if (device_get_state(vm->devices[i], &vm->states[i]) < 0)
                        vm->states[i] = MIG_STATE_ERROR;
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

const char *vm_state(Vm *vm)
{
        if (vm->run) {
                g_free(vm->state_text);
                vm->state_text = g_strdup_printf("sequencing:%s", plan_op_to_string(vm->run->op));
                return vm->state_text;
        }
        vm_refresh_states(vm, NULL);
        return vm_state_from_devices(vm);
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

GPtrArray *vm_compute_blockers(const Vm *vm)
{
        GPtrArray *blockers;

        if (vm->blockers_func)
                return vm->blockers_func(vm, vm->blockers_userdata);
        /* Without a policy (the model used on its own): the devices' flags alone. */
        blockers = g_ptr_array_new_with_free_func(g_free);

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
        if (vm->run)
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
        plan_free(run->plan);
        closep(&run->fd);
        seq_report_free(run->report);
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

static void vm_finish_run(Vm *vm)
{
        VmRun *run = g_steal_pointer(&vm->run);
        VmDoneFunc on_done = run->on_done;
        void *userdata = run->userdata;
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
        vm_journal(vm, VM_JOURNAL_END, vm->last_report->op, NULL);
        if (on_done)
                on_done(vm, error, vm->last_report, userdata);
}

static void vm_dispatch(Vm *vm, VmQueued *q)
{
        if (q->done) {
                vm_finish_run(vm);
        } else {
                if (q->ev.kind == SEQ_EVENT_DEVICE_STATE && q->ev.device < vm->n)
                        vm->states[q->ev.device] = q->ev.new_state;
                if (vm->run && (q->ev.kind == SEQ_EVENT_PHASE_START ||
                                q->ev.kind == SEQ_EVENT_ROLLBACK_START))
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
        if (!vm->run)
                return;
        /* The thread queues its completion last, so after the join the queue holds it all. */
        if (vm->run->thread)
                g_thread_join(g_steal_pointer(&vm->run->thread));
        vm_drain(vm);
}

int vm_plan(Vm *vm, enum plan_op op, Plan **ret, GError **error)
{
        g_autofree PlanDevice *pd = g_new0(PlanDevice, vm->n);
        g_autofree char *reason = NULL;
        int r;

        for (size_t i = 0; i < vm->n; i++) {
                Device *d = vm->devices[i];

                r = device_get_state(d, &vm->states[i]);
                if (r < 0) {
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                                    "Cannot read the migration state of device %s: %s.",
                                    d->info.name, g_strerror(-r));
                        return r;
                }
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

int vm_start_operation(Vm *vm, enum plan_op op, int fd, VmEventFunc on_event, VmDoneFunc on_done,
                       void *userdata, GError **error)
{
        _cleanup_close_ int owned_fd = fd;
        g_autoptr(GError) thread_error = NULL;
        VmRun *run;
        Plan *plan = NULL;
        int r;

        if (vm->run) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBUSY),
                            "VM %s is running a %s sequence; wait for it to finish.", vm->name,
                            plan_op_to_string(vm->run->op));
                return -EAGAIN;
        }
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

        run = g_new0(VmRun, 1);
        run->vm = vm;
        run->op = op;
        run->plan = plan;
        run->fd = steal_fd(&owned_fd);
        run->on_event = on_event;
        run->on_done = on_done;
        run->userdata = userdata;
        run->seq = (SeqOptions){
            .parallelism = vm->options.parallelism,
            .phase_deadline_us = (uint64_t)vm->options.phase_deadline_ms * 1000u,
            .p2p_mode = vm->options.p2p_mode,
            .rollback_reset = vm->options.rollback_reset,
            .save_fd = op == PLAN_OP_SAVE ? run->fd : -1,
            .load_fd = op == PLAN_OP_RESUME ? run->fd : -1,
            .on_event = vm_seq_event,
            .userdata = run,
        };

        vm->run = run;
        log_info("VM %s: %s (%s, %zu phases, %zu devices) started", vm->name, plan_op_to_string(op),
                 plan_strategy_to_string(vm->options.strategy), plan->n_phases, vm->n);
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
