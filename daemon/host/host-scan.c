/* host-scan: host_scan(): groups, then devices, then only the devices whose group agrees */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "host/host-object.h"
#include "host/host.h"
#include "host/scan.h"
#include "util.h"

/* A device is kept only with its group, and only if the group lists it: the two are read at
 * different moments, and a context built from a stale pair would miss a member. */
static void scan_check_membership(Scan *s, const char *name)
{
        HostDevice *d = g_hash_table_lookup(s->snap->devices, name);
        HostGroup *g = d->group ? g_hash_table_lookup(s->snap->groups, d->group) : NULL;
        g_autofree char *rel = NULL;

        if (!d->group ||
            (g && g_ptr_array_find_with_equal_func(g->members, name, g_str_equal, NULL)))
                return;
        rel = g_build_filename("bus", d->bus, "devices", name, "iommu_group", NULL);
        if (g)
                scan_warn(s, rel,
                          "IOMMU group %s does not list the device (moved during the scan?)",
                          d->group);
        else if (g_hash_table_contains(s->dropped_groups, d->group))
                scan_warn(s, rel, "IOMMU group %s was left out, so is the device", d->group);
        else
                scan_warn(s, rel, "IOMMU group %s is not under " GROUPS_DIR, d->group);
        g_hash_table_remove(s->snap->devices, name);
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void scan_check_memberships(Scan *s)
{
        guint n;
        g_autofree gpointer *names = g_hash_table_get_keys_as_array(s->snap->devices, &n);

        /* Sorted so the warnings come in the same order on every scan. */
        qsort(names, n, sizeof(*names), compare_names);
        for (guint i = 0; i < n; i++)
                scan_check_membership(s, names[i]);
}

/* ---- entry ---- */

static int open_root(const char *path, int *ret)
{
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        *ret = fd;
        return 0;
}

int host_scan(const char *sysfs_root, const char *dev_root, HostSnapshot **ret)
{
        _cleanup_close_ int sys_fd = -1, dev_fd = -1;
        g_autoptr(GHashTable) dropped =
            g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        Scan s;
        int r;

        if ((r = open_root(sysfs_root, &sys_fd)) < 0 || (r = open_root(dev_root, &dev_fd)) < 0)
                return r;
        s = (Scan){.sys_fd = sys_fd,
                   .dev_fd = dev_fd,
                   .sysfs_root = sysfs_root,
                   .dev_root = dev_root,
                   .snap = host_snapshot_new(),
                   .dropped_groups = dropped};
        scan_groups(&s);
        scan_devices(&s);
        scan_check_memberships(&s);
        *ret = s.snap;
        return 0;
}
