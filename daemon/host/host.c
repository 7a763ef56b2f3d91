/* host: the snapshot's records, which drivers are VFIO's, and a device set's IOMMU context */
#include <errno.h>
#include <string.h>

#include "host/host-object.h"
#include "host/host.h"

HostGroup *host_group_new(const char *id)
{
        HostGroup *g = g_new0(HostGroup, 1);

        g->id = g_strdup(id);
        g->members = g_ptr_array_new_with_free_func(g_free);
        return g;
}

void host_group_free(HostGroup *g)
{
        if (!g)
                return;
        g_free(g->id);
        g_free(g->type);
        if (g->regions)
                g_array_unref(g->regions);
        g_ptr_array_unref(g->members);
        g_free(g->vfio_node);
        g_free(g);
}

HostDevice *host_device_new(const char *name, const char *bus)
{
        HostDevice *d = g_new0(HostDevice, 1);

        d->name = g_strdup(name);
        d->bus = g_strdup(bus);
        return d;
}

void host_device_free(HostDevice *d)
{
        if (!d)
                return;
        g_free(d->name);
        g_free(d->bus);
        g_free(d->driver);
        g_free(d->group);
        g_free(d->vfio_group_node);
        g_free(d->cdev_node);
        g_free(d->parent);
        g_free(d);
}

HostSnapshot *host_snapshot_new(void)
{
        HostSnapshot *s = g_new0(HostSnapshot, 1);

        /* Keys are the records' own id and name, freed with them. */
        s->groups =
            g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)host_group_free);
        s->devices =
            g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)host_device_free);
        s->warnings = g_ptr_array_new_with_free_func(g_free);
        return s;
}

void host_snapshot_free(HostSnapshot *s)
{
        if (!s)
                return;
        g_hash_table_unref(s->groups);
        g_hash_table_unref(s->devices);
        g_ptr_array_unref(s->warnings);
        g_free(s);
}

bool host_driver_is_vfio(const char *driver)
{
        /* The kernel's mdev samples; any other mdev driver is recognised by its bus. */
        static const char *const mdev_samples[] = {"mtty", "mdpy", "mbochs", NULL};

        if (!driver)
                return false;
        /* vfio-pci, vfio-platform, vfio-fsl-mc; vfio_ap, vfio_ccw, vfio_mdev; and the variant
         * drivers built on vfio-pci-core (mlx5_vfio_pci, hisi_acc_vfio_pci, ...). */
        return g_str_has_prefix(driver, "vfio-") || g_str_has_prefix(driver, "vfio_") ||
               g_str_has_suffix(driver, "_vfio_pci") || g_strv_contains(mdev_samples, driver);
}

bool host_device_is_vfio(const char *bus, const char *driver)
{
        return driver && (g_strcmp0(bus, "mdev") == 0 || host_driver_is_vfio(driver));
}

/* Group ids are decimal: "2" before "10". */
static gint compare_group_ids(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);

        return la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
}

static gint compare_groups(gconstpointer a, gconstpointer b)
{
        return compare_group_ids((*(HostGroup *const *)a)->id, (*(HostGroup *const *)b)->id);
}

/* The distinct groups of the devices, in id order; -ENODEV for a device the snapshot does not
 * know, -ENOENT for one without an IOMMU group (VFIO cannot use it). */
static int context_groups(const HostSnapshot *s, const char *const *devices, size_t n,
                          GPtrArray *groups /* HostGroup*, borrowed */)
{
        for (size_t i = 0; i < n; i++) {
                HostDevice *d = g_hash_table_lookup(s->devices, devices[i]);
                HostGroup *g;

                if (!d)
                        return -ENODEV;
                g = d->group ? g_hash_table_lookup(s->groups, d->group) : NULL;
                if (!g)
                        return -ENOENT;
                if (!g_ptr_array_find(groups, g, NULL))
                        g_ptr_array_add(groups, g);
        }
        g_ptr_array_sort(groups, compare_groups);
        return 0;
}

static bool device_in_set(const char *name, const char *const *devices, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(devices[i], name) == 0)
                        return true;
        return false;
}

int host_context(const HostSnapshot *s, const char *const *devices, size_t n, HostContext **ret)
{
        g_autoptr(GPtrArray) groups = g_ptr_array_new();
        g_autoptr(GArray) aperture = iova_ranges_new();
        g_autoptr(GArray) reserved = iova_ranges_new();
        g_autoptr(HostContext) c = NULL;
        int r;

        r = context_groups(s, devices, n, groups);
        if (r < 0)
                return r;
        c = g_new0(HostContext, 1);
        c->groups = g_ptr_array_new_with_free_func(g_free);
        c->outside_members = g_ptr_array_new_with_free_func(g_free);
        for (guint i = 0; i < groups->len; i++) {
                const HostGroup *g = groups->pdata[i];

                g_ptr_array_add(c->groups, g_strdup(g->id));
                for (guint m = 0; m < g->members->len; m++) {
                        const char *member = g->members->pdata[m];
                        if (!device_in_set(member, devices, n))
                                g_ptr_array_add(c->outside_members,
                                                g_strdup_printf("%s (group %s)", member, g->id));
                }
                /* Every type is excluded: msi windows too, the device cannot DMA there. */
                for (guint k = 0; g->regions && k < g->regions->len; k++)
                        g_array_append_val(reserved,
                                           g_array_index(g->regions, HostRegion, k).range);
        }
        iova_ranges_add(aperture, 0, UINT64_MAX);
        c->iova_ranges = iova_ranges_subtract(aperture, reserved);
        *ret = g_steal_pointer(&c);
        return 0;
}

void host_context_free(HostContext *c)
{
        if (!c)
                return;
        g_ptr_array_unref(c->groups);
        g_ptr_array_unref(c->outside_members);
        if (c->iova_ranges)
                g_array_unref(c->iova_ranges);
        g_free(c);
}
