/* test-vfio-kernel: the kernel backend where no VFIO is needed
 *
 * The capability-chain walker over hand-made buffers (valid, truncated, looping, absurd
 * counts), and the backend over a sysfs tree made in a temporary directory, whose /dev/vfio
 * nodes are regular files: it lists and describes devices without opening anything, and every
 * attempt to open one fails with a sentence, leaks no fd and crashes nothing. What needs a real
 * kernel runs in a QEMU guest (tests/kernel/test-kernel-backend.sh). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "core/iova.h"
#include "devices/device.h"
#include "devices/vfio-capchain.h"
#include "devices/vfio-kernel.h"
#include "log.h"

/* ---- capability chains, laid out as vfio_iommu_type1_get_info() writes them ---- */

typedef struct Chain {
        uint8_t buf[512];
        size_t len;      /* bytes written so far */
        size_t last_cap; /* offset of the last capability, 0 for none */
} Chain;

static void put_u16(Chain *c, size_t off, uint16_t v)
{
        memcpy(c->buf + off, &v, sizeof(v));
}

static void put_u32(Chain *c, size_t off, uint32_t v)
{
        memcpy(c->buf + off, &v, sizeof(v));
}

static void put_u64(Chain *c, size_t off, uint64_t v)
{
        memcpy(c->buf + off, &v, sizeof(v));
}

/* The fixed header: argsz, flags (PGSIZES | CAPS), iova_pgsizes, cap_offset 0 for now. */
static void chain_init(Chain *c)
{
        memset(c, 0, sizeof(*c));
        put_u32(c, 4, 1u | VFIO_CAPCHAIN_FLAG_CAPS);
        put_u64(c, 8, 0x40201000);
        c->len = VFIO_CAPCHAIN_INFO_SIZE;
}

/* Appends a capability of size bytes (8-byte aligned, as vfio_info_cap_add() does) and links
 * it from the previous one; returns its offset. */
static size_t chain_add(Chain *c, uint16_t id, size_t size)
{
        size_t off = c->len;

        size = (size + 7) & ~(size_t)7;
        g_assert_cmpuint(off + size, <=, sizeof(c->buf));
        put_u16(c, off, id);
        put_u16(c, off + 2, 1);
        put_u32(c, off + 4, 0);
        if (c->last_cap)
                put_u32(c, c->last_cap + 4, (uint32_t)off);
        else
                put_u32(c, 16, (uint32_t)off);
        c->last_cap = off;
        c->len = off + size;
        put_u32(c, 0, (uint32_t)c->len);
        return off;
}

static size_t chain_add_iova(Chain *c, const IovaRange *ranges, uint32_t n)
{
        size_t off = chain_add(c, VFIO_CAPCHAIN_IOVA_RANGE_ID, 16 + 16 * (size_t)n);

        put_u32(c, off + 8, n);
        for (uint32_t i = 0; i < n; i++) {
                put_u64(c, off + 16 + 16 * i, ranges[i].start);
                put_u64(c, off + 24 + 16 * i, ranges[i].end);
        }
        return off;
}

static const IovaRange X86[] = {{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};

/* Migration (id 2, 32 bytes) and DMA-avail (id 3, 12 bytes) come first on real kernels. */
static void chain_real(Chain *c)
{
        chain_init(c);
        chain_add(c, 2, 32);
        chain_add(c, 3, 12);
        chain_add_iova(c, X86, G_N_ELEMENTS(X86));
}

static int walk(const Chain *c, size_t len, GArray **ret)
{
        *ret = NULL;
        return vfio_capchain_iova_ranges(c->buf, len, ret);
}

static void test_capchain_valid(void)
{
        g_autoptr(GArray) ranges = NULL;
        Chain c;

        chain_real(&c);
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, 0);
        g_assert_cmpuint(ranges->len, ==, 2);
        g_assert_cmphex(g_array_index(ranges, IovaRange, 0).end, ==, 0xfedfffff);
        g_assert_cmphex(g_array_index(ranges, IovaRange, 1).start, ==, 0xfef00000);
        g_assert_cmphex(g_array_index(ranges, IovaRange, 1).end, ==, 0x7fffffffff);
}

static void test_capchain_unaligned_buffer(void)
{
        g_autoptr(GArray) ranges = NULL;
        g_autofree uint8_t *copy = NULL;
        Chain c;

        chain_real(&c);
        copy = g_malloc(c.len + 1);
        memcpy(copy + 1, c.buf, c.len);
        g_assert_cmpint(vfio_capchain_iova_ranges(copy + 1, c.len, &ranges), ==, 0);
        g_assert_cmpuint(ranges->len, ==, 2);
}

static void test_capchain_no_iova_capability(void)
{
        g_autoptr(GArray) ranges = NULL;
        Chain c;

        chain_init(&c);
        put_u32(&c, 4, 1); /* no CAPS flag */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -ENODATA);
        chain_init(&c); /* CAPS but cap_offset 0 */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -ENODATA);
        chain_add(&c, 2, 32);
        chain_add(&c, 3, 12);
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -ENODATA);
        g_assert_null(ranges);
}

static void test_capchain_truncated(void)
{
        g_autoptr(GArray) ranges = NULL;
        Chain c;

        chain_real(&c);
        /* Every length short of the whole: inside the header, a capability or a range. */
        for (size_t len = 0; len < c.len; len++)
                g_assert_cmpint(walk(&c, len, &ranges), ==, -EBADMSG);
        g_assert_null(ranges);
        g_assert_cmpint(vfio_capchain_iova_ranges(NULL, 0, &ranges), ==, -EBADMSG);
}

static void test_capchain_looping_next(void)
{
        g_autoptr(GArray) ranges = NULL;
        size_t a, b;
        Chain c;

        chain_init(&c);
        a = chain_add(&c, 2, 32);
        put_u32(&c, a + 4, (uint32_t)a); /* points at itself */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);

        chain_init(&c);
        a = chain_add(&c, 2, 32);
        b = chain_add(&c, 3, 16);
        put_u32(&c, b + 4, (uint32_t)a); /* back to the first */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);

        chain_init(&c);
        a = chain_add(&c, 2, 32);
        put_u32(&c, a + 4, (uint32_t)a + 4); /* forward, but into its own header */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);
        g_assert_null(ranges);
}

static void test_capchain_offsets_out_of_bounds(void)
{
        g_autoptr(GArray) ranges = NULL;
        Chain c;

        chain_real(&c);
        put_u32(&c, 16, 8); /* into the fixed header */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);
        put_u32(&c, 16, (uint32_t)c.len); /* exactly at the end */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);
        put_u32(&c, 16, UINT32_MAX);
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);
        g_assert_null(ranges);
}

static void test_capchain_zero_ranges(void)
{
        g_autoptr(GArray) ranges = NULL;
        Chain c;

        chain_init(&c);
        chain_add_iova(&c, NULL, 0);
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, 0);
        g_assert_cmpuint(ranges->len, ==, 0);
}

static void test_capchain_huge_nr_iovas(void)
{
        g_autoptr(GArray) ranges = NULL;
        size_t off;
        Chain c;

        chain_init(&c);
        off = chain_add_iova(&c, X86, G_N_ELEMENTS(X86));
        put_u32(&c, off + 8, UINT32_MAX); /* 64 GiB of ranges claimed in a 500-byte buffer */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);
        put_u32(&c, off + 8, 3); /* one more than there is room for */
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);
        g_assert_null(ranges);
}

static void test_capchain_inverted_range(void)
{
        static const IovaRange bad[] = {{0x2000, 0x1000}};
        g_autoptr(GArray) ranges = NULL;
        Chain c;

        chain_init(&c);
        chain_add_iova(&c, bad, 1);
        g_assert_cmpint(walk(&c, c.len, &ranges), ==, -EBADMSG);
        g_assert_null(ranges);
}

/* ---- the backend over a fake sysfs tree ---- */

#define DEV_A "0000:00:03.0" /* vfio-pci, group 5 alone */
#define DEV_B "0000:00:04.0" /* vfio-pci, group 7 ... */
#define DEV_C "0000:00:04.1" /* ... with this one on a host driver */
#define DEV_D "0000:00:05.0" /* a host driver, group 8 alone */
#define REGIONS                                                                                    \
        "0x00000000fee00000 0x00000000feefffff msi\n"                                              \
        "0x00000000fed90000 0x00000000fed90fff direct\n"

typedef struct Tree {
        char *root, *sys, *dev;
        Backend *backend;
} Tree;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static void tree_file(const Tree *t, const char *rel, const char *content)
{
        g_autofree char *path = g_build_filename(t->root, rel, NULL);
        g_autofree char *dir = g_path_get_dirname(path);
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        g_file_set_contents(path, content, -1, &error);
        g_assert_no_error(error);
}

static void tree_link(const Tree *t, const char *rel, const char *target)
{
        g_autofree char *path = g_build_filename(t->root, rel, NULL);
        g_autofree char *dir = g_path_get_dirname(path);

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        g_assert_cmpint(symlink(target, path), ==, 0);
}

static void tree_group(const Tree *t, const char *id, const char *regions)
{
        g_autofree char *type = g_strdup_printf("sys/kernel/iommu_groups/%s/type", id);
        g_autofree char *rr = g_strdup_printf("sys/kernel/iommu_groups/%s/reserved_regions", id);

        tree_file(t, type, "DMA\n");
        tree_file(t, rr, regions);
}

/* dir/name, for the tree's paths. */
static char *in(const char *dir, const char *name)
{
        return g_build_filename(dir, name, NULL);
}

/* A PCI device of a class, with its driver (NULL: unbound) and group links both ways, as
 * sysfs has them. */
static void tree_pci_class(const Tree *t, const char *bdf, const char *class_code,
                           const char *driver, const char *group)
{
        g_autofree char *dir = in("sys/devices/pci0000:00", bdf);
        g_autofree char *vendor = in(dir, "vendor"), *device = in(dir, "device");
        g_autofree char *class = in(dir, "class"), *bus_link = in("sys/bus/pci/devices", bdf);
        g_autofree char *bus_target = in("../../../devices/pci0000:00", bdf);
        g_autofree char *drv_dir = in("sys/bus/pci/drivers", driver ? driver : "none");
        g_autofree char *drv_keep = in(drv_dir, ".keep"), *drv_link = in(dir, "driver");
        g_autofree char *drv_target = in("../../../bus/pci/drivers", driver ? driver : "none");
        g_autofree char *grp_link = in(dir, "iommu_group");
        g_autofree char *grp_target = in("../../../kernel/iommu_groups", group);
        g_autofree char *grp_dir = in("sys/kernel/iommu_groups", group);
        g_autofree char *member_dir = in(grp_dir, "devices"), *member = in(member_dir, bdf);
        g_autofree char *member_target = in("../../../../devices/pci0000:00", bdf);

        tree_file(t, vendor, "0x1af4\n");
        tree_file(t, device, "0x1041\n");
        tree_file(t, class, class_code);
        tree_link(t, bus_link, bus_target);
        if (driver) {
                tree_file(t, drv_keep, "");
                tree_link(t, drv_link, drv_target);
        }
        tree_link(t, grp_link, grp_target);
        tree_link(t, member, member_target);
}

static void tree_pci(const Tree *t, const char *bdf, const char *driver, const char *group)
{
        tree_pci_class(t, bdf, "0x020000\n", driver, group);
}

static void tree_free(Tree *t)
{
        backend_free(t->backend);
        g_assert_cmpint(nftw(t->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
        g_free(t->root);
        g_free(t->sys);
        g_free(t->dev);
        g_free(t);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Tree, tree_free)

/* A, B+C and D as above; /dev/vfio/5 and /dev/vfio/7 are regular files, not devices. */
static Tree *tree_new(void)
{
        g_autoptr(GError) error = NULL;
        Tree *t = g_new0(Tree, 1);

        t->root = g_dir_make_tmp("test-vfio-kernel-XXXXXX", &error);
        g_assert_no_error(error);
        t->sys = g_build_filename(t->root, "sys", NULL);
        t->dev = g_build_filename(t->root, "dev", NULL);
        tree_group(t, "5", REGIONS);
        tree_group(t, "7", REGIONS);
        tree_group(t, "8", "");
        tree_pci(t, DEV_A, "vfio-pci", "5");
        tree_pci(t, DEV_B, "vfio-pci", "7");
        tree_pci(t, DEV_C, "e1000e", "7");
        tree_pci(t, DEV_D, "e1000e", "8");
        tree_file(t, "dev/vfio/vfio", "");
        tree_file(t, "dev/vfio/5", "");
        tree_file(t, "dev/vfio/7", "");
        g_assert_cmpint(vfio_kernel_backend_new(t->sys, t->dev, &t->backend, &error), ==, 0);
        g_assert_no_error(error);
        return t;
}

static unsigned count_fds(void)
{
        g_autoptr(GDir) dir = g_dir_open("/proc/self/fd", 0, NULL);
        unsigned n = 0;

        g_assert_nonnull(dir);
        while (g_dir_read_name(dir))
                n++;
        return n;
}

static Device *open_device(Tree *t, const char *name)
{
        Device *d = NULL;

        g_assert_cmpint(t->backend->open_device(t->backend, name, &d), ==, 0);
        g_assert_nonnull(d);
        return d;
}

static void test_backend_lists_vfio_devices_only(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(GPtrArray) names = NULL;

        g_assert_cmpint(t->backend->enumerate(t->backend, &names), ==, 2);
        g_assert_cmpuint(names->len, ==, 2);
        g_assert_cmpstr(names->pdata[0], ==, DEV_A);
        g_assert_cmpstr(names->pdata[1], ==, DEV_B);
        g_assert_cmpstr(t->backend->name, ==, "kernel");
}

static void test_backend_open_describes_without_opening(void)
{
        g_autoptr(Tree) t = tree_new();
        unsigned before = count_fds();
        g_autoptr(Device) d = open_device(t, DEV_A);

        g_assert_cmpstr(d->info.name, ==, DEV_A);
        g_assert_cmpstr(d->info.driver, ==, "vfio-pci");
        g_assert_cmpstr(d->info.iommu_group, ==, "5");
        g_assert_cmphex(d->info.vendor_id, ==, 0x1af4);
        g_assert_cmphex(d->info.device_id, ==, 0x1041);
        g_assert_cmpuint(d->info.migration_flags, ==, 0); /* unknown until opened */
        g_assert_cmpuint(count_fds(), ==, before);
}

static void test_backend_open_refuses_others(void)
{
        g_autoptr(Tree) t = tree_new();
        Device *d = NULL;

        g_assert_cmpint(t->backend->open_device(t->backend, DEV_C, &d), ==, -ENOENT);
        g_assert_cmpint(t->backend->open_device(t->backend, DEV_D, &d), ==, -ENOENT);
        g_assert_cmpint(t->backend->open_device(t->backend, "0000:00:1f.0", &d), ==, -ENOENT);
        g_assert_null(d);
}

/* /dev/vfio/5 is a regular file: every op fails with a sentence, and no fd stays open. */
static void test_backend_regular_file_node_fails_cleanly(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(Device) d = open_device(t, DEV_A);
        unsigned before = count_fds();
        g_autofree char *why = NULL;
        enum mig_state state;
        uint32_t flags;
        int fd = 123;

        g_assert_cmpint(device_get_state(d, &state), ==, -ENOTTY);
        why = device_describe_error(d);
        g_assert_nonnull(why);
        g_assert_nonnull(strstr(why, "/dev/vfio/5 is not a character device"));
        g_assert_cmpint(d->ops->set_state(d, MIG_STATE_STOP, &fd), ==, -ENOTTY);
        g_assert_cmpint(fd, ==, -1);
        g_assert_cmpint(device_reset(d), ==, -ENOTTY);
        g_assert_cmpint(d->ops->query_flags(d, &flags), ==, -ENOTTY);
        g_assert_null(d->ops->cancel);
        g_assert_cmpuint(count_fds(), ==, before);
}

static void test_backend_missing_group_node(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autofree char *node = g_build_filename(t->dev, "vfio", "5", NULL);
        g_autoptr(GPtrArray) names = NULL;
        g_autoptr(Device) d = NULL;
        g_autofree char *why = NULL;
        enum mig_state state;

        g_assert_cmpint(g_unlink(node), ==, 0);
        g_assert_cmpint(t->backend->enumerate(t->backend, &names), ==, 2);
        d = open_device(t, DEV_A);
        g_assert_cmpint(device_get_state(d, &state), ==, -ENOENT);
        why = device_describe_error(d);
        g_assert_nonnull(strstr(why, "no VFIO group node"));
}

static void test_backend_group_members_include_host_drivers(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(GPtrArray) members = NULL;

        g_assert_cmpint(t->backend->group_members(t->backend, "7", &members), ==, 0);
        g_assert_cmpuint(members->len, ==, 2);
        g_assert_cmpstr(members->pdata[0], ==, DEV_B);
        g_assert_cmpstr(members->pdata[1], ==, DEV_C);
        g_assert_cmpint(t->backend->group_members(t->backend, "42", &members), ==, -ENOENT);
}

/* A bridge, an unbound device and pci-stub do no DMA of their own: they do not count. */
static void test_backend_group_members_leave_out_bystanders(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(GPtrArray) names = NULL, members = NULL;

        tree_pci_class(t, "0000:00:18.0", "0x060400\n", "pcieport", "7");
        tree_pci(t, "0000:01:01.0", NULL, "7");
        tree_pci(t, "0000:01:02.0", "pci-stub", "7");
        g_assert_cmpint(t->backend->enumerate(t->backend, &names), ==, 2);
        g_assert_cmpint(t->backend->group_members(t->backend, "7", &members), ==, 0);
        g_assert_cmpuint(members->len, ==, 2);
        g_assert_cmpstr(members->pdata[0], ==, DEV_B);
        g_assert_cmpstr(members->pdata[1], ==, DEV_C);
}

static void test_backend_iova_context_from_sysfs(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(Device) a = open_device(t, DEV_A);
        g_autoptr(Device) b = open_device(t, DEV_B);
        Device *devs[] = {a, b};
        g_autoptr(GArray) ranges = NULL, kernel = NULL;
        g_autoptr(GPtrArray) warnings = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL;

        g_assert_cmpint(t->backend->iova_context(t->backend, devs, 2, &ranges, &warnings), ==, 0);
        text = iova_ranges_format(ranges);
        g_assert_cmpstr(text, ==,
                        "0x0-0xfed8ffff,0xfed91000-0xfedfffff,0xfef00000-0xffffffffffffffff");
        g_assert_cmpuint(warnings->len, ==, 0); /* nothing is open, so nothing to compare */
        g_assert_cmpint(vfio_kernel_iova_ranges(a, &kernel, &error), ==, -ENOTCONN);
        g_assert_nonnull(strstr(error->message, "not opened yet"));
}

static void test_backend_rescan_follows_the_tree(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autofree char *link = g_build_filename(t->sys, "bus/pci/devices", DEV_B, NULL);
        g_autoptr(GPtrArray) names = NULL;
        Device *d = NULL;

        g_assert_cmpint(g_unlink(link), ==, 0);
        g_assert_cmpint(t->backend->enumerate(t->backend, &names), ==, 1);
        g_assert_cmpstr(names->pdata[0], ==, DEV_A);
        g_assert_cmpint(t->backend->open_device(t->backend, DEV_B, &d), ==, -ENOENT);
}

static void test_backend_unusable_root(void)
{
        g_autoptr(GError) error = NULL;
        Backend *b = NULL;

        g_assert_cmpint(vfio_kernel_backend_new("/nonexistent/sys", "/nonexistent/dev", &b, &error),
                        ==, -ENOENT);
        g_assert_null(b);
        g_assert_nonnull(strstr(error->message, "--sysfs-root"));
}

static bool fd_is_open(int fd)
{
        return fcntl(fd, F_GETFD) >= 0;
}

static void test_adopt_refuses_a_pipe(void)
{
        g_autoptr(Tree) t = tree_new();
        g_autoptr(Device) d = open_device(t, DEV_A);
        g_autoptr(GError) error = NULL;
        int p[2];

        g_assert_cmpint(pipe2(p, O_CLOEXEC), ==, 0);
        /* The check changes nothing and leaves the fd to the caller. */
        g_assert_cmpint(vfio_kernel_check_device_fd(d, p[0], &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, DEV_A));
        g_assert_nonnull(strstr(error->message, "not a VFIO device fd"));
        g_assert_true(fd_is_open(p[0]));
        g_clear_error(&error);
        /* Adopting takes the fd over: closed on error too. */
        g_assert_cmpint(vfio_kernel_adopt_fd(d, p[0], &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "not a VFIO device fd"));
        g_assert_false(fd_is_open(p[0]));
        close(p[1]);
        /* The device is as before: it still tries its group. */
        g_assert_cmpint(device_reset(d), ==, -ENOTTY);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        /* The backend logs every failed open at warning level: keep the TAP output clean. */
        log_set_max_level(LOG_CRIT);

        g_test_add_func("/capchain/valid", test_capchain_valid);
        g_test_add_func("/capchain/unaligned-buffer", test_capchain_unaligned_buffer);
        g_test_add_func("/capchain/no-iova-capability", test_capchain_no_iova_capability);
        g_test_add_func("/capchain/truncated", test_capchain_truncated);
        g_test_add_func("/capchain/looping-next", test_capchain_looping_next);
        g_test_add_func("/capchain/offsets-out-of-bounds", test_capchain_offsets_out_of_bounds);
        g_test_add_func("/capchain/zero-ranges", test_capchain_zero_ranges);
        g_test_add_func("/capchain/huge-nr-iovas", test_capchain_huge_nr_iovas);
        g_test_add_func("/capchain/inverted-range", test_capchain_inverted_range);

        g_test_add_func("/backend/lists-vfio-devices-only", test_backend_lists_vfio_devices_only);
        g_test_add_func("/backend/open-describes-without-opening",
                        test_backend_open_describes_without_opening);
        g_test_add_func("/backend/open-refuses-others", test_backend_open_refuses_others);
        g_test_add_func("/backend/regular-file-node-fails-cleanly",
                        test_backend_regular_file_node_fails_cleanly);
        g_test_add_func("/backend/missing-group-node", test_backend_missing_group_node);
        g_test_add_func("/backend/group-members-include-host-drivers",
                        test_backend_group_members_include_host_drivers);
        g_test_add_func("/backend/group-members-leave-out-bystanders",
                        test_backend_group_members_leave_out_bystanders);
        g_test_add_func("/backend/iova-context-from-sysfs", test_backend_iova_context_from_sysfs);
        g_test_add_func("/backend/rescan-follows-the-tree", test_backend_rescan_follows_the_tree);
        g_test_add_func("/backend/unusable-root", test_backend_unusable_root);
        g_test_add_func("/adopt/refuses-a-pipe", test_adopt_refuses_a_pipe);
        return g_test_run();
}
