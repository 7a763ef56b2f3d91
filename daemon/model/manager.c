/* manager: the model's front door for registering, unregistering and rescanning VMs */
#include "model/manager.h"

#include "recovery.h"

void manager_init(Manager *m, Registry *registry, Daemon *daemon)
{
        *m = (Manager){.registry = registry, .daemon = daemon};
}

void manager_set_events(Manager *m, const ManagerEvents *events, void *userdata)
{
        m->events = events;
        m->userdata = userdata;
}

static void report_counts(Manager *m, bool vm_count, bool device_count)
{
        if ((vm_count || device_count) && m->events && m->events->counts_changed)
                m->events->counts_changed(m->userdata, vm_count, device_count);
}

int manager_register_vm(Manager *m, const char *name, const char *const *devices, size_t n,
                        const VmOptions *options, const char *origin, Vm **ret, GError **error)
{
        size_t devices_before = registry_n_devices(m->registry);
        Vm *vm;
        int r;

        r = registry_register_vm(m->registry, name, devices, n, options, &vm, error);
        /* A rescan may have found devices even when the registration failed. */
        report_counts(m, false, registry_n_devices(m->registry) != devices_before);
        if (r < 0)
                return r;
        vm_set_origin(vm, origin);
        /* From here on, name the VM by its own copy: `name` and `origin` may belong to the
         * journal record that recovery_track_vm() replaces. */
        if (m->daemon)
                recovery_track_vm(m->daemon, vm);
        if (m->events && m->events->vm_new)
                m->events->vm_new(m->userdata, vm);
        if (ret)
                *ret = vm;
        return 0;
}

int manager_unregister_vm(Manager *m, const char *name, GError **error)
{
        g_autofree char *vm_name_copy = g_strdup(name);
        g_autoptr(GPtrArray) device_names = g_ptr_array_new_with_free_func(g_free);
        size_t devices_before = registry_n_devices(m->registry);
        Vm *vm = registry_get_vm(m->registry, name);
        Device *dev;
        int r;

        /* A VM only the journal holds (not restored at start): forgetting it is the removal. */
        if (!vm && m->daemon && recovery_has_unrestored(m->daemon, name))
                return recovery_untrack_vm(m->daemon, vm_name_copy, error);
        /* The VM's devices change their VM property once it is gone. */
        if (vm)
                VM_FOREACH_DEVICE (vm, i, dev)
                        g_ptr_array_add(device_names, g_strdup(dev->info.name));
        /* The journal first: a removal it cannot record is refused, or the VM would come
         * back after a restart although its caller was told it was gone. */
        if (vm && m->daemon && !vm_is_busy(vm, NULL)) {
                r = recovery_untrack_vm(m->daemon, vm_name_copy, error);
                if (r < 0)
                        return r;
        }
        r = registry_unregister_vm(m->registry, vm_name_copy, error);
        if (r < 0)
                return r;
        if (m->events && m->events->vm_removed)
                m->events->vm_removed(m->userdata, vm_name_copy, device_names,
                                      registry_n_devices(m->registry) != devices_before);
        return 0;
}

int manager_rescan(Manager *m, GError **error)
{
        size_t before = registry_n_devices(m->registry);
        int r;

        r = registry_rescan(m->registry, error);
        if (r < 0)
                return r;
        report_counts(m, false, (size_t)r != before);
        return r;
}

void manager_report_host_change(Manager *m, const GroupWatchResult *result, bool devices_changed)
{
        const ManagerEvents *ev = m->events;

        for (guint i = 0; ev && ev->group_changed && i < result->changes->len; i++)
                ev->group_changed(m->userdata, result->changes->pdata[i]);
        for (guint i = 0; ev && ev->vm_blockers_changed && i < result->vms_changed->len; i++)
                ev->vm_blockers_changed(m->userdata, result->vms_changed->pdata[i]);
        report_counts(m, false, devices_changed);
}

void manager_sequence_event(Manager *m, Vm *vm, enum plan_op op, const SeqEvent *ev)
{
        if (m->events && m->events->sequence_event)
                m->events->sequence_event(m->userdata, vm, op, ev);
}
