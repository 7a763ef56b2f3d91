/* test-group-watch: group-watch's comparison and the sim directory watch of host/hotplug */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "group-watch.h"
#include "host/hotplug.h"

/* ---- a host made of two tables: group -> members, device -> driver ---- */

typedef struct FakeHost {
        GHashTable *groups;  /* group -> "a b c" */
        GHashTable *drivers; /* device -> driver, "" unbound; absent: gone */
} FakeHost;

static GPtrArray *fake_members(const char *group, void *userdata)
{
        FakeHost *h = userdata;
        const char *list = g_hash_table_lookup(h->groups, group);
        g_auto(GStrv) names = list ? g_strsplit(list, " ", -1) : NULL;
        GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

        for (char **n = names; n && *n; n++)
                if (**n)
                        g_ptr_array_add(out, g_strdup(*n));
        return out;
}

static int fake_status(const char *device, const char *registered, char **ret_driver,
                       void *userdata)
{
        FakeHost *h = userdata;
        const char *driver = g_hash_table_lookup(h->drivers, device);

        if (!driver)
                return -ENODEV;
        if (g_strcmp0(driver, registered) == 0)
                return 0;
        *ret_driver = *driver ? g_strdup(driver) : NULL;
        return 1;
}

typedef struct Fixture {
        FakeHost host;
        GroupWatchHost gwh;
        GroupWatch *gw;
} Fixture;

static void fixture_set_up(Fixture *f, gconstpointer data)
{
        static const char *const devices[] = {"a", "b"}, *const groups[] = {"7", "7"},
                                 *const drivers[] = {"vfio-pci", "vfio-pci"};

        f->host.groups = g_hash_table_new(g_str_hash, g_str_equal);
        f->host.drivers = g_hash_table_new(g_str_hash, g_str_equal);
        g_hash_table_insert(f->host.groups, "7", "a b");
        g_hash_table_insert(f->host.drivers, "a", "vfio-pci");
        g_hash_table_insert(f->host.drivers, "b", "vfio-pci");
        f->gwh = (GroupWatchHost){fake_members, fake_status, &f->host};
        f->gw = group_watch_new();
        group_watch_add_vm(f->gw, "vm1", devices, groups, drivers, 2, &f->gwh);
}

static void fixture_tear_down(Fixture *f, gconstpointer data)
{
        group_watch_free(f->gw);
        g_hash_table_destroy(f->host.groups);
        g_hash_table_destroy(f->host.drivers);
}

static char *ids(const GroupWatch *gw)
{
        const GArray *b = group_watch_blockers(gw, "vm1");
        g_autoptr(GString) s = g_string_new(NULL);

        for (guint i = 0; b && i < b->len; i++) {
                const GroupWatchBlocker *x = &g_array_index(b, GroupWatchBlocker, i);
                g_string_append_printf(s, "%s%s:%s", i ? " " : "", x->id, x->device);
        }
        return g_string_free(g_steal_pointer(&s), FALSE);
}

static char *change_text(const GroupWatchResult *r)
{
        g_autoptr(GString) s = g_string_new(NULL);

        for (guint i = 0; i < r->changes->len; i++) {
                const GroupChange *c = r->changes->pdata[i];
                g_string_append_printf(s, "%s +%u -%u vms %u;", c->group, c->added->len,
                                       c->removed->len, c->vms->len);
        }
        return g_string_free(g_steal_pointer(&s), FALSE);
}

static void test_unchanged_host_reports_nothing(Fixture *f, gconstpointer data)
{
        g_autoptr(GroupWatchResult) r = group_watch_evaluate(f->gw, &f->gwh);
        g_autofree char *b = ids(f->gw);

        g_assert_cmpuint(r->changes->len, ==, 0);
        g_assert_cmpuint(r->vms_changed->len, ==, 0);
        g_assert_cmpstr(b, ==, "");
}

static void test_joined_device_blocks_until_it_leaves(Fixture *f, gconstpointer data)
{
        g_autoptr(GroupWatchResult) r1 = NULL, r2 = NULL, r3 = NULL;
        g_autofree char *c1 = NULL, *b1 = NULL, *b3 = NULL;
        const GArray *blockers;

        g_hash_table_insert(f->host.groups, "7", "a b x");
        r1 = group_watch_evaluate(f->gw, &f->gwh);
        c1 = change_text(r1);
        g_assert_cmpstr(c1, ==, "7 +1 -0 vms 1;");
        g_assert_cmpstr(((GroupChange *)r1->changes->pdata[0])->added->pdata[0], ==, "x");
        g_assert_cmpuint(r1->vms_changed->len, ==, 1);
        b1 = ids(f->gw);
        g_assert_cmpstr(b1, ==, "group-changed:x");
        blockers = group_watch_blockers(f->gw, "vm1");
        g_assert_nonnull(strstr(g_array_index(blockers, GroupWatchBlocker, 0).message,
                                "device x joined IOMMU group 7, which VM vm1 holds"));

        /* No new change: no signal, no blocker change. */
        r2 = group_watch_evaluate(f->gw, &f->gwh);
        g_assert_cmpuint(r2->changes->len, ==, 0);
        g_assert_cmpuint(r2->vms_changed->len, ==, 0);

        g_hash_table_insert(f->host.groups, "7", "a b");
        r3 = group_watch_evaluate(f->gw, &f->gwh);
        g_assert_cmpuint(((GroupChange *)r3->changes->pdata[0])->removed->len, ==, 1);
        b3 = ids(f->gw);
        g_assert_cmpstr(b3, ==, "");
}

static void test_driver_change_of_a_vm_device(Fixture *f, gconstpointer data)
{
        g_autoptr(GroupWatchResult) r1 = NULL, r2 = NULL, r3 = NULL;
        const GArray *b;

        g_hash_table_insert(f->host.drivers, "b", "e1000e");
        r1 = group_watch_evaluate(f->gw, &f->gwh);
        b = group_watch_blockers(f->gw, "vm1");
        g_assert_nonnull(b);
        g_assert_cmpstr(g_array_index(b, GroupWatchBlocker, 0).id, ==, "group-changed");
        g_assert_nonnull(strstr(g_array_index(b, GroupWatchBlocker, 0).message,
                                "left its VFIO driver vfio-pci for the host driver e1000e"));

        g_hash_table_insert(f->host.drivers, "b", "");
        r2 = group_watch_evaluate(f->gw, &f->gwh);
        b = group_watch_blockers(f->gw, "vm1");
        g_assert_nonnull(strstr(g_array_index(b, GroupWatchBlocker, 0).message,
                                "was unbound from its VFIO driver vfio-pci"));
        g_assert_cmpuint(r2->vms_changed->len, ==, 1);

        g_hash_table_insert(f->host.drivers, "b", "vfio-pci");
        r3 = group_watch_evaluate(f->gw, &f->gwh);
        g_assert_null(group_watch_blockers(f->gw, "vm1"));
}

static void test_removed_device_is_sticky_and_reported_once(Fixture *f, gconstpointer data)
{
        g_autoptr(GroupWatchResult) r1 = NULL, r2 = NULL;
        g_autofree char *b1 = NULL, *b2 = NULL;

        g_hash_table_remove(f->host.drivers, "b");
        g_hash_table_insert(f->host.groups, "7", "a");
        r1 = group_watch_evaluate(f->gw, &f->gwh);
        g_assert_cmpuint(r1->gone->len, ==, 1);
        g_assert_cmpstr(r1->gone->pdata[0], ==, "vm1\tb");
        b1 = ids(f->gw);
        g_assert_cmpstr(b1, ==, "device-removed:b");

        /* It comes back: a new device, the VM still holds the old one. */
        g_hash_table_insert(f->host.drivers, "b", "vfio-pci");
        g_hash_table_insert(f->host.groups, "7", "a b");
        r2 = group_watch_evaluate(f->gw, &f->gwh);
        g_assert_cmpuint(r2->gone->len, ==, 0);
        b2 = ids(f->gw);
        g_assert_cmpstr(b2, ==, "device-removed:b");
}

static void test_reregistering_takes_a_new_baseline(Fixture *f, gconstpointer data)
{
        static const char *const devices[] = {"a", "b", "x"}, *const groups[] = {"7", "7", "7"},
                                 *const drivers[] = {"vfio-pci", "vfio-pci", "vfio-pci"};
        g_autoptr(GroupWatchResult) r1 = NULL, r2 = NULL;

        g_hash_table_insert(f->host.groups, "7", "a b x");
        g_hash_table_insert(f->host.drivers, "x", "vfio-pci");
        r1 = group_watch_evaluate(f->gw, &f->gwh);
        g_assert_nonnull(group_watch_blockers(f->gw, "vm1"));
        group_watch_remove_vm(f->gw, "vm1");
        g_assert_null(group_watch_blockers(f->gw, "vm1"));
        group_watch_add_vm(f->gw, "vm1", devices, groups, drivers, 3, &f->gwh);
        r2 = group_watch_evaluate(f->gw, &f->gwh);
        g_assert_null(group_watch_blockers(f->gw, "vm1"));
        g_assert_cmpuint(r2->changes->len, ==, 0);
}

/* ---- the sim directory watch, on a real directory and a real sd-event loop ---- */

typedef struct DirWatch {
        sd_event *event;
        GPtrArray *bursts; /* char*: each callback's lines joined */
} DirWatch;

static void on_burst(const GPtrArray *what, void *userdata)
{
        DirWatch *w = userdata;
        g_autoptr(GString) s = g_string_new(NULL);

        for (guint i = 0; i < what->len; i++)
                g_string_append_printf(s, "%s%s", i ? "; " : "", (const char *)what->pdata[i]);
        g_ptr_array_add(w->bursts, g_string_free(g_steal_pointer(&s), FALSE));
}

/* Runs the loop for ms milliseconds. */
static void run_for(sd_event *e, unsigned ms)
{
        gint64 end = g_get_monotonic_time() + ms * 1000;

        while (g_get_monotonic_time() < end)
                g_assert_cmpint(sd_event_run(e, 10 * 1000), >=, 0);
}

static void touch(const char *dir, const char *name)
{
        g_autofree char *path = g_build_filename(dir, name, NULL);
        g_assert_true(g_file_set_contents(path, "{}", -1, NULL));
}

static void test_dir_watch_reports_devices_not_rewrites(void)
{
        g_autofree char *dir = g_dir_make_tmp("test-hotplug-XXXXXX", NULL);
        g_autofree char *a = g_build_filename(dir, "a.json", NULL);
        g_autofree char *tmp = g_build_filename(dir, ".a.json.tmp", NULL);
        DirWatch w = {NULL, g_ptr_array_new_with_free_func(g_free)};
        HotplugWatch *hw = NULL;

        touch(dir, "old.json");
        g_assert_cmpint(sd_event_new(&w.event), >=, 0);
        g_assert_cmpint(hotplug_watch_dir(w.event, dir, 50 * 1000, on_burst, &w, &hw), ==, 0);
        g_assert_nonnull(strstr(hotplug_watch_source(hw), "inotify on "));

        /* A burst of two devices: one callback. Lock and temporary files are not devices. */
        touch(dir, "a.json");
        touch(dir, "b.json");
        touch(dir, ".a.lock");
        run_for(w.event, 200);
        g_assert_cmpuint(w.bursts->len, ==, 1);
        g_assert_cmpstr(w.bursts->pdata[0], ==, "sim device a created; sim device b created");

        /* The sim backend's rewrite: a new version swapped in. Not hotplug. */
        touch(dir, ".a.json.tmp");
        g_assert_cmpint(renameat2(AT_FDCWD, tmp, AT_FDCWD, a, RENAME_EXCHANGE), ==, 0);
        g_assert_cmpint(g_rename(tmp, a), ==, 0);
        run_for(w.event, 150);
        g_assert_cmpuint(w.bursts->len, ==, 1);

        /* A device known before the watch started, removed. */
        g_autofree char *old = g_build_filename(dir, "old.json", NULL);
        g_assert_cmpint(g_unlink(old), ==, 0);
        run_for(w.event, 150);
        g_assert_cmpuint(w.bursts->len, ==, 2);
        g_assert_cmpstr(w.bursts->pdata[1], ==, "sim device old removed");

        hotplug_watch_free(hw);
        sd_event_unref(w.event);
        g_ptr_array_unref(w.bursts);
        g_unlink(a);
        g_autofree char *b = g_build_filename(dir, "b.json", NULL);
        g_unlink(b);
        g_autofree char *lock = g_build_filename(dir, ".a.lock", NULL);
        g_unlink(lock);
        g_rmdir(dir);
}

static void test_dir_watch_of_a_missing_dir_fails(void)
{
        sd_event *e = NULL;
        HotplugWatch *hw = NULL;

        g_assert_cmpint(sd_event_new(&e), >=, 0);
        g_assert_cmpint(
            hotplug_watch_dir(e, "/nonexistent/test-hotplug", 1000, on_burst, NULL, &hw), ==,
            -ENOENT);
        g_assert_null(hw);
        sd_event_unref(e);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
#define FIXTURE_TEST(path, fn)                                                                     \
        g_test_add(path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
        FIXTURE_TEST("/group-watch/unchanged-host-reports-nothing",
                     test_unchanged_host_reports_nothing);
        FIXTURE_TEST("/group-watch/joined-device-blocks-until-it-leaves",
                     test_joined_device_blocks_until_it_leaves);
        FIXTURE_TEST("/group-watch/driver-change-of-a-vm-device",
                     test_driver_change_of_a_vm_device);
        FIXTURE_TEST("/group-watch/removed-device-is-sticky-and-reported-once",
                     test_removed_device_is_sticky_and_reported_once);
        FIXTURE_TEST("/group-watch/reregistering-takes-a-new-baseline",
                     test_reregistering_takes_a_new_baseline);
        g_test_add_func("/hotplug/dir-watch-reports-devices-not-rewrites",
                        test_dir_watch_reports_devices_not_rewrites);
        g_test_add_func("/hotplug/dir-watch-of-a-missing-dir-fails",
                        test_dir_watch_of_a_missing_dir_fails);
        return g_test_run();
}
