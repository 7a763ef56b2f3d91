/* registry: the backend's devices and the registered VMs, by name */
#include "registry.h"

#include <errno.h>
#include <string.h>

#include "log.h"

typedef struct KnownDevice {
        char *name;
        Device *device; /* NULL until first opened */
        Vm *vm;         /* the VM holding it (borrowed), NULL when free */
        bool listed;    /* in the backend's last enumeration */
} KnownDevice;

struct Registry {
        Backend *backend;
        sd_event *event;
        VmOptions defaults;
        GHashTable *devices; /* name -> KnownDevice* */
        GHashTable *vms;     /* name -> Vm* */
};

static void known_device_free(KnownDevice *kd)
{
        device_unref(kd->device);
        g_free(kd->name);
        g_free(kd);
}

int registry_new(Backend *backend, sd_event *event, const VmOptions *defaults, Registry **ret)
{
        Registry *r = g_new0(Registry, 1);

        r->backend = backend;
        r->event = sd_event_ref(event);
        r->defaults = *defaults;
        r->devices =
            g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)known_device_free);
        r->vms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)vm_free);
        *ret = r;
        return 0;
}

void registry_free(Registry *r)
{
        GHashTableIter it;
        gpointer vm;

        if (!r)
                return;
        /* A VM's completion callback may still look things up here: finish them first. */
        g_hash_table_iter_init(&it, r->vms);
        while (g_hash_table_iter_next(&it, NULL, &vm))
                vm_wait_idle(vm);
        g_hash_table_destroy(r->vms);
        g_hash_table_destroy(r->devices);
        backend_free(r->backend);
        sd_event_unref(r->event);
        g_free(r);
}

const char *registry_backend_name(const Registry *r)
{
        return r->backend->name;
}

const VmOptions *registry_defaults(const Registry *r)
{
        return &r->defaults;
}

int registry_rescan(Registry *r, GError **error)
{
        g_autoptr(GPtrArray) names = NULL;
        GHashTableIter it;
        KnownDevice *kd;
        int n;

        n = r->backend->enumerate(r->backend, &names);
        if (n < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-n),
                            "Cannot list the devices of the %s backend: %s.", r->backend->name,
                            g_strerror(-n));
                return n;
        }

        g_hash_table_iter_init(&it, r->devices);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&kd))
                kd->listed = false;
        for (guint i = 0; i < names->len; i++) {
                const char *name = names->pdata[i];

                kd = g_hash_table_lookup(r->devices, name);
                if (!kd) {
                        kd = g_new0(KnownDevice, 1);
                        kd->name = g_strdup(name);
                        g_hash_table_insert(r->devices, kd->name, kd);
                        log_debug("Device %s appeared.", name);
                }
                kd->listed = true;
        }
        g_hash_table_iter_init(&it, r->devices);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&kd)) {
                if (kd->listed)
                        continue;
                if (kd->vm) {
                        log_warning("Device %s is gone from the %s backend, but VM %s still "
                                    "holds it.",
                                    kd->name, r->backend->name, vm_name(kd->vm));
                        continue;
                }
                log_debug("Device %s disappeared.", kd->name);
                g_hash_table_iter_remove(&it);
        }
        return (int)g_hash_table_size(r->devices);
}

size_t registry_n_devices(const Registry *r)
{
        return g_hash_table_size(r->devices);
}

static int compare_strings(gconstpointer a, gconstpointer b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

GPtrArray *registry_device_names(const Registry *r)
{
        GPtrArray *names = g_ptr_array_sized_new(g_hash_table_size(r->devices));
        GHashTableIter it;
        gpointer name;

        g_hash_table_iter_init(&it, r->devices);
        while (g_hash_table_iter_next(&it, &name, NULL))
                g_ptr_array_add(names, name);
        g_ptr_array_sort(names, compare_strings);
        return names;
}

bool registry_has_device(const Registry *r, const char *name)
{
        return g_hash_table_contains(r->devices, name);
}

static int known_device_open(Registry *r, KnownDevice *kd, GError **error)
{
        int err;

        if (kd->device)
                return 0;
        err = r->backend->open_device(r->backend, kd->name, &kd->device);
        if (err == 0)
                return 0;
        kd->device = NULL;
        if (err == -ENOENT) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(ENOENT),
                            "Device %s is gone from the %s backend; Rescan to refresh the list.",
                            kd->name, r->backend->name);
                return -ENODEV;
        }
        if (err == -EBUSY) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBUSY),
                            "Device %s is held by another user of the %s backend; release it "
                            "there first.",
                            kd->name, r->backend->name);
                return -EBUSY;
        }
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-err),
                    "Cannot open device %s: %s.", kd->name, g_strerror(-err));
        return err;
}

static int no_such_device(const Registry *r, const char *name, GError **error)
{
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(ENOENT),
                    "The %s backend knows no device named %s; ListDevices shows the ones it "
                    "knows.",
                    r->backend->name, name);
        return -ENODEV;
}

int registry_open_device(Registry *r, const char *name, Device **ret, GError **error)
{
        KnownDevice *kd = g_hash_table_lookup(r->devices, name);
        int err;

        if (!kd)
                return no_such_device(r, name, error);
        err = known_device_open(r, kd, error);
        if (err < 0)
                return err;
        *ret = kd->device;
        return 0;
}

int registry_device_state(Registry *r, const char *name, enum mig_state *ret, GError **error)
{
        KnownDevice *kd = g_hash_table_lookup(r->devices, name);
        int err;

        if (!kd)
                return no_such_device(r, name, error);
        if (kd->vm) {
                ssize_t i = vm_device_index(kd->vm, name);
                err = i >= 0 ? vm_device_state(kd->vm, (size_t)i, ret) : -ENODEV;
        } else {
                err = known_device_open(r, kd, error);
                if (err < 0)
                        return err;
                err = device_get_state(kd->device, ret);
        }
        if (err < 0)
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-err),
                            "Cannot read the migration state of device %s: %s.", name,
                            g_strerror(-err));
        return err;
}

Vm *registry_device_vm(const Registry *r, const char *name)
{
        KnownDevice *kd = g_hash_table_lookup(r->devices, name);

        return kd ? kd->vm : NULL;
}

size_t registry_n_vms(const Registry *r)
{
        return g_hash_table_size(r->vms);
}

static int compare_vms(gconstpointer a, gconstpointer b)
{
        return strcmp(vm_name(*(Vm *const *)a), vm_name(*(Vm *const *)b));
}

GPtrArray *registry_vms(const Registry *r)
{
        GPtrArray *vms = g_ptr_array_sized_new(g_hash_table_size(r->vms));
        GHashTableIter it;
        gpointer vm;

        g_hash_table_iter_init(&it, r->vms);
        while (g_hash_table_iter_next(&it, NULL, &vm))
                g_ptr_array_add(vms, vm);
        g_ptr_array_sort(vms, compare_vms);
        return vms;
}

Vm *registry_get_vm(const Registry *r, const char *name)
{
        return g_hash_table_lookup(r->vms, name);
}

bool registry_busy(const Registry *r)
{
        GHashTableIter it;
        gpointer vm;

        g_hash_table_iter_init(&it, r->vms);
        while (g_hash_table_iter_next(&it, NULL, &vm))
                if (vm_is_busy(vm, NULL))
                        return true;
        return false;
}

int registry_check_vm_args(const char *name, const char *const *devices, size_t n,
                           const VmOptions *options, GError **error)
{
        if (!vm_name_is_valid(name)) {
                g_autofree char *escaped = g_strescape(name ? name : "", NULL);
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "VM name '%s' is invalid: use 1 to %d characters from A-Z, a-z, "
                            "0-9 and _ . : + -.",
                            escaped, VM_NAME_MAX);
                return -EINVAL;
        }
        if (n < 1 || n > VM_DEVICES_MAX) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "VM %s lists %zu devices; give from 1 to %d device names.", name, n,
                            VM_DEVICES_MAX);
                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
                if (!devices[i][0]) {
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                                    "Device name %zu of VM %s is empty; give each device's "
                                    "name.",
                                    i + 1, name);
                        return -EINVAL;
                }
                for (size_t j = 0; j < i; j++)
                        if (strcmp(devices[i], devices[j]) == 0) {
                                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                                            "Device %s is listed twice for VM %s; list each "
                                            "device once.",
                                            devices[i], name);
                                return -EINVAL;
                        }
        }
        return vm_options_check(options, error);
}

/* Every lookup RegisterVM needs, before anything changes. */
static int registry_check_vm_devices(Registry *r, const char *name, const char *const *devices,
                                     size_t n, GError **error)
{
        bool rescanned = false;
        int err;

        for (size_t i = 0; i < n; i++) {
                KnownDevice *kd = g_hash_table_lookup(r->devices, devices[i]);

                /* A device created since the last scan is found without an explicit Rescan. */
                if (!kd && !rescanned) {
                        err = registry_rescan(r, error);
                        if (err < 0)
                                return err;
                        rescanned = true;
                        kd = g_hash_table_lookup(r->devices, devices[i]);
                }
                if (!kd)
                        return no_such_device(r, devices[i], error);
                if (kd->vm) {
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBUSY),
                                    "Device %s belongs to VM %s; unregister VM %s first or "
                                    "leave the device out of VM %s.",
                                    devices[i], vm_name(kd->vm), vm_name(kd->vm), name);
                        return -EBUSY;
                }
                err = known_device_open(r, kd, error);
                if (err < 0)
                        return err;
        }
        return 0;
}

int registry_register_vm(Registry *r, const char *name, const char *const *devices, size_t n,
                         const VmOptions *options, Vm **ret, GError **error)
{
        g_autofree Device **devs = NULL;
        Vm *vm;
        int err;

        err = registry_check_vm_args(name, devices, n, options, error);
        if (err < 0)
                return err;
        if (g_hash_table_contains(r->vms, name)) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EEXIST),
                            "A VM named %s is registered; unregister it first or choose "
                            "another name.",
                            name);
                return -EEXIST;
        }
        err = registry_check_vm_devices(r, name, devices, n, error);
        if (err < 0)
                return err;

        devs = g_new(Device *, n);
        for (size_t i = 0; i < n; i++)
                devs[i] = ((KnownDevice *)g_hash_table_lookup(r->devices, devices[i]))->device;
        err = vm_new(r->event, name, devs, n, options, &vm);
        if (err < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-err),
                            "Cannot set up VM %s: %s.", name, g_strerror(-err));
                return err;
        }

        g_hash_table_insert(r->vms, (gpointer)vm_name(vm), vm);
        for (size_t i = 0; i < n; i++)
                ((KnownDevice *)g_hash_table_lookup(r->devices, devices[i]))->vm = vm;
        log_info("VM %s registered with %zu devices (strategy %s, p2p-mode %s, phase deadline "
                 "%u ms, parallelism %u).",
                 name, n, plan_strategy_to_string(options->strategy),
                 plan_p2p_mode_to_string(options->p2p_mode), options->phase_deadline_ms,
                 options->parallelism);
        if (ret)
                *ret = vm;
        return 0;
}

int registry_unregister_vm(Registry *r, const char *name, GError **error)
{
        Vm *vm = g_hash_table_lookup(r->vms, name);
        enum plan_op op;
        Device *d;

        if (!vm) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(ENOENT),
                            "No VM named %s is registered; ListVMs shows the registered ones.",
                            name);
                return -ENOENT;
        }
        if (vm_is_busy(vm, &op)) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBUSY),
                            "VM %s is running a %s sequence; wait for it to finish, then "
                            "unregister it.",
                            name, plan_op_to_string(op));
                return -EAGAIN;
        }
        (void)vm_close_sessions(vm);
        VM_FOREACH_DEVICE (vm, i, d) {
                KnownDevice *kd = g_hash_table_lookup(r->devices, d->info.name);
                if (!kd)
                        continue;
                kd->vm = NULL;
                /* It outlived its listing only because the VM held it. */
                if (!kd->listed)
                        g_hash_table_remove(r->devices, kd->name);
        }
        log_info("VM %s unregistered.", name);
        g_hash_table_remove(r->vms, name);
        return 0;
}
