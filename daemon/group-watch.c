/* group-watch: each VM's IOMMU groups as they were at registration, and what changed since */
#include "group-watch.h"

#include <errno.h>
#include <string.h>

typedef struct WatchedDevice {
        char *name, *group, *driver;
        bool gone; /* reported gone once: sticky */
} WatchedDevice;

typedef struct WatchedVm {
        char *name;
        GArray *devices;  /* WatchedDevice */
        GHashTable *base; /* group -> GPtrArray* members at registration */
        GArray *blockers; /* GroupWatchBlocker */
} WatchedVm;

struct GroupWatch {
        GHashTable *vms;  /* name -> WatchedVm* */
        GHashTable *last; /* group -> GPtrArray* members at the last evaluation */
};

static void blocker_clear(gpointer p)
{
        GroupWatchBlocker *b = p;

        g_free(b->id);
        g_free(b->device);
        g_free(b->message);
}

static void watched_device_clear(gpointer p)
{
        WatchedDevice *d = p;

        g_free(d->name);
        g_free(d->group);
        g_free(d->driver);
}

static GArray *blockers_new(void)
{
        GArray *a = g_array_new(FALSE, TRUE, sizeof(GroupWatchBlocker));

        g_array_set_clear_func(a, blocker_clear);
        return a;
}

static void watched_vm_free(WatchedVm *vm)
{
        g_free(vm->name);
        g_array_unref(vm->devices);
        g_hash_table_destroy(vm->base);
        g_array_unref(vm->blockers);
        g_free(vm);
}

static GHashTable *members_table_new(void)
{
        return g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify)g_ptr_array_unref);
}

GroupWatch *group_watch_new(void)
{
        GroupWatch *gw = g_new0(GroupWatch, 1);

        gw->vms =
            g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)watched_vm_free);
        gw->last = members_table_new();
        return gw;
}

void group_watch_free(GroupWatch *gw)
{
        if (!gw)
                return;
        g_hash_table_destroy(gw->vms);
        g_hash_table_destroy(gw->last);
        g_free(gw);
}

static bool contains(const GPtrArray *a, const char *s)
{
        for (guint i = 0; a && i < a->len; i++)
                if (strcmp(a->pdata[i], s) == 0)
                        return true;
        return false;
}

static int compare_strings(gconstpointer a, gconstpointer b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The members of a that b lacks, sorted (new). */
static GPtrArray *minus(const GPtrArray *a, const GPtrArray *b)
{
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

        for (guint i = 0; a && i < a->len; i++)
                if (!contains(b, a->pdata[i]))
                        g_ptr_array_add(out, g_strdup(a->pdata[i]));
        g_ptr_array_sort(out, compare_strings);
        return out;
}

static GPtrArray *read_members(const GroupWatchHost *host, const char *group)
{
        GPtrArray *m = host->members(group, host->userdata);

        if (!m)
                m = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_sort(m, compare_strings);
        return m;
}

void group_watch_add_vm(GroupWatch *gw, const char *vm, const char *const *devices,
                        const char *const *groups, const char *const *drivers, size_t n,
                        const GroupWatchHost *host)
{
        WatchedVm *w = g_new0(WatchedVm, 1);

        w->name = g_strdup(vm);
        w->devices = g_array_new(FALSE, TRUE, sizeof(WatchedDevice));
        g_array_set_clear_func(w->devices, watched_device_clear);
        w->base = members_table_new();
        w->blockers = blockers_new();
        for (size_t i = 0; i < n; i++) {
                WatchedDevice d = {g_strdup(devices[i]), g_strdup(groups[i]), g_strdup(drivers[i]),
                                   false};

                g_array_append_val(w->devices, d);
                if (!groups[i] || g_hash_table_contains(w->base, groups[i]))
                        continue;
                g_hash_table_insert(w->base, g_strdup(groups[i]), read_members(host, groups[i]));
                /* The baseline is also what the next evaluation compares with. */
                g_hash_table_insert(gw->last, g_strdup(groups[i]), read_members(host, groups[i]));
        }
        g_hash_table_replace(gw->vms, w->name, w);
}

void group_watch_remove_vm(GroupWatch *gw, const char *vm)
{
        g_hash_table_remove(gw->vms, vm);
}

const GArray *group_watch_blockers(const GroupWatch *gw, const char *vm)
{
        const WatchedVm *w = g_hash_table_lookup(gw->vms, vm);

        return w && w->blockers->len ? w->blockers : NULL;
}

static bool vm_has_device(const WatchedVm *w, const char *name)
{
        for (guint i = 0; i < w->devices->len; i++)
                if (strcmp(g_array_index(w->devices, WatchedDevice, i).name, name) == 0)
                        return true;
        return false;
}

static void G_GNUC_PRINTF(4, 5)
    add_blocker(GArray *blockers, const char *id, const char *device, const char *fmt, ...)
{
        GroupWatchBlocker b = {g_strdup(id), g_strdup(device), NULL};
        va_list ap;

        va_start(ap, fmt);
        b.message = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_array_append_val(blockers, b);
}

/* Members that joined one of the VM's groups since it was registered. */
static void blame_joined(const WatchedVm *w, GHashTable *now, GArray *blockers)
{
        GHashTableIter it;
        gpointer group, base;

        g_hash_table_iter_init(&it, w->base);
        while (g_hash_table_iter_next(&it, &group, &base)) {
                g_autoptr(GPtrArray) joined = minus(g_hash_table_lookup(now, group), base);

                for (guint i = 0; i < joined->len; i++) {
                        const char *x = joined->pdata[i];

                        if (vm_has_device(w, x))
                                continue;
                        add_blocker(blockers, "group-changed", x,
                                    "device %s joined IOMMU group %s, which VM %s holds, after %s "
                                    "was registered; a device hot-added into a group in use can "
                                    "DMA into the VM's address space context, which is why the "
                                    "kernel community refuses it. Remove the device, or "
                                    "re-register VM %s after checking",
                                    x, (const char *)group, w->name, w->name, w->name);
                }
        }
}

/* The VM's own devices: still there, on the driver they were registered with? */
static void blame_devices(WatchedVm *w, const GroupWatchHost *host, GArray *blockers,
                          GPtrArray *gone)
{
        for (guint i = 0; i < w->devices->len; i++) {
                WatchedDevice *d = &g_array_index(w->devices, WatchedDevice, i);
                g_autofree char *driver = NULL;
                int r = d->gone ? -ENODEV
                                : host->device_status(d->name, d->driver, &driver, host->userdata);

                if (r == -ENODEV) {
                        if (!d->gone)
                                g_ptr_array_add(gone, g_strdup_printf("%s\t%s", w->name, d->name));
                        d->gone = true;
                        add_blocker(blockers, "device-removed", d->name,
                                    "device %s of VM %s was removed from the host after %s was "
                                    "registered; %s cannot migrate without it. Unregister VM %s "
                                    "once its VMM has let go of the device, and register it "
                                    "again with the devices it has",
                                    d->name, w->name, w->name, w->name, w->name);
                } else if (r > 0 && driver) {
                        add_blocker(blockers, "group-changed", d->name,
                                    "device %s of VM %s left its VFIO driver %s for the host "
                                    "driver %s after %s was registered: IOMMU group %s is no "
                                    "longer held whole by %s, and the host can DMA into the VM's "
                                    "context through it. Bind %s back to %s, or re-register VM "
                                    "%s after checking",
                                    d->name, w->name, d->driver ? d->driver : "(none)", driver,
                                    w->name, d->group ? d->group : "(none)", w->name, d->name,
                                    d->driver ? d->driver : "its VFIO driver", w->name);
                } else if (r > 0) {
                        add_blocker(blockers, "group-changed", d->name,
                                    "device %s of VM %s was unbound from its VFIO driver %s after "
                                    "%s was registered (IOMMU group %s); %s cannot migrate it. "
                                    "Bind %s back to %s, or re-register VM %s without it",
                                    d->name, w->name, d->driver ? d->driver : "(none)", w->name,
                                    d->group ? d->group : "(none)", w->name, d->name,
                                    d->driver ? d->driver : "its VFIO driver", w->name);
                }
        }
}

static bool blockers_equal(const GArray *a, const GArray *b)
{
        if (a->len != b->len)
                return false;
        for (guint i = 0; i < a->len; i++) {
                const GroupWatchBlocker *x = &g_array_index(a, GroupWatchBlocker, i);
                const GroupWatchBlocker *y = &g_array_index(b, GroupWatchBlocker, i);
                if (strcmp(x->id, y->id) != 0 || strcmp(x->message, y->message) != 0)
                        return false;
        }
        return true;
}

/* The groups the VMs hold now, with their members (group -> GPtrArray*). */
static GHashTable *read_held_groups(GroupWatch *gw, const GroupWatchHost *host)
{
        GHashTable *now = members_table_new();
        GHashTableIter it, git;
        WatchedVm *w;
        gpointer group;

        g_hash_table_iter_init(&it, gw->vms);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&w)) {
                g_hash_table_iter_init(&git, w->base);
                while (g_hash_table_iter_next(&git, &group, NULL))
                        if (!g_hash_table_contains(now, group))
                                g_hash_table_insert(now, g_strdup(group),
                                                    read_members(host, group));
        }
        return now;
}

static GPtrArray *vms_holding(GroupWatch *gw, const char *group)
{
        GPtrArray *vms = g_ptr_array_new_with_free_func(g_free);
        GHashTableIter it;
        WatchedVm *w;

        g_hash_table_iter_init(&it, gw->vms);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&w))
                if (g_hash_table_contains(w->base, group))
                        g_ptr_array_add(vms, g_strdup(w->name));
        g_ptr_array_sort(vms, compare_strings);
        return vms;
}

static void group_change_free(gpointer p)
{
        GroupChange *c = p;

        g_free(c->group);
        g_ptr_array_unref(c->added);
        g_ptr_array_unref(c->removed);
        g_ptr_array_unref(c->vms);
        g_free(c);
}

static gint compare_changes(gconstpointer a, gconstpointer b)
{
        const GroupChange *x = *(GroupChange *const *)a, *y = *(GroupChange *const *)b;

        return strcmp(x->group, y->group);
}

GroupWatchResult *group_watch_evaluate(GroupWatch *gw, const GroupWatchHost *host)
{
        GroupWatchResult *res = g_new0(GroupWatchResult, 1);
        g_autoptr(GHashTable) now = read_held_groups(gw, host);
        GHashTableIter it;
        gpointer group, members;
        WatchedVm *w;

        res->changes = g_ptr_array_new_with_free_func(group_change_free);
        res->vms_changed = g_ptr_array_new_with_free_func(g_free);
        res->gone = g_ptr_array_new_with_free_func(g_free);

        g_hash_table_iter_init(&it, now);
        while (g_hash_table_iter_next(&it, &group, &members)) {
                GPtrArray *last = g_hash_table_lookup(gw->last, group);
                g_autoptr(GPtrArray) added = minus(members, last);
                g_autoptr(GPtrArray) removed = minus(last, members);
                GroupChange *c;

                if (added->len == 0 && removed->len == 0)
                        continue;
                c = g_new0(GroupChange, 1);
                c->group = g_strdup(group);
                c->added = g_steal_pointer(&added);
                c->removed = g_steal_pointer(&removed);
                c->vms = vms_holding(gw, group);
                g_ptr_array_add(res->changes, c);
                g_hash_table_insert(gw->last, g_strdup(group), g_ptr_array_ref(members));
        }
        g_ptr_array_sort(res->changes, compare_changes);

        g_hash_table_iter_init(&it, gw->vms);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&w)) {
                GArray *blockers = blockers_new();

                blame_joined(w, now, blockers);
                blame_devices(w, host, blockers, res->gone);
                if (!blockers_equal(blockers, w->blockers))
                        g_ptr_array_add(res->vms_changed, g_strdup(w->name));
                g_array_unref(w->blockers);
                w->blockers = blockers;
        }
        g_ptr_array_sort(res->vms_changed, compare_strings);
        return res;
}

void group_watch_result_free(GroupWatchResult *r)
{
        if (!r)
                return;
        g_ptr_array_unref(r->changes);
        g_ptr_array_unref(r->vms_changed);
        g_ptr_array_unref(r->gone);
        g_free(r);
}
