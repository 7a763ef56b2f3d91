/* test-policy: parsing, merging and the migration decision, as docs/policy.md specifies them */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "core/mig-state.h"
#include "core/policy.h"

#define SC  MIG_FLAG_STOP_COPY
#define P2P MIG_FLAG_P2P
#define PC  MIG_FLAG_PRE_COPY

/* Devices with the flag sets of real drivers (shared/reference/vfio-uapi.md). */
static const PolicyDevice mlx5 = {
        .name = "nic0", .address = "0000:3b:00.1", .driver = "mlx5_vfio_pci",
        .vendor_id = 0x15b3, .device_id = 0x101e, .flags = SC | P2P | PC, .iommu_group = "12"};
static const PolicyDevice mlx5b = {
        .name = "nic1", .address = "0000:3b:00.2", .driver = "mlx5_vfio_pci",
        .vendor_id = 0x15b3, .device_id = 0x101e, .flags = SC | P2P | PC, .iommu_group = "13"};
static const PolicyDevice hisi = {
        .name = "acc0", .address = "0000:75:00.1", .driver = "hisi_acc_vfio_pci",
        .vendor_id = 0x19e5, .device_id = 0xa251, .flags = SC | PC, .iommu_group = "20"};
static const PolicyDevice pds = {
        .name = "nvme0", .address = "0000:5e:00.1", .driver = "pds_vfio_pci",
        .vendor_id = 0x1dd8, .device_id = 0x1003, .flags = SC | P2P, .iommu_group = "30"};
static const PolicyDevice vgpu = {
        .name = "vgpu0", .address = "3c1a0e5e-6c0e-4b4e-9f1e-2a0c5b6d7e8f", .driver = "nvidia",
        .vendor_id = 0x10de, .device_id = 0x2236, .flags = SC, .iommu_group = "40"};
static const PolicyDevice plain = {
        .name = "e1000e0", .address = "0000:00:03.0", .driver = "vfio-pci",
        .vendor_id = 0x8086, .device_id = 0x10d3, .flags = 0, .iommu_group = "50"};

static Policy *parse_ok(const char *text)
{
        const char *names[] = {"policy.json"};
        Policy *p = NULL;
        g_autofree char *err = NULL;

        g_assert_cmpint(policy_parse(names, &text, 1, &p, &err), ==, 0);
        g_assert_null(err);
        return p;
}

static char *parse_error(const char *text)
{
        const char *names[] = {"/etc/vfio-migd/policy.json"};
        Policy *p = NULL;
        char *err = NULL;

        g_assert_cmpint(policy_parse(names, &text, 1, &p, &err), ==, -EINVAL);
        g_assert_null(p);
        g_assert_nonnull(err);
        return err;
}

/* The blocker ids of a decision, space-separated, in order. */
static char *blocker_ids(const PolicyDecision *d)
{
        GString *s = g_string_new(NULL);
        for (size_t i = 0; i < d->n_blockers; i++)
                g_string_append_printf(s, "%s%s", i ? " " : "", d->blockers[i].id);
        return g_string_free(s, FALSE);
}

typedef struct EvalCase {
        const char *what;
        const char *policy; /* NULL: built-in defaults */
        const char *vm;
        const PolicyDevice *devices[4];
        const char *blockers; /* expected ids, "" when allowed */
} EvalCase;

static const EvalCase eval_cases[] = {
        {"one device without P2P may migrate alone", NULL, "vm", {&hisi}, ""},
        {"one P2P device", NULL, "vm", {&mlx5}, ""},
        {"several P2P devices under require-p2p", NULL, "vm", {&mlx5, &mlx5b, &pds}, ""},
        {"a device without P2P among several under require-p2p", NULL, "vm", {&mlx5, &hisi}, "no-p2p"},
        {"vGPU without P2P beside a NIC", NULL, "vm", {&vgpu, &mlx5}, "no-p2p"},
        {"p2p-blocked lets devices without P2P join", "{\"defaults\":{\"mode\":\"p2p-blocked\"}}", "vm",
         {&mlx5, &hisi, &vgpu}, ""},
        {"a device without migration support", NULL, "vm", {&plain}, "no-migration"},
        {"no migration support is reported once, not also as no-p2p", NULL, "vm", {&mlx5, &plain},
         "no-migration"},
        {"single-only refuses several devices", "{\"defaults\":{\"mode\":\"single-only\"}}", "vm",
         {&mlx5, &mlx5b}, "single-only"},
        {"single-only allows one", "{\"defaults\":{\"mode\":\"single-only\"}}", "vm", {&mlx5}, ""},
        {"deny refuses everything", "{\"defaults\":{\"mode\":\"deny\"}}", "vm", {&mlx5}, "mode-deny"},
        {"a VM denied by name", "{\"vms\":[{\"match\":\"db-*\",\"migratable\":false}]}", "db-1",
         {&mlx5}, "vm-denied"},
        {"a VM glob that does not match", "{\"vms\":[{\"match\":\"db-*\",\"migratable\":false}]}",
         "web-1", {&mlx5}, ""},
        {"a device denied by driver", "{\"devices\":[{\"match\":{\"driver\":\"pds_*\"},\"migratable\":false}]}",
         "vm", {&mlx5, &pds}, "device-denied"},
        {"a device denied by id", "{\"devices\":[{\"match\":{\"id\":\"15b3:*\"},\"migratable\":false}]}",
         "vm", {&mlx5, &mlx5b, &pds}, "device-denied device-denied"},
        {"a device denied by address", "{\"devices\":[{\"match\":{\"address\":\"0000:3b:00.2\"},\"migratable\":false}]}",
         "vm", {&mlx5, &mlx5b}, "device-denied"},
        {"all match keys must match", "{\"devices\":[{\"match\":{\"driver\":\"mlx5_vfio_pci\",\"id\":\"15b3:0000\"},\"migratable\":false}]}",
         "vm", {&mlx5}, ""},
        {"a later entry re-allows a device", "{\"devices\":[{\"match\":{\"driver\":\"*\"},\"migratable\":false},"
                                             "{\"match\":{\"driver\":\"mlx5*\"},\"migratable\":true}]}",
         "vm", {&mlx5, &pds}, "device-denied"},
        {"a VM entry sets p2p-blocked for one VM only", "{\"vms\":[{\"match\":\"legacy-?\",\"mode\":\"p2p-blocked\"}]}",
         "legacy-1", {&mlx5, &hisi}, ""},
        {"several blockers are all reported", "{\"defaults\":{\"mode\":\"deny\"},\"vms\":[{\"match\":\"*\",\"migratable\":false}]}",
         "vm", {&plain}, "vm-denied mode-deny no-migration"},
};

static void test_evaluate_table(void)
{
        for (size_t i = 0; i < G_N_ELEMENTS(eval_cases); i++) {
                const EvalCase *c = &eval_cases[i];
                g_autoptr(GArray) devs = g_array_new(FALSE, FALSE, sizeof(PolicyDevice));
                Policy *p = c->policy ? parse_ok(c->policy) : policy_new_default();
                PolicyDecision *d = NULL;
                g_autofree char *ids = NULL;

                for (size_t j = 0; j < G_N_ELEMENTS(c->devices) && c->devices[j]; j++)
                        g_array_append_val(devs, *c->devices[j]);
                g_assert_cmpint(policy_evaluate(p, NULL, NULL, c->vm, (PolicyDevice *)devs->data, devs->len, &d),
                                ==, 0);
                ids = blocker_ids(d);
                if (strcmp(ids, c->blockers) != 0)
                        g_error("case '%s': expected blockers '%s', got '%s'", c->what, c->blockers, ids);
                g_assert_cmpint(d->allowed, ==, c->blockers[0] == '\0');
                policy_decision_free(d);
                policy_free(p);
        }
}

static void test_group_blockers(void)
{
        PolicyDevice a = mlx5, b = mlx5b;
        Policy *p = policy_new_default();
        PolicyDecision *d = NULL;
        PolicyDevice devs[2];

        a.group_claimed_by = "other-vm";
        b.group_outside_member = "0000:3b:00.3";
        devs[0] = a;
        devs[1] = b;
        g_assert_cmpint(policy_evaluate(p, NULL, NULL, "vm", devs, 2, &d), ==, 0);
        g_assert_false(d->allowed);
        g_assert_cmpuint(d->n_blockers, ==, 2);
        g_assert_cmpstr(d->blockers[0].id, ==, "group-shared");
        g_assert_cmpstr(d->blockers[0].message, ==,
                        "device 'nic0' is in IOMMU group 12, which VM 'other-vm' also holds; one "
                        "IOMMU group cannot belong to two VMs");
        g_assert_cmpstr(d->blockers[1].id, ==, "partial-group");
        g_assert_cmpstr(d->blockers[1].device, ==, "nic1");
        g_assert_cmpstr(d->blockers[1].message, ==,
                        "device 'nic1' shares IOMMU group 13 with '0000:3b:00.3', which is not in "
                        "VM 'vm'; register every device of the group with the VM");
        policy_decision_free(d);
        policy_free(p);
}

static void test_no_p2p_message_names_device_and_rule(void)
{
        PolicyDevice devs[] = {mlx5, hisi};
        Policy *p = policy_new_default();
        PolicyDecision *d = NULL;

        g_assert_cmpint(policy_evaluate(p, NULL, NULL, "web1", devs, 2, &d), ==, 0);
        g_assert_cmpuint(d->n_blockers, ==, 1);
        g_assert_cmpstr(d->blockers[0].device, ==, "acc0");
        g_assert_cmpstr(d->blockers[0].message, ==,
                        "device 'acc0' (hisi_acc_vfio_pci, flags STOP_COPY|PRE_COPY) cannot do the "
                        "P2P quiesce; VM 'web1' has 2 devices and mode require-p2p: use devices "
                        "with P2P, or set mode p2p-blocked if the VM's IOMMU context has no P2P "
                        "mappings");
        policy_decision_free(d);
        policy_free(p);
}

static void test_merge_order_later_files_win(void)
{
        const char *names[] = {"policy.json", "policy.d/10-site.json", "policy.d/20-rack.json"};
        const char *texts[] = {
                ("{\"defaults\":{\"mode\":\"deny\",\"phase-deadline-ms\":5000,\"parallelism\":4,"
                 "\"after-crash\":\"finish\",\"hook-daemon-unavailable\":\"fail-open\"}}"),
                /* Parenthesized: one string split over two lines, not a missing comma. */
                ("{\"defaults\":{\"mode\":\"require-p2p\"},"
                 " \"vms\":[{\"match\":\"web-*\",\"phase-deadline-ms\":2000,\"strategy\":\"qemu\"}]}"),
                ("{\"vms\":[{\"match\":\"web-1\",\"phase-deadline-ms\":1000,\"on-failure\":\"reset\","
                 "\"hook-daemon-unavailable\":\"fail-closed\",\"on-start-unmigratable\":\"refuse\"}]}"),
        };
        Policy *p = NULL;
        PolicyDecision *d = NULL;
        g_autofree char *err = NULL;

        g_assert_cmpint(policy_parse(names, texts, 3, &p, &err), ==, 0);
        g_assert_cmpint(policy_evaluate(p, NULL, NULL, "web-1", &mlx5, 1, &d), ==, 0);
        g_assert_true(d->allowed);
        g_assert_cmpint(d->settings.mode, ==, POLICY_MODE_REQUIRE_P2P);
        g_assert_cmpuint(d->settings.phase_deadline_ms, ==, 1000);
        g_assert_cmpuint(d->settings.parallelism, ==, 4);
        g_assert_cmpint(d->settings.strategy, ==, PLAN_STRATEGY_QEMU);
        g_assert_cmpint(d->settings.on_failure, ==, POLICY_ON_FAILURE_RESET);
        g_assert_cmpint(d->settings.after_crash, ==, POLICY_AFTER_CRASH_FINISH);
        g_assert_cmpint(d->settings.hook_daemon_unavailable, ==, POLICY_HOOK_FAIL_CLOSED);
        g_assert_cmpint(d->settings.on_start_unmigratable, ==, POLICY_START_REFUSE);
        g_assert_cmpuint(g_strv_length(d->matched), ==, 2);
        g_assert_cmpstr(d->matched[0], ==, "policy.d/10-site.json: vms[0] (match \"web-*\")");
        g_assert_cmpstr(d->matched[1], ==, "policy.d/20-rack.json: vms[0] (match \"web-1\")");
        /* Each setting names the entry that set it last. */
        g_assert_cmpstr(d->sources.mode, ==, "policy.d/10-site.json: defaults");
        g_assert_cmpstr(d->sources.parallelism, ==, "policy.json: defaults");
        g_assert_cmpstr(d->sources.strategy, ==, "policy.d/10-site.json: vms[0]");
        g_assert_cmpstr(d->sources.phase_deadline_ms, ==, "policy.d/20-rack.json: vms[0]");
        g_assert_cmpstr(d->sources.on_start_unmigratable, ==, "policy.d/20-rack.json: vms[0]");
        policy_decision_free(d);

        /* The p2p override of a VM's registration is its own source; unset ones have none. */
        {
                const enum policy_mode blocked = POLICY_MODE_P2P_BLOCKED;
                g_autoptr(Policy) empty = parse_ok("{}");
                g_assert_cmpint(policy_evaluate(empty, NULL, &blocked, "web-1", &mlx5, 1, &d), ==,
                                0);
                g_assert_cmpstr(d->sources.mode, ==, "VM registration");
                g_assert_null(d->sources.phase_deadline_ms);
                policy_decision_free(d);
        }

        /* Another VM sees only the defaults. */
        g_assert_cmpint(policy_evaluate(p, NULL, NULL, "db-1", &mlx5, 1, &d), ==, 0);
        g_assert_cmpuint(d->settings.phase_deadline_ms, ==, 5000);
        g_assert_cmpint(d->settings.strategy, ==, PLAN_STRATEGY_PARALLEL);
        g_assert_cmpuint(g_strv_length(d->matched), ==, 0);
        policy_decision_free(d);
        policy_free(p);
}

/* Every strategy by name; "serial", naive's old name, still reads (docs/policy.md). */
static void test_strategy_names(void)
{
        static const struct {
                const char *name;
                enum plan_strategy strategy;
        } rows[] = {{"parallel", PLAN_STRATEGY_PARALLEL},
                    {"qemu", PLAN_STRATEGY_QEMU},
                    {"naive", PLAN_STRATEGY_NAIVE},
                    {"serial", PLAN_STRATEGY_NAIVE}};

        for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
                g_autofree char *text =
                    g_strdup_printf("{\"defaults\":{\"strategy\":\"%s\"}}", rows[i].name);
                const char *names[] = {"policy.json"};
                const char *texts[] = {text};
                Policy *p = NULL;
                PolicyDecision *d = NULL;
                g_autofree char *err = NULL;

                g_assert_cmpint(policy_parse(names, texts, 1, &p, &err), ==, 0);
                g_assert_null(err);
                g_assert_cmpint(policy_evaluate(p, NULL, NULL, "vm", &mlx5, 1, &d), ==, 0);
                g_assert_cmpint(d->settings.strategy, ==, rows[i].strategy);
                policy_decision_free(d);
                policy_free(p);
        }
}

static void test_builtin_defaults(void)
{
        Policy *p = policy_new_default();
        PolicyDecision *d = NULL;

        g_assert_cmpint(policy_evaluate(p, NULL, NULL, "vm", &mlx5, 1, &d), ==, 0);
        g_assert_cmpint(d->settings.mode, ==, POLICY_MODE_REQUIRE_P2P);
        g_assert_cmpuint(d->settings.phase_deadline_ms, ==, 10000);
        g_assert_cmpuint(d->settings.parallelism, ==, 0);
        g_assert_cmpint(d->settings.on_failure, ==, POLICY_ON_FAILURE_ROLLBACK);
        g_assert_cmpint(d->settings.strategy, ==, PLAN_STRATEGY_PARALLEL);
        /* several GiB: real devices' state fits */
        g_assert_cmpuint(d->settings.max_device_state_bytes, ==, UINT64_C(32) << 30);
        policy_decision_free(d);
        policy_free(p);
}

/* max-device-state-bytes: a default, overridden per VM like every setting. */
static void test_max_device_state_bytes_per_vm(void)
{
        const char *names[] = {"policy.json"};
        const char *texts[] = {("{\"defaults\":{\"max-device-state-bytes\":1073741824},"
                                " \"vms\":[{\"match\":\"small-*\",\"max-device-state-bytes\":4096}]}")};
        Policy *p = NULL;
        PolicyDecision *d = NULL;
        g_autofree char *err = NULL;

        g_assert_cmpint(policy_parse(names, texts, 1, &p, &err), ==, 0);
        g_assert_cmpint(policy_evaluate(p, NULL, NULL, "small-1", &mlx5, 1, &d), ==, 0);
        g_assert_cmpuint(d->settings.max_device_state_bytes, ==, 4096);
        policy_decision_free(d);
        g_assert_cmpint(policy_evaluate(p, NULL, NULL, "big-1", &mlx5, 1, &d), ==, 0);
        g_assert_cmpuint(d->settings.max_device_state_bytes, ==, 1073741824);
        policy_decision_free(d);
        policy_free(p);
}

typedef struct BadCase {
        const char *what, *text, *error;
} BadCase;

static const BadCase bad_cases[] = {
        {"bad JSON", "{\"defaults\": {\"mode\": \"deny\",}}",
         "/etc/vfio-migd/policy.json:1:30: not valid JSON: string or '}' expected near '}'"},
        {"not an object", "[1, 2]",
         "/etc/vfio-migd/policy.json:1:1: the top level must be an object, not an array"},
        {"unknown top-level key", "{\n  \"default\": {}\n}",
         "/etc/vfio-migd/policy.json:2:3: unknown key \"default\" in the top level; known keys "
         "are: $schema, defaults, vms, devices, comment"},
        {"unknown key in a VM entry", "{\"vms\": [\n {\"match\": \"a\"},\n {\"match\": \"b\", \"mod\": \"deny\"}]}",
         "/etc/vfio-migd/policy.json:3:17: unknown key \"mod\" in vms[1]; known keys are: match, "
         "mode, phase-deadline-ms, parallelism, on-failure, strategy, after-crash, "
         "hook-daemon-unavailable, on-start-unmigratable, max-device-state-bytes, migratable, "
         "reason, comment"},
        {"wrong type", "{\"defaults\": {\"phase-deadline-ms\": \"10s\"}}",
         "/etc/vfio-migd/policy.json:1:36: defaults.phase-deadline-ms must be an integer, not a string"},
        {"out of range", "{\"defaults\": {\"phase-deadline-ms\": 0}}",
         "/etc/vfio-migd/policy.json:1:36: defaults.phase-deadline-ms is 0; it must be between 1 "
         "and 3600000"},
        {"unknown mode", "{\"defaults\": {\"mode\": \"p2p-maybe\"}}",
         "/etc/vfio-migd/policy.json:1:23: defaults.mode is \"p2p-maybe\"; it must be one of "
         "require-p2p, p2p-blocked, single-only, deny"},
        {"unknown strategy", "{\"defaults\": {\"strategy\": \"qemu-7\"}}",
         "/etc/vfio-migd/policy.json:1:27: defaults.strategy is \"qemu-7\"; it must be one of "
         "parallel, qemu, naive"},
        {"unknown after-crash", "{\"defaults\": {\"after-crash\": \"resume\"}}",
         "/etc/vfio-migd/policy.json:1:30: defaults.after-crash is \"resume\"; it must be one of "
         "rollback, finish"},
        {"hook setting not a string", "{\"defaults\": {\"hook-daemon-unavailable\": true}}",
         "/etc/vfio-migd/policy.json:1:42: defaults.hook-daemon-unavailable must be a string, not a "
         "boolean"},
        {"unknown on-start-unmigratable", "{\"vms\": [{\"match\": \"a\", \"on-start-unmigratable\": \"no\"}]}",
         "/etc/vfio-migd/policy.json:1:50: vms[0].on-start-unmigratable is \"no\"; it must be one of "
         "allow, refuse"},
        {"device state limit zero", "{\"defaults\": {\"max-device-state-bytes\": 0}}",
         "/etc/vfio-migd/policy.json:1:41: defaults.max-device-state-bytes is 0; it must be "
         "between 1 and 1099511627776 bytes"},
        {"device state limit not a number", "{\"vms\": [{\"match\": \"a\", \"max-device-state-bytes\": \"8G\"}]}",
         "/etc/vfio-migd/policy.json:1:51: vms[0].max-device-state-bytes must be an integer, not a "
         "string"},
        {"bad glob", "{\"vms\": [{\"match\": \"web-[0-9\"}]}",
         "/etc/vfio-migd/policy.json:1:20: vms[0].match: the glob \"web-[0-9\" has a '[' without "
         "its closing ']'"},
        {"empty glob", "{\"vms\": [{\"match\": \"\"}]}",
         "/etc/vfio-migd/policy.json:1:20: vms[0].match: the glob \"\" is empty"},
        {"VM entry without match", "{\"vms\": [{\"mode\": \"deny\"}]}",
         "/etc/vfio-migd/policy.json:1:10: vms[0] has no \"match\": give a glob on the VM name, "
         "e.g. \"web-*\""},
        {"bad PCI id", "{\"devices\": [{\"match\": {\"id\": \"15b3-101e\"}, \"migratable\": false}]}",
         "/etc/vfio-migd/policy.json:1:31: devices[0].match.id is \"15b3-101e\"; write the PCI id "
         "as vendor:device in hex, e.g. \"15b3:101e\" or \"15b3:*\""},
        {"empty device match", "{\"devices\": [{\"match\": {}}]}",
         "/etc/vfio-migd/policy.json:1:24: devices[0].match is empty: match on \"driver\", \"id\" "
         "or \"address\""},
        {"migratable not boolean", "{\"devices\": [{\"match\": {\"driver\": \"x\"}, \"migratable\": \"no\"}]}",
         "/etc/vfio-migd/policy.json:1:55: devices[0].migratable must be true or false, not a string"},
        {"duplicate key", "{\"defaults\": {}, \"defaults\": {}}",
         "/etc/vfio-migd/policy.json:1:27: not valid JSON: duplicate object key near '\"defaults\"'"},
        {"vms not an array", "{\"vms\": {\"match\": \"a\"}}",
         "/etc/vfio-migd/policy.json:1:9: vms must be an array, not an object"},
};

static void test_bad_files_exact_errors(void)
{
        for (size_t i = 0; i < G_N_ELEMENTS(bad_cases); i++) {
                g_autofree char *err = parse_error(bad_cases[i].text);
                if (strcmp(err, bad_cases[i].error) != 0)
                        g_error("case '%s':\n expected: %s\n got:      %s", bad_cases[i].what,
                                bad_cases[i].error, err);
        }
}

static void test_error_in_second_file_rejects_all(void)
{
        const char *names[] = {"a.json", "b.json"};
        const char *texts[] = {"{\"defaults\":{\"mode\":\"deny\"}}", "{\"vms\": 3}"};
        Policy *p = NULL;
        g_autofree char *err = NULL;

        g_assert_cmpint(policy_parse(names, texts, 2, &p, &err), ==, -EINVAL);
        g_assert_null(p);
        g_assert_cmpstr(err, ==, "b.json:1:9: vms must be an array, not an integer");
}

static void test_comments_are_allowed_everywhere(void)
{
        Policy *p = parse_ok("{\"comment\": \"site policy\", \"defaults\": {\"comment\": \"x\"},"
                             " \"vms\": [{\"match\": \"*\", \"comment\": \"all\"}],"
                             " \"devices\": [{\"match\": {\"driver\": \"x\"}, \"comment\": \"y\"}]}");
        g_assert_cmpuint(policy_n_files(p), ==, 1);
        policy_free(p);
}

static void test_shipped_examples_parse(void)
{
        g_autoptr(GDir) dir = g_dir_open(POLICY_DIR, 0, NULL);
        const char *name;
        unsigned n = 0;

        g_assert_nonnull(dir);
        while ((name = g_dir_read_name(dir))) {
                g_autofree char *path = NULL, *text = NULL, *err = NULL;
                const char *texts[1];
                Policy *p = NULL;

                if (!g_str_has_suffix(name, ".json") || strcmp(name, "schema.json") == 0)
                        continue;
                path = g_build_filename(POLICY_DIR, name, NULL);
                g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
                texts[0] = text;
                if (policy_parse((const char *const *)&path, texts, 1, &p, &err) < 0)
                        g_error("%s", err);
                policy_free(p);
                n++;
        }
        g_assert_cmpuint(n, >=, 2);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/policy/evaluate-table", test_evaluate_table);
        g_test_add_func("/policy/group-blockers", test_group_blockers);
        g_test_add_func("/policy/no-p2p-message", test_no_p2p_message_names_device_and_rule);
        g_test_add_func("/policy/merge-order", test_merge_order_later_files_win);
        g_test_add_func("/policy/strategy-names", test_strategy_names);
        g_test_add_func("/policy/builtin-defaults", test_builtin_defaults);
        g_test_add_func("/policy/max-device-state-bytes-per-vm", test_max_device_state_bytes_per_vm);
        g_test_add_func("/policy/bad-files-exact-errors", test_bad_files_exact_errors);
        g_test_add_func("/policy/error-in-second-file-rejects-all", test_error_in_second_file_rejects_all);
        g_test_add_func("/policy/comments-allowed", test_comments_are_allowed_everywhere);
        g_test_add_func("/policy/shipped-examples-parse", test_shipped_examples_parse);
        return g_test_run();
}
