/* bus-vm: org.vfiomig.Coordinator1.VM at /org/vfiomig/Coordinator1/vm/<name> */
#include "bus/bus-vm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "bus/bus-device.h"
#include "bus/bus-errors.h"
#include "bus/bus-manager.h"
#include "bus/bus-util.h"
#include "core/iova.h"
#include "log.h"

/* A method call whose reply waits for its sequence. */
typedef struct VmCall {
        Daemon *daemon;
        sd_bus_message *message;
} VmCall;

/* The find function checks the name; handlers look the VM up from the path (it cannot go
 * away in between: both run on the loop thread). */
static int vm_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                          void **found, sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autofree char *name = bus_path_name(path, BUS_PATH_VM);

        if (!name || !registry_get_vm(d->registry, name))
                return 0;
        *found = d;
        return 1;
}

static int vm_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                              sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autoptr(GPtrArray) vms = registry_vms(d->registry);
        g_auto(GStrv) paths = g_new0(char *, vms->len + 1);

        for (guint i = 0; i < vms->len; i++) {
                paths[i] = bus_vm_path(vm_name(vms->pdata[i]));
                if (!paths[i])
                        return -ENOMEM;
        }
        *nodes = g_steal_pointer(&paths);
        return 0;
}

static Vm *vm_from_path(Daemon *d, const char *path, sd_bus_error *error)
{
        g_autofree char *name = bus_path_name(path, BUS_PATH_VM);
        Vm *vm = name ? registry_get_vm(d->registry, name) : NULL;

        if (!vm)
                sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_VM, "No VM is registered at %s.", path);
        return vm;
}

/* ---- the report a{sv} (docs/dbus-api.md, "The report") ---- */

/* Opens the dict entry key -> variant of an array of elements of signature element; the
 * caller appends the elements and closes with close_array_entry(). */
static int open_array_entry(sd_bus_message *m, const char *key, const char *element)
{
        char array[16];
        int r;

        g_snprintf(array, sizeof(array), "a%s", element);
        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", key);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', array);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', element);
        return r;
}

static int close_array_entry(sd_bus_message *m)
{
        int r = 0;

        /* array, variant, dict entry */
        for (int i = 0; i < 3 && r >= 0; i++)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_strings(sd_bus_message *m, const char *key, const GPtrArray *strings)
{
        int r = open_array_entry(m, key, "s");

        for (guint i = 0; r >= 0 && strings && i < strings->len; i++)
                r = sd_bus_message_append(m, "s", (const char *)strings->pdata[i]);
        return r < 0 ? r : close_array_entry(m);
}

/* errno values go on the wire positive, as errno(3) names them; 0 when there was none. */
static int32_t wire_errno(int error)
{
        return error < 0 ? -error : error;
}

static int append_phase(sd_bus_message *m, const SeqPhaseTiming *t)
{
        return sd_bus_message_append(m, "a{sv}", 4, "name", "s", t->name ? t->name : "", "start-us",
                                     "t", t->start_us, "duration-us", "t", t->duration_us, "errno",
                                     "i", wire_errno(t->error));
}

static int append_step(sd_bus_message *m, const Vm *vm, const SeqStep *s)
{
        Device *dev = vm_device(vm, s->device);

        return sd_bus_message_append(
            m, "a{sv}", 11, "device", "s", dev ? dev->info.name : "", "phase", "s",
            s->phase ? s->phase : "", "from", "s", mig_state_to_string(s->from), "target", "s",
            mig_state_to_string(s->target), "reached", "s", mig_state_to_string(s->reached), "path",
            "s", s->path ? s->path : "", "start-us", "t", s->start_us, "duration-us", "t",
            s->duration_us, "errno", "i", wire_errno(s->error), "message", "s",
            s->message ? s->message : "", "bytes", "t", s->bytes);
}

/* key -> aa{sv}, one dictionary per step or per phase of the report. */
static int append_dict_array(sd_bus_message *m, const char *key, const Vm *vm, const GArray *a,
                             bool steps)
{
        int r = open_array_entry(m, key, "a{sv}");

        for (guint i = 0; r >= 0 && a && i < a->len; i++)
                r = steps ? append_step(m, vm, &g_array_index(a, SeqStep, i))
                          : append_phase(m, &g_array_index(a, SeqPhaseTiming, i));
        return r < 0 ? r : close_array_entry(m);
}

static const char *report_result(const SeqReport *rep)
{
        if (rep->error == 0)
                return "ok";
        if (rep->rollback_deferred)
                return "deferred";
        return rep->rolled_back ? "rolled-back" : "failed";
}

/* The report as a{sv}; an empty dictionary for NULL (no sequence yet). */
static int append_report(sd_bus_message *m, const Vm *vm, const SeqReport *rep)
{
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        if (rep) {
                r = sd_bus_message_append(
                    m, "{sv}{sv}{sv}{sv}{sv}", "operation", "s", plan_op_to_string(rep->op),
                    "strategy", "s", plan_strategy_to_string(rep->strategy), "result", "s",
                    report_result(rep), "error", "s",
                    rep->message && rep->error ? rep->message : "", "total-us", "t", rep->total_us);
                if (r < 0)
                        return r;
                r = append_dict_array(m, "phases", vm, rep->phases, false);
                if (r < 0)
                        return r;
                r = append_dict_array(m, "steps", vm, rep->steps, true);
                if (r < 0)
                        return r;
                r = append_strings(m, "lost-state", rep->lost_state);
                if (r < 0)
                        return r;
                r = append_strings(m, "hung", rep->hung);
                if (r < 0)
                        return r;
                r = sd_bus_message_append(m, "{sv}", "aborted", "b", (int)rep->aborted);
                if (r >= 0 && rep->migration_id)
                        r = sd_bus_message_append(m, "{sv}", "migration-id", "s",
                                                  rep->migration_id);
                if (r >= 0 && rep->stream_vm)
                        r = sd_bus_message_append(m, "{sv}", "stream-vm", "s", rep->stream_vm);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}

/* ---- sequences: the loop-thread callbacks of vm_start_operation() ---- */

static const char *progress_status(SeqEventKind kind)
{
        switch (kind) {
        case SEQ_EVENT_PHASE_START:
                return "started";
        case SEQ_EVENT_PHASE_DONE:
                return "done";
        case SEQ_EVENT_PHASE_FAILED:
                return "failed";
        case SEQ_EVENT_ROLLBACK_START:
                return "rollback";
        default:
                return NULL;
        }
}

static void emit_vm_changed(Daemon *d, const Vm *vm, const char *property, const char *other);

void bus_vm_emit_sequence_event(Daemon *d, Vm *vm, enum plan_op op, const SeqEvent *ev)
{
        const char *status;

        if (ev->kind == SEQ_EVENT_DEVICE_STATE) {
                Device *dev = vm_device(vm, ev->device);
                if (dev)
                        bus_device_emit_state_changed(d, dev->info.name, ev->old_state,
                                                      ev->new_state);
                return;
        }
        if (ev->kind == SEQ_EVENT_DEVICE_HUNG) {
                /* The step-outstanding blocker appeared. */
                emit_vm_changed(d, vm, "Blockers", NULL);
                return;
        }
        status = progress_status(ev->kind);
        if (!status)
                return;
        bus_manager_emit_sequence_progress(d, vm_name(vm), plan_op_to_string(op),
                                           ev->phase ? ev->phase : "", (unsigned)ev->phase_index,
                                           (unsigned)ev->n_phases, status, ev->elapsed_us);
}

/* The operation a VM's sequence runs, for its events. */
static enum plan_op running_op(Vm *vm)
{
        enum plan_op op = PLAN_OP_COUNT;

        (void)vm_is_busy(vm, &op);
        return op;
}

static void on_sequence_event(Vm *vm, const SeqEvent *ev, void *userdata)
{
        VmCall *call = userdata;

        manager_sequence_event(&call->daemon->manager, vm, running_op(vm), ev);
}

/* The VM's own sequences (the deferred rollback) and a hung step's late return. */
static void on_observed_event(Vm *vm, const SeqEvent *ev, void *userdata)
{
        Daemon *d = userdata;

        manager_sequence_event(&d->manager, vm, running_op(vm), ev);
        if (ev->kind == SEQ_EVENT_DEVICE_STATE && g_strcmp0(ev->phase, "late") == 0)
                emit_vm_changed(userdata, vm, "Blockers", "State");
}

static void on_observed_done(Vm *vm, int error, const SeqReport *rep, void *userdata)
{
        emit_vm_changed(userdata, vm, "State", "LastSequence");
        emit_vm_changed(userdata, vm, "Blockers", NULL);
        daemon_sequence_finished(userdata);
}

void bus_vm_observe(Daemon *d, Vm *vm)
{
        vm_set_observer(vm, on_observed_event, on_observed_done, d);
}

static void emit_vm_changed(Daemon *d, const Vm *vm, const char *property, const char *other)
{
        g_autofree char *path = bus_vm_path(vm_name(vm));
        int r;

        if (!path)
                return;
        r = sd_bus_emit_properties_changed(d->bus, path, BUS_IFACE_VM, property, other, NULL);
        if (r < 0)
                log_debug("Cannot emit PropertiesChanged for VM %s: %s", vm_name(vm), strerror(-r));
}

void bus_vm_emit_policy_changed(Daemon *d)
{
        g_autoptr(GPtrArray) vms = registry_vms(d->registry);

        if (!d->bus)
                return;
        for (guint i = 0; i < vms->len; i++) {
                g_autofree char *path = bus_vm_path(vm_name(vms->pdata[i]));
                int r;

                if (!path)
                        continue;
                r = sd_bus_emit_properties_changed(d->bus, path, BUS_IFACE_VM, "P2PMode",
                                                   "Strategy", "PhaseDeadlineMs", "Parallelism",
                                                   "Migratable", "Blockers", NULL);
                if (r < 0)
                        log_debug("Cannot emit PropertiesChanged for VM %s: %s",
                                  vm_name(vms->pdata[i]), strerror(-r));
        }
}

static int reply_report(sd_bus_message *call, const Vm *vm, const SeqReport *rep)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(call, &reply);
        if (r < 0)
                return r;
        r = append_report(reply, vm, rep);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static void on_sequence_done(Vm *vm, int error, const SeqReport *rep, void *userdata)
{
        VmCall *call = userdata;
        int r;

        emit_vm_changed(call->daemon, vm, "State", "LastSequence");
        if (rep && rep->hung && rep->hung->len > 0)
                emit_vm_changed(call->daemon, vm, "Blockers", NULL);
        if (error == 0) {
                r = reply_report(call->message, vm, rep);
        } else {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                bus_error_set_sequence(&e, error, rep ? rep->message : NULL);
                r = sd_bus_reply_method_error(call->message, &e);
        }
        /* The caller may have left; the report stays in LastSequence. */
        if (r < 0)
                log_debug("Cannot reply to the caller of VM %s's sequence: %s", vm_name(vm),
                          strerror(-r));
        sd_bus_message_unref(call->message);
        daemon_sequence_finished(call->daemon);
        g_free(call);
}

/* ---- methods ---- */

/* Save and Resume: our own copy of the caller's fd, checked for the direction it is used in. */
static int read_stream_fd(sd_bus_message *m, enum plan_op op, int *ret, sd_bus_error *error)
{
        _cleanup_close_ int fd = -1;
        int borrowed, flags, r;
        bool saving = op == PLAN_OP_SAVE;

        r = sd_bus_message_read(m, "h", &borrowed);
        if (r < 0)
                return r;
        /* The message owns the fd it carried and may be gone before the sequence ends. */
        fd = fcntl(borrowed, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if ((flags & O_ACCMODE) == (saving ? O_RDONLY : O_WRONLY))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The fd given to %s is not open for %s; pass the %s "
                                         "end of a pipe or a file opened for %s.",
                                         saving ? "Save" : "Resume", saving ? "writing" : "reading",
                                         saving ? "write" : "read", saving ? "writing" : "reading");
        *ret = steal_fd(&fd);
        return 0;
}

/* ResumeWithOptions' a{sv}: renamed-from (s), the VM name the stream was saved under. */
static int read_resume_options(sd_bus_message *m, char **ret_renamed_from, sd_bus_error *error)
{
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");

        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *value;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (!g_str_equal(key, "renamed-from"))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Unknown Resume option '%.64s'; the only "
                                                 "option is renamed-from (s).",
                                                 key);
                if (sd_bus_message_read(m, "v", "s", &value) < 0)
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "Resume option renamed-from must be a string "
                                                "(s): the name of the VM that saved the "
                                                "stream.");
                if (!vm_name_is_valid(value))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Resume option renamed-from '%.64s' is not a VM "
                                                 "name; give the name the stream was saved "
                                                 "under.",
                                                 value);
                g_free(*ret_renamed_from);
                *ret_renamed_from = g_strdup(value);
                r = sd_bus_message_exit_container(m);
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

static int vm_method_run(sd_bus_message *m, Daemon *d, enum plan_op op, bool with_options,
                         sd_bus_error *error)
{
        _cleanup_close_ int fd = -1;
        g_autoptr(GError) gerr = NULL;
        g_autofree char *action = NULL;
        g_autofree char *renamed_from = NULL;
        VmCall *call;
        Vm *vm;
        int r;

        vm = vm_from_path(d, sd_bus_message_get_path(m), error);
        if (!vm)
                return -ENOENT;
        if (op == PLAN_OP_SAVE || op == PLAN_OP_RESUME) {
                r = read_stream_fd(m, op, &fd, error);
                if (r < 0)
                        return r;
        }
        if (with_options) {
                r = read_resume_options(m, &renamed_from, error);
                if (r < 0)
                        return r;
        }
        action = g_strdup_printf("run %s on VM %s", plan_op_to_string(op), vm_name(vm));
        r = bus_authorize(m, &d->auth, action, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* the bus is asked who the caller is; the call comes again */
        if (d->stopping)
                return sd_bus_error_set(error, BUS_ERROR_BUSY,
                                        "vfio-migd is shutting down; retry once it has "
                                        "restarted.");

        call = g_new0(VmCall, 1);
        call->daemon = d;
        call->message = sd_bus_message_ref(m);
        /* Abort preempts a running sequence and answers when it has rolled back. */
        if (op == PLAN_OP_ABORT && vm_abort_running(vm, on_sequence_done, call) == 0)
                return 1;
        if (renamed_from)
                r = vm_start_resume(vm, steal_fd(&fd), renamed_from, on_sequence_event,
                                    on_sequence_done, call, &gerr);
        else
                r = vm_start_operation(vm, op, steal_fd(&fd), on_sequence_event, on_sequence_done,
                                       call, &gerr);
        if (r < 0) {
                sd_bus_message_unref(call->message);
                g_free(call);
                return bus_error_set_model(error, r, gerr ? gerr->message : NULL);
        }
        emit_vm_changed(d, vm, "State", NULL);
        return 1; /* the reply follows when the sequence ends */
}

static int method_precopy(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return vm_method_run(m, userdata, PLAN_OP_PRECOPY, false, error);
}

static int method_quiesce(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return vm_method_run(m, userdata, PLAN_OP_QUIESCE, false, error);
}

static int method_save(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return vm_method_run(m, userdata, PLAN_OP_SAVE, false, error);
}

static int method_resume(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return vm_method_run(m, userdata, PLAN_OP_RESUME, false, error);
}

static int method_resume_with_options(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return vm_method_run(m, userdata, PLAN_OP_RESUME, true, error);
}

static int method_start(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return vm_method_run(m, userdata, PLAN_OP_START, false, error);
}

static int method_abort(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        return vm_method_run(m, userdata, PLAN_OP_ABORT, false, error);
}

/* ---- properties ---- */

#define VM_PROPERTY_GETTER(fn)                                                                     \
        static int fn(sd_bus *bus, const char *path, const char *interface, const char *property,  \
                      sd_bus_message *reply, void *userdata, sd_bus_error *error)

static int append_string_array(sd_bus_message *reply, const GPtrArray *strings)
{
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        for (guint i = 0; i < strings->len; i++) {
                r = sd_bus_message_append(reply, "s", (const char *)strings->pdata[i]);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

VM_PROPERTY_GETTER(property_get_scalar)
{
        Vm *vm = vm_from_path(userdata, path, error);
        const VmOptions *o;

        if (!vm)
                return -ENOENT;
        o = vm_options(vm);
        if (strcmp(property, "Name") == 0)
                return sd_bus_message_append(reply, "s", vm_name(vm));
        if (strcmp(property, "State") == 0)
                return sd_bus_message_append(reply, "s", vm_state(vm));
        if (strcmp(property, "StateAgeUSec") == 0)
                return sd_bus_message_append(reply, "t", vm_states_age_usec(vm));
        if (strcmp(property, "P2PMode") == 0)
                return sd_bus_message_append(reply, "s", plan_p2p_mode_to_string(o->p2p_mode));
        if (strcmp(property, "Strategy") == 0)
                return sd_bus_message_append(reply, "s", plan_strategy_to_string(o->strategy));
        if (strcmp(property, "PhaseDeadlineMs") == 0)
                return sd_bus_message_append(reply, "u", o->phase_deadline_ms);
        return sd_bus_message_append(reply, "u", o->parallelism);
}

VM_PROPERTY_GETTER(property_get_devices)
{
        Vm *vm = vm_from_path(userdata, path, error);
        g_autofree const char **names = NULL;
        Device *dev;

        if (!vm)
                return -ENOENT;
        names = g_new0(const char *, vm_n_devices(vm));
        VM_FOREACH_DEVICE (vm, i, dev)
                names[i] = dev->info.name;
        return bus_append_paths(reply, BUS_PATH_DEVICE, names, vm_n_devices(vm));
}

VM_PROPERTY_GETTER(property_get_device_names)
{
        Vm *vm = vm_from_path(userdata, path, error);
        g_autoptr(GPtrArray) names = NULL;
        Device *dev;

        if (!vm)
                return -ENOENT;
        names = g_ptr_array_new();
        VM_FOREACH_DEVICE (vm, i, dev)
                g_ptr_array_add(names, dev->info.name);
        return append_string_array(reply, names);
}

VM_PROPERTY_GETTER(property_get_groups)
{
        Vm *vm = vm_from_path(userdata, path, error);
        g_autoptr(GPtrArray) groups = NULL;

        if (!vm)
                return -ENOENT;
        groups = vm_groups(vm);
        return append_string_array(reply, groups);
}

VM_PROPERTY_GETTER(property_get_blockers)
{
        Vm *vm = vm_from_path(userdata, path, error);
        g_autoptr(GPtrArray) blockers = NULL;

        if (!vm)
                return -ENOENT;
        blockers = vm_compute_blockers(vm);
        if (strcmp(property, "Migratable") == 0)
                return sd_bus_message_append(reply, "b", blockers->len == 0);
        return append_string_array(reply, blockers);
}

/* IovaRanges a(tt) and Warnings as: one computation, from sysfs and open containers. */
VM_PROPERTY_GETTER(property_get_iova)
{
        Daemon *d = userdata;
        Vm *vm = vm_from_path(d, path, error);
        g_autoptr(GArray) ranges = NULL;
        g_autoptr(GPtrArray) warnings = NULL;
        int r;

        if (!vm)
                return -ENOENT;
        r = registry_vm_iova(d->registry, vm, &ranges, &warnings);
        if (r < 0)
                return r;
        if (strcmp(property, "Warnings") == 0)
                return append_string_array(reply, warnings);
        r = sd_bus_message_open_container(reply, 'a', "(tt)");
        for (guint i = 0; r >= 0 && i < ranges->len; i++) {
                const IovaRange *range = &g_array_index(ranges, IovaRange, i);
                r = sd_bus_message_append(reply, "(tt)", range->start, range->end);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

VM_PROPERTY_GETTER(property_get_last_sequence)
{
        Vm *vm = vm_from_path(userdata, path, error);

        if (!vm)
                return -ENOENT;
        return append_report(reply, vm, vm_last_report(vm));
}

static const sd_bus_vtable vm_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Name", "s", property_get_scalar, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Devices", "ao", property_get_devices, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("DeviceNames", "as", property_get_device_names, 0,
                    SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Groups", "as", property_get_groups, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("State", "s", property_get_scalar, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("StateAgeUSec", "t", property_get_scalar, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
    /* Computed from the devices and the policy on every read; a reload invalidates them. */
    SD_BUS_PROPERTY("Migratable", "b", property_get_blockers, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
    SD_BUS_PROPERTY("Blockers", "as", property_get_blockers, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
    /* Valid IOVA space of the VM's IOMMU context (inclusive ends), and what disagrees. */
    SD_BUS_PROPERTY("IovaRanges", "a(tt)", property_get_iova, 0, 0),
    SD_BUS_PROPERTY("Warnings", "as", property_get_iova, 0, 0),
    SD_BUS_PROPERTY("P2PMode", "s", property_get_scalar, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Strategy", "s", property_get_scalar, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("PhaseDeadlineMs", "u", property_get_scalar, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Parallelism", "u", property_get_scalar, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastSequence", "a{sv}", property_get_last_sequence, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

    SD_BUS_METHOD_WITH_ARGS("PreCopy", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{sv}", report),
                            method_precopy, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Quiesce", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{sv}", report),
                            method_quiesce, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Save", SD_BUS_ARGS("h", fd), SD_BUS_RESULT("a{sv}", report),
                            method_save, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Resume", SD_BUS_ARGS("h", fd), SD_BUS_RESULT("a{sv}", report),
                            method_resume, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ResumeWithOptions", SD_BUS_ARGS("h", fd, "a{sv}", options),
                            SD_BUS_RESULT("a{sv}", report), method_resume_with_options,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Start", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{sv}", report), method_start,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Abort", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{sv}", report), method_abort,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

int bus_vm_register(Daemon *d)
{
        sd_bus_slot *slot = NULL;
        int r;

        r = sd_bus_add_fallback_vtable(d->bus, &slot, BUS_PATH_VM, BUS_IFACE_VM, vm_vtable,
                                       vm_object_find, d);
        if (r < 0)
                return r;
        g_ptr_array_add(d->slots, slot);
        r = sd_bus_add_node_enumerator(d->bus, &slot, BUS_PATH_VM, vm_node_enumerator, d);
        if (r < 0)
                return r;
        g_ptr_array_add(d->slots, slot);
        return 0;
}
