/* bus-manager: org.vfiomig.Coordinator1.Manager at /org/vfiomig/Coordinator1 */
#include "bus/bus-manager.h"
#include "bus/bus-vm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "bus/bus-errors.h"
#include "bus/bus-libvirt.h"
#include "bus/bus-util.h"
#include "daemon-hotplug.h"
#include "log.h"
#include "recovery.h"

/* Methods that change things refuse while the daemon stops (see daemon.h). */
static int refuse_if_stopping(const Daemon *d, sd_bus_error *error)
{
        if (!d->stopping)
                return 0;
        return sd_bus_error_set(error, BUS_ERROR_BUSY,
                                "vfio-migd is shutting down; retry once it has restarted.");
}

static int reply_gerror(sd_bus_error *error, int r, const GError *gerr)
{
        return bus_error_set_model(error, r, gerr ? gerr->message : NULL);
}

static int method_list_vms(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GPtrArray) vms = registry_vms(d->registry);
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(so)");
        if (r < 0)
                return r;
        for (guint i = 0; i < vms->len; i++) {
                const char *name = vm_name(vms->pdata[i]);
                g_autofree char *path = bus_vm_path(name);

                if (!path)
                        return -ENOMEM;
                r = sd_bus_message_append(reply, "(so)", name, path);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int append_device_entry(sd_bus_message *reply, Daemon *d, const char *name)
{
        g_autoptr(GError) gerr = NULL;
        g_autofree char *path = bus_device_path(name);
        g_autofree char *vm_path = NULL;
        const char *driver = "", *state = "unavailable";
        uint32_t flags = 0;
        enum mig_state s;
        Device *dev;
        Vm *vm;
        int r;

        if (!path)
                return -ENOMEM;
        vm = registry_device_vm(d->registry, name);
        vm_path = vm ? bus_vm_path(vm_name(vm)) : g_strdup("/");
        if (!vm_path)
                return -ENOMEM;
        /* One device that cannot be opened must not hide the others. */
        if (registry_open_device(d->registry, name, &dev, &gerr) >= 0) {
                driver = dev->info.driver ? dev->info.driver : "";
                /* The state first: a kernel device learns its flags when it is opened. */
                r = registry_device_state(d->registry, name, &s, &gerr);
                if (r >= 0)
                        state = mig_state_to_string(s);
                else if (r == -ENODATA)
                        state = "unknown"; /* not read: that would open a VFIO group */
                flags = dev->info.migration_flags;
        }
        if (gerr)
                log_debug("ListDevices: %s", gerr->message);
        return sd_bus_message_append(reply, "(ssusoo)", name, driver, flags, state, vm_path, path);
}

static int method_list_devices(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GPtrArray) names = registry_device_names(d->registry);
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ssusoo)");
        if (r < 0)
                return r;
        for (guint i = 0; i < names->len; i++) {
                r = append_device_entry(reply, d, names->pdata[i]);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int bus_no_such_vm(sd_bus_error *error, const char *name)
{
        g_autofree char *message = vm_no_such_vm_message(name);
        return sd_bus_error_set(error, BUS_ERROR_NO_SUCH_VM, message);
}

static int method_get_vm(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autofree char *path = NULL;
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        if (!registry_get_vm(d->registry, name))
                return bus_no_such_vm(error, name);
        path = bus_vm_path(name);
        if (!path)
                return -ENOMEM;
        return sd_bus_reply_method_return(m, "o", path);
}

static int method_get_device(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autofree char *path = NULL;
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        if (!registry_has_device(d->registry, name)) {
                g_autofree char *shown = vm_name_shown(name); /* caller's input: bounded */
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_DEVICE,
                                         "The %s backend knows no device named '%s'; Rescan if "
                                         "it was just created, ListDevices shows the known "
                                         "ones.",
                                         registry_backend_name(d->registry), shown);
        }
        path = bus_device_path(name);
        if (!path)
                return -ENOMEM;
        return sd_bus_reply_method_return(m, "o", path);
}

/* One entry of the options a{sv}: the container is entered, the key read. */
static int read_vm_option(sd_bus_message *m, const char *key, unsigned *seen, VmOptions *o,
                          sd_bus_error *error)
{
        static const struct {
                const char *key, *type;
                unsigned bit;
        } known[] = {
            {"strategy", "s", VM_OPT_STRATEGY},
            {"p2p-mode", "s", VM_OPT_P2P_MODE},
            {"phase-deadline-ms", "u", VM_OPT_PHASE_DEADLINE},
            {"parallelism", "u", VM_OPT_PARALLELISM},
        };
        const char *contents = NULL, *s;
        unsigned bit = 0;
        int r;

        for (size_t i = 0; i < G_N_ELEMENTS(known); i++) {
                if (strcmp(key, known[i].key) != 0)
                        continue;
                bit = known[i].bit;
                r = sd_bus_message_peek_type(m, NULL, &contents);
                if (r < 0)
                        return r;
                if (!contents || strcmp(contents, known[i].type) != 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option '%s' must be of type '%s', not '%s'.", key,
                                                 known[i].type, contents ? contents : "");
        }
        if (!bit)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown option '%s'; the options are strategy, "
                                         "p2p-mode, phase-deadline-ms and parallelism.",
                                         key);
        if (*seen & bit)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Option '%s' is given twice; give it once.", key);
        *seen |= bit;

        switch (bit) {
        case VM_OPT_STRATEGY:
                r = sd_bus_message_read(m, "v", "s", &s);
                if (r < 0)
                        return r;
                r = plan_strategy_from_string(s, &o->strategy);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option 'strategy' is '%s'; use 'parallel', "
                                                 "'qemu' or 'naive'.",
                                                 s);
                if (r == PLAN_STRATEGY_DEPRECATED_NAME)
                        log_warning("RegisterVM: %s; taken as 'naive'",
                                    PLAN_STRATEGY_SERIAL_DEPRECATION);
                return 0;
        case VM_OPT_P2P_MODE:
                r = sd_bus_message_read(m, "v", "s", &s);
                if (r >= 0 && plan_p2p_mode_from_string(s, &o->p2p_mode) < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option 'p2p-mode' is '%s'; use 'require-p2p' "
                                                 "or 'p2p-blocked'.",
                                                 s);
                return r;
        case VM_OPT_PHASE_DEADLINE:
                return sd_bus_message_read(m, "v", "u", &o->phase_deadline_ms);
        default:
                return sd_bus_message_read(m, "v", "u", &o->parallelism);
        }
}

int bus_manager_read_vm_options(sd_bus_message *m, VmOptions *o, sd_bus_error *error)
{
        unsigned seen = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                r = read_vm_option(m, key, &seen, o, error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        o->explicit_mask = seen;
        return sd_bus_message_exit_container(m);
}

static void emit_device_vm_changed(Daemon *d, Vm *vm)
{
        Device *dev;

        VM_FOREACH_DEVICE (vm, i, dev) {
                g_autofree char *path = bus_device_path(dev->info.name);
                if (path)
                        (void)sd_bus_emit_properties_changed(d->bus, path, BUS_IFACE_DEVICE, "VM",
                                                             NULL);
        }
}

static void emit_vm_signal(Daemon *d, const char *member, const char *name)
{
        g_autofree char *path = bus_vm_path(name);

        if (path)
                (void)sd_bus_emit_signal(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER, member, "so",
                                         name, path);
}

/* ---- what the model reports (model/manager.h), as signals ---- */

static void on_counts_changed(void *userdata, bool vm_count, bool device_count)
{
        bus_manager_emit_counts(userdata, vm_count, device_count);
}

static void on_vm_new(void *userdata, Vm *vm)
{
        Daemon *d = userdata;

        bus_vm_observe(d, vm);
        bus_manager_emit_counts(d, true, false);
        emit_device_vm_changed(d, vm);
        emit_vm_signal(d, "VMNew", vm_name(vm));
}

static void on_vm_removed(void *userdata, const char *name, const GPtrArray *former_devices,
                          bool devices_changed)
{
        Daemon *d = userdata;

        bus_manager_emit_counts(d, true, devices_changed);
        for (guint i = 0; i < former_devices->len; i++) {
                g_autofree char *path = bus_device_path(former_devices->pdata[i]);
                if (path && registry_has_device(d->registry, former_devices->pdata[i]))
                        (void)sd_bus_emit_properties_changed(d->bus, path, BUS_IFACE_DEVICE, "VM",
                                                             NULL);
        }
        emit_vm_signal(d, "VMRemoved", name);
}

static void on_sequence_event(void *userdata, Vm *vm, enum plan_op op, const SeqEvent *ev)
{
        bus_vm_emit_sequence_event(userdata, vm, op, ev);
}

static void on_group_changed(void *userdata, const GroupChange *c)
{
        bus_manager_emit_group_changed(userdata, c->group, c->added, c->removed, c->vms);
}

static void on_vm_blockers_changed(void *userdata, const char *vm)
{
        Daemon *d = userdata;
        g_autofree char *path = bus_vm_path(vm);

        if (path)
                (void)sd_bus_emit_properties_changed(d->bus, path, BUS_IFACE_VM, "Migratable",
                                                     "Blockers", NULL);
}

static const ManagerEvents manager_events = {
    .counts_changed = on_counts_changed,
    .vm_new = on_vm_new,
    .vm_removed = on_vm_removed,
    .group_changed = on_group_changed,
    .vm_blockers_changed = on_vm_blockers_changed,
    .sequence_event = on_sequence_event,
};

static int method_register_vm(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        g_auto(GStrv) devices = NULL;
        g_autoptr(GError) gerr = NULL;
        g_autofree char *action = NULL, *path = NULL;
        VmOptions options = *registry_defaults(d->registry);
        size_t n_devices;
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        r = sd_bus_message_read_strv(m, &devices);
        if (r < 0)
                return r;
        n_devices = devices ? g_strv_length(devices) : 0;
        r = bus_manager_read_vm_options(m, &options, error);
        if (r < 0)
                return r;
        r = registry_check_vm_args(name, (const char *const *)devices, n_devices, &options, &gerr);
        if (r < 0)
                return reply_gerror(error, r, gerr);

        action = g_strdup_printf("register VM %s", name);
        r = bus_authorize(m, &d->auth, action, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* the bus is asked who the caller is; the call comes again */
        r = refuse_if_stopping(d, error);
        if (r < 0)
                return r;

        r = manager_register_vm(&d->manager, name, (const char *const *)devices, n_devices,
                                &options, "dbus", NULL, &gerr);
        if (r < 0)
                return reply_gerror(error, r, gerr);
        path = bus_vm_path(name);
        if (!path)
                return -ENOMEM;
        return sd_bus_reply_method_return(m, "o", path);
}

static int method_unregister_vm(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autoptr(GError) gerr = NULL;
        g_autofree char *action = NULL, *shown = NULL;
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        shown = vm_name_shown(name);
        action = g_strdup_printf("unregister VM %s", shown);
        r = bus_authorize(m, &d->auth, action, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* the bus is asked who the caller is; the call comes again */
        r = refuse_if_stopping(d, error);
        if (r < 0)
                return r;

        r = manager_unregister_vm(&d->manager, name, &gerr);
        if (r < 0)
                return reply_gerror(error, r, gerr);
        return sd_bus_reply_method_return(m, "");
}

static int method_attach_device_fd(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autoptr(GError) gerr = NULL;
        g_autofree char *action = NULL;
        _cleanup_close_ int fd = -1;
        const char *name;
        int borrowed, r;

        r = sd_bus_message_read(m, "sh", &name, &borrowed);
        if (r < 0)
                return r;
        /* Validation needs no privilege and changes nothing (registry.h). */
        r = registry_check_device_fd(d->registry, name, borrowed, &gerr);
        if (r < 0)
                return reply_gerror(error, r, gerr);

        action = g_strdup_printf("hand over the device fd of %s", name);
        r = bus_authorize(m, &d->auth, action, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* the bus is asked who the caller is; the call comes again */
        r = refuse_if_stopping(d, error);
        if (r < 0)
                return r;

        /* The message owns the fd it carried; the device keeps its own copy. */
        fd = fcntl(borrowed, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        r = registry_attach_device_fd(d->registry, name, steal_fd(&fd), &gerr);
        if (r < 0)
                return reply_gerror(error, r, gerr);
        return sd_bus_reply_method_return(m, "");
}

static int method_rescan(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autoptr(GError) gerr = NULL;
        int r;

        r = bus_authorize(m, &d->auth, "rescan the devices", error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* the bus is asked who the caller is; the call comes again */
        r = refuse_if_stopping(d, error);
        if (r < 0)
                return r;
        /* Also compares the VMs' IOMMU groups with their registration (GroupChanged). */
        r = daemon_reevaluate(d, "Rescan", &gerr);
        if (r < 0)
                return reply_gerror(error, r, gerr);
        log_info("Rescan: %d devices.", r);
        return sd_bus_reply_method_return(m, "u", (uint32_t)r);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error)
{
        return sd_bus_message_append(reply, "s", VFIO_MIGD_VERSION);
}

static int property_get_backend(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error)
{
        Daemon *d = userdata;

        return sd_bus_message_append(reply, "s", registry_backend_name(d->registry));
}

static int property_get_count(sd_bus *bus, const char *path, const char *interface,
                              const char *property, sd_bus_message *reply, void *userdata,
                              sd_bus_error *error)
{
        Daemon *d = userdata;
        size_t n = strcmp(property, "VMCount") == 0 ? registry_n_vms(d->registry)
                                                    : registry_n_devices(d->registry);

        return sd_bus_message_append(reply, "u", (uint32_t)n);
}

/* (id, device, sentence) per blocker. */
static int append_blockers(sd_bus_message *reply, const PolicyDecision *dec)
{
        int r = sd_bus_message_open_container(reply, 'a', "(sss)");

        for (size_t i = 0; r >= 0 && i < dec->n_blockers; i++)
                r = sd_bus_message_append(reply, "(sss)", dec->blockers[i].id,
                                          dec->blockers[i].device ? dec->blockers[i].device : "",
                                          dec->blockers[i].message);
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

/* (phase, device, target, kernel path) per step of the plan a migration would run now. */
static int append_plan(sd_bus_message *reply, Vm *vm, const Plan *plan)
{
        int r = sd_bus_message_open_container(reply, 'a', "(ssss)");

        for (size_t p = 0; r >= 0 && plan && p < plan->n_phases; p++)
                for (size_t s = 0; r >= 0 && s < plan->phases[p].n_steps; s++) {
                        const PlanStep *st = &plan->phases[p].steps[s];
                        char path[256];

                        mig_path_format(st->path, st->path_len, path, sizeof(path));
                        r = sd_bus_message_append(reply, "(ssss)", plan->phases[p].name,
                                                  vm_device(vm, st->device)->info.name,
                                                  mig_state_to_string(st->target), path);
                }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

/* The VM's effective settings, and under "sources" where each came from. */
static int append_settings(sd_bus_message *reply, const PolicyDecision *dec)
{
        const PolicySettings *s = &dec->settings;
        const PolicySources *src = &dec->sources;
        const struct {
                const char *key, *source;
        } sources[] = {
            {"mode", src->mode},
            {"phase-deadline-ms", src->phase_deadline_ms},
            {"parallelism", src->parallelism},
            {"on-failure", src->on_failure},
            {"strategy", src->strategy},
            {"after-crash", src->after_crash},
            {"hook-daemon-unavailable", src->hook_daemon_unavailable},
            {"on-start-unmigratable", src->on_start_unmigratable},
        };
        int r = sd_bus_message_open_container(reply, 'a', "{sv}");

        if (r >= 0)
                r = sd_bus_message_append(
                    reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}", "mode", "s",
                    policy_mode_to_string(s->mode), "phase-deadline-ms", "u", s->phase_deadline_ms,
                    "parallelism", "u", s->parallelism, "on-failure", "s",
                    policy_on_failure_to_string(s->on_failure), "strategy", "s",
                    plan_strategy_to_string(s->strategy), "after-crash", "s",
                    policy_after_crash_to_string(s->after_crash), "hook-daemon-unavailable", "s",
                    policy_hook_unavailable_to_string(s->hook_daemon_unavailable),
                    "on-start-unmigratable", "s",
                    policy_start_unmigratable_to_string(s->on_start_unmigratable));
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "sources");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "a{ss}");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{ss}");
        for (size_t i = 0; r >= 0 && i < G_N_ELEMENTS(sources); i++)
                r = sd_bus_message_append(reply, "{ss}", sources[i].key,
                                          sources[i].source ? sources[i].source : "defaults");
        for (int i = 0; r >= 0 && i < 4; i++)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_check_migration(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(PolicyDecision) dec = NULL;
        g_autoptr(GError) gerr = NULL;
        Daemon *d = userdata;
        Plan *plan = NULL;
        const char *name;
        Vm *vm;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        vm = registry_get_vm(d->registry, name);
        if (!vm)
                return bus_no_such_vm(error, name);
        dec = registry_decide(d->registry, vm, true);
        /* The plan of a whole source migration from where the devices are now. */
        if (dec->allowed && vm_plan_cached(vm, PLAN_OP_SAVE, &plan, &gerr) < 0)
                log_notice("VM %s: no plan from the devices' current states: %s", name,
                           gerr->message);
        log_info("VM %s: migration check: %s (mode %s, %zu blocker(s)).", name,
                 dec->allowed ? "allowed" : "refused", policy_mode_to_string(dec->settings.mode),
                 dec->n_blockers);

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "b", dec->allowed);
        if (r >= 0)
                r = append_blockers(reply, dec);
        if (r >= 0)
                r = append_plan(reply, vm, plan);
        if (r >= 0)
                r = sd_bus_message_append_strv(reply, dec->matched);
        if (r >= 0)
                r = append_settings(reply, dec);
        plan_free(plan);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_reload_policy(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        g_autoptr(GError) gerr = NULL;
        Daemon *d = userdata;
        int r;

        r = bus_authorize(m, &d->auth, "reload the policy", error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* the bus is asked who the caller is; the call comes again */
        r = daemon_reload_policy(d, &gerr);
        if (r < 0)
                return sd_bus_error_set(error, BUS_ERROR_POLICY_INVALID, gerr->message);
        return sd_bus_reply_method_return(m, "u", (unsigned)g_strv_length(d->policy_files));
}

static int property_get_policy_files(sd_bus *bus, const char *path, const char *interface,
                                     const char *property, sd_bus_message *reply, void *userdata,
                                     sd_bus_error *error)
{
        Daemon *d = userdata;

        return sd_bus_message_append_strv(reply, d->policy_files);
}

static int property_get_last_recovery(sd_bus *bus, const char *path, const char *interface,
                                      const char *property, sd_bus_message *reply,
                                      void *userdata, sd_bus_error *error)
{
        return recovery_append_last(reply, userdata);
}

static const sd_bus_vtable manager_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Backend", "s", property_get_backend, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("VMCount", "u", property_get_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("DeviceCount", "u", property_get_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("PolicyFiles", "as", property_get_policy_files, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastRecovery", "a{sv}", property_get_last_recovery, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LibvirtURI", "s", bus_libvirt_property_get_uri, 0,
                    SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("LibvirtConnected", "b", bus_libvirt_property_get_connected, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

    SD_BUS_METHOD_WITH_ARGS("ListVMs", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(so)", vms), method_list_vms,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ListDevices", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(ssusoo)", devices),
                            method_list_devices, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetVM", SD_BUS_ARGS("s", name), SD_BUS_RESULT("o", vm), method_get_vm,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetDevice", SD_BUS_ARGS("s", name), SD_BUS_RESULT("o", device),
                            method_get_device, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("RegisterVM", SD_BUS_ARGS("s", name, "as", devices, "a{sv}", options),
                            SD_BUS_RESULT("o", vm), method_register_vm, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("UnregisterVM", SD_BUS_ARGS("s", name), SD_BUS_NO_RESULT,
                            method_unregister_vm, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Rescan", SD_BUS_NO_ARGS, SD_BUS_RESULT("u", devices), method_rescan,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("AttachDeviceFd", SD_BUS_ARGS("s", device, "h", fd), SD_BUS_NO_RESULT,
                            method_attach_device_fd, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("CheckMigration", SD_BUS_ARGS("s", name),
                            SD_BUS_RESULT("b", allowed, "a(sss)", blockers, "a(ssss)", plan, "as",
                                          matched, "a{sv}", settings),
                            method_check_migration, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ReloadPolicy", SD_BUS_NO_ARGS, SD_BUS_RESULT("u", files),
                            method_reload_policy, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("RegisterVMFromXML", SD_BUS_ARGS("s", xml, "a{sv}", options),
                            SD_BUS_RESULT("o", vm), bus_libvirt_method_register_vm_from_xml,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("CheckIncomingMigration", SD_BUS_ARGS("s", xml),
                            SD_BUS_RESULT("b", allowed, "a(sss)", problems, "a{sv}", details),
                            bus_libvirt_method_check_incoming, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("ListLibvirtDomains", SD_BUS_NO_ARGS,
                            SD_BUS_RESULT("a(ssoa(ss))", domains), bus_libvirt_method_list_domains,
                            SD_BUS_VTABLE_UNPRIVILEGED),

    SD_BUS_SIGNAL_WITH_ARGS("VMNew", SD_BUS_ARGS("s", name, "o", vm), 0),
    SD_BUS_SIGNAL_WITH_ARGS("VMRemoved", SD_BUS_ARGS("s", name, "o", vm), 0),
    SD_BUS_SIGNAL_WITH_ARGS("Recovered", SD_BUS_ARGS("s", vm, "s", action, "s", outcome), 0),
    SD_BUS_SIGNAL_WITH_ARGS("DeviceStateChanged",
                            SD_BUS_ARGS("s", device, "o", path, "s", old_state, "s", new_state), 0),
    SD_BUS_SIGNAL_WITH_ARGS("SequenceProgress",
                            SD_BUS_ARGS("s", vm, "o", path, "s", operation, "s", phase, "u", index,
                                        "u", count, "s", status, "t", elapsed_us),
                            0),
    SD_BUS_SIGNAL_WITH_ARGS("GroupChanged",
                            SD_BUS_ARGS("s", group, "as", added, "as", removed, "as", vms), 0),
    SD_BUS_VTABLE_END,
};

int bus_manager_register(Daemon *d)
{
        sd_bus_slot *slot = NULL;
        int r;

        r = sd_bus_add_object_vtable(d->bus, &slot, BUS_PATH_ROOT, BUS_IFACE_MANAGER,
                                     manager_vtable, d);
        if (r < 0)
                return r;
        g_ptr_array_add(d->slots, slot);
        manager_set_events(&d->manager, &manager_events, d);
        return 0;
}

void bus_manager_emit_counts(Daemon *d, bool vm_count, bool device_count)
{
        int r = 0;

        if (vm_count && device_count)
                r = sd_bus_emit_properties_changed(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER,
                                                   "VMCount", "DeviceCount", NULL);
        else if (vm_count || device_count)
                r = sd_bus_emit_properties_changed(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER,
                                                   vm_count ? "VMCount" : "DeviceCount", NULL);
        if (r < 0)
                log_debug("Cannot emit PropertiesChanged on the Manager: %s", strerror(-r));
}

void bus_manager_emit_device_state_changed(Daemon *d, const char *device, const char *old_state,
                                           const char *new_state)
{
        g_autofree char *path = bus_device_path(device);
        int r;

        if (!path)
                return;
        r = sd_bus_emit_signal(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER, "DeviceStateChanged",
                               "soss", device, path, old_state, new_state);
        if (r < 0)
                log_debug("Cannot emit DeviceStateChanged: %s", strerror(-r));
}

void bus_manager_emit_sequence_progress(Daemon *d, const char *vm, const char *operation,
                                        const char *phase, unsigned index, unsigned count,
                                        const char *status, uint64_t elapsed_us)
{
        g_autofree char *path = bus_vm_path(vm);
        int r;

        if (!path)
                return;
        r = sd_bus_emit_signal(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER, "SequenceProgress",
                               "sossuust", vm, path, operation, phase, (uint32_t)index,
                               (uint32_t)count, status, elapsed_us);
        if (r < 0)
                log_debug("Cannot emit SequenceProgress: %s", strerror(-r));
}

static int append_strv(sd_bus_message *m, const GPtrArray *strings)
{
        int r = sd_bus_message_open_container(m, 'a', "s");

        for (guint i = 0; r >= 0 && i < strings->len; i++)
                r = sd_bus_message_append(m, "s", (const char *)strings->pdata[i]);
        return r < 0 ? r : sd_bus_message_close_container(m);
}

void bus_manager_emit_group_changed(Daemon *d, const char *group, const GPtrArray *added,
                                    const GPtrArray *removed, const GPtrArray *vms)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_signal(d->bus, &m, BUS_PATH_ROOT, BUS_IFACE_MANAGER,
                                      "GroupChanged");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", group);
        if (r >= 0)
                r = append_strv(m, added);
        if (r >= 0)
                r = append_strv(m, removed);
        if (r >= 0)
                r = append_strv(m, vms);
        if (r >= 0)
                r = sd_bus_send(d->bus, m, NULL);
        if (r < 0)
                log_debug("Cannot emit GroupChanged: %s", strerror(-r));
}
