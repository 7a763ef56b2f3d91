/* policy: operator policy files, parsed and merged, and the migration decision for a VM */
#include "policy.h"

#include <errno.h>
#include <fnmatch.h>
#include <glib.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/json-locate.h"
#include "core/mig-state.h"

#define DEADLINE_MAX_MS 3600000u
#define PARALLELISM_MAX 256u

/* A set of settings where each key may or may not be given. */
typedef struct SettingsPatch {
        bool has_mode, has_deadline, has_parallelism, has_on_failure, has_strategy;
        bool has_after_crash, has_hook_unavailable, has_start_unmigratable;
        bool has_max_device_state;
        PolicySettings v;
} SettingsPatch;

typedef struct VmEntry {
        size_t file, index;
        char *match;
        SettingsPatch patch;
        bool has_migratable, migratable;
        char *reason;
} VmEntry;

typedef struct DeviceEntry {
        size_t file, index;
        char *driver, *address; /* globs, NULL: any */
        int vendor, device;     /* -1: any */
        bool has_migratable, migratable;
        char *reason;
} DeviceEntry;

struct Policy {
        GPtrArray *files;    /* char* names */
        GArray *defaults;    /* SettingsPatch per file */
        GPtrArray *vms;      /* VmEntry* */
        GPtrArray *devices;  /* DeviceEntry* */
};

static const PolicySettings builtin_defaults = {
        .mode = POLICY_MODE_REQUIRE_P2P,
        .phase_deadline_ms = 10000,
        .parallelism = 0,
        .on_failure = POLICY_ON_FAILURE_ROLLBACK,
        .strategy = PLAN_STRATEGY_PARALLEL,
        .after_crash = POLICY_AFTER_CRASH_ROLLBACK,
        .hook_daemon_unavailable = POLICY_HOOK_FAIL_OPEN,
        .on_start_unmigratable = POLICY_START_ALLOW,
        .max_device_state_bytes = POLICY_MAX_DEVICE_STATE_DEFAULT,
};

static const char *const mode_names[] = {
        [POLICY_MODE_REQUIRE_P2P] = "require-p2p",
        [POLICY_MODE_P2P_BLOCKED] = "p2p-blocked",
        [POLICY_MODE_SINGLE_ONLY] = "single-only",
        [POLICY_MODE_DENY] = "deny",
};

static const char *const on_failure_names[] = {
        [POLICY_ON_FAILURE_ROLLBACK] = "rollback",
        [POLICY_ON_FAILURE_RESET] = "reset",
};

static const char *const after_crash_names[] = {
        [POLICY_AFTER_CRASH_ROLLBACK] = "rollback",
        [POLICY_AFTER_CRASH_FINISH] = "finish",
};

static const char *const hook_unavailable_names[] = {
        [POLICY_HOOK_FAIL_OPEN] = "fail-open",
        [POLICY_HOOK_FAIL_CLOSED] = "fail-closed",
};

static const char *const start_unmigratable_names[] = {
        [POLICY_START_ALLOW] = "allow",
        [POLICY_START_REFUSE] = "refuse",
};

/* The index of s in names[0..n), or -EINVAL. */
static int name_index(const char *const *names, size_t n, const char *s)
{
        for (size_t i = 0; s && i < n; i++)
                if (strcmp(s, names[i]) == 0)
                        return (int)i;
        return -EINVAL;
}

const char *policy_after_crash_to_string(enum policy_after_crash a)
{
        return (unsigned)a < G_N_ELEMENTS(after_crash_names) ? after_crash_names[a] : "invalid";
}

const char *policy_hook_unavailable_to_string(enum policy_hook_unavailable h)
{
        return (unsigned)h < G_N_ELEMENTS(hook_unavailable_names) ? hook_unavailable_names[h]
                                                                  : "invalid";
}

const char *policy_start_unmigratable_to_string(enum policy_start_unmigratable v)
{
        return (unsigned)v < G_N_ELEMENTS(start_unmigratable_names) ? start_unmigratable_names[v]
                                                                    : "invalid";
}

const char *policy_mode_to_string(enum policy_mode m)
{
        return (unsigned)m < G_N_ELEMENTS(mode_names) ? mode_names[m] : "invalid";
}

int policy_mode_from_string(const char *s, enum policy_mode *ret)
{
        for (unsigned i = 0; i < G_N_ELEMENTS(mode_names); i++)
                if (s && strcmp(s, mode_names[i]) == 0) {
                        *ret = (enum policy_mode)i;
                        return 0;
                }
        return -EINVAL;
}

const char *policy_on_failure_to_string(enum policy_on_failure f)
{
        return (unsigned)f < G_N_ELEMENTS(on_failure_names) ? on_failure_names[f] : "invalid";
}

static int on_failure_from_string(const char *s, enum policy_on_failure *ret)
{
        for (unsigned i = 0; i < G_N_ELEMENTS(on_failure_names); i++)
                if (strcmp(s, on_failure_names[i]) == 0) {
                        *ret = (enum policy_on_failure)i;
                        return 0;
                }
        return -EINVAL;
}

enum plan_p2p_mode policy_mode_to_plan(enum policy_mode m)
{
        return m == POLICY_MODE_P2P_BLOCKED ? PLAN_P2P_BLOCKED : PLAN_P2P_REQUIRE;
}

static void vm_entry_free(gpointer p)
{
        VmEntry *e = p;
        g_free(e->match);
        g_free(e->reason);
        g_free(e);
}

static void device_entry_free(gpointer p)
{
        DeviceEntry *e = p;
        g_free(e->driver);
        g_free(e->address);
        g_free(e->reason);
        g_free(e);
}

static Policy *policy_alloc(void)
{
        Policy *p = g_new0(Policy, 1);
        p->files = g_ptr_array_new_with_free_func(g_free);
        p->defaults = g_array_new(FALSE, TRUE, sizeof(SettingsPatch));
        p->vms = g_ptr_array_new_with_free_func(vm_entry_free);
        p->devices = g_ptr_array_new_with_free_func(device_entry_free);
        return p;
}

Policy *policy_new_default(void)
{
        return policy_alloc();
}

void policy_free(Policy *p)
{
        if (!p)
                return;
        g_ptr_array_unref(p->files);
        g_array_unref(p->defaults);
        g_ptr_array_unref(p->vms);
        g_ptr_array_unref(p->devices);
        g_free(p);
}

size_t policy_n_files(const Policy *p)
{
        return p->files->len;
}

const char *policy_file_name(const Policy *p, size_t i)
{
        return i < p->files->len ? g_ptr_array_index(p->files, i) : NULL;
}

/* ---- parsing ---- */

#define PATH_MAX_DEPTH 4

typedef struct ParseCtx {
        const char *name, *text;
        size_t len;
        JsonPathElem path[PATH_MAX_DEPTH];
        size_t depth;
        char **ret_error;
} ParseCtx;

static void path_push_key(ParseCtx *c, const char *key)
{
        g_assert(c->depth < PATH_MAX_DEPTH);
        c->path[c->depth++] = (JsonPathElem){.key = key};
}

static void path_push_index(ParseCtx *c, size_t i)
{
        g_assert(c->depth < PATH_MAX_DEPTH);
        c->path[c->depth++] = (JsonPathElem){.index = i};
}

static void path_pop(ParseCtx *c)
{
        c->depth--;
}

/* "vms[1].mode" for the current path. */
static char *path_string(const ParseCtx *c)
{
        GString *s = g_string_new(NULL);
        for (size_t i = 0; i < c->depth; i++) {
                if (c->path[i].key)
                        g_string_append_printf(s, "%s%s", s->len ? "." : "", c->path[i].key);
                else
                        g_string_append_printf(s, "[%zu]", c->path[i].index);
        }
        if (s->len == 0)
                g_string_append(s, "the top level");
        return g_string_free(s, FALSE);
}

static int G_GNUC_PRINTF(3, 0) fail_va(ParseCtx *c, bool at_key, const char *fmt, va_list ap)
{
        unsigned line, column;
        g_autofree char *msg = g_strdup_vprintf(fmt, ap);

        json_locate(c->text, c->len, c->path, c->depth, at_key, &line, &column);
        *c->ret_error = g_strdup_printf("%s:%u:%u: %s", c->name, line, column, msg);
        return -EINVAL;
}

/* An error about the value at the current path. */
static int G_GNUC_PRINTF(2, 3) fail(ParseCtx *c, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = fail_va(c, false, fmt, ap);
        va_end(ap);
        return r;
}

/* An error about the key that ends the current path. */
static int G_GNUC_PRINTF(2, 3) fail_at_key(ParseCtx *c, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = fail_va(c, true, fmt, ap);
        va_end(ap);
        return r;
}

static const char *json_type_name(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
                return "an integer";
        case JSON_REAL:
                return "a number with a fraction";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a boolean";
        default:
                return "null";
        }
}

static int expect_type(ParseCtx *c, const json_t *v, json_type type, const char *what)
{
        g_autofree char *where = NULL;

        if (json_typeof(v) == type || (type == JSON_TRUE && json_is_boolean(v)))
                return 0;
        where = path_string(c);
        return fail(c, "%s must be %s, not %s", where, what, json_type_name(v));
}

/* Checks that every key of obj is one of known (NULL-terminated); "comment" is always allowed. */
static int check_keys(ParseCtx *c, json_t *obj, const char *const *known)
{
        const char *key;
        json_t *v;

        json_object_foreach(obj, key, v) {
                bool ok = strcmp(key, "comment") == 0;
                for (const char *const *k = known; *k && !ok; k++)
                        ok = strcmp(key, *k) == 0;
                if (!ok) {
                        g_autofree char *where = path_string(c);
                        g_autofree char *list = g_strjoinv(", ", (char **)known);
                        int r;
                        path_push_key(c, key);
                        r = fail_at_key(c, "unknown key \"%s\" in %s; known keys are: %s, comment", key,
                                 where, list);
                        path_pop(c);
                        return r;
                }
        }
        return 0;
}

/* fnmatch(3) does not validate patterns; refuse the ones it would silently mistreat. */
static bool glob_valid(const char *g, const char **why)
{
        if (!*g) {
                *why = "is empty";
                return false;
        }
        for (const char *p = g; *p; p++) {
                if (*p == '\\') {
                        if (!p[1]) {
                                *why = "ends in a lone backslash";
                                return false;
                        }
                        p++;
                } else if (*p == '[') {
                        const char *q = p + 1;
                        if (*q == '!' || *q == '^')
                                q++;
                        if (*q == ']')
                                q++;
                        while (*q && *q != ']')
                                q++;
                        if (!*q) {
                                *why = "has a '[' without its closing ']'";
                                return false;
                        }
                        p = q;
                }
        }
        return true;
}

static int parse_glob(ParseCtx *c, json_t *v, char **ret)
{
        const char *why;
        int r = expect_type(c, v, JSON_STRING, "a glob string");

        if (r < 0)
                return r;
        if (!glob_valid(json_string_value(v), &why)) {
                g_autofree char *where = path_string(c);
                return fail(c, "%s: the glob \"%s\" %s", where, json_string_value(v), why);
        }
        *ret = g_strdup(json_string_value(v));
        return 0;
}

static int parse_uint(ParseCtx *c, json_t *v, uint32_t min, uint32_t max, uint32_t *ret)
{
        int r = expect_type(c, v, JSON_INTEGER, "an integer");
        json_int_t i;

        if (r < 0)
                return r;
        i = json_integer_value(v);
        if (i < (json_int_t)min || i > (json_int_t)max) {
                g_autofree char *where = path_string(c);
                return fail(c, "%s is %lld; it must be between %u and %u", where, (long long)i,
                            min, max);
        }
        *ret = (uint32_t)i;
        return 0;
}

static int parse_u64(ParseCtx *c, json_t *v, uint64_t min, uint64_t max, uint64_t *ret)
{
        int r = expect_type(c, v, JSON_INTEGER, "an integer");
        json_int_t i;

        if (r < 0)
                return r;
        i = json_integer_value(v);
        if (i < 0 || (uint64_t)i < min || (uint64_t)i > max) {
                g_autofree char *where = path_string(c);
                return fail(c,
                            "%s is %lld; it must be between %" G_GUINT64_FORMAT
                            " and %" G_GUINT64_FORMAT " bytes",
                            where, (long long)i, min, max);
        }
        *ret = (uint64_t)i;
        return 0;
}

static int parse_enum_string(ParseCtx *c, json_t *v, const char *choices, int r_parse)
{
        g_autofree char *where = path_string(c);
        return r_parse < 0 ? fail(c, "%s is \"%s\"; it must be one of %s", where,
                                  json_string_value(v), choices)
                           : 0;
}

/* key, when obj has it: a string among names[0..n); *has and *ret set. */
static int parse_named(ParseCtx *c, json_t *obj, const char *key, const char *const *names,
                       size_t n, const char *choices, bool *has, int *ret)
{
        json_t *v = json_object_get(obj, key);
        int r;

        if (!v)
                return 0;
        path_push_key(c, key);
        r = expect_type(c, v, JSON_STRING, "a string");
        if (r == 0) {
                *ret = name_index(names, n, json_string_value(v));
                r = parse_enum_string(c, v, choices, *ret);
        }
        path_pop(c);
        if (r < 0)
                return r;
        *has = true;
        return 0;
}

/* Parses the settings keys present in obj into patch; other keys are left to the caller. */
static int parse_settings(ParseCtx *c, json_t *obj, SettingsPatch *patch)
{
        json_t *v;
        int i = 0;
        int r = 0;

        if ((v = json_object_get(obj, "mode"))) {
                path_push_key(c, "mode");
                r = expect_type(c, v, JSON_STRING, "a string");
                if (r == 0)
                        r = parse_enum_string(c, v, "require-p2p, p2p-blocked, single-only, deny",
                                              policy_mode_from_string(json_string_value(v),
                                                                      &patch->v.mode));
                path_pop(c);
                if (r < 0)
                        return r;
                patch->has_mode = true;
        }
        if ((v = json_object_get(obj, "phase-deadline-ms"))) {
                path_push_key(c, "phase-deadline-ms");
                r = parse_uint(c, v, 1, DEADLINE_MAX_MS, &patch->v.phase_deadline_ms);
                path_pop(c);
                if (r < 0)
                        return r;
                patch->has_deadline = true;
        }
        if ((v = json_object_get(obj, "parallelism"))) {
                path_push_key(c, "parallelism");
                r = parse_uint(c, v, 0, PARALLELISM_MAX, &patch->v.parallelism);
                path_pop(c);
                if (r < 0)
                        return r;
                patch->has_parallelism = true;
        }
        if ((v = json_object_get(obj, "on-failure"))) {
                path_push_key(c, "on-failure");
                r = expect_type(c, v, JSON_STRING, "a string");
                if (r == 0)
                        r = parse_enum_string(c, v, "rollback, reset",
                                              on_failure_from_string(json_string_value(v),
                                                                     &patch->v.on_failure));
                path_pop(c);
                if (r < 0)
                        return r;
                patch->has_on_failure = true;
        }
        if ((v = json_object_get(obj, "strategy"))) {
                path_push_key(c, "strategy");
                r = expect_type(c, v, JSON_STRING, "a string");
                if (r == 0)
                        r = parse_enum_string(
                            c, v, "parallel, qemu, naive",
                            plan_strategy_from_string(json_string_value(v), &patch->v.strategy));
                path_pop(c);
                if (r < 0)
                        return r;
                patch->has_strategy = true;
        }
        if ((v = json_object_get(obj, "max-device-state-bytes"))) {
                path_push_key(c, "max-device-state-bytes");
                r = parse_u64(c, v, 1, POLICY_MAX_DEVICE_STATE_MAX,
                              &patch->v.max_device_state_bytes);
                path_pop(c);
                if (r < 0)
                        return r;
                patch->has_max_device_state = true;
        }
        r = parse_named(c, obj, "after-crash", after_crash_names, G_N_ELEMENTS(after_crash_names),
                        "rollback, finish", &patch->has_after_crash, &i);
        if (r < 0)
                return r;
        if (patch->has_after_crash)
                patch->v.after_crash = (enum policy_after_crash)i;
        r = parse_named(c, obj, "hook-daemon-unavailable", hook_unavailable_names,
                        G_N_ELEMENTS(hook_unavailable_names), "fail-open, fail-closed",
                        &patch->has_hook_unavailable, &i);
        if (r < 0)
                return r;
        if (patch->has_hook_unavailable)
                patch->v.hook_daemon_unavailable = (enum policy_hook_unavailable)i;
        r = parse_named(c, obj, "on-start-unmigratable", start_unmigratable_names,
                        G_N_ELEMENTS(start_unmigratable_names), "allow, refuse",
                        &patch->has_start_unmigratable, &i);
        if (r < 0)
                return r;
        if (patch->has_start_unmigratable)
                patch->v.on_start_unmigratable = (enum policy_start_unmigratable)i;
        return 0;
}

static int parse_migratable(ParseCtx *c, json_t *obj, bool *has, bool *migratable, char **reason)
{
        json_t *v;
        int r;

        if ((v = json_object_get(obj, "migratable"))) {
                path_push_key(c, "migratable");
                r = expect_type(c, v, JSON_TRUE, "true or false");
                path_pop(c);
                if (r < 0)
                        return r;
                *has = true;
                *migratable = json_is_true(v);
        }
        if ((v = json_object_get(obj, "reason"))) {
                path_push_key(c, "reason");
                r = expect_type(c, v, JSON_STRING, "a string");
                path_pop(c);
                if (r < 0)
                        return r;
                *reason = g_strdup(json_string_value(v));
        }
        return 0;
}

#define SETTINGS_KEYS                                                                              \
        "mode", "phase-deadline-ms", "parallelism", "on-failure", "strategy", "after-crash",       \
                "hook-daemon-unavailable", "on-start-unmigratable", "max-device-state-bytes"

static int parse_vm_entry(ParseCtx *c, json_t *obj, size_t file, size_t index, Policy *p)
{
        static const char *const known[] = {"match", SETTINGS_KEYS, "migratable", "reason", NULL};
        g_autoptr(GPtrArray) guard = g_ptr_array_new_with_free_func(vm_entry_free);
        VmEntry *e = g_new0(VmEntry, 1);
        json_t *v;
        int r;

        g_ptr_array_add(guard, e);
        e->file = file;
        e->index = index;
        if ((r = expect_type(c, obj, JSON_OBJECT, "an object")) < 0 ||
            (r = check_keys(c, obj, known)) < 0)
                return r;
        if (!(v = json_object_get(obj, "match"))) {
                g_autofree char *where = path_string(c);
                return fail(c, "%s has no \"match\": give a glob on the VM name, e.g. \"web-*\"",
                            where);
        }
        path_push_key(c, "match");
        r = parse_glob(c, v, &e->match);
        path_pop(c);
        if (r < 0 || (r = parse_settings(c, obj, &e->patch)) < 0 ||
            (r = parse_migratable(c, obj, &e->has_migratable, &e->migratable, &e->reason)) < 0)
                return r;
        g_ptr_array_add(p->vms, g_ptr_array_steal_index(guard, 0));
        return 0;
}

static int parse_device_id(ParseCtx *c, json_t *v, DeviceEntry *e)
{
        const char *s;
        char vend[5], dev[5];
        int r = expect_type(c, v, JSON_STRING, "a string \"vvvv:dddd\"");

        if (r < 0)
                return r;
        s = json_string_value(v);
        if (sscanf(s, "%4[0-9a-fA-F*]:%4[0-9a-fA-F*]", vend, dev) != 2 ||
            strlen(s) != strlen(vend) + 1 + strlen(dev) ||
            (strchr(vend, '*') && strcmp(vend, "*")) || (strchr(dev, '*') && strcmp(dev, "*"))) {
                g_autofree char *where = path_string(c);
                return fail(c, "%s is \"%s\"; write the PCI id as vendor:device in hex, e.g. "
                               "\"15b3:101e\" or \"15b3:*\"",
                            where, s);
        }
        e->vendor = strcmp(vend, "*") ? (int)strtol(vend, NULL, 16) : -1;
        e->device = strcmp(dev, "*") ? (int)strtol(dev, NULL, 16) : -1;
        return 0;
}

static int parse_device_match(ParseCtx *c, json_t *m, DeviceEntry *e)
{
        static const char *const known[] = {"driver", "id", "address", NULL};
        json_t *v;
        int r;

        if ((r = expect_type(c, m, JSON_OBJECT, "an object with driver, id and/or address")) < 0 ||
            (r = check_keys(c, m, known)) < 0)
                return r;
        if (json_object_size(m) == 0) {
                g_autofree char *where = path_string(c);
                return fail(c, "%s is empty: match on \"driver\", \"id\" or \"address\"", where);
        }
        if ((v = json_object_get(m, "driver"))) {
                path_push_key(c, "driver");
                r = parse_glob(c, v, &e->driver);
                path_pop(c);
                if (r < 0)
                        return r;
        }
        if ((v = json_object_get(m, "address"))) {
                path_push_key(c, "address");
                r = parse_glob(c, v, &e->address);
                path_pop(c);
                if (r < 0)
                        return r;
        }
        if ((v = json_object_get(m, "id"))) {
                path_push_key(c, "id");
                r = parse_device_id(c, v, e);
                path_pop(c);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_device_entry(ParseCtx *c, json_t *obj, size_t file, size_t index, Policy *p)
{
        static const char *const known[] = {"match", "migratable", "reason", NULL};
        g_autoptr(GPtrArray) guard = g_ptr_array_new_with_free_func(device_entry_free);
        DeviceEntry *e = g_new0(DeviceEntry, 1);
        json_t *m;
        int r;

        g_ptr_array_add(guard, e);
        e->file = file;
        e->index = index;
        e->vendor = e->device = -1;
        if ((r = expect_type(c, obj, JSON_OBJECT, "an object")) < 0 ||
            (r = check_keys(c, obj, known)) < 0)
                return r;
        if (!(m = json_object_get(obj, "match"))) {
                g_autofree char *where = path_string(c);
                return fail(c, "%s has no \"match\": give {\"driver\": ...}, {\"id\": ...} or "
                               "{\"address\": ...}",
                            where);
        }
        path_push_key(c, "match");
        r = parse_device_match(c, m, e);
        path_pop(c);
        if (r < 0 || (r = parse_migratable(c, obj, &e->has_migratable, &e->migratable, &e->reason)) < 0)
                return r;
        g_ptr_array_add(p->devices, g_ptr_array_steal_index(guard, 0));
        return 0;
}

static int parse_entries(ParseCtx *c, json_t *root, const char *key, size_t file, Policy *p,
                         int (*parse_one)(ParseCtx *, json_t *, size_t, size_t, Policy *))
{
        json_t *arr = json_object_get(root, key), *v;
        size_t i;
        int r;

        if (!arr)
                return 0;
        path_push_key(c, key);
        r = expect_type(c, arr, JSON_ARRAY, "an array");
        json_array_foreach(arr, i, v) {
                if (r < 0)
                        break;
                path_push_index(c, i);
                r = parse_one(c, v, file, i, p);
                path_pop(c);
        }
        path_pop(c);
        return r;
}

static int parse_file(ParseCtx *c, size_t file, Policy *p)
{
        static const char *const known[] = {"$schema", "defaults", "vms", "devices", NULL};
        static const char *const defaults_known[] = {SETTINGS_KEYS, NULL};
        json_auto_t *root = NULL;
        SettingsPatch patch = {0};
        json_error_t jerr;
        json_t *d;
        int r;

        root = json_loadb(c->text, c->len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                *c->ret_error = g_strdup_printf("%s:%d:%d: not valid JSON: %s", c->name,
                                                jerr.line, jerr.column, jerr.text);
                return -EINVAL;
        }
        if ((r = expect_type(c, root, JSON_OBJECT, "an object")) < 0 ||
            (r = check_keys(c, root, known)) < 0)
                return r;
        if ((d = json_object_get(root, "defaults"))) {
                path_push_key(c, "defaults");
                r = expect_type(c, d, JSON_OBJECT, "an object");
                if (r == 0)
                        r = check_keys(c, d, defaults_known);
                if (r == 0)
                        r = parse_settings(c, d, &patch);
                path_pop(c);
                if (r < 0)
                        return r;
        }
        g_array_append_val(p->defaults, patch);
        if ((r = parse_entries(c, root, "vms", file, p, parse_vm_entry)) < 0)
                return r;
        return parse_entries(c, root, "devices", file, p, parse_device_entry);
}

int policy_parse(const char *const *names, const char *const *texts, size_t n, Policy **ret,
                 char **ret_error)
{
        Policy *p = policy_alloc();

        for (size_t i = 0; i < n; i++) {
                ParseCtx c = {
                        .name = names[i],
                        .text = texts[i],
                        .len = strlen(texts[i]),
                        .ret_error = ret_error,
                };
                int r = parse_file(&c, i, p);
                if (r < 0) {
                        policy_free(p);
                        return r;
                }
                g_ptr_array_add(p->files, g_strdup(names[i]));
        }
        *ret = p;
        return 0;
}

/* ---- evaluation ---- */

/* label: where the patch comes from, kept by the caller for as long as src lives. */
static void apply_patch(PolicySettings *s, PolicySources *src, const SettingsPatch *p,
                        const char *label)
{
        if (p->has_mode) {
                s->mode = p->v.mode;
                src->mode = label;
        }
        if (p->has_deadline) {
                s->phase_deadline_ms = p->v.phase_deadline_ms;
                src->phase_deadline_ms = label;
        }
        if (p->has_parallelism) {
                s->parallelism = p->v.parallelism;
                src->parallelism = label;
        }
        if (p->has_on_failure) {
                s->on_failure = p->v.on_failure;
                src->on_failure = label;
        }
        if (p->has_strategy) {
                s->strategy = p->v.strategy;
                src->strategy = label;
        }
        if (p->has_after_crash) {
                s->after_crash = p->v.after_crash;
                src->after_crash = label;
        }
        if (p->has_hook_unavailable) {
                s->hook_daemon_unavailable = p->v.hook_daemon_unavailable;
                src->hook_daemon_unavailable = label;
        }
        if (p->has_start_unmigratable) {
                s->on_start_unmigratable = p->v.on_start_unmigratable;
                src->on_start_unmigratable = label;
        }
        if (p->has_max_device_state)
                s->max_device_state_bytes = p->v.max_device_state_bytes;
}

static bool device_entry_matches(const DeviceEntry *e, const PolicyDevice *d)
{
        const char *address = d->address ? d->address : d->name;

        if (e->driver && (!d->driver || fnmatch(e->driver, d->driver, 0) != 0))
                return false;
        if (e->address && (!address || fnmatch(e->address, address, 0) != 0))
                return false;
        if (e->vendor >= 0 && e->vendor != d->vendor_id)
                return false;
        if (e->device >= 0 && e->device != d->device_id)
                return false;
        return true;
}

typedef struct Eval {
        GArray *blockers; /* PolicyBlocker */
        GPtrArray *matched;
        GPtrArray *labels; /* char*: what PolicySources point to */
} Eval;

static const char *eval_label(Eval *ev, char *label)
{
        g_ptr_array_add(ev->labels, label);
        return label;
}

static void G_GNUC_PRINTF(4, 5) add_blocker(Eval *ev, const char *id, const char *device,
                                            const char *fmt, ...)
{
        PolicyBlocker b = {.id = g_strdup(id), .device = g_strdup(device)};
        va_list ap;

        va_start(ap, fmt);
        b.message = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_array_append_val(ev->blockers, b);
}

static char *entry_label(const Policy *p, size_t file, const char *kind, size_t index)
{
        return g_strdup_printf("%s: %s[%zu]", policy_file_name(p, file), kind, index);
}

static void evaluate_vm(const Policy *p, const char *vm, Eval *ev, PolicySettings *s,
                        PolicySources *src)
{
        const VmEntry *denied = NULL;

        /* One defaults patch per file, in file order. */
        for (size_t f = 0; f < p->defaults->len; f++)
                apply_patch(
                    s, src, &g_array_index(p->defaults, SettingsPatch, f),
                    eval_label(ev, g_strdup_printf("%s: defaults", policy_file_name(p, f))));
        for (size_t i = 0; i < p->vms->len; i++) {
                const VmEntry *e = g_ptr_array_index(p->vms, i);
                if (fnmatch(e->match, vm, 0) != 0)
                        continue;
                g_autofree char *label = entry_label(p, e->file, "vms", e->index);
                apply_patch(s, src, &e->patch, eval_label(ev, g_strdup(label)));
                if (e->has_migratable)
                        denied = e->migratable ? NULL : e;
                g_ptr_array_add(ev->matched, g_strdup_printf("%s (match \"%s\")", label, e->match));
        }
        if (denied) {
                g_autofree char *label = entry_label(p, denied->file, "vms", denied->index);
                add_blocker(ev, "vm-denied", NULL, "VM '%s' is not migratable by policy (%s)%s%s",
                            vm, label, denied->reason ? ": " : "",
                            denied->reason ? denied->reason : "");
        }
        if (s->mode == POLICY_MODE_DENY)
                add_blocker(ev, "mode-deny", NULL,
                            "VM '%s' has mode deny: policy forbids migrating it", vm);
}

static void evaluate_device_policy(const Policy *p, const PolicyDevice *d, Eval *ev)
{
        const DeviceEntry *last = NULL;

        for (size_t i = 0; i < p->devices->len; i++) {
                const DeviceEntry *e = g_ptr_array_index(p->devices, i);
                g_autofree char *label = NULL;
                if (!device_entry_matches(e, d))
                        continue;
                label = entry_label(p, e->file, "devices", e->index);
                g_ptr_array_add(ev->matched, g_strdup_printf("%s (device '%s')", label, d->name));
                if (e->has_migratable)
                        last = e;
        }
        if (last && !last->migratable) {
                g_autofree char *label = entry_label(p, last->file, "devices", last->index);
                add_blocker(ev, "device-denied", d->name,
                            "device '%s' (%s %04x:%04x) is not migratable by policy (%s)%s%s",
                            d->name, d->driver ? d->driver : "no driver", d->vendor_id,
                            d->device_id, label, last->reason ? ": " : "",
                            last->reason ? last->reason : "");
        }
}

static void evaluate_device_facts(const char *vm, const PolicyDevice *d, size_t n,
                                  const PolicySettings *s, Eval *ev)
{
        const char *flags = mig_flags_to_string(d->flags);

        if (d->flags == 0)
                add_blocker(ev, "no-migration", d->name,
                            "device '%s' (%s) has no migration support: its driver does not "
                            "implement VFIO migration",
                            d->name, d->driver ? d->driver : "no driver");
        else if (!(d->flags & MIG_FLAG_STOP_COPY))
                add_blocker(ev, "no-stop-copy", d->name,
                            "device '%s' (flags %s) lacks STOP_COPY, which every migratable "
                            "device must have",
                            d->name, flags);
        else if (n > 1 && s->mode == POLICY_MODE_REQUIRE_P2P && !(d->flags & MIG_FLAG_P2P))
                add_blocker(ev, "no-p2p", d->name,
                            "device '%s' (%s, flags %s) cannot do the P2P quiesce; VM '%s' has %zu "
                            "devices and mode require-p2p: use devices with P2P, or set mode "
                            "p2p-blocked if the VM's IOMMU context has no P2P mappings",
                            d->name, d->driver ? d->driver : "no driver", flags, vm, n);
        if (d->group_claimed_by)
                add_blocker(ev, "group-shared", d->name,
                            "device '%s' is in IOMMU group %s, which VM '%s' also holds; one "
                            "IOMMU group cannot belong to two VMs",
                            d->name, d->iommu_group ? d->iommu_group : "?", d->group_claimed_by);
        if (d->group_outside_member)
                add_blocker(ev, "partial-group", d->name,
                            "device '%s' shares IOMMU group %s with '%s', which is not in VM '%s'; "
                            "register every device of the group with the VM",
                            d->name, d->iommu_group ? d->iommu_group : "?",
                            d->group_outside_member, vm);
}

void policy_settings_default(PolicySettings *s)
{
        *s = builtin_defaults;
}

int policy_evaluate(const Policy *p, const PolicySettings *base,
                    const enum policy_mode *p2p_override, const char *vm,
                    const PolicyDevice *devices, size_t n, PolicyDecision **ret)
{
        PolicyDecision *d = g_new0(PolicyDecision, 1);
        Eval ev = {
            .blockers = g_array_new(FALSE, TRUE, sizeof(PolicyBlocker)),
            .matched = g_ptr_array_new(),
            .labels = g_ptr_array_new(),
        };

        d->settings = base ? *base : builtin_defaults;
        evaluate_vm(p, vm, &ev, &d->settings, &d->sources);
        if (p2p_override && (d->settings.mode == POLICY_MODE_REQUIRE_P2P ||
                             d->settings.mode == POLICY_MODE_P2P_BLOCKED)) {
                d->settings.mode = *p2p_override;
                d->sources.mode = eval_label(&ev, g_strdup("VM registration"));
                g_ptr_array_add(ev.matched, g_strdup_printf("VM registration (p2p-mode %s)",
                                                            policy_mode_to_string(*p2p_override)));
        }
        if (n > 1 && d->settings.mode == POLICY_MODE_SINGLE_ONLY)
                add_blocker(&ev, "single-only", NULL,
                            "VM '%s' has %zu devices and mode single-only allows one", vm, n);
        for (size_t i = 0; i < n; i++) {
                evaluate_device_policy(p, &devices[i], &ev);
                evaluate_device_facts(vm, &devices[i], n, &d->settings, &ev);
        }
        d->allowed = ev.blockers->len == 0;
        d->n_blockers = ev.blockers->len;
        d->blockers = (PolicyBlocker *)g_array_free(ev.blockers, FALSE);
        g_ptr_array_add(ev.matched, NULL);
        d->matched = (char **)g_ptr_array_free(ev.matched, FALSE);
        g_ptr_array_add(ev.labels, NULL);
        d->source_labels = (char **)g_ptr_array_free(ev.labels, FALSE);
        *ret = d;
        return 0;
}

void policy_decision_free(PolicyDecision *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n_blockers; i++) {
                g_free(d->blockers[i].id);
                g_free(d->blockers[i].device);
                g_free(d->blockers[i].message);
        }
        g_free(d->blockers);
        g_strfreev(d->matched);
        g_strfreev(d->source_labels);
        g_free(d);
}
