/* registry: the backend's devices and the registered VMs, by name */
#include "registry.h"

#include <errno.h>
#include <string.h>

#include "core/iova.h"
#include "group-watch.h"
#include "log.h"
#include "util.h"

/*
 * A device is opened (a Device made) when something needs it and kept while a VM holds it
 * or a device fd was handed over to it (pinned). Otherwise it is released once the event
 * loop is idle again, so a borrowed Device stays valid for the method call that asked for
 * it and the backend holds no fd of a device that no VM holds: a VFIO group open in the
 * daemon is a group the VMM cannot open.
 */
typedef struct KnownDevice {
        char *name;
        Device *device; /* NULL when not open */
        Vm *vm;         /* the VM holding it (borrowed), NULL when free */
        bool listed;    /* in the backend's last enumeration */
        bool pinned;    /* holds a handed-over device fd: kept while free */
} KnownDevice;

struct Registry {
        Backend *backend;
        sd_event *event;
        VmOptions defaults;
        GHashTable *devices;             /* name -> KnownDevice* */
        GHashTable *vms;                 /* name -> Vm* */
        Policy *policy;                  /* NULL: built-in defaults */
        sd_event_source *release_source; /* releases free devices once the loop is idle */
        GroupWatch *group_watch;         /* each VM's IOMMU groups as registered (hotplug) */
};

static void vm_effective_options(Registry *r, const char *name, Device *const *devs, size_t n,
                                 const VmOptions *explicit, VmOptions *ret);
static GPtrArray *registry_vm_blockers(const Vm *vm, void *userdata);
static void registry_watch_vm(Registry *r, Vm *vm);

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
        r->group_watch = group_watch_new();
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
        group_watch_free(r->group_watch);
        sd_event_source_disable_unref(r->release_source);
        policy_free(r->policy);
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

/* Drops the Device of every device no VM holds and no handed-over fd pins. */
static void registry_release_free_devices(Registry *r)
{
        GHashTableIter it;
        KnownDevice *kd;

        g_hash_table_iter_init(&it, r->devices);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&kd))
                if (kd->device && !kd->vm && !kd->pinned)
                        g_clear_pointer(&kd->device, device_unref);
}

static int on_release(sd_event_source *s, void *userdata)
{
        registry_release_free_devices(userdata);
        return 0;
}

/* Once the current dispatch is over (a method call and its reply), never during it. */
static void registry_schedule_release(Registry *r)
{
        int err;

        if (r->release_source) {
                err = sd_event_source_set_enabled(r->release_source, SD_EVENT_ONESHOT);
        } else {
                err = sd_event_add_defer(r->event, &r->release_source, on_release, r);
                if (err >= 0) {
                        (void)sd_event_source_set_description(r->release_source, "release-devices");
                        err = sd_event_source_set_enabled(r->release_source, SD_EVENT_ONESHOT);
                }
        }
        if (err < 0)
                log_warning("Cannot schedule closing devices no VM holds: %s; they stay open "
                            "until the next try.",
                            g_strerror(-err));
}

/* The errno's sentence, with the backend's own when it has one (who holds a VFIO group). */
static char *describe(Device *d, int err)
{
        g_autofree char *why = d ? device_describe_error(d) : NULL;

        return why ? g_strdup_printf("%s: %s", g_strerror(-err), why) : g_strdup(g_strerror(-err));
}

static int known_device_open(Registry *r, KnownDevice *kd, GError **error)
{
        int err;

        if (kd->device)
                return 0;
        err = r->backend->open_device(r->backend, kd->name, &kd->device);
        if (err == 0) {
                if (!kd->vm && !kd->pinned)
                        registry_schedule_release(r);
                return 0;
        }
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
        g_autofree char *shown = vm_name_shown(name); /* caller's input: bounded */

        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(ENOENT),
                    "The %s backend knows no device named '%s'; ListDevices shows the ones it "
                    "knows.",
                    r->backend->name, shown);
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
                /* A cached ERROR that stands for a failed read is told as that failure. */
                if (err == 0)
                        err = vm_device_state_error(kd->vm, (size_t)i);
        } else if (r->backend->open_claims_device && !kd->pinned) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(ENODATA),
                            "The state of device %s is not read while no VM holds it: reading "
                            "it would open its VFIO group, which a VMM starting now needs. "
                            "Register it in a VM (or hand its device fd over) to read it.",
                            name);
                return -ENODATA;
        } else {
                err = known_device_open(r, kd, error);
                if (err < 0)
                        return err;
                err = device_get_state(kd->device, ret);
        }
        if (err < 0) {
                g_autofree char *why = describe(kd->device, err);
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-err),
                            "Cannot read the migration state of device %s: %s.", name, why);
        }
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
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
        int r = vm_name_check(name, "VM name",
                              "give 1 to " G_STRINGIFY(
                                  VM_NAME_MAX) " bytes of UTF-8 without control characters or '/'",
                              error);
        if (r < 0)
                return r;
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
                if (!g_hash_table_add(seen, (gpointer)devices[i])) {
                        g_autofree char *echo = g_strndup(devices[i], 128);
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                                    "Device %s is listed twice for VM %s; list each device "
                                    "once.",
                                    echo, name);
                        return -EINVAL;
                }
        }
        return vm_options_check(options, error);
}

/* Every lookup RegisterVM needs, before anything changes. */
static int registry_check_vm_devices(Registry *r, const char *name, const char *const *devices,
                                     size_t n, GError **error)
{
        int err;

        /* A device created since the last scan is found without an explicit Rescan; the one
         * rescan comes first, so no device checked below can vanish behind the check. */
        for (size_t i = 0; i < n; i++)
                if (!g_hash_table_contains(r->devices, devices[i])) {
                        err = registry_rescan(r, error);
                        if (err < 0)
                                return err;
                        break;
                }
        for (size_t i = 0; i < n; i++) {
                KnownDevice *kd = g_hash_table_lookup(r->devices, devices[i]);

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
        VmOptions effective;
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
        vm_effective_options(r, name, devs, n, options, &effective);
        options = &effective;
        err = vm_new(r->event, name, devs, n, options, &vm);
        if (err < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-err),
                            "Cannot set up VM %s: %s.", name, g_strerror(-err));
                return err;
        }

        g_hash_table_insert(r->vms, (gpointer)vm_name(vm), vm);
        for (size_t i = 0; i < n; i++)
                ((KnownDevice *)g_hash_table_lookup(r->devices, devices[i]))->vm = vm;
        vm_set_blockers_func(vm, registry_vm_blockers, r);
        registry_watch_vm(r, vm);
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
                g_autofree char *message = vm_no_such_vm_message(name);
                g_set_error_literal(error, G_FILE_ERROR, g_file_error_from_errno(ENOENT), message);
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
                /* A handed-over fd was for this VM: it goes with it. */
                kd->pinned = false;
                g_clear_pointer(&kd->device, device_unref);
                /* It outlived its listing only because the VM held it. */
                if (!kd->listed)
                        g_hash_table_remove(r->devices, kd->name);
        }
        group_watch_remove_vm(r->group_watch, name);
        log_info("VM %s unregistered.", name);
        /* The VM's references are the last: the backend closes the devices' fds here. */
        g_hash_table_remove(r->vms, name);
        return 0;
}

/* ---- handed-over device fds ---- */

/* The device's Device for a handover, fresh: a free device opened for a read just before
 * must not look as if the daemon held its fd. */
static int attach_target(Registry *r, const char *name, KnownDevice **ret, GError **error)
{
        KnownDevice *kd = g_hash_table_lookup(r->devices, name);

        if (!r->backend->adopt_device_fd || !r->backend->check_device_fd) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "Only the kernel backend takes device fds; the %s backend opens its "
                            "devices itself.",
                            r->backend->name);
                return -EINVAL;
        }
        if (!kd)
                return no_such_device(r, name, error);
        if (!kd->vm && !kd->pinned)
                g_clear_pointer(&kd->device, device_unref);
        *ret = kd;
        return known_device_open(r, kd, error);
}

int registry_check_device_fd(Registry *r, const char *name, int fd, GError **error)
{
        KnownDevice *kd;
        int err;

        err = attach_target(r, name, &kd, error);
        if (err < 0)
                return err;
        return r->backend->check_device_fd(kd->device, fd, error);
}

int registry_attach_device_fd(Registry *r, const char *name, int fd, GError **error)
{
        _cleanup_close_ int owned = fd;
        KnownDevice *kd;
        int err;

        err = attach_target(r, name, &kd, error);
        if (err < 0)
                return err;
        err = r->backend->adopt_device_fd(kd->device, steal_fd(&owned), error);
        if (err < 0)
                return err;
        kd->pinned = true;
        if (kd->vm && vm_device_index(kd->vm, name) >= 0)
                vm_device_state_forget(kd->vm, (size_t)vm_device_index(kd->vm, name));
        log_info("Device %s: device fd handed over%s%s.", name, kd->vm ? " for VM " : "",
                 kd->vm ? vm_name(kd->vm) : "");
        return 0;
}

/* The valid IOVA space of devs' IOMMU context; a backend without the op: the whole space. */
static int devices_iova(Registry *r, Device *const *devs, size_t n, GArray **ret_ranges,
                        GPtrArray **ret_warnings)
{
        if (!r->backend->iova_context) {
                *ret_ranges = iova_ranges_new();
                iova_ranges_add(*ret_ranges, 0, UINT64_MAX);
                *ret_warnings = g_ptr_array_new_with_free_func(g_free);
                return 0;
        }
        return r->backend->iova_context(r->backend, devs, n, ret_ranges, ret_warnings);
}

int registry_vm_iova(Registry *r, const Vm *vm, GArray **ret_ranges, GPtrArray **ret_warnings)
{
        g_autofree Device **devs = g_new0(Device *, vm_n_devices(vm) + 1);

        for (size_t i = 0; i < vm_n_devices(vm); i++)
                devs[i] = vm_device(vm, i);
        return devices_iova(r, devs, vm_n_devices(vm), ret_ranges, ret_warnings);
}

/* ---- policy ---- */

const Policy *registry_policy(const Registry *r)
{
        return r->policy;
}

/* The daemon's own options are what the policy files start from. */
static void settings_from_defaults(const VmOptions *o, PolicySettings *s)
{
        policy_settings_default(s);
        s->mode = o->p2p_mode == PLAN_P2P_BLOCKED ? POLICY_MODE_P2P_BLOCKED
                                                  : POLICY_MODE_REQUIRE_P2P;
        s->phase_deadline_ms = o->phase_deadline_ms;
        s->parallelism = o->parallelism;
        s->strategy = o->strategy;
        s->on_failure = o->rollback_reset ? POLICY_ON_FAILURE_RESET : POLICY_ON_FAILURE_ROLLBACK;
}

/* What the decision says, with the options the VM's caller gave explicitly on top. */
static void options_from_settings(const PolicySettings *s, const VmOptions *explicit,
                                  VmOptions *ret)
{
        vm_options_init(ret);
        ret->strategy = s->strategy;
        ret->p2p_mode = policy_mode_to_plan(s->mode);
        ret->phase_deadline_ms = s->phase_deadline_ms;
        ret->parallelism = s->parallelism;
        ret->rollback_reset = s->on_failure == POLICY_ON_FAILURE_RESET;
        ret->max_device_state_bytes = s->max_device_state_bytes;
        if (explicit)
                vm_options_overlay(ret, explicit);
}

/*
 * What decide() needs to know about the IOMMU groups of a device list, gathered once per
 * decision so the work is O(devices known + members + n), not a scan of every device (or of
 * the list) per device: a caller handing in 256 devices of one shared group must not stall
 * the loop.
 */
typedef struct GroupFacts {
        GHashTable *among;    /* names of the devices decided on (borrowed) */
        GHashTable *claimant; /* group -> name of a VM other than self holding a member */
        GHashTable *outsider; /* group -> a member not among them ("" when none), owned */
        GHashTable *listed;   /* group -> GPtrArray of the listed devices' names (fallback) */
} GroupFacts;

static void group_facts_clear(GroupFacts *f)
{
        g_clear_pointer(&f->among, g_hash_table_unref);
        g_clear_pointer(&f->claimant, g_hash_table_unref);
        g_clear_pointer(&f->outsider, g_hash_table_unref);
        g_clear_pointer(&f->listed, g_hash_table_unref);
}

static void group_facts_init(GroupFacts *f, Registry *r, const Vm *self, Device *const *devs,
                             size_t n)
{
        GHashTableIter it;
        KnownDevice *kd;

        f->among = g_hash_table_new(g_str_hash, g_str_equal);
        for (size_t i = 0; i < n; i++)
                g_hash_table_add(f->among, devs[i]->info.name);
        f->claimant = g_hash_table_new(g_str_hash, g_str_equal);
        f->outsider = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
        f->listed = NULL;
        g_hash_table_iter_init(&it, r->devices);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&kd))
                if (kd->vm && kd->vm != self && kd->device && kd->device->info.iommu_group &&
                    !g_hash_table_contains(f->claimant, kd->device->info.iommu_group))
                        g_hash_table_insert(f->claimant, kd->device->info.iommu_group,
                                            (gpointer)vm_name(kd->vm));
}

/* Without the backend's member list: the listed devices of each group, read once. */
static GHashTable *group_facts_listed(GroupFacts *f, Registry *r)
{
        GHashTableIter it;
        KnownDevice *kd;

        if (f->listed)
                return f->listed;
        f->listed =
            g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref);
        g_hash_table_iter_init(&it, r->devices);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&kd)) {
                GPtrArray *members;

                if (!kd->listed)
                        continue;
                /* A device's group is known only once it is opened. */
                if (known_device_open(r, kd, NULL) < 0 || !kd->device->info.iommu_group)
                        continue;
                members = g_hash_table_lookup(f->listed, kd->device->info.iommu_group);
                if (!members) {
                        members = g_ptr_array_new();
                        g_hash_table_insert(f->listed, kd->device->info.iommu_group, members);
                }
                g_ptr_array_add(members, kd->name);
        }
        return f->listed;
}

/*
 * A member of this IOMMU group that is not among the devices: from the host's list of the
 * group's members when the backend has one (it sees members bound to host drivers, which it
 * does not list as devices), else from the devices it knows. Once per group; the name lives
 * in f.
 */
static const char *group_outsider(GroupFacts *f, Registry *r, const char *group)
{
        g_autoptr(GPtrArray) members = NULL;
        const char *found = NULL;
        gpointer known;

        if (g_hash_table_lookup_extended(f->outsider, group, NULL, &known))
                return *(const char *)known ? known : NULL;
        if (r->backend->group_members &&
            r->backend->group_members(r->backend, group, &members) >= 0) {
                for (guint i = 0; !found && i < members->len; i++)
                        if (!g_hash_table_contains(f->among, members->pdata[i]))
                                found = members->pdata[i];
        } else {
                GPtrArray *listed = g_hash_table_lookup(group_facts_listed(f, r), group);
                for (guint i = 0; !found && listed && i < listed->len; i++)
                        if (!g_hash_table_contains(f->among, listed->pdata[i]))
                                found = listed->pdata[i];
        }
        /* The key is a device's iommu_group, which outlives the decision. */
        g_hash_table_insert(f->outsider, (gpointer)group, g_strdup(found ? found : ""));
        found = g_hash_table_lookup(f->outsider, group);
        return *found ? found : NULL;
}

/* What the host did to the VM's groups since it was registered (group-watch.h). */
static void add_hotplug_blockers(Registry *r, const Vm *vm, PolicyDecision *d)
{
        const GArray *facts = group_watch_blockers(r->group_watch, vm_name(vm));

        if (!facts)
                return;
        d->blockers = g_renew(PolicyBlocker, d->blockers, d->n_blockers + facts->len);
        for (guint i = 0; i < facts->len; i++) {
                const GroupWatchBlocker *f = &g_array_index(facts, GroupWatchBlocker, i);
                d->blockers[d->n_blockers++] = (PolicyBlocker){
                    .id = g_strdup(f->id),
                    .device = g_strdup(f->device),
                    .message = g_strdup(f->message),
                };
        }
        d->allowed = false;
}

static PolicyDecision *decide(Registry *r, const Vm *self, const char *name, Device *const *devs,
                              size_t n, const VmOptions *explicit, const uint32_t *assumed_flags)
{
        enum policy_mode override = POLICY_MODE_REQUIRE_P2P;
        g_autofree PolicyDevice *pd = g_new0(PolicyDevice, n ? n : 1);
        _cleanup_(group_facts_clear) GroupFacts facts = {0};
        PolicySettings base;
        PolicyDecision *d = NULL;
        g_autoptr(Policy) fallback = NULL;

        group_facts_init(&facts, r, self, devs, n);
        for (size_t i = 0; i < n; i++) {
                const DeviceInfo *info = &devs[i]->info;
                pd[i] = (PolicyDevice){
                    .name = info->name,
                    .address = info->name,
                    .driver = info->driver,
                    .vendor_id = info->vendor_id,
                    .device_id = info->device_id,
                    .flags = info->migration_flags,
                    .iommu_group = info->iommu_group,
                };
                if (assumed_flags && assumed_flags[i] != UINT32_MAX &&
                    __atomic_load_n(&info->flags_unknown, __ATOMIC_ACQUIRE))
                        pd[i].flags = assumed_flags[i];
                if (info->iommu_group) {
                        pd[i].group_claimed_by =
                            g_hash_table_lookup(facts.claimant, info->iommu_group);
                        pd[i].group_outside_member = group_outsider(&facts, r, info->iommu_group);
                }
        }
        settings_from_defaults(&r->defaults, &base);
        if (!r->policy)
                fallback = policy_new_default();
        if (explicit && explicit->explicit_mask & VM_OPT_P2P_MODE)
                override = explicit->p2p_mode == PLAN_P2P_BLOCKED ? POLICY_MODE_P2P_BLOCKED
                                                                   : POLICY_MODE_REQUIRE_P2P;
        policy_evaluate(r->policy ? r->policy : fallback, &base,
                        explicit && explicit->explicit_mask & VM_OPT_P2P_MODE ? &override : NULL,
                        name, pd, n, &d);
        if (self)
                add_hotplug_blockers(r, self, d);
        return d;
}

#define LOG_BLOCKERS_MAX 8u

static void log_decision(const char *vm, const PolicyDecision *d)
{
        g_autofree char *matched = d->matched[0] ? g_strjoinv("; ", d->matched) : NULL;

        /* Anyone may ask (CheckMigration): a few lines per call, whatever the VM holds. */
        for (size_t i = 0; i < d->n_blockers && i < LOG_BLOCKERS_MAX; i++)
                log_notice("VM %s: migration refused (mode %s, decided by %s): %s: %s", vm,
                           policy_mode_to_string(d->settings.mode),
                           matched ? matched : "defaults", d->blockers[i].id,
                           d->blockers[i].message);
        if (d->n_blockers > LOG_BLOCKERS_MAX)
                log_notice("VM %s: ... and %zu more blockers (Blockers lists them all).", vm,
                           d->n_blockers - LOG_BLOCKERS_MAX);
}

/* A device in ERROR cannot take part in a sequence until Abort resets it. */
static void add_error_blockers(Vm *vm, PolicyDecision *d)
{
        for (size_t i = 0; i < vm_n_devices(vm); i++) {
                enum mig_state state;
                const char *name = vm_device(vm, i)->info.name;

                if (vm_device_state(vm, i, &state) < 0 || state != MIG_STATE_ERROR ||
                    vm_device_state_unread(vm, i))
                        continue;
                d->blockers = g_renew(PolicyBlocker, d->blockers, d->n_blockers + 1);
                d->blockers[d->n_blockers++] = (PolicyBlocker){
                    .id = g_strdup("device-error"),
                    .device = g_strdup(name),
                    .message = g_strdup_printf(
                        "device '%s' is in ERROR (a failed step left it there) and cannot "
                        "migrate; Abort ('vfio-migctl abort %s') resets it and brings the VM "
                        "back to RUNNING",
                        name, vm_name(vm)),
                };
                d->allowed = false;
        }
}

/* The options the VM's registrant gave explicitly win over the policy's: the settings the
 * VM's sequences run with. */
static void decision_overlay_registration(PolicyDecision *d, const VmOptions *o)
{
        guint n = g_strv_length(d->source_labels);
        const char *label;

        if (!(o->explicit_mask & (VM_OPT_STRATEGY | VM_OPT_PHASE_DEADLINE | VM_OPT_PARALLELISM)))
                return;
        d->source_labels = g_renew(char *, d->source_labels, n + 2);
        label = d->source_labels[n] = g_strdup("VM registration");
        d->source_labels[n + 1] = NULL;
        if (o->explicit_mask & VM_OPT_STRATEGY) {
                d->settings.strategy = o->strategy;
                d->sources.strategy = label;
        }
        if (o->explicit_mask & VM_OPT_PHASE_DEADLINE) {
                d->settings.phase_deadline_ms = o->phase_deadline_ms;
                d->sources.phase_deadline_ms = label;
        }
        if (o->explicit_mask & VM_OPT_PARALLELISM) {
                d->settings.parallelism = o->parallelism;
                d->sources.parallelism = label;
        }
}

PolicyDecision *registry_decide(Registry *r, Vm *vm, bool log)
{
        g_autofree Device **devs = g_new0(Device *, vm_n_devices(vm) + 1);
        PolicyDecision *d;

        for (size_t i = 0; i < vm_n_devices(vm); i++)
                devs[i] = vm_device(vm, i);
        d = decide(r, vm, vm_name(vm), devs, vm_n_devices(vm), vm_options(vm), NULL);
        decision_overlay_registration(d, vm_options(vm));
        add_error_blockers(vm, d);
        if (log)
                log_decision(vm_name(vm), d);
        return d;
}

/* The devices, opened, in a new NULL-terminated array (borrowed pointers). */
static int open_devices(Registry *r, const char *const *devices, size_t n, Device ***ret,
                        GError **error)
{
        g_autofree Device **devs = g_new0(Device *, n + 1);
        int err;

        for (size_t i = 0; i < n; i++) {
                err = registry_open_device(r, devices[i], &devs[i], error);
                if (err < 0)
                        return err;
        }
        *ret = g_steal_pointer(&devs);
        return 0;
}

int registry_decide_devices(Registry *r, const char *name, const char *const *devices, size_t n,
                            const uint32_t *assumed_flags, PolicyDecision **ret, GError **error)
{
        g_autofree Device **devs = NULL;
        int err;

        err = open_devices(r, devices, n, &devs, error);
        if (err < 0)
                return err;
        *ret = decide(r, registry_get_vm(r, name), name, devs, n, NULL, assumed_flags);
        return 0;
}

int registry_devices_iova(Registry *r, const char *const *devices, size_t n, GArray **ret_ranges,
                          GPtrArray **ret_warnings, GError **error)
{
        g_autofree Device **devs = NULL;
        int err;

        err = open_devices(r, devices, n, &devs, error);
        if (err < 0)
                return err;
        return devices_iova(r, devs, n, ret_ranges, ret_warnings);
}

/* The VM's blockers as "id: sentence", which is what Blockers and refusals show. */
static GPtrArray *registry_vm_blockers(const Vm *vm, void *userdata)
{
        PolicyDecision *d = registry_decide(userdata, (Vm *)vm, false);
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

        for (size_t i = 0; i < d->n_blockers; i++)
                g_ptr_array_add(out, g_strdup_printf("%s: %s", d->blockers[i].id,
                                                     d->blockers[i].message));
        policy_decision_free(d);
        return out;
}

/* Settings under the policy in force, explicit options of the VM's caller on top. */
static void vm_effective_options(Registry *r, const char *name, Device *const *devs, size_t n,
                                 const VmOptions *explicit, VmOptions *ret)
{
        PolicyDecision *d = decide(r, NULL, name, devs, n, explicit, NULL);

        options_from_settings(&d->settings, explicit, ret);
        policy_decision_free(d);
}

void registry_set_policy(Registry *r, Policy *policy)
{
        GHashTableIter it;
        Vm *vm;

        policy_free(r->policy);
        r->policy = policy;
        g_hash_table_iter_init(&it, r->vms);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&vm)) {
                g_autofree Device **devs = g_new0(Device *, vm_n_devices(vm) + 1);
                VmOptions o;

                for (size_t i = 0; i < vm_n_devices(vm); i++)
                        devs[i] = vm_device(vm, i);
                vm_effective_options(r, vm_name(vm), devs, vm_n_devices(vm), vm_options(vm), &o);
                vm_set_options(vm, &o);
        }
}

/* ---- hotplug: what the host did to the VMs' IOMMU groups ---- */

/* The group's members that take part: the host's list when the backend has one, else the
 * listed devices the backend says are in it. */
static GPtrArray *watch_members(const char *group, void *userdata)
{
        Registry *r = userdata;
        GPtrArray *members = NULL;
        GHashTableIter it;
        KnownDevice *kd;

        if (r->backend->group_members) {
                if (r->backend->group_members(r->backend, group, &members) < 0)
                        return NULL;
                return members;
        }
        members = g_ptr_array_new_with_free_func(g_free);
        g_hash_table_iter_init(&it, r->devices);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&kd))
                if (kd->listed && known_device_open(r, kd, NULL) >= 0 &&
                    g_strcmp0(kd->device->info.iommu_group, group) == 0)
                        g_ptr_array_add(members, g_strdup(kd->name));
        return members;
}

static int watch_device_status(const char *device, const char *registered_driver,
                               char **ret_driver, void *userdata)
{
        Registry *r = userdata;
        KnownDevice *kd = g_hash_table_lookup(r->devices, device);
        int err;

        if (kd && kd->listed)
                return 0;
        if (!r->backend->host_device)
                return -ENODEV;
        err = r->backend->host_device(r->backend, device, ret_driver);
        if (err < 0)
                return -ENODEV;
        return g_strcmp0(*ret_driver, registered_driver) == 0 ? 0 : 1;
}

static GroupWatchHost watch_host(Registry *r)
{
        return (GroupWatchHost){watch_members, watch_device_status, r};
}

static void registry_watch_vm(Registry *r, Vm *vm)
{
        size_t n = vm_n_devices(vm);
        g_autofree const char **names = g_new0(const char *, n + 1);
        g_autofree const char **groups = g_new0(const char *, n + 1);
        g_autofree const char **drivers = g_new0(const char *, n + 1);
        GroupWatchHost host = watch_host(r);

        for (size_t i = 0; i < n; i++) {
                names[i] = vm_device(vm, i)->info.name;
                groups[i] = vm_device(vm, i)->info.iommu_group;
                drivers[i] = vm_device(vm, i)->info.driver;
        }
        group_watch_add_vm(r->group_watch, vm_name(vm), names, groups, drivers, n, &host);
}

GroupWatchResult *registry_reevaluate(Registry *r, GError **error)
{
        GroupWatchHost host = watch_host(r);
        GroupWatchResult *res;
        int err;

        err = registry_rescan(r, error);
        if (err < 0)
                return NULL;
        res = group_watch_evaluate(r->group_watch, &host);
        for (guint i = 0; i < res->gone->len; i++) {
                g_auto(GStrv) parts = g_strsplit(res->gone->pdata[i], "\t", 2);
                Vm *vm = g_hash_table_lookup(r->vms, parts[0]);
                ssize_t idx = vm && parts[1] ? vm_device_index(vm, parts[1]) : -1;

                if (idx < 0)
                        continue;
                /* A step running on it is cancelled; the sequencer rolls the others back. */
                device_set_gone(vm_device(vm, (size_t)idx));
        }
        return res;
}
