/* test-sim: simulated devices behave as the kernel's uAPI says a migration device does */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <jansson.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mig-state.h"
#include "devices/device.h"
#include "devices/sim-stream.h"
#include "devices/sim.h"
#include "log.h"
#include "victim.h"

#define ALL_FLAGS (MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY)

typedef struct Fixture {
        char *dir;
        Backend *backend;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        f->dir = g_dir_make_tmp("test-sim-XXXXXX", &error);
        g_assert_no_error(error);
        g_assert_cmpint(sim_backend_new(f->dir, &f->backend, &error), ==, 0);
        g_assert_no_error(error);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        return remove(path) < 0 ? -errno : 0;
}

/* The directory holds the peer index, DIR/.p2p/@GROUP/NAME, as well as the device files. */
static void rm_rf(const char *dir)
{
        g_assert_cmpint(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
        rm_rf(f->dir);
        g_assert_false(g_file_test(f->dir, G_FILE_TEST_EXISTS));
        backend_free(f->backend);
        g_free(f->dir);
}

/* ---- helpers ---- */

static void create_full(Fixture *f, const char *name, const char *driver, uint16_t vendor,
                        uint16_t device, uint32_t flags, const char *p2p_group)
{
        g_autoptr(GError) error = NULL;
        SimSpec spec = {
            .name = name,
            .driver = driver,
            .vendor_id = vendor,
            .device_id = device,
            .flags = flags,
            .p2p_group = p2p_group,
        };

        g_assert_cmpint(sim_device_create(f->dir, &spec, &error), ==, 0);
        g_assert_no_error(error);
}

/* An mlx5-like device: the identity every stream test shares. */
static void create_device(Fixture *f, const char *name, uint32_t flags, const char *p2p_group)
{
        create_full(f, name, "mlx5_vfio_pci", 0x15b3, 0x101e, flags, p2p_group);
}

static Device *open_device(Fixture *f, const char *name)
{
        Device *dev = NULL;

        g_assert_cmpint(f->backend->open_device(f->backend, name, &dev), ==, 0);
        g_assert_nonnull(dev);
        return dev;
}

static SimDevice *read_device(Fixture *f, const char *name)
{
        g_autoptr(GError) error = NULL;
        SimDevice *d = NULL;

        g_assert_cmpint(sim_device_read(f->dir, name, &d, &error), ==, 0);
        g_assert_no_error(error);
        return d;
}

static enum mig_state state_of(Fixture *f, const char *name)
{
        g_autoptr(SimDevice) d = read_device(f, name);

        return d->state;
}

static void add_fault(Fixture *f, const char *name, const char *arc, enum sim_fault_action action,
                      enum sim_fault_leave leave, int err, unsigned times)
{
        g_autoptr(GError) error = NULL;
        SimFault fault = {.action = action, .leave = leave, .error = err, .remaining = times};

        g_assert_cmpint(sim_fault_parse_arc(arc, &fault, &error), ==, 0);
        g_assert_cmpint(sim_device_add_fault(f->dir, name, &fault, &error), ==, 0);
        g_assert_no_error(error);
}

static void force_state(Fixture *f, const char *name, enum mig_state s)
{
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(sim_device_force_state(f->dir, name, s, &error), ==, 0);
        g_assert_no_error(error);
}

static GByteArray *read_to_end(int fd)
{
        GByteArray *b = g_byte_array_new();
        guint8 buf[8192];
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0)
                g_byte_array_append(b, buf, (guint)n);
        g_assert_cmpint(n, ==, 0);
        return b;
}

static void write_all(int fd, const guint8 *data, gsize len)
{
        while (len > 0) {
                ssize_t n = write(fd, data, len);
                g_assert_cmpint(n, >, 0);
                data += n;
                len -= (gsize)n;
        }
}

/* Saves src (RUNNING -> STOP_COPY) and returns the whole stream. */
static GByteArray *save_stream(Fixture *f, const char *src)
{
        g_autoptr(Device) dev = open_device(f, src);
        GByteArray *stream;
        int fd = -1;

        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP_COPY, &fd), ==, 0);
        g_assert_cmpint(fd, >=, 0);
        stream = read_to_end(fd);
        close(fd);
        return stream;
}

/* Puts dst in RESUMING, writes data, asks for STOP; returns set_state's result. */
static int load_stream(Device *dst, const guint8 *data, gsize len)
{
        int fd = -1, r;

        g_assert_cmpint(device_set_state(dst, MIG_STATE_RESUMING, &fd), ==, 0);
        g_assert_cmpint(fd, >=, 0);
        write_all(fd, data, len);
        close(fd);
        r = device_set_state(dst, MIG_STATE_STOP, NULL);
        return r;
}

/* Runs fn with stderr captured, so a test can check what was logged. */
static char *capture_stderr(void (*fn)(gpointer), gpointer data)
{
        int saved = dup(STDERR_FILENO), mfd = memfd_create("stderr", MFD_CLOEXEC);
        GByteArray *b;

        g_assert_cmpint(mfd, >=, 0);
        dup2(mfd, STDERR_FILENO);
        fn(data);
        dup2(saved, STDERR_FILENO);
        close(saved);
        lseek(mfd, 0, SEEK_SET);
        b = read_to_end(mfd);
        close(mfd);
        g_byte_array_append(b, (const guint8 *)"", 1);
        return (char *)g_byte_array_free(b, FALSE);
}

/* ---- management API ---- */

static void test_create_read_list_remove(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) devices = NULL;
        g_autoptr(SimDevice) d = NULL;

        create_full(f, "nic1", "mlx5_vfio_pci", 0x15b3, 0x101e, ALL_FLAGS, "vm1");
        create_device(f, "nic0", MIG_FLAG_STOP_COPY, NULL);
        d = read_device(f, "nic1");
        g_assert_cmpstr(d->name, ==, "nic1");
        g_assert_cmpstr(d->driver, ==, "mlx5_vfio_pci");
        g_assert_cmphex(d->vendor_id, ==, 0x15b3);
        g_assert_cmphex(d->device_id, ==, 0x101e);
        g_assert_cmphex(d->flags, ==, ALL_FLAGS);
        g_assert_cmpstr(d->iommu_group, ==, "nic1");
        g_assert_cmpstr(d->p2p_group, ==, "vm1");
        g_assert_cmpint(d->state, ==, MIG_STATE_RUNNING);
        g_assert_cmpuint(d->blob_size, ==, 65536);
        g_assert_cmpuint(strlen(d->blob_sha256), ==, 64);
        g_assert_cmpuint(d->faults->len + d->events->len, ==, 0);

        g_assert_cmpint(sim_device_list(f->dir, &devices, &error), ==, 0);
        g_assert_cmpuint(devices->len, ==, 2);
        g_assert_cmpstr(((SimDevice *)devices->pdata[0])->name, ==, "nic0");
        g_assert_cmpstr(((SimDevice *)devices->pdata[1])->name, ==, "nic1");

        g_assert_cmpint(sim_device_remove(f->dir, "nic1", &error), ==, 0);
        g_clear_pointer(&devices, g_ptr_array_unref);
        g_assert_cmpint(sim_device_list(f->dir, &devices, &error), ==, 0);
        g_assert_cmpuint(devices->len, ==, 1);
        g_assert_cmpint(sim_device_read(f->dir, "nic1", &d, &error), ==, -ENOENT);
        g_assert_nonnull(strstr(error->message, "nic1"));
}

static void test_bad_names_and_duplicates(Fixture *f, gconstpointer data)
{
        static const char *const bad[] = {"",
                                          "a/b",
                                          ".hidden",
                                          "sp ace",
                                          "x*",
                                          ("0123456789012345678901234567890123456789012345678901"
                                           "2345678901234")}; /* 65 */
        SimDevice *d = NULL;

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;
                SimSpec spec = {.name = bad[i], .flags = ALL_FLAGS};

                g_assert_cmpint(sim_device_create(f->dir, &spec, &error), ==, -EINVAL);
                g_assert_nonnull(strstr(error->message, "name"));
                g_clear_error(&error);
                g_assert_cmpint(sim_device_read(f->dir, bad[i], &d, &error), ==, -EINVAL);
        }
        create_device(f, "dev:0.1_a-b", ALL_FLAGS, NULL);
        {
                g_autoptr(GError) error = NULL;
                SimSpec spec = {.name = "dev:0.1_a-b", .flags = ALL_FLAGS};

                g_assert_cmpint(sim_device_create(f->dir, &spec, &error), ==, -EEXIST);
                g_assert_nonnull(strstr(error->message, "already exists"));
                g_clear_error(&error);
                spec.name = "noflags";
                spec.flags = MIG_FLAG_P2P; /* P2P without STOP_COPY does not exist */
                g_assert_cmpint(sim_device_create(f->dir, &spec, &error), ==, -EINVAL);
                g_clear_error(&error);
                g_assert_cmpint(sim_device_remove(f->dir, "ghost", &error), ==, -ENOENT);
        }
}

static void test_malformed_file_is_an_error(Fixture *f, gconstpointer data)
{
        g_autofree char *garbage = g_build_filename(f->dir, "junk.json", NULL);
        g_autofree char *badstate = g_build_filename(f->dir, "nic0.json", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) devices = NULL;
        g_autofree char *text = NULL;
        SimDevice *d = NULL;
        Device *dev = NULL;

        g_assert_true(g_file_set_contents(garbage, "{ \"name\": ", -1, NULL));
        g_assert_cmpint(sim_device_read(f->dir, "junk", &d, &error), ==, -EBADMSG);
        g_assert_nonnull(strstr(error->message, garbage));
        g_assert_nonnull(strstr(error->message, "not valid JSON"));
        g_clear_error(&error);
        g_assert_cmpint(sim_device_list(f->dir, &devices, &error), ==, -EBADMSG);
        g_clear_error(&error);
        g_assert_cmpint(f->backend->open_device(f->backend, "junk", &dev), ==, -EBADMSG);

        /* A well-formed file with one bad field names that field. */
        create_device(f, "nic0", ALL_FLAGS, NULL);
        g_assert_true(g_file_get_contents(badstate, &text, NULL, NULL));
        {
                g_autofree char *broken = NULL;
                char *at = strstr(text, "\"RUNNING\"");

                g_assert_nonnull(at);
                broken = g_strdup_printf("%.*s\"SPRINTING\"%s", (int)(at - text), text,
                                         at + strlen("\"RUNNING\""));
                g_assert_true(g_file_set_contents(badstate, broken, -1, NULL));
        }
        g_assert_cmpint(sim_device_read(f->dir, "nic0", &d, &error), ==, -EBADMSG);
        g_assert_nonnull(strstr(error->message, "'state'"));
        g_clear_error(&error);
        {
                g_autofree char *broken = NULL;
                char *at = strstr(text, "\"dma_off\": false");

                g_assert_nonnull(at);
                broken = g_strdup_printf("%.*s\"dma_off\": 1%s", (int)(at - text), text,
                                         at + strlen("\"dma_off\": false"));
                g_assert_true(g_file_set_contents(badstate, broken, -1, NULL));
        }
        g_assert_cmpint(sim_device_read(f->dir, "nic0", &d, &error), ==, -EBADMSG);
        g_assert_nonnull(strstr(error->message, "'dma_off'"));
        g_assert_nonnull(strstr(error->message, "true or false"));
        g_clear_error(&error);
        /* Removing is how one gets rid of a broken device. */
        g_assert_cmpint(sim_device_remove(f->dir, "junk", &error), ==, 0);
}

static void test_fault_arc_strings(Fixture *f, gconstpointer data)
{
        static const char *const bad[] = {"RUNNING", "FOO>STOP", "A>B>C",
                                          "",        "STOP>",    "ERROR>STOP"};
        SimFault fault;
        enum sim_fault_action a;
        char buf[64];

        g_assert_cmpint(sim_fault_parse_arc("RUNNING_P2P>STOP", &fault, NULL), ==, 0);
        g_assert_cmpint(fault.from, ==, MIG_STATE_RUNNING_P2P);
        g_assert_cmpint(fault.to, ==, MIG_STATE_STOP);
        g_assert_cmpint(sim_fault_parse_arc("*>STOP", &fault, NULL), ==, 0);
        g_assert_cmpint(fault.from, ==, MIG_STATE_COUNT);
        g_assert_cmpstr(sim_fault_format_arc(&fault, buf, sizeof(buf)), ==, "*>STOP");
        g_assert_cmpint(sim_fault_parse_arc("running>*", &fault, NULL), ==, 0);
        g_assert_cmpint(fault.to, ==, MIG_STATE_COUNT);
        g_assert_cmpint(sim_fault_parse_arc("*", &fault, NULL), ==, 0);
        g_assert_cmpstr(sim_fault_format_arc(&fault, buf, sizeof(buf)), ==, "*");
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;
                g_assert_cmpint(sim_fault_parse_arc(bad[i], &fault, &error), ==, -EINVAL);
                g_assert_nonnull(strstr(error->message, "FROM>TO"));
        }
        g_assert_cmpint(sim_fault_action_from_string("hang", &a), ==, 0);
        g_assert_cmpint(a, ==, SIM_FAULT_HANG);
        g_assert_cmpint(sim_fault_action_from_string("explode", &a), ==, -EINVAL);
        g_assert_cmpstr(sim_fault_action_to_string(SIM_FAULT_ERROR), ==, "error");
}

/* ---- the backend ---- */

static void test_enumerate_and_open(Fixture *f, gconstpointer data)
{
        g_autoptr(GPtrArray) names = NULL;
        g_autoptr(Device) dev = NULL;
        Device *none = NULL;
        uint32_t flags = 0;
        enum mig_state s;

        create_full(f, "b", "pds_vfio_pci", 0x1dd8, 0x1003, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P,
                    NULL);
        create_device(f, "a", ALL_FLAGS, NULL);
        g_assert_cmpint(f->backend->enumerate(f->backend, &names), ==, 0);
        g_assert_cmpuint(names->len, ==, 2);
        g_assert_cmpstr(names->pdata[0], ==, "a");
        g_assert_cmpstr(names->pdata[1], ==, "b");

        dev = open_device(f, "b");
        g_assert_cmpstr(dev->info.name, ==, "b");
        g_assert_cmpstr(dev->info.driver, ==, "pds_vfio_pci");
        g_assert_cmpstr(dev->info.iommu_group, ==, "b");
        g_assert_cmphex(dev->info.vendor_id, ==, 0x1dd8);
        g_assert_cmphex(dev->info.migration_flags, ==, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P);
        g_assert_cmpint(dev->ops->query_flags(dev, &flags), ==, 0);
        g_assert_cmphex(flags, ==, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P);
        g_assert_cmpint(device_get_state(dev, &s), ==, 0);
        g_assert_cmpint(s, ==, MIG_STATE_RUNNING);
        g_assert_cmpint(f->backend->open_device(f->backend, "c", &none), ==, -ENOENT);
}

static void test_invalid_request_leaves_device_untouched(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;
        g_autoptr(SimDevice) before = NULL, after = NULL;

        create_device(f, "nic0", MIG_FLAG_STOP_COPY | MIG_FLAG_P2P, NULL);
        dev = open_device(f, "nic0");
        before = read_device(f, "nic0");
        g_assert_cmpint(device_set_state(dev, MIG_STATE_PRE_COPY, NULL), ==, -EINVAL);
        g_assert_cmpint(device_set_state(dev, MIG_STATE_ERROR, NULL), ==, -EINVAL);
        force_state(f, "nic0", MIG_STATE_STOP_COPY);
        g_assert_cmpint(device_set_state(dev, MIG_STATE_PRE_COPY_P2P, NULL), ==, -EINVAL);
        after = read_device(f, "nic0");
        g_assert_cmpint(after->state, ==, MIG_STATE_STOP_COPY);
        g_assert_cmpuint(after->generation, ==, before->generation);
        g_assert_cmpstr(after->blob_sha256, ==, before->blob_sha256);
}

/* A fault on arc k, leaving the device at the arc's start, shows each state of the walk. */
static void test_set_state_walks_the_kernel_path(Fixture *f, gconstpointer data)
{
        enum mig_state path[MIG_PATH_MAX];
        g_autoptr(Device) dev = NULL;
        size_t len = 0;
        int fd = -1;

        create_device(f, "nic0", ALL_FLAGS, NULL);
        dev = open_device(f, "nic0");
        g_assert_cmpint(mig_path(ALL_FLAGS, MIG_STATE_PRE_COPY, MIG_STATE_RESUMING, path, &len), ==,
                        0);
        g_assert_cmpuint(len, ==, 5); /* PRE_COPY RUNNING RUNNING_P2P STOP RESUMING */
        for (size_t k = 0; k + 1 < len; k++) {
                char arc[64];

                snprintf(arc, sizeof(arc), "%s>%s", mig_state_to_string(path[k]),
                         mig_state_to_string(path[k + 1]));
                force_state(f, "nic0", MIG_STATE_PRE_COPY);
                add_fault(f, "nic0", arc, SIM_FAULT_FAIL, SIM_LEAVE_INTERMEDIATE, EIO, 1);
                g_assert_cmpint(device_set_state(dev, MIG_STATE_RESUMING, &fd), ==, -EIO);
                g_assert_cmpint(fd, ==, -1);
                g_assert_cmpint(state_of(f, "nic0"), ==, path[k]);
        }
        force_state(f, "nic0", MIG_STATE_PRE_COPY);
        g_assert_cmpint(device_set_state(dev, MIG_STATE_RESUMING, &fd), ==, 0);
        g_assert_cmpint(fd, >=, 0); /* STOP->RESUMING opens a session */
        close(fd);
        g_assert_cmpint(state_of(f, "nic0"), ==, MIG_STATE_RESUMING);
}

static void test_latency_is_honoured(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(Device) dev = NULL;
        gint64 start;

        create_device(f, "nic0", ALL_FLAGS, NULL);
        g_assert_cmpint(sim_device_set_latency(f->dir, "nic0", NULL, 10, &error), ==, 0);
        g_assert_cmpint(sim_device_set_latency(f->dir, "nic0", "running_p2p>stop", 60, &error), ==,
                        0);
        g_assert_cmpint(sim_device_set_latency(f->dir, "nic0", "*>STOP", 1, &error), ==, -EINVAL);
        dev = open_device(f, "nic0");
        start = g_get_monotonic_time();
        /* RUNNING>RUNNING_P2P (10 ms default), RUNNING_P2P>STOP (60 ms of its own) */
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, 0);
        g_assert_cmpint(g_get_monotonic_time() - start, >=, 70 * 1000);
        start = g_get_monotonic_time();
        g_assert_cmpint(device_set_state(dev, MIG_STATE_RUNNING, NULL), ==, 0);
        g_assert_cmpint(g_get_monotonic_time() - start, >=, 2 * 10 * 1000);
}

static void test_fail_leaves_original_state(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;
        g_autoptr(SimDevice) d = NULL;

        create_device(f, "nic0", ALL_FLAGS, NULL);
        add_fault(f, "nic0", "RUNNING_P2P>STOP", SIM_FAULT_FAIL, SIM_LEAVE_ORIGINAL, EBUSY, 0);
        dev = open_device(f, "nic0");
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, -EBUSY);
        g_assert_cmpint(state_of(f, "nic0"), ==, MIG_STATE_RUNNING);
        /* remaining 0: it fires every time and stays */
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, -EBUSY);
        d = read_device(f, "nic0");
        g_assert_cmpuint(d->faults->len, ==, 1);
}

static void test_fail_leaves_intermediate_state(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;

        create_device(f, "nic0", ALL_FLAGS, NULL);
        add_fault(f, "nic0", "*>STOP", SIM_FAULT_FAIL, SIM_LEAVE_INTERMEDIATE, ETIMEDOUT, 0);
        dev = open_device(f, "nic0");
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, -ETIMEDOUT);
        g_assert_cmpint(state_of(f, "nic0"), ==, MIG_STATE_RUNNING_P2P);
}

static void test_error_then_reset_loses_state(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;
        g_autoptr(SimDevice) before = NULL, after = NULL;

        create_device(f, "nic0", ALL_FLAGS, NULL);
        add_fault(f, "nic0", "RUNNING_P2P>STOP", SIM_FAULT_ERROR, SIM_LEAVE_ORIGINAL, 0, 1);
        dev = open_device(f, "nic0");
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, -EIO);
        before = read_device(f, "nic0");
        g_assert_cmpint(before->state, ==, MIG_STATE_ERROR);
        /* ERROR is left only by reset, as the kernel's devices do. */
        g_assert_cmpint(device_set_state(dev, MIG_STATE_RUNNING, NULL), ==, -EINVAL);
        g_assert_cmpint(device_reset(dev), ==, 0);
        after = read_device(f, "nic0");
        g_assert_cmpint(after->state, ==, MIG_STATE_RUNNING);
        g_assert_cmpuint(after->resets, ==, 1);
        g_assert_cmpuint(after->generation, >, before->generation);
        g_assert_cmpstr(after->blob_sha256, !=, before->blob_sha256);
}

static void test_fault_times_counts_down(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;
        g_autoptr(SimDevice) d = NULL;

        create_device(f, "nic0", ALL_FLAGS, NULL);
        add_fault(f, "nic0", "RUNNING>RUNNING_P2P", SIM_FAULT_FAIL, SIM_LEAVE_ORIGINAL, EAGAIN, 2);
        dev = open_device(f, "nic0");
        g_assert_cmpint(device_set_state(dev, MIG_STATE_RUNNING_P2P, NULL), ==, -EAGAIN);
        g_assert_cmpint(device_set_state(dev, MIG_STATE_RUNNING_P2P, NULL), ==, -EAGAIN);
        g_assert_cmpint(device_set_state(dev, MIG_STATE_RUNNING_P2P, NULL), ==, 0);
        d = read_device(f, "nic0");
        g_assert_cmpuint(d->faults->len, ==, 0);
        g_assert_cmpint(d->state, ==, MIG_STATE_RUNNING_P2P);
}

typedef struct Walker {
        Device *dev;
        enum mig_state target;
        int result;
        gint64 done_us;
} Walker;

static gpointer walker_run(gpointer p)
{
        Walker *w = p;

        w->result = device_set_state(w->dev, w->target, NULL);
        w->done_us = g_get_monotonic_time();
        return NULL;
}

/* Starts a walk to STOP that hangs on RUNNING_P2P>STOP; returns once it hangs there. */
static GThread *start_hanging_walk(Fixture *f, Walker *w)
{
        GThread *t;

        create_device(f, "nic0", ALL_FLAGS, NULL);
        add_fault(f, "nic0", "RUNNING_P2P>STOP", SIM_FAULT_HANG, SIM_LEAVE_ORIGINAL, 0, 0);
        w->dev = open_device(f, "nic0");
        w->target = MIG_STATE_STOP;
        t = g_thread_new("walker", walker_run, w);
        while (state_of(f, "nic0") != MIG_STATE_RUNNING_P2P)
                g_usleep(1000);
        g_usleep(30 * 1000);
        g_assert_cmpint(w->done_us, ==, 0);
        return t;
}

static void test_hang_cancelled(Fixture *f, gconstpointer data)
{
        Walker w = {0};
        GThread *t = start_hanging_walk(f, &w);
        gint64 cancelled = g_get_monotonic_time();

        device_cancel(w.dev);
        g_thread_join(t);
        g_assert_cmpint(w.result, ==, -ECANCELED);
        g_assert_cmpint(w.done_us - cancelled, <, 100 * 1000);
        g_assert_cmpint(state_of(f, "nic0"), ==, MIG_STATE_RUNNING_P2P);
        /* The cancel was for that walk only: once released, the next one completes. */
        g_assert_cmpint(sim_device_clear_faults(f->dir, "nic0", NULL), ==, 0);
        g_assert_cmpint(device_set_state(w.dev, MIG_STATE_STOP, NULL), ==, 0);
        device_unref(w.dev);
}

static void test_hang_released_by_clearing_faults(Fixture *f, gconstpointer data)
{
        Walker w = {0};
        GThread *t = start_hanging_walk(f, &w);

        g_assert_cmpint(sim_device_clear_faults(f->dir, "nic0", NULL), ==, 0);
        g_thread_join(t);
        g_assert_cmpint(w.result, ==, 0);
        g_assert_cmpint(state_of(f, "nic0"), ==, MIG_STATE_STOP);
        device_unref(w.dev);
}

/* ---- data sessions ---- */

static void test_save_loads_on_same_kind(Fixture *f, gconstpointer data)
{
        g_autoptr(GByteArray) stream = NULL;
        g_autoptr(Device) dst = NULL;
        g_autoptr(SimDevice) s = NULL, d = NULL;

        create_device(f, "src", ALL_FLAGS, NULL);
        create_device(f, "dst", ALL_FLAGS, NULL);
        stream = save_stream(f, "src");
        g_assert_cmpuint(stream->len, >, 65536);
        dst = open_device(f, "dst");
        g_assert_cmpint(load_stream(dst, stream->data, stream->len), ==, 0);
        s = read_device(f, "src");
        d = read_device(f, "dst");
        g_assert_cmpint(d->state, ==, MIG_STATE_STOP);
        g_assert_cmpstr(d->blob_sha256, ==, s->blob_sha256);
        g_assert_cmpuint(d->generation, ==, s->generation);
        g_assert_cmpuint(d->seed, ==, s->seed);
        g_assert_cmpuint(s->saves, ==, 1);
        g_assert_cmpuint(d->loads, ==, 1);
        /* What was sent and what arrived stay on record after both devices move on. */
        g_assert_null(s->loaded_sha256);
        g_assert_null(d->saved_sha256);
        g_assert_cmpstr(s->saved_sha256, ==, s->blob_sha256);
        g_assert_cmpstr(d->loaded_sha256, ==, s->saved_sha256);
        g_assert_cmpint(device_set_state(dst, MIG_STATE_RUNNING, NULL), ==, 0);
        g_clear_pointer(&d, sim_device_free);
        d = read_device(f, "dst");
        g_assert_cmpstr(d->loaded_sha256, ==, s->saved_sha256);
}


/* How much the data segment (heap and private mappings, RLIMIT_DATA's measure) holds now. */
static uint64_t vm_data_bytes(void)
{
        g_autofree char *status = NULL;
        const char *line;

        g_assert_true(g_file_get_contents("/proc/self/status", &status, NULL, NULL));
        line = strstr(status, "VmData:");
        g_assert_nonnull(line);
        return g_ascii_strtoull(line + strlen("VmData:"), NULL, 10) * 1024;
}

/* In the child: save src into its data fd, copy it 1 MiB at a time into dst's, load. */
static int save_and_load_in(Fixture *f, uint64_t headroom)
{
        struct rlimit rl = {0};
        g_autoptr(Device) src = open_device(f, "src");
        g_autoptr(Device) dst = open_device(f, "dst");
        static uint8_t buf[1 << 20];
        int in = -1, out = -1;
        ssize_t n;

        g_assert_cmpint(getrlimit(RLIMIT_DATA, &rl), ==, 0);
        rl.rlim_cur = vm_data_bytes() + headroom;
        if (setrlimit(RLIMIT_DATA, &rl) < 0)
                return 10;
        if (device_set_state(src, MIG_STATE_STOP_COPY, &in) < 0 ||
            device_set_state(dst, MIG_STATE_RESUMING, &out) < 0)
                return 11;
        while ((n = read(in, buf, sizeof(buf))) > 0)
                if (write(out, buf, (size_t)n) != n)
                        return 12;
        close(in);
        close(out);
        return device_set_state(dst, MIG_STATE_STOP, NULL) < 0 ? 13 : 0;
}

/*
 * Issue 11, reproduction 9: a device with 64 MiB of state saves and loads although the data
 * segment may grow by 16 MiB only: the data fds are files in the device directory, and
 * records are written and checked a chunk at a time (the old path held the blob in the heap
 * and the stream in a memfd). Run in a child, which RLIMIT_DATA binds.
 */
static void test_large_device_streams_in_bounded_memory(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(SimDevice) s = NULL, d = NULL;
        SimSpec big = {.name = "src",
                       .driver = "mlx5_vfio_pci",
                       .vendor_id = 0x15b3,
                       .device_id = 0x101e,
                       .flags = ALL_FLAGS,
                       .blob_size = 64u << 20};
        int status;
        pid_t pid;

#if defined(__SANITIZE_ADDRESS__)
        g_test_skip("ASan's allocator does not fit under RLIMIT_DATA");
        return;
#endif
        g_assert_cmpint(sim_device_create(f->dir, &big, &error), ==, 0);
        create_device(f, "dst", ALL_FLAGS, NULL);
        pid = fork();
        g_assert_cmpint(pid, >=, 0);
        if (pid == 0)
                _exit(save_and_load_in(f, 16u << 20));
        g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 0);
        s = read_device(f, "src");
        d = read_device(f, "dst");
        g_assert_cmpuint(d->blob_size, ==, 64u << 20);
        g_assert_cmpstr(d->blob_sha256, ==, s->blob_sha256);
        g_assert_cmpuint(d->loads, ==, 1);
}

/* The data fd is a file of the device directory, unlinked: nothing in the daemon's memory. */
static void test_data_fd_lives_in_the_device_directory(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;
        struct stat st, dir;
        int fd = -1;

        create_device(f, "src", ALL_FLAGS, NULL);
        dev = open_device(f, "src");
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP_COPY, &fd), ==, 0);
        g_assert_cmpint(fstat(fd, &st), ==, 0);
        g_assert_cmpint(stat(f->dir, &dir), ==, 0);
        g_assert_true(S_ISREG(st.st_mode));
        g_assert_cmpuint(st.st_nlink, ==, 0);
        g_assert_cmpuint(st.st_dev, ==, dir.st_dev);
        g_assert_cmpint(st.st_mode & 0777, ==, 0600);
        close(fd);
}

static void test_precopy_then_stop_copy_share_the_fd(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) src = NULL, dst = NULL;
        g_autoptr(GByteArray) early = NULL, rest = NULL;
        g_autoptr(SimDevice) at_precopy = NULL, at_stop = NULL, loaded = NULL;
        int fd = -1, again = -1;

        create_device(f, "src", ALL_FLAGS, NULL);
        create_device(f, "dst", ALL_FLAGS, NULL);
        src = open_device(f, "src");
        g_assert_cmpint(device_set_state(src, MIG_STATE_PRE_COPY, &fd), ==, 0);
        g_assert_cmpint(fd, >=, 0);
        at_precopy = read_device(f, "src");
        early = read_to_end(fd); /* PRE_COPY: what is there so far */
        g_assert_cmpuint(early->len, >, 65536);
        g_assert_cmpint(device_set_state(src, MIG_STATE_STOP_COPY, &again), ==, 0);
        g_assert_cmpint(again, ==, -1); /* the same fd carries on */
        rest = read_to_end(fd);
        g_assert_cmpuint(rest->len, ==, early->len); /* the FINAL record, same size */
        close(fd);
        at_stop = read_device(f, "src");
        g_assert_cmpstr(at_stop->blob_sha256, !=, at_precopy->blob_sha256);

        g_byte_array_append(early, rest->data, rest->len);
        dst = open_device(f, "dst");
        g_assert_cmpint(load_stream(dst, early->data, early->len), ==, 0);
        loaded = read_device(f, "dst");
        g_assert_cmpstr(loaded->blob_sha256, ==, at_stop->blob_sha256);
}

typedef struct BadLoad {
        Fixture *f;
        Device *dst;
        GByteArray *stream;
} BadLoad;

static void bad_load_run(gpointer p)
{
        BadLoad *b = p;

        g_assert_cmpint(load_stream(b->dst, b->stream->data, b->stream->len), ==, -EINVAL);
        g_assert_cmpint(state_of(b->f, "dst"), ==, MIG_STATE_RESUMING);
        g_assert_cmpint(device_reset(b->dst), ==, 0);
}

/* The stream is rejected, the device stays RESUMING, and the log names device and defect. */
static void assert_rejected(Fixture *f, Device *dst, GByteArray *stream, const char *defect)
{
        BadLoad b = {f, dst, stream};
        g_autofree char *log = NULL;
        int saved = log_get_max_level();

        log_set_max_level(LOG_WARNING);
        log = capture_stderr(bad_load_run, &b);
        log_set_max_level(saved);
        g_test_message("log: %s", g_strchomp(log));
        g_assert_nonnull(strstr(log, "dst"));
        g_assert_nonnull(strstr(log, defect));
}

static void test_bad_streams_are_rejected(Fixture *f, gconstpointer data)
{
        g_autoptr(GByteArray) good = NULL, foreign = NULL, bad = NULL;
        g_autoptr(Device) dst = NULL;
        g_autoptr(SimDevice) d = NULL;

        create_device(f, "src", ALL_FLAGS, NULL);
        create_device(f, "dst", ALL_FLAGS, NULL);
        create_full(f, "gpu", "xe_vfio_pci", 0x8086, 0x56c0, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P,
                    NULL);
        good = save_stream(f, "src");
        foreign = save_stream(f, "gpu");
        dst = open_device(f, "dst");

        bad = g_byte_array_new();
        g_byte_array_append(bad, good->data, good->len - 1);
        assert_rejected(f, dst, bad, "truncated");
        g_byte_array_set_size(bad, 0);
        g_byte_array_append(bad, good->data, good->len);
        bad->data[good->len / 2] ^= 0x10;
        assert_rejected(f, dst, bad, "SHA-256");
        assert_rejected(f, dst, foreign, "foreign");
        g_byte_array_set_size(bad, 0);
        assert_rejected(f, dst, bad, "empty");
        g_byte_array_append(bad, good->data, good->len);
        g_byte_array_append(bad, (const guint8 *)"x", 1);
        assert_rejected(f, dst, bad, "trailing bytes");

        d = read_device(f, "dst");
        g_assert_cmpuint(d->loads, ==, 0);
        g_assert_cmpint(load_stream(dst, good->data, good->len), ==, 0);
}

static void test_stream_without_final_is_rejected(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) src = NULL, dst = NULL;
        g_autoptr(GByteArray) early = NULL;
        int fd = -1;

        create_device(f, "src", ALL_FLAGS, NULL);
        create_device(f, "dst", ALL_FLAGS, NULL);
        src = open_device(f, "src");
        g_assert_cmpint(device_set_state(src, MIG_STATE_PRE_COPY, &fd), ==, 0);
        early = read_to_end(fd);
        close(fd);
        dst = open_device(f, "dst");
        assert_rejected(f, dst, early, "without a FINAL");
}

/* ---- internal state ---- */

static void test_generation_changes_leaving_running_states(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;
        g_autoptr(SimDevice) a = NULL, b = NULL, c = NULL, e = NULL;

        create_device(f, "nic0", ALL_FLAGS, NULL);
        dev = open_device(f, "nic0");
        a = read_device(f, "nic0");
        /* RUNNING>RUNNING_P2P>STOP leaves two running states */
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, 0);
        b = read_device(f, "nic0");
        g_assert_cmpuint(b->generation, ==, a->generation + 2);
        g_assert_cmpstr(b->blob_sha256, !=, a->blob_sha256);
        /* a stopped device does not change */
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP_COPY, NULL), ==, 0);
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, 0);
        c = read_device(f, "nic0");
        g_assert_cmpuint(c->generation, ==, b->generation);
        g_assert_cmpstr(c->blob_sha256, ==, b->blob_sha256);
        /* STOP>RUNNING_P2P>RUNNING leaves one */
        g_assert_cmpint(device_set_state(dev, MIG_STATE_RUNNING, NULL), ==, 0);
        e = read_device(f, "nic0");
        g_assert_cmpuint(e->generation, ==, c->generation + 1);
        g_assert_cmpstr(e->blob_sha256, !=, c->blob_sha256);
}

static void test_blob_digest_matches_state_file(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;
        g_autoptr(SimDevice) d = NULL;
        g_autofree char *path = g_build_filename(f->dir, "odd.state", NULL);
        SimBlob blob = {0};
        char hex[2 * SIM_DIGEST_LEN + 1];
        SimSpec spec = {.name = "odd", .flags = ALL_FLAGS, .blob_size = 3 * 4096 + 17};

        /* mutated in place page by page, the file still hashes to the recorded digest */
        g_assert_cmpint(sim_device_create(f->dir, &spec, NULL), ==, 0);
        dev = open_device(f, "odd");
        for (int i = 0; i < 5; i++) {
                g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, 0);
                g_assert_cmpint(device_set_state(dev, MIG_STATE_RUNNING, NULL), ==, 0);
        }
        d = read_device(f, "odd");
        g_assert_cmpint(sim_blob_read_file(path, d->blob_size, &blob, NULL), ==, 0);
        sim_blob_adopt(&blob, g_steal_pointer(&blob.data), blob.size); /* rehash from bytes */
        sim_blob_digest_hex(&blob, hex);
        g_assert_cmpstr(hex, ==, d->blob_sha256);
        sim_blob_clear(&blob);
}

/* ---- peers ---- */

static guint events_of(Fixture *f, const char *name)
{
        g_autoptr(SimDevice) d = read_device(f, name);

        return d->events->len;
}

static void test_corruption_when_peer_still_running(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) a = NULL;
        g_autoptr(SimDevice) d = NULL;
        const SimEvent *e;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        create_device(f, "stranger", ALL_FLAGS, NULL);
        a = open_device(f, "a");
        g_assert_cmpint(device_set_state(a, MIG_STATE_STOP, NULL), ==, 0);
        d = read_device(f, "a");
        g_assert_cmpuint(d->events->len, ==, 1); /* from b only: stranger is no peer */
        e = d->events->pdata[0];
        g_assert_cmpint(e->state, ==, MIG_STATE_STOP);
        g_assert_cmpstr(e->peer, ==, "b");
        g_assert_cmpint(e->peer_state, ==, MIG_STATE_RUNNING);
        g_assert_true(g_str_has_suffix(e->time, "Z"));
        g_assert_cmpuint(events_of(f, "b"), ==, 0);
        g_assert_cmpint(sim_device_clear_events(f->dir, "a", NULL), ==, 0);
        g_assert_cmpuint(events_of(f, "a"), ==, 0);
}

static void test_corruption_when_peer_starts_running(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) b = NULL;
        g_autoptr(SimDevice) d = NULL;
        const SimEvent *e;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        force_state(f, "a", MIG_STATE_STOP);
        force_state(f, "b", MIG_STATE_STOP);
        b = open_device(f, "b");
        g_assert_cmpint(device_set_state(b, MIG_STATE_RUNNING, NULL), ==, 0);
        d = read_device(f, "a");
        g_assert_cmpuint(d->events->len, ==, 1);
        e = d->events->pdata[0];
        g_assert_cmpint(e->state, ==, MIG_STATE_STOP);
        g_assert_cmpstr(e->peer, ==, "b");
        g_assert_cmpint(e->peer_state, ==, MIG_STATE_RUNNING);
}

/* A reset clears Bus Master Enable: the reset device writes into no peer until it moves again,
 * so resetting one device of a failed destination spoils nothing of a peer still RESUMING. */
static void test_reset_device_initiates_no_dma_until_it_moves(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) a = NULL;
        g_autoptr(SimDevice) d = NULL;
        const SimEvent *e;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        force_state(f, "a", MIG_STATE_STOP);
        force_state(f, "b", MIG_STATE_RESUMING);
        a = open_device(f, "a");
        g_assert_cmpint(device_reset(a), ==, 0);
        d = read_device(f, "a");
        g_assert_cmpint(d->state, ==, MIG_STATE_RUNNING);
        g_assert_true(d->dma_off);
        g_clear_pointer(&d, sim_device_free);
        g_assert_cmpuint(events_of(f, "b"), ==, 0);
        /* b stops meanwhile: still nobody writes into it */
        force_state(f, "b", MIG_STATE_STOP);
        g_assert_cmpuint(events_of(f, "b"), ==, 0);
        /* a moves again (RUNNING -> RUNNING_P2P -> RUNNING): its driver runs it, b is hit */
        g_assert_cmpint(device_set_state(a, MIG_STATE_RUNNING_P2P, NULL), ==, 0);
        d = read_device(f, "a");
        g_assert_false(d->dma_off);
        g_assert_cmpuint(events_of(f, "b"), ==, 0);
        g_assert_cmpint(device_set_state(a, MIG_STATE_RUNNING, NULL), ==, 0);
        g_clear_pointer(&d, sim_device_free);
        d = read_device(f, "b");
        g_assert_cmpuint(d->events->len, ==, 1);
        e = d->events->pdata[0];
        g_assert_cmpstr(e->peer, ==, "a");
        g_assert_cmpint(e->state, ==, MIG_STATE_STOP);
}

/* A reset device's peer that stops sees it as no initiator either, from the peer's side. */
static void test_stopping_beside_a_reset_device_is_no_corruption(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) a = NULL;
        g_autoptr(Device) b = NULL;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        a = open_device(f, "a");
        b = open_device(f, "b");
        g_assert_cmpint(device_reset(a), ==, 0);
        g_assert_cmpint(device_set_state(b, MIG_STATE_STOP, NULL), ==, 0);
        g_assert_cmpuint(events_of(f, "b"), ==, 0);
        /* without the reset, the same stop is corruption (test_corruption_when_peer_still_running) */
        force_state(f, "a", MIG_STATE_RUNNING);
        force_state(f, "b", MIG_STATE_RUNNING);
        g_assert_cmpint(device_set_state(b, MIG_STATE_STOP, NULL), ==, 0);
        g_assert_cmpuint(events_of(f, "b"), ==, 1);
}

static void test_events_are_capped(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) a = NULL;
        g_autoptr(SimDevice) d = NULL;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        a = open_device(f, "a");
        for (int i = 0; i < SIM_EVENTS_MAX + 6; i++) {
                g_assert_cmpint(device_set_state(a, MIG_STATE_STOP, NULL), ==, 0);
                force_state(f, "a", MIG_STATE_RUNNING);
        }
        d = read_device(f, "a");
        g_assert_cmpuint(d->events->len, ==, SIM_EVENTS_MAX);
        g_assert_cmpuint(d->events_dropped, ==, 6);
        g_assert_cmpint(sim_device_clear_events(f->dir, "a", NULL), ==, 0);
        g_clear_pointer(&d, sim_device_free);
        d = read_device(f, "a");
        g_assert_cmpuint(d->events->len + d->events_dropped, ==, 0);
}

static void move_all(Device **devs, size_t n, enum mig_state target)
{
        for (size_t i = 0; i < n; i++)
                g_assert_cmpint(device_set_state(devs[i], target, NULL), ==, 0);
}

static void test_no_corruption_when_quiesced_first(Fixture *f, gconstpointer data)
{
        static const char *const names[] = {"a", "b", "c"};
        Device *devs[G_N_ELEMENTS(names)];

        for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
                create_device(f, names[i], ALL_FLAGS, "vm1");
                devs[i] = open_device(f, names[i]);
        }
        /* source: everyone RUNNING_P2P before anyone stops */
        move_all(devs, G_N_ELEMENTS(devs), MIG_STATE_RUNNING_P2P);
        move_all(devs, G_N_ELEMENTS(devs), MIG_STATE_STOP);
        /* destination: everyone RUNNING_P2P before anyone runs */
        move_all(devs, G_N_ELEMENTS(devs), MIG_STATE_RUNNING_P2P);
        move_all(devs, G_N_ELEMENTS(devs), MIG_STATE_RUNNING);
        for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
                g_assert_cmpuint(events_of(f, names[i]), ==, 0);
                device_unref(devs[i]);
        }
}

/* ---- concurrency ---- */

#define HAMMER_ROUNDS 150

typedef struct Hammer {
        Fixture *f;
        const char *name;
        int kind; /* 0 set_state, 1 force_state, 2 add_fault, 3 reader */
        gint *stop;
        int failures;
} Hammer;

static void hammer_round(Hammer *h, int i)
{
        static const enum mig_state states[] = {MIG_STATE_STOP, MIG_STATE_RUNNING};
        g_autoptr(SimDevice) d = NULL;
        Device *dev = NULL;
        SimFault fault = {
            MIG_STATE_STOP_COPY, MIG_STATE_RESUMING, SIM_FAULT_FAIL, SIM_LEAVE_ORIGINAL, EIO, 0};

        switch (h->kind) {
        case 0:
                h->f->backend->open_device(h->f->backend, h->name, &dev);
                h->failures += dev ? device_set_state(dev, states[i % 2], NULL) < 0 : 1;
                device_unref(dev);
                break;
        case 1:
                h->failures += sim_device_force_state(h->f->dir, h->name, states[i % 2], NULL) < 0;
                break;
        case 2:
                h->failures += sim_device_add_fault(h->f->dir, h->name, &fault, NULL) < 0;
                break;
        default:
                h->failures += sim_device_read(h->f->dir, h->name, &d, NULL) < 0;
        }
}

static gpointer hammer_run(gpointer p)
{
        Hammer *h = p;

        for (int i = 0; i < HAMMER_ROUNDS || (h->kind == 3 && !g_atomic_int_get(h->stop)); i++)
                hammer_round(h, i);
        return NULL;
}

static void test_concurrent_writers_never_corrupt(Fixture *f, gconstpointer data)
{
        gint stop = 0;
        Hammer hs[] = {
            {f, "a", 0, &stop, 0}, {f, "b", 1, &stop, 0}, {f, "a", 2, &stop, 0},
            {f, "c", 2, &stop, 0}, {f, "c", 2, &stop, 0}, {f, "a", 3, &stop, 0},
            {f, "c", 3, &stop, 0},
        };
        GThread *threads[G_N_ELEMENTS(hs)];
        g_autoptr(SimDevice) a = NULL, c = NULL;

        create_device(f, "a", ALL_FLAGS, NULL);
        create_device(f, "b", ALL_FLAGS, NULL);
        create_device(f, "c", ALL_FLAGS, NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(hs); i++)
                threads[i] = g_thread_new("hammer", hammer_run, &hs[i]);
        for (size_t i = 0; i < G_N_ELEMENTS(hs); i++) {
                if (hs[i].kind == 3)
                        g_atomic_int_set(&stop, 1);
                g_thread_join(threads[i]);
                g_assert_cmpint(hs[i].failures, ==, 0);
        }
        a = read_device(f, "a");
        c = read_device(f, "c");
        /* no update lost, even to set_state's own writes */
        g_assert_cmpuint(a->faults->len, ==, HAMMER_ROUNDS);
        g_assert_cmpuint(c->faults->len, ==, 2 * HAMMER_ROUNDS);
        g_assert_cmpint(a->state, ==, MIG_STATE_RUNNING);
        g_assert_cmpint(state_of(f, "b"), ==, MIG_STATE_RUNNING);
}

/* ---- the peer index ---- */

static bool index_has(Fixture *f, const char *group, const char *name)
{
        g_autofree char *p = name ? g_strdup_printf("%s/.p2p/@%s/%s", f->dir, group, name)
                                  : g_strdup_printf("%s/.p2p/@%s", f->dir, group);

        return g_file_test(p, G_FILE_TEST_EXISTS);
}

static bool index_complete(Fixture *f)
{
        g_autofree char *p = g_strdup_printf("%s/.p2p/complete", f->dir);

        return g_file_test(p, G_FILE_TEST_IS_REGULAR);
}

static void set_group(Fixture *f, const char *name, const char *group)
{
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(sim_device_set_p2p_group(f->dir, name, group, &error), ==, 0);
        g_assert_no_error(error);
}

/* Stops name (RUNNING -> STOP) and returns the peers it recorded events for, "b,c". */
static char *stop_and_blame(Fixture *f, const char *name)
{
        g_autoptr(Device) dev = open_device(f, name);
        g_autoptr(SimDevice) d = NULL;
        GString *s = g_string_new(NULL);

        g_assert_cmpint(sim_device_clear_events(f->dir, name, NULL), ==, 0);
        g_assert_cmpint(device_set_state(dev, MIG_STATE_STOP, NULL), ==, 0);
        d = read_device(f, name);
        for (guint i = 0; i < d->events->len; i++)
                g_string_append_printf(s, "%s%s", i ? "," : "",
                                       ((SimEvent *)d->events->pdata[i])->peer);
        force_state(f, name, MIG_STATE_RUNNING);
        return g_string_free(s, FALSE);
}

static void touch(Fixture *f, const char *rel)
{
        g_autofree char *p = g_build_filename(f->dir, rel, NULL);
        g_autofree char *parent = g_path_get_dirname(p);

        g_assert_cmpint(g_mkdir_with_parents(parent, 0755), ==, 0);
        g_assert_true(g_file_set_contents(p, "", 0, NULL));
}

static void test_peer_index_create_remove_regroup(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(SimDevice) b = NULL;
        g_autofree char *blamed = NULL;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        create_device(f, "c", ALL_FLAGS, NULL);
        /* Made in an empty directory: complete from the start, no scan needed. */
        g_assert_true(index_complete(f));
        g_assert_true(index_has(f, "vm1", "a"));
        g_assert_true(index_has(f, "vm1", "b"));
        g_assert_false(index_has(f, "vm1", "c"));
        blamed = stop_and_blame(f, "a");
        g_assert_cmpstr(blamed, ==, "b");
        g_clear_pointer(&blamed, g_free);

        /* b moves to vm2, c joins vm1: the entries move, a's peers with them. */
        set_group(f, "b", "vm2");
        set_group(f, "c", "vm1");
        g_assert_false(index_has(f, "vm1", "b"));
        g_assert_true(index_has(f, "vm2", "b"));
        g_assert_true(index_has(f, "vm1", "c"));
        b = read_device(f, "b");
        g_assert_cmpstr(b->p2p_group, ==, "vm2");
        blamed = stop_and_blame(f, "a");
        g_assert_cmpstr(blamed, ==, "c");
        g_clear_pointer(&blamed, g_free);
        /* The same group again changes nothing; none takes b out of every group. */
        set_group(f, "c", "vm1");
        set_group(f, "b", NULL);
        g_assert_false(index_has(f, "vm2", NULL)); /* an empty group's directory goes */
        blamed = stop_and_blame(f, "b");
        g_assert_cmpstr(blamed, ==, "");
        g_clear_pointer(&blamed, g_free);

        /* Group names that are path components elsewhere stay inside the index. */
        set_group(f, "b", "..");
        set_group(f, "c", "..");
        g_assert_true(index_has(f, "..", "b"));
        blamed = stop_and_blame(f, "b");
        g_assert_cmpstr(blamed, ==, "c");
        g_clear_pointer(&blamed, g_free);

        g_assert_cmpint(sim_device_remove(f->dir, "a", &error), ==, 0);
        g_assert_false(index_has(f, "vm1", NULL));
        g_assert_cmpint(sim_device_remove(f->dir, "c", &error), ==, 0);
        g_assert_false(index_has(f, "..", "c"));
        g_assert_true(index_has(f, "..", "b"));
        g_assert_no_error(error);
}

static void test_peer_index_stale_entries_are_ignored(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *blamed = NULL, *garbage = NULL;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        create_device(f, "other", ALL_FLAGS, "vm2");
        /* Entries for a removed device, for one in another group, and junk. */
        touch(f, ".p2p/@vm1/gone");
        touch(f, ".p2p/@vm1/other");
        touch(f, ".p2p/@vm1/.hidden");
        blamed = stop_and_blame(f, "a");
        g_assert_cmpstr(blamed, ==, "b");

        /* Removing a device whose file is malformed clears its entries in every group. */
        touch(f, ".p2p/@vm3/b");
        garbage = g_build_filename(f->dir, "b.json", NULL);
        g_assert_true(g_file_set_contents(garbage, "{", 1, NULL));
        g_assert_cmpint(sim_device_remove(f->dir, "b", &error), ==, 0);
        g_assert_no_error(error);
        g_assert_false(index_has(f, "vm1", "b"));
        g_assert_false(index_has(f, "vm3", NULL));
        g_assert_true(index_has(f, "vm1", "a"));
}

static void test_peer_index_rebuilt_in_an_old_directory(Fixture *f, gconstpointer data)
{
        g_autofree char *index = g_build_filename(f->dir, ".p2p", NULL);
        g_autofree char *json = g_build_filename(f->dir, "c.json", NULL);
        g_autofree char *blamed = NULL, *text = NULL, *edited = NULL;
        GString *s;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        create_device(f, "c", ALL_FLAGS, NULL);
        /* A directory from before the index: the first arc scans it and builds the index. */
        rm_rf(index);
        create_device(f, "d", ALL_FLAGS, "vm1"); /* adds its own entry, not the marker */
        g_assert_false(index_complete(f));
        g_assert_true(index_has(f, "vm1", "d"));
        blamed = stop_and_blame(f, "a");
        g_assert_cmpstr(blamed, ==, "b,d");
        g_clear_pointer(&blamed, g_free);
        g_assert_true(index_complete(f));
        g_assert_true(index_has(f, "vm1", "a"));
        g_assert_true(index_has(f, "vm1", "b"));

        /* A file edited into a group by hand gets its entry on its next write. */
        g_assert_true(g_file_get_contents(json, &text, NULL, NULL));
        s = g_string_new(text);
        g_assert_cmpint(g_string_replace(s, "\"p2p_group\": \"\"", "\"p2p_group\": 0", 1), ==, 1);
        g_assert_cmpint(g_string_replace(s, ": 0", ": \"x\"", 1), ==, 1);
        g_assert_cmpint(g_string_replace(s, "\"x\"", "\"vm1\"", 1), ==, 1);
        edited = g_string_free(s, FALSE);
        g_assert_true(g_file_set_contents(json, edited, -1, NULL));
        g_assert_false(index_has(f, "vm1", "c"));
        force_state(f, "c", MIG_STATE_RUNNING);
        g_assert_true(index_has(f, "vm1", "c"));
        blamed = stop_and_blame(f, "a");
        g_assert_cmpstr(blamed, ==, "b,c,d");
}

static void test_peer_index_unwritable(Fixture *f, gconstpointer data)
{
        g_autofree char *index = g_build_filename(f->dir, ".p2p", NULL);
        g_autofree char *blamed = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(SimDevice) b = NULL;
        SimSpec spec = {.name = "x", .flags = ALL_FLAGS, .p2p_group = "vm1"};

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        /* Something in the index's way: peers are still found, by reading every file. */
        rm_rf(index);
        g_assert_true(g_file_set_contents(index, "in the way", -1, NULL));
        blamed = stop_and_blame(f, "a");
        g_assert_cmpstr(blamed, ==, "b");
        blamed = (g_free(blamed), stop_and_blame(f, "a"));
        g_assert_cmpstr(blamed, ==, "b");

        /* Creating into a group or moving to one is refused, naming the index; nothing left. */
        g_assert_cmpint(sim_device_create(f->dir, &spec, &error), ==, -ENOTDIR);
        g_assert_nonnull(strstr(error->message, "P2P peer index"));
        g_assert_nonnull(strstr(error->message, index));
        g_clear_error(&error);
        g_assert_cmpint(sim_device_read(f->dir, "x", NULL, NULL), ==, -ENOENT);
        g_assert_cmpint(sim_device_set_p2p_group(f->dir, "b", "vm2", &error), ==, -ENOTDIR);
        g_assert_nonnull(strstr(error->message, "P2P peer index"));
        g_clear_error(&error);
        b = read_device(f, "b");
        g_assert_cmpstr(b->p2p_group, ==, "vm1");
        /* Without a group nothing needs the index. */
        spec.p2p_group = NULL;
        g_assert_cmpint(sim_device_create(f->dir, &spec, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(sim_device_remove(f->dir, "x", &error), ==, 0);
}

static void test_set_p2p_group_bad_input(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(SimDevice) a = NULL;
        g_autofree char *lock = g_build_filename(f->dir, ".nope.lock", NULL);

        create_device(f, "a", ALL_FLAGS, "vm1");
        g_assert_cmpint(sim_device_set_p2p_group(f->dir, "a", "no/slash", &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "no/slash"));
        g_clear_error(&error);
        g_assert_cmpint(sim_device_set_p2p_group(f->dir, "../a", "vm2", &error), ==, -EINVAL);
        g_clear_error(&error);
        g_assert_cmpint(sim_device_set_p2p_group(f->dir, "nope", "vm2", &error), ==, -ENOENT);
        g_assert_nonnull(strstr(error->message, "nope"));
        g_assert_false(g_file_test(lock, G_FILE_TEST_EXISTS));
        g_assert_false(index_has(f, "vm2", NULL));
        a = read_device(f, "a");
        g_assert_cmpstr(a->p2p_group, ==, "vm1");
}

typedef struct Regrouper {
        Fixture *f;
        gint *stop;
        unsigned moves;
} Regrouper;

static gpointer regroup_run(gpointer p)
{
        Regrouper *r = p;

        while (!g_atomic_int_get(r->stop)) {
                const char *group = r->moves % 2 ? "vm1" : "vm2";

                g_assert_cmpint(sim_device_set_p2p_group(r->f->dir, "b", group, NULL), ==, 0);
                r->moves++;
        }
        return NULL;
}

/* Moves under the device lock: however arcs and moves interleave, the entry of the group the
 * file says is there and no other. */
static void test_peer_index_concurrent_regroup(Fixture *f, gconstpointer data)
{
        gint stop = 0;
        Regrouper rg = {f, &stop, 0};
        g_autoptr(Device) a = NULL, b = NULL;
        g_autoptr(SimDevice) bd = NULL;
        GThread *t;

        create_device(f, "a", ALL_FLAGS, "vm1");
        create_device(f, "b", ALL_FLAGS, "vm1");
        create_device(f, "c", ALL_FLAGS, "vm2");
        a = open_device(f, "a");
        b = open_device(f, "b");
        t = g_thread_new("regroup", regroup_run, &rg);
        for (int i = 0; i < 200; i++) {
                g_assert_cmpint(device_set_state(i % 2 ? a : b, MIG_STATE_STOP, NULL), ==, 0);
                g_assert_cmpint(device_set_state(i % 2 ? a : b, MIG_STATE_RUNNING, NULL), ==, 0);
        }
        g_atomic_int_set(&stop, 1);
        g_thread_join(t);
        g_assert_cmpuint(rg.moves, >, 0);
        bd = read_device(f, "b");
        g_assert_true(index_has(f, bd->p2p_group, "b"));
        g_assert_false(index_has(f, strcmp(bd->p2p_group, "vm1") ? "vm1" : "vm2", "b"));
}

/* ---- cost ---- */

/* Microseconds per arc for 64 devices stepping RUNNING <-> target, zero latency. */
static double arc_cost_us(Fixture *f, const char *p2p_group, enum mig_state target)
{
        enum { N = 64, ROUNDS = 10 };
        Device *devs[N];
        gint64 start, spent;

        for (int i = 0; i < N; i++) {
                g_autofree char *name = g_strdup_printf("%s%02d", p2p_group ? p2p_group : "d", i);
                create_device(f, name, ALL_FLAGS, p2p_group);
                devs[i] = open_device(f, name);
        }
        start = g_get_monotonic_time();
        for (int r = 0; r < ROUNDS; r++) {
                move_all(devs, N, target);
                move_all(devs, N, MIG_STATE_RUNNING);
        }
        spent = g_get_monotonic_time() - start;
        for (int i = 0; i < N; i++)
                device_unref(devs[i]);
        return (double)spent / (2.0 * N * ROUNDS);
}

static void test_transition_cost(Fixture *f, gconstpointer data)
{
        double alone, quiesce, stop;

        if (!g_test_perf()) {
                g_test_skip("a measurement: run with -m perf");
                return;
        }
        alone = arc_cost_us(f, NULL, MIG_STATE_RUNNING_P2P);
        /* RUNNING_P2P neither stops nor initiates P2P: no peer scan */
        quiesce = arc_cost_us(f, "q", MIG_STATE_RUNNING_P2P);
        /* RUNNING->STOP walks 2 arcs, 1 of 2 arcs back scans 63 peers */
        stop = arc_cost_us(f, "s", MIG_STATE_STOP);
        g_test_minimized_result(alone, "one arc, no p2p_group: %.1f us", alone);
        g_test_message("one arc, 64 devices in one p2p_group, RUNNING<->RUNNING_P2P: %.1f us",
                       quiesce);
        g_test_message("one set_state, 64 devices in one p2p_group, RUNNING<->STOP: %.1f us", stop);
}

/* An open handle caches what it parsed; every change another writer makes must show. */
static void test_state_reads_see_other_writers(Fixture *f, gconstpointer data)
{
        g_autoptr(Device) dev = NULL;
        g_autoptr(GError) error = NULL;
        enum mig_state s;
        uint32_t flags;

        create_device(f, "nic0", MIG_FLAGS_KNOWN, NULL);
        dev = open_device(f, "nic0");
        g_assert_cmpint(device_get_state(dev, &s), ==, 0);
        g_assert_cmpint(s, ==, MIG_STATE_RUNNING);
        force_state(f, "nic0", MIG_STATE_STOP);
        g_assert_cmpint(device_get_state(dev, &s), ==, 0);
        g_assert_cmpint(s, ==, MIG_STATE_STOP);
        /* Removed and created again with the same name: the version starts afresh. */
        g_assert_cmpint(sim_device_remove(f->dir, "nic0", &error), ==, 0);
        create_device(f, "nic0", MIG_FLAG_STOP_COPY, NULL);
        g_assert_cmpint(dev->ops->query_flags(dev, &flags), ==, 0);
        g_assert_cmpuint(flags, ==, MIG_FLAG_STOP_COPY);
        g_assert_cmpint(device_get_state(dev, &s), ==, 0);
        g_assert_cmpint(s, ==, MIG_STATE_RUNNING);
        /* A device file that disappears is an error, not a stale answer. */
        g_assert_cmpint(sim_device_remove(f->dir, "nic0", &error), ==, 0);
        g_assert_cmpint(device_get_state(dev, &s), ==, -ENOENT);
}

#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)

/* ---- a directory others could write, and links planted in it ---- */


/* A root 0600 file outside the directory, where planted links point. */
static char *victim_new(Fixture *f)
{
        char *path = g_strdup_printf("%s.victim", f->dir);

        victim_create(path);
        return path;
}

/* The victim lies beside the sim directory, so it goes once checked. */
static void victim_check_and_remove(const char *victim)
{
        victim_assert_untouched(victim);
        g_assert_cmpint(unlink(victim), ==, 0);
}

static void plant_link(Fixture *f, const char *name, const char *target)
{
        g_autofree char *path = g_build_filename(f->dir, name, NULL);

        (void)unlink(path);
        g_assert_cmpint(symlink(target, path), ==, 0);
}

static void assert_mode(Fixture *f, const char *name, mode_t mode)
{
        g_autofree char *path = g_build_filename(f->dir, name, NULL);
        struct stat st;

        g_assert_cmpint(lstat(path, &st), ==, 0);
        g_assert_true(S_ISREG(st.st_mode));
        g_assert_cmpint(st.st_mode & 07777, ==, mode);
}

static void test_files_are_0600(Fixture *f, gconstpointer data)
{
        create_device(f, "nic9", ALL_FLAGS, NULL);
        force_state(f, "nic9", MIG_STATE_STOP);
        force_state(f, "nic9", MIG_STATE_RUNNING);
        assert_mode(f, "nic9.json", 0600);
        assert_mode(f, "nic9.state", 0600);
        assert_mode(f, ".nic9.lock", 0600);
        assert_mode(f, ".nic9.json.tmp", 0600);
}

/* A spare is rewritten in place on the next write: one planted as a link is not. */
static void test_planted_spares_are_not_followed(Fixture *f, gconstpointer data)
{
        g_autofree char *victim = victim_new(f);
        g_autofree char *absent = g_strdup_printf("%s.absent", f->dir);
        g_autoptr(Device) dev = NULL;

        create_device(f, "nic9", ALL_FLAGS, NULL);
        plant_link(f, ".nic9.json.tmp", victim);
        plant_link(f, ".nic9.state.tmp", absent);
        force_state(f, "nic9", MIG_STATE_STOP);
        dev = open_device(f, "nic9");
        g_assert_cmpint(device_reset(dev), ==, 0); /* rewrites the state blob */
        plant_link(f, ".nic9.json.tmp", absent);
        plant_link(f, ".nic9.state.tmp", victim);
        g_assert_cmpint(device_reset(dev), ==, 0);
        g_assert_cmpint(state_of(f, "nic9"), ==, MIG_STATE_RUNNING);
        assert_mode(f, "nic9.json", 0600);
        assert_mode(f, "nic9.state", 0600);
        g_assert_false(g_file_test(absent, G_FILE_TEST_EXISTS));
        victim_check_and_remove(victim);
}

/* The lock carries the version counter: written through a link, it changed 8 bytes. */
static void test_planted_lock_is_refused(Fixture *f, gconstpointer data)
{
        g_autofree char *victim = victim_new(f);
        g_autofree char *absent = g_strdup_printf("%s.absent", f->dir);
        g_autoptr(GError) error = NULL;

        create_device(f, "nic9", ALL_FLAGS, NULL);
        plant_link(f, ".nic9.lock", victim);
        g_assert_cmpint(sim_device_force_state(f->dir, "nic9", MIG_STATE_STOP, &error), ==, -ELOOP);
        g_assert_nonnull(strstr(error->message, ".nic9.lock is a symbolic link"));
        g_clear_error(&error);
        plant_link(f, ".nic9.lock", absent);
        g_assert_cmpint(sim_device_force_state(f->dir, "nic9", MIG_STATE_STOP, &error), ==, -ELOOP);
        g_assert_false(g_file_test(absent, G_FILE_TEST_EXISTS));
        victim_check_and_remove(victim);
}

static void test_device_file_link_is_not_read(Fixture *f, gconstpointer data)
{
        g_autofree char *victim = victim_new(f);
        g_autoptr(SimDevice) d = NULL;

        create_device(f, "nic9", ALL_FLAGS, NULL);
        plant_link(f, "nic9.json", victim);
        g_assert_cmpint(sim_device_read(f->dir, "nic9", &d, NULL), ==, -ELOOP);
        g_assert_cmpint(sim_device_force_state(f->dir, "nic9", MIG_STATE_STOP, NULL), ==, -ELOOP);
        victim_check_and_remove(victim);
}

static void test_unsafe_directory_is_refused(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        Backend *b = NULL;
        SimSpec spec = {.name = "nic9", .flags = ALL_FLAGS};

        g_assert_cmpint(chmod(f->dir, 0777), ==, 0);
        g_assert_cmpint(sim_backend_new(f->dir, &b, &error), ==, -EPERM);
        g_assert_nonnull(strstr(error->message, f->dir));
        g_assert_nonnull(strstr(error->message, "chmod go-w"));
        g_clear_error(&error);
        g_assert_cmpint(sim_device_create(f->dir, &spec, &error), ==, -EPERM);
        g_assert_cmpint(sim_dir_check(f->dir, false, NULL), ==, -EPERM);
        g_assert_cmpint(chmod(f->dir, 0755), ==, 0);
        g_assert_cmpint(sim_dir_check(f->dir, false, NULL), ==, 0);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        /* The tests provoke failures on purpose; their log lines are noise unless asked. */
        log_set_max_level(g_test_verbose() ? LOG_DEBUG : LOG_ERR);

        ADD("/sim/create-read-list-remove", test_create_read_list_remove);
        ADD("/sim/files/are-0600", test_files_are_0600);
        ADD("/sim/files/planted-spares-are-not-followed", test_planted_spares_are_not_followed);
        ADD("/sim/files/planted-lock-is-refused", test_planted_lock_is_refused);
        ADD("/sim/files/device-file-link-is-not-read", test_device_file_link_is_not_read);
        ADD("/sim/files/unsafe-directory-is-refused", test_unsafe_directory_is_refused);
        ADD("/sim/bad-names-and-duplicates", test_bad_names_and_duplicates);
        ADD("/sim/malformed-file-is-an-error", test_malformed_file_is_an_error);
        ADD("/sim/fault-arc-strings", test_fault_arc_strings);
        ADD("/sim/enumerate-and-open", test_enumerate_and_open);
        ADD("/sim/invalid-request-leaves-device-untouched",
            test_invalid_request_leaves_device_untouched);
        ADD("/sim/set-state-walks-the-kernel-path", test_set_state_walks_the_kernel_path);
        ADD("/sim/latency-is-honoured", test_latency_is_honoured);
        ADD("/sim/fail-leaves-original-state", test_fail_leaves_original_state);
        ADD("/sim/fail-leaves-intermediate-state", test_fail_leaves_intermediate_state);
        ADD("/sim/error-then-reset-loses-state", test_error_then_reset_loses_state);
        ADD("/sim/reset-device-initiates-no-dma-until-it-moves",
            test_reset_device_initiates_no_dma_until_it_moves);
        ADD("/sim/stopping-beside-a-reset-device-is-no-corruption",
            test_stopping_beside_a_reset_device_is_no_corruption);
        ADD("/sim/fault-times-counts-down", test_fault_times_counts_down);
        ADD("/sim/hang-cancelled", test_hang_cancelled);
        ADD("/sim/hang-released-by-clearing-faults", test_hang_released_by_clearing_faults);
        ADD("/sim/save-loads-on-same-kind", test_save_loads_on_same_kind);
        ADD("/sim/large-device-streams-in-bounded-memory",
            test_large_device_streams_in_bounded_memory);
        ADD("/sim/data-fd-lives-in-the-device-directory",
            test_data_fd_lives_in_the_device_directory);
        ADD("/sim/precopy-then-stop-copy-share-the-fd", test_precopy_then_stop_copy_share_the_fd);
        ADD("/sim/bad-streams-are-rejected", test_bad_streams_are_rejected);
        ADD("/sim/stream-without-final-is-rejected", test_stream_without_final_is_rejected);
        ADD("/sim/generation-changes-leaving-running-states",
            test_generation_changes_leaving_running_states);
        ADD("/sim/blob-digest-matches-state-file", test_blob_digest_matches_state_file);
        ADD("/sim/corruption-when-peer-still-running", test_corruption_when_peer_still_running);
        ADD("/sim/corruption-when-peer-starts-running", test_corruption_when_peer_starts_running);
        ADD("/sim/no-corruption-when-quiesced-first", test_no_corruption_when_quiesced_first);
        ADD("/sim/events-are-capped", test_events_are_capped);
        ADD("/sim/concurrent-writers-never-corrupt", test_concurrent_writers_never_corrupt);
        ADD("/sim/state-reads-see-other-writers", test_state_reads_see_other_writers);
        ADD("/sim/peer-index/create-remove-regroup", test_peer_index_create_remove_regroup);
        ADD("/sim/peer-index/stale-entries-are-ignored", test_peer_index_stale_entries_are_ignored);
        ADD("/sim/peer-index/rebuilt-in-an-old-directory",
            test_peer_index_rebuilt_in_an_old_directory);
        ADD("/sim/peer-index/unwritable", test_peer_index_unwritable);
        ADD("/sim/peer-index/set-p2p-group-bad-input", test_set_p2p_group_bad_input);
        ADD("/sim/peer-index/concurrent-regroup", test_peer_index_concurrent_regroup);
        ADD("/sim/transition-cost", test_transition_cost);
        return g_test_run();
}
