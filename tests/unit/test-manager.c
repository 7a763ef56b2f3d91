/* test-manager: register, unregister and rescan on the sim backend, and what each reports */
#include <errno.h>
#include <ftw.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "devices/sim.h"
#include "model/manager.h"

#define ALL_FLAGS (MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY)

/* A registry over a sim directory of nic0 and nic1 (peers), and a manager whose events are
 * written to `reported`, one line each, as the bus layer would turn them into signals. */
typedef struct Fixture {
        char *dir;
        sd_event *event;
        Registry *registry;
        Manager manager;
        GString *reported;
} Fixture;

static void on_counts_changed(void *userdata, bool vm_count, bool device_count)
{
        Fixture *f = userdata;

        g_string_append_printf(f->reported, "counts%s%s\n", vm_count ? " vms" : "",
                               device_count ? " devices" : "");
}

static void on_vm_new(void *userdata, Vm *vm)
{
        Fixture *f = userdata;

        g_string_append_printf(f->reported, "new %s (%s)\n", vm_name(vm), vm_origin(vm));
}

static void on_vm_removed(void *userdata, const char *name, const GPtrArray *former_devices,
                          bool devices_changed)
{
        Fixture *f = userdata;

        g_string_append_printf(f->reported, "removed %s:", name);
        for (guint i = 0; i < former_devices->len; i++)
                g_string_append_printf(f->reported, " %s", (char *)former_devices->pdata[i]);
        g_string_append(f->reported, devices_changed ? "; devices changed\n" : "\n");
}

static void on_group_changed(void *userdata, const GroupChange *c)
{
        Fixture *f = userdata;

        g_string_append_printf(f->reported, "group %s +%u -%u\n", c->group, c->added->len,
                               c->removed->len);
}

static void on_vm_blockers_changed(void *userdata, const char *vm)
{
        Fixture *f = userdata;

        g_string_append_printf(f->reported, "blockers %s\n", vm);
}

static const ManagerEvents events = {
    .counts_changed = on_counts_changed,
    .vm_new = on_vm_new,
    .vm_removed = on_vm_removed,
    .group_changed = on_group_changed,
    .vm_blockers_changed = on_vm_blockers_changed,
};

static void create_device(Fixture *f, const char *name)
{
        g_autoptr(GError) error = NULL;
        SimSpec spec = {
            .name = name,
            .vendor_id = 0x15b3,
            .device_id = 0x101e,
            .flags = ALL_FLAGS,
            .p2p_group = "g",
        };

        g_assert_cmpint(sim_device_create(f->dir, &spec, &error), ==, 0);
        g_assert_no_error(error);
}

static void setup(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        Backend *backend = NULL;
        VmOptions defaults;

        f->dir = g_dir_make_tmp("test-manager-XXXXXX", &error);
        g_assert_no_error(error);
        create_device(f, "nic0");
        create_device(f, "nic1");
        g_assert_cmpint(sim_backend_new(f->dir, &backend, &error), ==, 0);
        g_assert_cmpint(sd_event_new(&f->event), >=, 0);
        vm_options_init(&defaults);
        g_assert_cmpint(registry_new(backend, f->event, &defaults, &f->registry), ==, 0);
        g_assert_cmpint(registry_rescan(f->registry, &error), ==, 2);
        /* No Daemon: no journal, as a daemon whose state directory is not in use. */
        manager_init(&f->manager, f->registry, NULL);
        manager_set_events(&f->manager, &events, f);
        f->reported = g_string_new("");
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        return remove(path) < 0 ? -errno : 0;
}

static void teardown(Fixture *f, gconstpointer data)
{
        registry_free(f->registry);
        sd_event_unref(f->event);
        g_assert_cmpint(nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
        g_free(f->dir);
        g_string_free(f->reported, TRUE);
}

static int register_vm(Fixture *f, const char *name, const char *const *devices, GError **error)
{
        return manager_register_vm(&f->manager, name, devices, g_strv_length((char **)devices),
                                   registry_defaults(f->registry), "dbus", NULL, error);
}

static void test_register_reports_the_new_vm(Fixture *f, gconstpointer data)
{
        const char *const devices[] = {"nic0", "nic1", NULL};
        g_autoptr(GError) error = NULL;
        Vm *vm = NULL;

        g_assert_cmpint(manager_register_vm(&f->manager, "vm1", devices, 2,
                                            registry_defaults(f->registry), "libvirt", &vm, &error),
                        ==, 0);
        g_assert_no_error(error);
        g_assert_true(vm == registry_get_vm(f->registry, "vm1"));
        g_assert_cmpstr(vm_origin(vm), ==, "libvirt");
        g_assert_cmpstr(f->reported->str, ==, "new vm1 (libvirt)\n");
}

static void test_register_counts_a_device_found_on_the_way(Fixture *f, gconstpointer data)
{
        const char *const devices[] = {"nic2", NULL};
        g_autoptr(GError) error = NULL;

        create_device(f, "nic2");
        g_assert_cmpint(register_vm(f, "vm2", devices, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpstr(f->reported->str, ==, "counts devices\nnew vm2 (dbus)\n");
}

static void test_register_refused_reports_nothing(Fixture *f, gconstpointer data)
{
        const char *const devices[] = {"nic0", "ghost", NULL};
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(register_vm(f, "vm1", devices, &error), <, 0);
        g_assert_nonnull(error);
        g_assert_nonnull(strstr(error->message, "ghost"));
        g_assert_null(registry_get_vm(f->registry, "vm1"));
        g_assert_cmpstr(f->reported->str, ==, "");
}

static void test_register_twice_is_refused(Fixture *f, gconstpointer data)
{
        const char *const devices[] = {"nic0", NULL};
        const char *const again[] = {"nic1", NULL};
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(register_vm(f, "vm1", devices, &error), ==, 0);
        g_assert_cmpint(register_vm(f, "vm1", again, &error), <, 0);
        g_assert_nonnull(error);
        g_assert_cmpstr(f->reported->str, ==, "new vm1 (dbus)\n");
}

static void test_unregister_reports_the_former_devices(Fixture *f, gconstpointer data)
{
        const char *const devices[] = {"nic0", "nic1", NULL};
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(register_vm(f, "vm1", devices, &error), ==, 0);
        g_string_truncate(f->reported, 0);
        g_assert_cmpint(manager_unregister_vm(&f->manager, "vm1", &error), ==, 0);
        g_assert_no_error(error);
        g_assert_null(registry_get_vm(f->registry, "vm1"));
        g_assert_true(g_str_has_prefix(f->reported->str, "removed vm1: nic0 nic1"));
}

static void test_unregister_unknown_is_refused(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(manager_unregister_vm(&f->manager, "nobody", &error), <, 0);
        g_assert_nonnull(error);
        g_assert_cmpstr(f->reported->str, ==, "");
}

static void test_rescan_reports_only_a_change(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(manager_rescan(&f->manager, &error), ==, 2);
        g_assert_cmpstr(f->reported->str, ==, "");
        create_device(f, "nic2");
        g_assert_cmpint(manager_rescan(&f->manager, &error), ==, 3);
        g_assert_no_error(error);
        g_assert_cmpstr(f->reported->str, ==, "counts devices\n");
}

static void test_host_change_reports_groups_then_vms_then_counts(Fixture *f, gconstpointer data)
{
        g_autoptr(GPtrArray) added = g_ptr_array_new();
        g_autoptr(GPtrArray) removed = g_ptr_array_new();
        g_autoptr(GPtrArray) vms = g_ptr_array_new();
        GroupChange change = {.group = "7", .added = added, .removed = removed, .vms = vms};
        g_autoptr(GPtrArray) changes = g_ptr_array_new();
        g_autoptr(GPtrArray) vms_changed = g_ptr_array_new();
        g_autoptr(GPtrArray) gone = g_ptr_array_new();
        GroupWatchResult result = {.changes = changes, .vms_changed = vms_changed, .gone = gone};

        g_ptr_array_add(added, "nic2");
        g_ptr_array_add(vms, "vm1");
        g_ptr_array_add(changes, &change);
        g_ptr_array_add(vms_changed, "vm1");
        manager_report_host_change(&f->manager, &result, true);
        g_assert_cmpstr(f->reported->str, ==, "group 7 +1 -0\nblockers vm1\ncounts devices\n");
}

static void test_without_events_nothing_is_reported(Fixture *f, gconstpointer data)
{
        const char *const devices[] = {"nic0", NULL};
        g_autoptr(GError) error = NULL;

        manager_set_events(&f->manager, NULL, NULL);
        g_assert_cmpint(register_vm(f, "vm1", devices, &error), ==, 0);
        g_assert_cmpint(manager_unregister_vm(&f->manager, "vm1", &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpstr(f->reported->str, ==, "");
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, setup, fn, teardown)
        ADD("/manager/register/reports-the-new-vm", test_register_reports_the_new_vm);
        ADD("/manager/register/counts-a-device-found-on-the-way",
            test_register_counts_a_device_found_on_the_way);
        ADD("/manager/register/refused-reports-nothing", test_register_refused_reports_nothing);
        ADD("/manager/register/twice-is-refused", test_register_twice_is_refused);
        ADD("/manager/unregister/reports-the-former-devices",
            test_unregister_reports_the_former_devices);
        ADD("/manager/unregister/unknown-is-refused", test_unregister_unknown_is_refused);
        ADD("/manager/rescan/reports-only-a-change", test_rescan_reports_only_a_change);
        ADD("/manager/host-change/reports-groups-then-vms-then-counts",
            test_host_change_reports_groups_then_vms_then_counts);
        ADD("/manager/without-events-nothing-is-reported", test_without_events_nothing_is_reported);
        return g_test_run();
}
