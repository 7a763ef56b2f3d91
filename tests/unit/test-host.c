/* test-host: host_scan() on real directory trees laid out as the kernel lays out sysfs
 *
 * Each test builds a tree under a temporary directory (files, and symbolic links exactly as
 * sysfs has them), scans it and checks the snapshot. The odd-content tests put one odd thing
 * next to a healthy bystander device and check three things: the warning names the path, the
 * odd device or group is left out whole, and the bystander is still there. */
#include <errno.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/host.h"
#include "host/sysfs-parse.h"

#define DEV_A     "0000:00:03.0"
#define DEV_B     "0000:00:03.1"
#define BYSTANDER "0000:00:09.0"
#define MDEV      "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
#define X86_REGIONS                                                                                \
        "0x00000000fee00000 0x00000000feefffff msi\n"                                              \
        "0x00000000fed90000 0x00000000fed90fff direct\n"

/* ---- the tree ---- */

typedef struct Tree {
        char *root, *sys, *dev;
} Tree;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static void tree_free(Tree *t)
{
        g_assert_cmpint(nftw(t->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
        g_free(t->root);
        g_free(t->sys);
        g_free(t->dev);
        g_free(t);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Tree, tree_free)

static char *tree_path(const Tree *t, const char *rel)
{
        return g_build_filename(t->root, rel, NULL);
}

static void tree_mkdir(const Tree *t, const char *rel)
{
        g_autofree char *path = tree_path(t, rel);

        g_assert_cmpint(g_mkdir_with_parents(path, 0755), ==, 0);
}

static void tree_parent(const Tree *t, const char *rel)
{
        g_autofree char *dir = g_path_get_dirname(rel);

        tree_mkdir(t, dir);
}

static void tree_file(const Tree *t, const char *rel, const char *content)
{
        g_autofree char *path = tree_path(t, rel);
        g_autoptr(GError) error = NULL;

        tree_parent(t, rel);
        /* No fsync: a test tree need not survive a crash, and syncing makes the suite slow. */
        g_file_set_contents_full(path, content, -1, G_FILE_SET_CONTENTS_NONE, 0644, &error);
        g_assert_no_error(error);
}

static void tree_link(const Tree *t, const char *rel, const char *target)
{
        g_autofree char *path = tree_path(t, rel);

        tree_parent(t, rel);
        g_assert_cmpint(symlink(target, path), ==, 0);
}

static void tree_remove(const Tree *t, const char *rel)
{
        g_autofree char *path = tree_path(t, rel);

        g_assert_cmpint(remove(path), ==, 0);
}

static Tree *tree_new(void)
{
        g_autoptr(GError) error = NULL;
        Tree *t = g_new0(Tree, 1);

        t->root = g_dir_make_tmp("test-host-XXXXXX", &error);
        g_assert_no_error(error);
        t->sys = tree_path(t, "sys");
        t->dev = tree_path(t, "dev");
        tree_mkdir(t, "sys/kernel/iommu_groups");
        tree_mkdir(t, "sys/bus/pci/devices");
        tree_mkdir(t, "dev/vfio");
        return t;
}

/* kernel/iommu_groups/ID with its type, reserved_regions and an empty devices/. */
static void tree_group(const Tree *t, const char *id, const char *regions)
{
        g_autofree char *dir = g_build_filename("sys/kernel/iommu_groups", id, NULL);
        g_autofree char *type = g_build_filename(dir, "type", NULL);
        g_autofree char *rr = g_build_filename(dir, "reserved_regions", NULL);
        g_autofree char *devices = g_build_filename(dir, "devices", NULL);

        tree_file(t, type, "DMA\n");
        tree_file(t, rr, regions);
        tree_mkdir(t, devices);
}

/* The device's directory and its place in the group: device -> group and group -> device. */
static void tree_join_group(const Tree *t, const char *dev_dir, const char *name, const char *up,
                            const char *group)
{
        g_autofree char *link = g_build_filename(dev_dir, "iommu_group", NULL);
        g_autofree char *target = g_strdup_printf("%skernel/iommu_groups/%s", up, group);
        g_autofree char *member =
            g_strdup_printf("sys/kernel/iommu_groups/%s/devices/%s", group, name);
        g_autofree char *back = g_strdup_printf("../../../../%s", dev_dir + strlen("sys/"));

        tree_link(t, link, target);
        tree_link(t, member, back);
}

static void tree_driver(const Tree *t, const char *dev_dir, const char *up, const char *bus,
                        const char *driver)
{
        g_autofree char *drv_dir = g_strdup_printf("sys/bus/%s/drivers/%s", bus, driver);
        g_autofree char *link = g_build_filename(dev_dir, "driver", NULL);
        g_autofree char *target = g_strdup_printf("%sbus/%s/drivers/%s", up, bus, driver);

        tree_mkdir(t, drv_dir);
        tree_link(t, link, target);
}

/* A PCI device as sysfs shows it: devices/pci0000:00/BDF with vendor, device and class, the
 * bus link to it, and when given a driver link and an IOMMU group (both ways). */
static void tree_pci(const Tree *t, const char *bdf, const char *driver, const char *group)
{
        g_autofree char *dir = g_build_filename("sys/devices/pci0000:00", bdf, NULL);
        g_autofree char *vendor = g_build_filename(dir, "vendor", NULL);
        g_autofree char *device = g_build_filename(dir, "device", NULL);
        g_autofree char *class_file = g_build_filename(dir, "class", NULL);
        g_autofree char *bus_link = g_build_filename("sys/bus/pci/devices", bdf, NULL);
        g_autofree char *bus_target = g_build_filename("../../../devices/pci0000:00", bdf, NULL);

        tree_file(t, vendor, "0x15b3\n");
        tree_file(t, device, "0x101e\n");
        tree_file(t, class_file, "0x020000\n");
        tree_link(t, bus_link, bus_target);
        if (driver)
                tree_driver(t, dir, "../../../", "pci", driver);
        if (group)
                tree_join_group(t, dir, bdf, "../../../", group);
}

/* An mdev: a UUID directory inside its parent's, the mdev bus link, driver and group. */
static void tree_mdev(const Tree *t, const char *uuid, const char *parent, const char *driver,
                      const char *group)
{
        g_autofree char *dir = g_strdup_printf("sys/devices/pci0000:00/%s/%s", parent, uuid);
        g_autofree char *bus_link = g_build_filename("sys/bus/mdev/devices", uuid, NULL);
        g_autofree char *bus_target = g_strdup_printf("../../../%s", dir + strlen("sys/"));
        g_autofree char *uevent = g_build_filename(dir, "uevent", NULL);

        tree_file(t, uevent, "");
        tree_link(t, bus_link, bus_target);
        tree_driver(t, dir, "../../../../", "mdev", driver);
        tree_join_group(t, dir, uuid, "../../../../", group);
}

static void tree_dev_node(const Tree *t, const char *rel)
{
        g_autofree char *path = g_build_filename("dev", rel, NULL);

        tree_file(t, path, ""); /* a regular file stands in for the character device */
}

/* A healthy device in a group of its own, for the odd tests to leave intact. */
static Tree *tree_with_bystander(void)
{
        Tree *t = tree_new();

        tree_group(t, "9", "");
        tree_pci(t, BYSTANDER, "vfio-pci", "9");
        return t;
}

/* ---- looking at the snapshot ---- */

static HostSnapshot *scan(const Tree *t)
{
        HostSnapshot *s = NULL;

        g_assert_cmpint(host_scan(t->sys, t->dev, &s), ==, 0);
        g_assert_nonnull(s);
        return s;
}

static const HostDevice *device(const HostSnapshot *s, const char *name)
{
        return g_hash_table_lookup(s->devices, name);
}

static const HostGroup *group(const HostSnapshot *s, const char *id)
{
        return g_hash_table_lookup(s->groups, id);
}

static char *joined(const GPtrArray *a)
{
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < a->len; i++)
                g_string_append_printf(s, "%s%s", i ? "," : "", (char *)a->pdata[i]);
        return g_string_free(s, FALSE);
}

static void assert_no_warnings(const HostSnapshot *s)
{
        g_autofree char *all = joined(s->warnings);

        g_assert_cmpstr(all, ==, "");
}

/* The warnings are exactly "SYS/rel: what" for each pair given, in order. */
static void assert_warnings(const HostSnapshot *s, const Tree *t, ...)
{
        g_autoptr(GPtrArray) want = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *got = joined(s->warnings);
        g_autofree char *expected = NULL;
        const char *rel;
        va_list ap;

        va_start(ap, t);
        while ((rel = va_arg(ap, const char *))) {
                const char *what = va_arg(ap, const char *);
                g_ptr_array_add(want, g_strdup_printf("%s/%s: %s", t->sys, rel, what));
        }
        va_end(ap);
        expected = joined(want);
        g_assert_cmpstr(got, ==, expected);
}

static void assert_bystander_intact(const HostSnapshot *s)
{
        const HostDevice *d = device(s, BYSTANDER);

        g_assert_nonnull(d);
        g_assert_cmpstr(d->group, ==, "9");
        g_assert_nonnull(group(s, "9"));
}

static char *regions_text(const HostGroup *g)
{
        GString *out = g_string_new(NULL);

        for (guint i = 0; i < g->regions->len; i++) {
                const HostRegion *r = &g_array_index(g->regions, HostRegion, i);
                g_string_append_printf(out, "%s%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x %s",
                                       i ? "," : "", r->range.start, r->range.end, r->type);
        }
        return g_string_free(out, FALSE);
}

/* ---- what a healthy tree gives ---- */

static void test_pci_device_fields(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;
        g_autofree char *node = NULL;
        const HostDevice *d;

        tree_group(t, "5", X86_REGIONS);
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_dev_node(t, "vfio/5");
        s = scan(t);
        assert_no_warnings(s);
        d = device(s, DEV_A);
        g_assert_nonnull(d);
        g_assert_cmpstr(d->name, ==, DEV_A);
        g_assert_cmpstr(d->bus, ==, "pci");
        g_assert_cmpstr(d->driver, ==, "vfio-pci");
        g_assert_cmphex(d->vendor_id, ==, 0x15b3);
        g_assert_cmphex(d->device_id, ==, 0x101e);
        g_assert_cmphex(d->class_code, ==, 0x020000);
        g_assert_cmpstr(d->group, ==, "5");
        node = g_build_filename(t->dev, "vfio", "5", NULL);
        g_assert_cmpstr(d->vfio_group_node, ==, node);
        g_assert_null(d->cdev_node);
        g_assert_null(d->parent);
}

static void test_group_fields(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;
        g_autofree char *node = NULL;
        g_autofree char *members = NULL;
        g_autofree char *regions = NULL;
        const HostGroup *g;

        tree_group(t, "5", X86_REGIONS);
        tree_pci(t, DEV_B, "vfio-pci", "5");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_dev_node(t, "vfio/5");
        s = scan(t);
        assert_no_warnings(s);
        g = group(s, "5");
        g_assert_nonnull(g);
        g_assert_cmpstr(g->id, ==, "5");
        g_assert_cmpstr(g->type, ==, "DMA");
        members = joined(g->members);
        g_assert_cmpstr(members, ==, DEV_A "," DEV_B);
        regions = regions_text(g);
        g_assert_cmpstr(regions, ==, "fee00000-feefffff msi,fed90000-fed90fff direct");
        node = g_build_filename(t->dev, "vfio", "5", NULL);
        g_assert_cmpstr(g->vfio_node, ==, node);
}

static void test_group_without_node(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        s = scan(t);
        assert_no_warnings(s);
        g_assert_null(group(s, "5")->vfio_node);
        g_assert_cmpuint(group(s, "5")->regions->len, ==, 0);
}

static void test_non_vfio_driver_has_no_group_node(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "virtio-pci", "5");
        tree_dev_node(t, "vfio/5");
        s = scan(t);
        assert_no_warnings(s);
        g_assert_cmpstr(device(s, DEV_A)->driver, ==, "virtio-pci");
        g_assert_null(device(s, DEV_A)->vfio_group_node);
}

static void test_vfio_driver_without_node(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "mlx5_vfio_pci", "5");
        s = scan(t);
        assert_no_warnings(s);
        g_assert_cmpstr(device(s, DEV_A)->driver, ==, "mlx5_vfio_pci");
        g_assert_null(device(s, DEV_A)->vfio_group_node);
}

static void test_device_without_driver(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, NULL, "5");
        tree_dev_node(t, "vfio/5");
        s = scan(t);
        assert_no_warnings(s);
        g_assert_null(device(s, DEV_A)->driver);
        g_assert_null(device(s, DEV_A)->vfio_group_node);
        g_assert_cmpstr(device(s, DEV_A)->group, ==, "5");
}

static void test_device_without_iommu(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;

        tree_pci(t, DEV_A, "virtio-pci", NULL);
        s = scan(t);
        assert_no_warnings(s);
        g_assert_nonnull(device(s, DEV_A));
        g_assert_null(device(s, DEV_A)->group);
        g_assert_cmpuint(g_hash_table_size(s->groups), ==, 0);
}

static void test_cdev(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;
        g_autofree char *node = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_file(t, "sys/devices/pci0000:00/" DEV_A "/vfio-dev/vfio0/dev", "511:0\n");
        tree_dev_node(t, "vfio/devices/vfio0");
        s = scan(t);
        assert_no_warnings(s);
        node = g_build_filename(t->dev, "vfio", "devices", "vfio0", NULL);
        g_assert_cmpstr(device(s, DEV_A)->cdev_node, ==, node);
}

static void test_cdev_without_dev_node(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_file(t, "sys/devices/pci0000:00/" DEV_A "/vfio-dev/vfio0/dev", "511:0\n");
        s = scan(t);
        assert_no_warnings(s);
        g_assert_null(device(s, DEV_A)->cdev_node);
}

static void test_mdev(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;
        g_autofree char *node = NULL;
        const HostDevice *d;

        tree_pci(t, "0000:00:02.0", "i915", NULL);
        tree_group(t, "13", "");
        tree_mdev(t, MDEV, "0000:00:02.0", "mtty", "13");
        tree_dev_node(t, "vfio/13");
        s = scan(t);
        assert_no_warnings(s);
        d = device(s, MDEV);
        g_assert_nonnull(d);
        g_assert_cmpstr(d->bus, ==, "mdev");
        g_assert_cmpstr(d->parent, ==, "0000:00:02.0");
        g_assert_cmpstr(d->driver, ==, "mtty");
        g_assert_cmpstr(d->group, ==, "13");
        node = g_build_filename(t->dev, "vfio", "13", NULL);
        g_assert_cmpstr(d->vfio_group_node, ==, node);
        g_assert_cmpuint(d->vendor_id, ==, 0);
}

static void test_empty_root(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = NULL;

        tree_remove(t, "sys/kernel/iommu_groups");
        tree_remove(t, "sys/bus/pci/devices");
        s = scan(t);
        assert_no_warnings(s);
        g_assert_cmpuint(g_hash_table_size(s->groups), ==, 0);
        g_assert_cmpuint(g_hash_table_size(s->devices), ==, 0);
}

static void test_unusable_root(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autofree char *missing = tree_path(t, "nowhere");
        HostSnapshot *s = NULL;

        g_assert_cmpint(host_scan(missing, t->dev, &s), ==, -ENOENT);
        g_assert_cmpint(host_scan(t->sys, missing, &s), ==, -ENOENT);
        g_assert_null(s);
}

/* ---- odd content: warned about, left out whole, the rest intact ---- */

static void test_odd_missing_vendor(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_remove(t, "sys/devices/pci0000:00/" DEV_A "/vendor");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/vendor",
                        "does not exist (removed during the scan?)", NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_vendor_not_hex(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_remove(t, "sys/devices/pci0000:00/" DEV_A "/vendor");
        tree_file(t, "sys/devices/pci0000:00/" DEV_A "/vendor", "0xzz\n");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/vendor",
                        "not a 0x-prefixed hex number: \"0xzz\\n\"", NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_vendor_above_16_bits(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_remove(t, "sys/devices/pci0000:00/" DEV_A "/device");
        tree_file(t, "sys/devices/pci0000:00/" DEV_A "/device", "0x10000\n");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/device", "above 0xffff: \"0x10000\\n\"",
                        NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_vendor_too_long(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;
        g_autofree char *huge = g_strnfill(70 * 1024, '0');

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_remove(t, "sys/devices/pci0000:00/" DEV_A "/vendor");
        tree_file(t, "sys/devices/pci0000:00/" DEV_A "/vendor", huge);
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/vendor", "longer than 65536 bytes", NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_vendor_is_a_fifo(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;
        g_autofree char *path = tree_path(t, "sys/devices/pci0000:00/" DEV_A "/vendor");

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_remove(t, "sys/devices/pci0000:00/" DEV_A "/vendor");
        g_assert_cmpint(mkfifo(path, 0644), ==, 0);
        s = scan(t); /* must not block on the FIFO */
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/vendor", "not a regular file", NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

/* What a device removed between readdir and the first read looks like: the bus entry is
 * there, what it leads to is not. */
static void test_odd_device_vanished(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_link(t, "sys/bus/pci/devices/" DEV_A, "../../../devices/pci0000:00/" DEV_A);
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A, "does not exist (removed during the scan?)",
                        NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_device_link_loop(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_link(t, "sys/bus/pci/devices/" DEV_A, DEV_B);
        tree_link(t, "sys/bus/pci/devices/" DEV_B, DEV_A);
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A, "too many levels of symbolic links",
                        "bus/pci/devices/" DEV_B, "too many levels of symbolic links", NULL);
        g_assert_null(device(s, DEV_A));
        g_assert_null(device(s, DEV_B));
        assert_bystander_intact(s);
}

static void test_odd_device_name(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_pci(t, "not-a-bdf", "vfio-pci", NULL);
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/not-a-bdf", "not a PCI address", NULL);
        g_assert_cmpuint(g_hash_table_size(s->devices), ==, 1);
        assert_bystander_intact(s);
}

static void test_odd_driver_link_dangling(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "mlx5_vfio_pci", "5");
        tree_remove(t, "sys/bus/pci/drivers/mlx5_vfio_pci");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/driver",
                        "dangling link to \"../../../bus/pci/drivers/mlx5_vfio_pci\" "
                        "(removed during the scan?)",
                        NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_group_link_dangling(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_pci(t, DEV_A, "vfio-pci", NULL);
        tree_link(t, "sys/devices/pci0000:00/" DEV_A "/iommu_group",
                  "../../../kernel/iommu_groups/5");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/iommu_group",
                        "dangling link to \"../../../kernel/iommu_groups/5\" "
                        "(removed during the scan?)",
                        NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_group_link_absolute(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_pci(t, DEV_A, "vfio-pci", NULL);
        tree_link(t, "sys/devices/pci0000:00/" DEV_A "/iommu_group", "/etc");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/iommu_group",
                        "link to \"/etc\": leads out of the root", NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_group_link_climbs_out(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_pci(t, DEV_A, "vfio-pci", NULL);
        /* Four levels up is the tree's root, one more than the sysfs root allows. */
        tree_link(t, "sys/devices/pci0000:00/" DEV_A "/iommu_group", "../../../../sys/kernel");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/iommu_group",
                        "link to \"../../../../sys/kernel\": leads out of the root", NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_group_link_not_a_group(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_pci(t, DEV_A, "vfio-pci", NULL);
        tree_link(t, "sys/devices/pci0000:00/" DEV_A "/iommu_group", "../../../bus/pci");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/iommu_group",
                        "leads to bus/pci, not to an IOMMU group", NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_device_not_listed_by_group(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_remove(t, "sys/kernel/iommu_groups/5/devices/" DEV_A);
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/iommu_group",
                        "IOMMU group 5 does not list the device (moved during the scan?)", NULL);
        g_assert_null(device(s, DEV_A));
        g_assert_nonnull(group(s, "5"));
        assert_bystander_intact(s);
}

static void test_odd_regions_garbage_line(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "0x00000000fee00000 0x00000000feefffff msi\ngarbage\n");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        s = scan(t);
        assert_warnings(s, t, "kernel/iommu_groups/5/reserved_regions:2",
                        "expected \"0x<start> 0x<end> <type>\": \"garbage\"",
                        "bus/pci/devices/" DEV_A "/iommu_group",
                        "IOMMU group 5 was left out, so is the device", NULL);
        g_assert_null(group(s, "5"));
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_regions_start_above_end(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "0x2000 0x1000 msi\n");
        s = scan(t);
        assert_warnings(s, t, "kernel/iommu_groups/5/reserved_regions:1",
                        "start is above end: \"0x2000 0x1000 msi\"", NULL);
        g_assert_null(group(s, "5"));
        assert_bystander_intact(s);
}

static void test_odd_regions_missing(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_remove(t, "sys/kernel/iommu_groups/5/reserved_regions");
        s = scan(t);
        assert_warnings(s, t, "kernel/iommu_groups/5/reserved_regions",
                        "does not exist (removed during the scan?)", NULL);
        g_assert_null(group(s, "5"));
        assert_bystander_intact(s);
}

static void test_odd_regions_too_long(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;
        GString *text = g_string_new(NULL);

        while (text->len <= 64 * 1024)
                g_string_append(text, "0x00000000fee00000 0x00000000feefffff msi\n");
        tree_group(t, "5", text->str);
        g_string_free(text, TRUE);
        s = scan(t);
        assert_warnings(s, t, "kernel/iommu_groups/5/reserved_regions", "longer than 65536 bytes",
                        NULL);
        g_assert_null(group(s, "5"));
        assert_bystander_intact(s);
}

static void test_odd_group_name(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "five", "");
        s = scan(t);
        assert_warnings(s, t, "kernel/iommu_groups/five", "not an IOMMU group number", NULL);
        g_assert_cmpuint(g_hash_table_size(s->groups), ==, 1);
        assert_bystander_intact(s);
}

static void test_odd_group_type(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_remove(t, "sys/kernel/iommu_groups/5/type");
        tree_file(t, "sys/kernel/iommu_groups/5/type", "DMA FQ\n");
        s = scan(t);
        assert_warnings(s, t, "kernel/iommu_groups/5/type", "not a group type: \"DMA FQ\\n\"",
                        NULL);
        g_assert_null(group(s, "5"));
        assert_bystander_intact(s);
}

/* Kernels before 5.11 have no type file: that is not odd. */
static void test_group_type_missing_is_fine(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_remove(t, "sys/kernel/iommu_groups/5/type");
        s = scan(t);
        assert_no_warnings(s);
        g_assert_nonnull(group(s, "5"));
        g_assert_null(group(s, "5")->type);
}

static void test_odd_group_member_unprintable(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_link(t, "sys/kernel/iommu_groups/5/devices/bad\001name", "../../../../devices/x");
        s = scan(t);
        assert_warnings(s, t, "kernel/iommu_groups/5/devices/bad\\001name",
                        "not a printable device name", NULL);
        g_assert_null(group(s, "5"));
        assert_bystander_intact(s);
}

static void test_odd_group_devices_missing(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_remove(t, "sys/kernel/iommu_groups/5/devices");
        s = scan(t);
        assert_warnings(s, t, "kernel/iommu_groups/5/devices",
                        "does not exist (removed during the scan?)", NULL);
        g_assert_null(group(s, "5"));
        assert_bystander_intact(s);
}

static void test_odd_cdev_two_entries(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "5", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_file(t, "sys/devices/pci0000:00/" DEV_A "/vfio-dev/vfio0/dev", "511:0\n");
        tree_file(t, "sys/devices/pci0000:00/" DEV_A "/vfio-dev/vfio1/dev", "511:1\n");
        s = scan(t);
        assert_warnings(s, t, "bus/pci/devices/" DEV_A "/vfio-dev",
                        "expected one vfioN entry, found \"vfio0 vfio1\"", NULL);
        g_assert_null(device(s, DEV_A));
        assert_bystander_intact(s);
}

static void test_odd_mdev_name(void)
{
        g_autoptr(Tree) t = tree_with_bystander();
        g_autoptr(HostSnapshot) s = NULL;

        tree_group(t, "13", "");
        tree_mdev(t, "not-a-uuid", BYSTANDER, "mtty", "13");
        s = scan(t);
        assert_warnings(s, t, "bus/mdev/devices/not-a-uuid", "not an mdev UUID", NULL);
        g_assert_null(device(s, "not-a-uuid"));
        assert_bystander_intact(s);
}

/* ---- the parsers, directly ---- */

typedef struct RegionsCase {
        const char *name, *text;
        size_t len; /* 0: strlen(text) */
        int r;
        unsigned line; /* of the error; the region count when r == 0 */
} RegionsCase;

static const RegionsCase regions_cases[] = {
    {"empty", "", 0, 0, 0},
    {"kernel-format", X86_REGIONS, 0, 0, 2},
    {"no-final-newline", "0x0 0xfff direct", 0, 0, 1},
    {"tabs-and-short-numbers", "0x0\t0xfff\treserved \n", 0, 0, 1},
    {"full-space", "0x0 0xffffffffffffffff reserved\n", 0, 0, 1},
    {"unknown-type-taken", "0x0 0xfff some-new-type\n", 0, 0, 1},
    {"garbage", "0x0 0xfff msi\nhello\n", 0, -EINVAL, 2},
    {"start-above-end", "0x1000 0xfff msi\n", 0, -EINVAL, 1},
    {"no-type", "0x0 0xfff\n", 0, -EINVAL, 1},
    {"decimal", "0 4095 msi\n", 0, -EINVAL, 1},
    {"seventeen-digits", "0x0 0x10000000000000000 msi\n", 0, -EINVAL, 1},
    {"trailing-text", "0x0 0xfff msi extra\n", 0, -EINVAL, 1},
    {"nul-byte", "0x0 0xfff ms\0i\n", sizeof("0x0 0xfff ms\0i\n") - 1, -EINVAL, 1},
    {"carriage-return", "0x0 0xfff msi\r\n", 0, -EINVAL, 1},
};

static void test_parse_regions(gconstpointer data)
{
        const RegionsCase *c = data;
        size_t len = c->len ? c->len : strlen(c->text);
        g_autoptr(GArray) regions = NULL;
        SysfsParseError err = {0};
        int r;

        r = sysfs_parse_reserved_regions(c->text, len, &regions, &err);
        g_assert_cmpint(r, ==, c->r);
        if (r == 0)
                g_assert_cmpuint(regions->len, ==, c->line);
        else
                g_assert_cmpuint(err.line, ==, c->line);
}

static void test_parse_names(void)
{
        g_assert_true(sysfs_name_is_pci_address("0000:06:0d.0"));
        g_assert_true(sysfs_name_is_pci_address("10000:e1:00.7"));
        g_assert_false(sysfs_name_is_pci_address("0000:06:0d.8"));
        g_assert_false(sysfs_name_is_pci_address("0000:06:0d"));
        g_assert_false(sysfs_name_is_pci_address("0000:06:0d.0x"));
        g_assert_true(sysfs_name_is_group_id("0"));
        g_assert_false(sysfs_name_is_group_id(""));
        g_assert_false(sysfs_name_is_group_id("12345678901"));
        g_assert_true(sysfs_name_is_vfio_cdev("vfio12"));
        g_assert_false(sysfs_name_is_vfio_cdev("vfio"));
        g_assert_false(sysfs_name_is_printable("a\nb"));
        g_assert_false(sysfs_name_is_printable("\xff"));
        g_assert_true(sysfs_name_is_printable("fe200000.serial"));
}

/* ---- which drivers are VFIO's ---- */

static void test_driver_is_vfio(void)
{
        static const struct {
                const char *driver;
                bool vfio;
        } cases[] = {
            {"vfio-pci", true},
            {"mlx5_vfio_pci", true},
            {"hisi_acc_vfio_pci", true},
            {"vfio_ap", true},
            {"vfio_ccw", true},
            {"vfio_mdev", true},
            {"mtty", true},
            {"vfio-platform", true},
            {"virtio-pci", false},
            {"mlx5_core", false},
            {"nvme", false},
            {"vfio_pci_x", true},
            {"xvfio_pci", false},
            {"", false},
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_test_message("%s", cases[i].driver);
                g_assert_cmpint(host_driver_is_vfio(cases[i].driver), ==, cases[i].vfio);
        }
        g_assert_false(host_driver_is_vfio(NULL));
}

/* ---- the IOMMU context of a device set ---- */

/* Group 5 holds A and B, group 12 holds C; each has its own reserved regions. */
static HostSnapshot *context_snapshot(Tree *t)
{
        tree_group(t, "5", "0x00000000fee00000 0x00000000feefffff msi\n");
        tree_group(t, "12",
                   "0x0000000000000000 0x0000000000000fff reserved\n"
                   "0x00000000fed90000 0x00000000fed90fff direct-relaxable\n");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_pci(t, DEV_B, "vfio-pci", "5");
        tree_pci(t, "0000:00:0c.0", "vfio-pci", "12");
        tree_pci(t, "0000:00:0d.0", "virtio-pci", NULL);
        return scan(t);
}

static void test_context_groups_and_outside_members(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = context_snapshot(t);
        g_autoptr(HostContext) c = NULL;
        g_autofree char *groups = NULL;
        g_autofree char *outside = NULL;
        const char *set[] = {"0000:00:0c.0", DEV_A};

        g_assert_cmpint(host_context(s, set, G_N_ELEMENTS(set), &c), ==, 0);
        groups = joined(c->groups);
        g_assert_cmpstr(groups, ==, "5,12"); /* numeric order */
        outside = joined(c->outside_members);
        g_assert_cmpstr(outside, ==, DEV_B " (group 5)");
}

static void test_context_whole_group_has_no_outside_members(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = context_snapshot(t);
        g_autoptr(HostContext) c = NULL;
        const char *set[] = {DEV_B, DEV_A, DEV_A};

        g_assert_cmpint(host_context(s, set, G_N_ELEMENTS(set), &c), ==, 0);
        g_assert_cmpuint(c->groups->len, ==, 1);
        g_assert_cmpuint(c->outside_members->len, ==, 0);
}

static void test_context_iova_excludes_every_region_type(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = context_snapshot(t);
        g_autoptr(HostContext) c = NULL;
        g_autofree char *iova = NULL;
        const char *set[] = {DEV_A, "0000:00:0c.0"};

        g_assert_cmpint(host_context(s, set, G_N_ELEMENTS(set), &c), ==, 0);
        iova = iova_ranges_format(c->iova_ranges);
        g_assert_cmpstr(iova, ==,
                        "0x1000-0xfed8ffff,0xfed91000-0xfedfffff,0xfef00000-0xffffffffffffffff");
}

static void test_context_without_devices_is_the_full_space(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = context_snapshot(t);
        g_autoptr(HostContext) c = NULL;
        g_autofree char *iova = NULL;

        g_assert_cmpint(host_context(s, NULL, 0, &c), ==, 0);
        iova = iova_ranges_format(c->iova_ranges);
        g_assert_cmpstr(iova, ==, "0x0-0xffffffffffffffff");
        g_assert_cmpuint(c->groups->len, ==, 0);
}

static void test_context_unknown_device(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = context_snapshot(t);
        HostContext *c = NULL;
        const char *set[] = {DEV_A, "0000:00:1f.0"};

        g_assert_cmpint(host_context(s, set, G_N_ELEMENTS(set), &c), ==, -ENODEV);
        g_assert_null(c);
}

static void test_context_device_without_group(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(HostSnapshot) s = context_snapshot(t);
        HostContext *c = NULL;
        const char *set[] = {"0000:00:0d.0"};

        g_assert_cmpint(host_context(s, set, G_N_ELEMENTS(set), &c), ==, -ENOENT);
        g_assert_null(c);
}

/* ---- this machine ---- */

static void assert_device_consistent(const HostSnapshot *s, const HostDevice *d)
{
        const HostGroup *g;

        g_assert_true(g_str_equal(d->bus, "pci") || g_str_equal(d->bus, "mdev"));
        if (!d->group) {
                g_assert_null(d->vfio_group_node);
                return;
        }
        g = group(s, d->group);
        g_assert_nonnull(g);
        g_assert_true(g_ptr_array_find_with_equal_func(g->members, d->name, g_str_equal, NULL));
}

static void assert_group_consistent(const HostSnapshot *s, const HostGroup *g)
{
        for (guint i = 0; i < g->members->len; i++) {
                const HostDevice *d = device(s, g->members->pdata[i]);
                if (i > 0)
                        g_assert_cmpstr(g->members->pdata[i - 1], <, g->members->pdata[i]);
                if (d) /* members on other buses are not scanned */
                        g_assert_cmpstr(d->group, ==, g->id);
        }
        for (guint i = 0; i < g->regions->len; i++) {
                const HostRegion *r = &g_array_index(g->regions, HostRegion, i);
                g_assert_cmpuint(r->range.start, <=, r->range.end);
        }
}

/* Invariants only: it must pass on a host with or without an IOMMU. */
static void test_real_sys(void)
{
        g_autoptr(HostSnapshot) s = NULL;
        g_autoptr(HostContext) c = NULL;
        g_autoptr(GPtrArray) grouped = g_ptr_array_new();
        GHashTableIter it;
        gpointer value;
        int r;

        r = host_scan("/sys", "/dev", &s);
        if (r == -ENOENT || r == -EACCES) {
                g_test_skip("no usable /sys");
                return;
        }
        g_assert_cmpint(r, ==, 0);
        g_test_message("/sys: %u IOMMU groups, %u devices, %u warnings",
                       g_hash_table_size(s->groups), g_hash_table_size(s->devices),
                       s->warnings->len);
        for (guint i = 0; i < s->warnings->len; i++)
                g_test_message("warning: %s", (char *)s->warnings->pdata[i]);
        g_hash_table_iter_init(&it, s->devices);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
                const HostDevice *d = value;
                assert_device_consistent(s, d);
                if (d->group)
                        g_ptr_array_add(grouped, d->name);
        }
        g_hash_table_iter_init(&it, s->groups);
        while (g_hash_table_iter_next(&it, NULL, &value))
                assert_group_consistent(s, value);
        g_assert_cmpint(host_context(s, (const char *const *)grouped->pdata, grouped->len, &c), ==,
                        0);
        g_assert_cmpuint(c->groups->len, <=, g_hash_table_size(s->groups));
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/host/scan/pci-device-fields", test_pci_device_fields);
        g_test_add_func("/host/scan/group-fields", test_group_fields);
        g_test_add_func("/host/scan/group-without-node", test_group_without_node);
        g_test_add_func("/host/scan/non-vfio-driver-has-no-group-node",
                        test_non_vfio_driver_has_no_group_node);
        g_test_add_func("/host/scan/vfio-driver-without-node", test_vfio_driver_without_node);
        g_test_add_func("/host/scan/device-without-driver", test_device_without_driver);
        g_test_add_func("/host/scan/device-without-iommu", test_device_without_iommu);
        g_test_add_func("/host/scan/cdev", test_cdev);
        g_test_add_func("/host/scan/cdev-without-dev-node", test_cdev_without_dev_node);
        g_test_add_func("/host/scan/mdev", test_mdev);
        g_test_add_func("/host/scan/empty-root", test_empty_root);
        g_test_add_func("/host/scan/unusable-root", test_unusable_root);
        g_test_add_func("/host/scan/group-type-missing-is-fine", test_group_type_missing_is_fine);
        g_test_add_func("/host/odd/missing-vendor", test_odd_missing_vendor);
        g_test_add_func("/host/odd/vendor-not-hex", test_odd_vendor_not_hex);
        g_test_add_func("/host/odd/device-above-16-bits", test_odd_vendor_above_16_bits);
        g_test_add_func("/host/odd/vendor-too-long", test_odd_vendor_too_long);
        g_test_add_func("/host/odd/vendor-is-a-fifo", test_odd_vendor_is_a_fifo);
        g_test_add_func("/host/odd/device-vanished", test_odd_device_vanished);
        g_test_add_func("/host/odd/device-link-loop", test_odd_device_link_loop);
        g_test_add_func("/host/odd/device-name", test_odd_device_name);
        g_test_add_func("/host/odd/driver-link-dangling", test_odd_driver_link_dangling);
        g_test_add_func("/host/odd/group-link-dangling", test_odd_group_link_dangling);
        g_test_add_func("/host/odd/group-link-absolute", test_odd_group_link_absolute);
        g_test_add_func("/host/odd/group-link-climbs-out", test_odd_group_link_climbs_out);
        g_test_add_func("/host/odd/group-link-not-a-group", test_odd_group_link_not_a_group);
        g_test_add_func("/host/odd/device-not-listed-by-group",
                        test_odd_device_not_listed_by_group);
        g_test_add_func("/host/odd/regions-garbage-line", test_odd_regions_garbage_line);
        g_test_add_func("/host/odd/regions-start-above-end", test_odd_regions_start_above_end);
        g_test_add_func("/host/odd/regions-missing", test_odd_regions_missing);
        g_test_add_func("/host/odd/regions-too-long", test_odd_regions_too_long);
        g_test_add_func("/host/odd/group-name", test_odd_group_name);
        g_test_add_func("/host/odd/group-type", test_odd_group_type);
        g_test_add_func("/host/odd/group-member-unprintable", test_odd_group_member_unprintable);
        g_test_add_func("/host/odd/group-devices-missing", test_odd_group_devices_missing);
        g_test_add_func("/host/odd/cdev-two-entries", test_odd_cdev_two_entries);
        g_test_add_func("/host/odd/mdev-name", test_odd_mdev_name);
        for (size_t i = 0; i < G_N_ELEMENTS(regions_cases); i++) {
                g_autofree char *path =
                    g_strdup_printf("/host/parse/reserved-regions/%s", regions_cases[i].name);
                g_test_add_data_func(path, &regions_cases[i], test_parse_regions);
        }
        g_test_add_func("/host/parse/names", test_parse_names);
        g_test_add_func("/host/driver-is-vfio", test_driver_is_vfio);
        g_test_add_func("/host/context/groups-and-outside-members",
                        test_context_groups_and_outside_members);
        g_test_add_func("/host/context/whole-group-has-no-outside-members",
                        test_context_whole_group_has_no_outside_members);
        g_test_add_func("/host/context/iova-excludes-every-region-type",
                        test_context_iova_excludes_every_region_type);
        g_test_add_func("/host/context/without-devices-is-the-full-space",
                        test_context_without_devices_is_the_full_space);
        g_test_add_func("/host/context/unknown-device", test_context_unknown_device);
        g_test_add_func("/host/context/device-without-group", test_context_device_without_group);
        g_test_add_func("/host/real-sys", test_real_sys);
        return g_test_run();
}
