/* scan-groups: the IOMMU groups under kernel/iommu_groups, each taken whole or not at all */
#include <errno.h>

#include "host/host-object.h"
#include "host/scan.h"
#include "host/sysfs-parse.h"
#include "host/sysfs-read.h"

static int scan_group_type(Scan *s, const char *dir, char **ret)
{
        g_autofree char *rel = g_build_filename(dir, "type", NULL);
        g_autofree char *text = NULL;
        g_autofree char *shown = NULL;
        size_t len;
        int r;

        r = scan_read(s, rel, true, &text, &len);
        if (r == -ENOENT)
                return 0; /* before 5.11 groups had no type */
        if (r < 0)
                return r;
        r = sysfs_parse_word(text, len, ret);
        if (r < 0) {
                shown = scan_quote(text, len);
                scan_warn(s, rel, "not a group type: %s", shown);
        }
        return r;
}

static int scan_group_regions(Scan *s, const char *dir, GArray **ret)
{
        g_autofree char *rel = g_build_filename(dir, "reserved_regions", NULL);
        g_autofree char *text = NULL;
        g_autofree char *shown = NULL;
        SysfsParseError err;
        size_t len;
        int r;

        r = scan_read(s, rel, false, &text, &len);
        if (r < 0)
                return r;
        r = sysfs_parse_reserved_regions(text, len, ret, &err);
        if (r < 0) {
                shown = scan_quote(text + err.offset, err.length);
                scan_warn_line(s, rel, err.line, "%s: %s", err.reason, shown);
        }
        return r;
}

static int scan_group_members(Scan *s, const char *dir, GPtrArray *members)
{
        g_autofree char *rel = g_build_filename(dir, "devices", NULL);
        g_autoptr(GPtrArray) names = NULL;
        int r;

        r = sysfs_list_dir(s->sys_fd, rel, &names);
        if (r < 0) {
                scan_warn(s, rel, "%s", scan_odd_text(r));
                return r;
        }
        for (guint i = 0; i < names->len; i++) {
                const char *name = names->pdata[i];
                if (!sysfs_name_is_printable(name)) {
                        g_autofree char *member = g_build_filename(rel, name, NULL);
                        scan_warn(s, member, "not a printable device name");
                        return -EINVAL;
                }
                g_ptr_array_add(members, g_strdup(name));
        }
        return 0;
}

/* A group is taken whole or not at all: a member or reserved region missed would make the
 * IOMMU context of its devices look safer than it is. */
static HostGroup *scan_group(Scan *s, const char *id)
{
        g_autofree char *rel = g_build_filename(GROUPS_DIR, id, NULL);
        g_autofree char *node = g_build_filename("vfio", id, NULL);
        g_autoptr(HostGroup) g = NULL;

        if (!sysfs_name_is_group_id(id)) {
                scan_warn(s, rel, "not an IOMMU group number");
                return NULL;
        }
        g = host_group_new(id);
        if (scan_group_type(s, rel, &g->type) < 0 || scan_group_regions(s, rel, &g->regions) < 0 ||
            scan_group_members(s, rel, g->members) < 0)
                return NULL;
        g->vfio_node = scan_dev_node(s, node);
        return g_steal_pointer(&g);
}

void scan_groups(Scan *s)
{
        g_autoptr(GPtrArray) ids = NULL;
        int r;

        r = sysfs_list_dir(s->sys_fd, GROUPS_DIR, &ids);
        if (r == -ENOENT)
                return; /* a kernel without IOMMU support */
        if (r < 0) {
                scan_warn(s, GROUPS_DIR, "%s", scan_odd_text(r));
                return;
        }
        for (guint i = 0; i < ids->len; i++) {
                const char *id = ids->pdata[i];
                HostGroup *g = scan_group(s, id);

                if (g)
                        g_hash_table_insert(s->snap->groups, g->id, g);
                else
                        g_hash_table_add(s->dropped_groups, g_strdup(id));
        }
}
