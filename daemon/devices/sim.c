/* sim: simulated migration devices, one file each in a state directory */
#include "sim.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/sim-stream.h"
#include "log.h"
#include "safe-dir.h"
#include "util.h"

#define SIM_FORMAT            1
#define SIM_LABEL_MAX         64
#define SIM_DEFAULT_DRIVER    "sim_vfio_pci"
#define SIM_DEFAULT_BLOB_SIZE 65536u
#define SIM_LATENCY_MAX_MS    (3600u * 1000u)
#define SIM_HANG_POLL_US      5000
#define SIM_FIRST_GENERATION  1u

/* ---- names and paths ---- */

static bool label_valid(const char *s)
{
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > SIM_LABEL_MAX)
                return false;
        for (const char *p = s; *p; p++)
                if (!g_ascii_isalnum(*p) && !strchr("_.:-", *p))
                        return false;
        return true;
}

/* A leading '.' is refused as well: dot files in the directory are locks and temporaries. */
static int check_name(const char *name, GError **error)
{
        if (label_valid(name) && name[0] != '.')
                return 0;
        return sim_error(error, -EINVAL,
                         "Invalid sim device name '%s': use 1-64 characters from A-Z a-z 0-9 "
                         "_ . : - (not starting with '.')",
                         name ? name : "");
}

static char *json_path(const char *dir, const char *name)
{
        return g_strdup_printf("%s/%s.json", dir, name);
}

static char *state_path(const char *dir, const char *name)
{
        return g_strdup_printf("%s/%s.state", dir, name);
}

static char *lock_path(const char *dir, const char *name)
{
        return g_strdup_printf("%s/.%s.lock", dir, name);
}

static bool state_is_stopped(enum mig_state s)
{
        return s == MIG_STATE_STOP || s == MIG_STATE_STOP_COPY || s == MIG_STATE_RESUMING;
}

/* ---- strings of faults and arcs ---- */

static const char *const action_names[] = {
    [SIM_FAULT_FAIL] = "fail",
    [SIM_FAULT_ERROR] = "error",
    [SIM_FAULT_HANG] = "hang",
};

static const char *const leave_names[] = {
    [SIM_LEAVE_ORIGINAL] = "original",
    [SIM_LEAVE_INTERMEDIATE] = "intermediate",
};

const char *sim_fault_action_to_string(enum sim_fault_action a)
{
        return (unsigned)a < G_N_ELEMENTS(action_names) ? action_names[a] : "invalid";
}

int sim_fault_action_from_string(const char *s, enum sim_fault_action *ret)
{
        for (unsigned i = 0; s && i < G_N_ELEMENTS(action_names); i++)
                if (strcasecmp(s, action_names[i]) == 0) {
                        *ret = (enum sim_fault_action)i;
                        return 0;
                }
        return -EINVAL;
}

const char *sim_fault_leave_to_string(enum sim_fault_leave l)
{
        return (unsigned)l < G_N_ELEMENTS(leave_names) ? leave_names[l] : "invalid";
}

int sim_fault_leave_from_string(const char *s, enum sim_fault_leave *ret)
{
        for (unsigned i = 0; s && i < G_N_ELEMENTS(leave_names); i++)
                if (strcasecmp(s, leave_names[i]) == 0) {
                        *ret = (enum sim_fault_leave)i;
                        return 0;
                }
        return -EINVAL;
}

int sim_errno_from_string(const char *s, int *ret)
{
        char *end;
        long v;

        if (!s || !*s)
                return -EINVAL;
        if (g_ascii_isdigit(*s)) {
                v = strtol(s, &end, 10);
                if (*end || v <= 0 || v > 4095)
                        return -EINVAL;
                *ret = (int)v;
                return 0;
        }
        for (int e = 1; e < 256; e++) {
                const char *n = strerrorname_np(e);
                if (n && strcasecmp(n, s) == 0) {
                        *ret = e;
                        return 0;
                }
        }
        return -EINVAL;
}

static const char *state_or_any(enum mig_state s)
{
        return s == MIG_STATE_COUNT ? "*" : mig_state_to_string(s);
}

char *sim_fault_format_arc(const SimFault *f, char *buf, size_t size)
{
        if (f->from == MIG_STATE_COUNT && f->to == MIG_STATE_COUNT)
                g_strlcpy(buf, "*", size);
        else
                snprintf(buf, size, "%s>%s", state_or_any(f->from), state_or_any(f->to));
        return buf;
}

static int parse_arc_end(const char *s, enum mig_state *ret)
{
        if (strcmp(s, "*") == 0) {
                *ret = MIG_STATE_COUNT;
                return 0;
        }
        /* ERROR is never the end of an arc a request walks; a fault on it could never fire. */
        if (mig_state_from_string(s, ret) < 0 || *ret == MIG_STATE_ERROR)
                return -EINVAL;
        return 0;
}

int sim_fault_parse_arc(const char *s, SimFault *f, GError **error)
{
        g_auto(GStrv) ends = NULL;

        if (s && strcmp(s, "*") == 0) {
                f->from = f->to = MIG_STATE_COUNT;
                return 0;
        }
        ends = g_strsplit(s ? s : "", ">", 3);
        if (g_strv_length(ends) != 2 || parse_arc_end(ends[0], &f->from) < 0 ||
            parse_arc_end(ends[1], &f->to) < 0)
                return sim_error(error, -EINVAL,
                                 "Invalid arc '%s': write FROM>TO with kernel state names "
                                 "(STOP RUNNING STOP_COPY RESUMING RUNNING_P2P PRE_COPY "
                                 "PRE_COPY_P2P) or '*' for any, e.g. 'RUNNING_P2P>STOP', "
                                 "'*>STOP' or '*'",
                                 s ? s : "");
        return 0;
}

/* ---- the device record in memory ---- */

static void sim_event_free(gpointer p)
{
        SimEvent *e = p;

        if (!e)
                return;
        g_free(e->time);
        g_free(e->peer);
        g_free(e);
}

static SimDevice *sim_device_new0(void)
{
        SimDevice *d = g_new0(SimDevice, 1);

        d->arc_latency_ms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        d->faults = g_array_new(FALSE, TRUE, sizeof(SimFault));
        d->events = g_ptr_array_new_with_free_func(sim_event_free);
        return d;
}

void sim_device_free(SimDevice *d)
{
        if (!d)
                return;
        g_free(d->name);
        g_free(d->driver);
        g_free(d->iommu_group);
        g_free(d->p2p_group);
        g_free(d->blob_sha256);
        g_free(d->saved_sha256);
        g_free(d->loaded_sha256);
        g_clear_pointer(&d->arc_latency_ms, g_hash_table_unref);
        g_clear_pointer(&d->faults, g_array_unref);
        g_clear_pointer(&d->events, g_ptr_array_unref);
        g_free(d);
}

static void sim_device_add_event(SimDevice *d, const char *peer, enum mig_state peer_state)
{
        g_autoptr(GDateTime) now = g_date_time_new_now_utc();
        SimEvent *e = g_new0(SimEvent, 1);

        e->time = g_date_time_format_iso8601(now);
        e->state = d->state;
        e->peer = g_strdup(peer);
        e->peer_state = peer_state;
        if (d->events->len >= SIM_EVENTS_MAX) {
                g_ptr_array_remove_index(d->events, 0);
                d->events_dropped++;
        }
        g_ptr_array_add(d->events, e);
        log_warning("sim device %s: corrupted: stopped in %s while peer %s is %s and can still "
                    "DMA into it",
                    d->name, mig_state_to_string(d->state), peer, mig_state_to_string(peer_state));
}

/* ---- JSON: the file format and --json output are one and the same ---- */

static json_t *flags_to_json(uint32_t flags)
{
        static const struct {
                uint32_t bit;
                const char *name;
        } bits[] = {{MIG_FLAG_STOP_COPY, "STOP_COPY"},
                    {MIG_FLAG_P2P, "P2P"},
                    {MIG_FLAG_PRE_COPY, "PRE_COPY"}};
        json_t *a = json_array();

        for (size_t i = 0; i < G_N_ELEMENTS(bits); i++)
                if (flags & bits[i].bit)
                        json_array_append_new(a, json_string(bits[i].name));
        return a;
}

static json_t *fault_to_json(const SimFault *f)
{
        const char *ename = strerrorname_np(f->error);
        char arc[64];

        return json_pack(
            "{s:s, s:s, s:o, s:s, s:I}", "arc", sim_fault_format_arc(f, arc, sizeof(arc)), "action",
            sim_fault_action_to_string(f->action), "errno",
            ename ? json_string(ename) : json_integer(f->error), "leave",
            sim_fault_leave_to_string(f->leave), "remaining", (json_int_t)f->remaining);
}

static json_t *event_to_json(const SimEvent *e)
{
        return json_pack("{s:s, s:s, s:s, s:s}", "time", e->time, "state",
                         mig_state_to_string(e->state), "peer", e->peer, "peer_state",
                         mig_state_to_string(e->peer_state));
}

static json_t *latencies_to_json(GHashTable *arcs)
{
        g_autofree const char **keys = NULL;
        guint n = 0;
        json_t *o = json_object();

        /* Sorted, so the file does not reshuffle on every write. */
        keys = (const char **)g_hash_table_get_keys_as_array(arcs, &n);
        qsort(keys, n, sizeof(*keys), (int (*)(const void *, const void *))g_strcmp0);
        for (guint i = 0; i < n; i++)
                json_object_set_new(
                    o, keys[i], json_integer(GPOINTER_TO_UINT(g_hash_table_lookup(arcs, keys[i]))));
        return o;
}

json_t *sim_device_to_json(const SimDevice *d)
{
        char vendor[8], device[8], seed[24];
        json_t *o, *faults = json_array(), *events = json_array();

        snprintf(vendor, sizeof(vendor), "0x%04x", d->vendor_id);
        snprintf(device, sizeof(device), "0x%04x", d->device_id);
        snprintf(seed, sizeof(seed), "0x%016" PRIx64, d->seed);
        for (guint i = 0; i < d->faults->len; i++)
                json_array_append_new(faults,
                                      fault_to_json(&g_array_index(d->faults, SimFault, i)));
        for (guint i = 0; i < d->events->len; i++)
                json_array_append_new(events, event_to_json(d->events->pdata[i]));
        o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:I}",
                      "format", SIM_FORMAT, "name", d->name, "driver", d->driver, "vendor", vendor,
                      "device", device, "migration_flags", flags_to_json(d->flags), "iommu_group",
                      d->iommu_group, "p2p_group", d->p2p_group ? d->p2p_group : "", "state",
                      mig_state_to_string(d->state), "generation", (json_int_t)d->generation,
                      "seed", seed, "blob_size", (json_int_t)d->blob_size, "blob_sha256",
                      d->blob_sha256, "latency_ms", (json_int_t)d->latency_ms);
        json_object_set_new(o, "arc_latency_ms", latencies_to_json(d->arc_latency_ms));
        json_object_set_new(o, "faults", faults);
        json_object_set_new(o, "events", events);
        json_object_set_new(o, "events_dropped", json_integer((json_int_t)d->events_dropped));
        json_object_set_new(o, "dma_off", json_boolean(d->dma_off));
        json_object_set_new(o, "last_save_sha256", json_string(d->saved_sha256 ? d->saved_sha256 : ""));
        json_object_set_new(o, "last_load_sha256", json_string(d->loaded_sha256 ? d->loaded_sha256 : ""));
        json_object_set_new(o, "counters",
                            json_pack("{s:I, s:I, s:I}", "loads", (json_int_t)d->loads, "saves",
                                      (json_int_t)d->saves, "resets", (json_int_t)d->resets));
        return o;
}

/* ---- JSON parsing: every defect names the file, the field and the fix ---- */

typedef struct Parser {
        const char *path;
        GError **error;
} Parser;

static int bad_field(const Parser *p, const char *field, const char *what)
{
        return sim_error(p->error, -EBADMSG,
                         "Device file %s: '%s' %s; fix the file, or remove and recreate the "
                         "device (vfio-migsim remove/create)",
                         p->path, field, what);
}

static int get_string(const Parser *p, json_t *o, const char *key, bool label, char **ret)
{
        json_t *v = json_object_get(o, key);

        if (!json_is_string(v))
                return bad_field(p, key, "is missing or not a string");
        if (label && !label_valid(json_string_value(v)))
                return bad_field(p, key, "is not 1-64 characters from A-Z a-z 0-9 _ . : -");
        *ret = g_strdup(json_string_value(v));
        return 0;
}

static int get_uint(const Parser *p, json_t *o, const char *key, uint64_t max, uint64_t *ret)
{
        json_t *v = json_object_get(o, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) > max)
                return bad_field(p, key, "is missing, not an integer or out of range");
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

/* "0x15b3"-style strings, as lspci prints them; plain integers are accepted too. */
static int get_hex(const Parser *p, json_t *o, const char *key, uint64_t max, uint64_t *ret)
{
        json_t *v = json_object_get(o, key);
        const char *s;
        char *end;

        if (json_is_integer(v))
                return get_uint(p, o, key, max, ret);
        s = json_string_value(v);
        if (!s || !g_str_has_prefix(s, "0x") || !g_ascii_isxdigit(s[2]))
                return bad_field(p, key, "is missing or not a hex string such as \"0x15b3\"");
        errno = 0;
        *ret = g_ascii_strtoull(s + 2, &end, 16);
        if (*end || errno || *ret > max)
                return bad_field(p, key, "is not a hex number in range");
        return 0;
}

static int get_state(const Parser *p, json_t *o, const char *key, enum mig_state *ret)
{
        if (mig_state_from_string(json_string_value(json_object_get(o, key)), ret) < 0)
                return bad_field(p, key, "is missing or not a kernel migration state name");
        return 0;
}

static int parse_flags(const Parser *p, json_t *o, uint32_t *ret)
{
        json_t *a = json_object_get(o, "migration_flags"), *v;
        size_t i;
        uint32_t flags = 0, bit;

        if (!json_is_array(a))
                return bad_field(p, "migration_flags", "is missing or not a list of flag names");
        json_array_foreach(a, i, v)
        {
                if (mig_flags_from_string(json_string_value(v), &bit) < 0)
                        return bad_field(p, "migration_flags",
                                         "holds something other than STOP_COPY, P2P, PRE_COPY");
                flags |= bit;
        }
        if (flags && !(flags & MIG_FLAG_STOP_COPY))
                return bad_field(p, "migration_flags",
                                 "lacks STOP_COPY, which every "
                                 "migratable device has");
        *ret = flags;
        return 0;
}

static int parse_fault(const Parser *p, json_t *o, SimFault *f)
{
        json_t *e = json_object_get(o, "errno");
        uint64_t remaining;

        if (!json_is_object(o) ||
            sim_fault_parse_arc(json_string_value(json_object_get(o, "arc")), f, NULL) < 0)
                return bad_field(p, "faults", "holds an entry without a valid 'arc'");
        if (sim_fault_action_from_string(json_string_value(json_object_get(o, "action")),
                                         &f->action) < 0)
                return bad_field(p, "faults", "holds an 'action' other than fail, error, hang");
        if (sim_fault_leave_from_string(json_string_value(json_object_get(o, "leave")), &f->leave) <
            0)
                return bad_field(p, "faults",
                                 "holds a 'leave' other than original, "
                                 "intermediate");
        if (json_is_integer(e) && json_integer_value(e) > 0 && json_integer_value(e) < 4096)
                f->error = (int)json_integer_value(e);
        else if (sim_errno_from_string(json_string_value(e), &f->error) < 0)
                return bad_field(p, "faults",
                                 "holds an 'errno' that is not a name like EIO "
                                 "or a positive number");
        if (get_uint(p, o, "remaining", UINT32_MAX, &remaining) < 0)
                return -EBADMSG;
        f->remaining = (unsigned)remaining;
        return 0;
}

static int parse_faults(const Parser *p, json_t *o, GArray *faults)
{
        json_t *a = json_object_get(o, "faults"), *v;
        size_t i;

        if (!json_is_array(a))
                return bad_field(p, "faults", "is missing or not a list");
        json_array_foreach(a, i, v)
        {
                SimFault f = {0};
                if (parse_fault(p, v, &f) < 0)
                        return -EBADMSG;
                g_array_append_val(faults, f);
        }
        return 0;
}

static int parse_events(const Parser *p, json_t *o, SimDevice *d)
{
        json_t *a = json_object_get(o, "events"), *v;
        GPtrArray *events = d->events;
        size_t i;

        if (!json_is_array(a))
                return bad_field(p, "events", "is missing or not a list");
        if (json_object_get(o, "events_dropped") &&
            get_uint(p, o, "events_dropped", INT64_MAX, &d->events_dropped) < 0)
                return -EBADMSG;
        json_array_foreach(a, i, v)
        {
                g_autoptr(GError) ignored = NULL;
                SimEvent *e = g_new0(SimEvent, 1);
                Parser ep = {p->path, &ignored};

                g_ptr_array_add(events, e);
                if (!json_is_object(v) || get_string(&ep, v, "time", false, &e->time) < 0 ||
                    get_string(&ep, v, "peer", false, &e->peer) < 0 ||
                    get_state(&ep, v, "state", &e->state) < 0 ||
                    get_state(&ep, v, "peer_state", &e->peer_state) < 0)
                        return bad_field(p, "events",
                                         "holds an entry without time, state, "
                                         "peer and peer_state");
        }
        return 0;
}

static int parse_latencies(const Parser *p, json_t *o, SimDevice *d)
{
        json_t *arcs = json_object_get(o, "arc_latency_ms"), *v;
        const char *key;
        uint64_t ms;

        if (get_uint(p, o, "latency_ms", SIM_LATENCY_MAX_MS, &ms) < 0)
                return -EBADMSG;
        d->latency_ms = (uint32_t)ms;
        if (!json_is_object(arcs))
                return bad_field(p, "arc_latency_ms", "is missing or not an object");
        json_object_foreach(arcs, key, v)
        {
                SimFault arc;
                if (sim_fault_parse_arc(key, &arc, NULL) < 0 || arc.from == MIG_STATE_COUNT ||
                    arc.to == MIG_STATE_COUNT)
                        return bad_field(p, "arc_latency_ms", "has a key that is not FROM>TO");
                if (get_uint(p, arcs, key, SIM_LATENCY_MAX_MS, &ms) < 0)
                        return -EBADMSG;
                g_hash_table_insert(d->arc_latency_ms, g_strdup(key), GUINT_TO_POINTER(ms));
        }
        return 0;
}

static int parse_identity(const Parser *p, json_t *o, SimDevice *d)
{
        uint64_t vendor, device;

        if (get_string(p, o, "name", true, &d->name) < 0 ||
            get_string(p, o, "driver", true, &d->driver) < 0 ||
            get_hex(p, o, "vendor", UINT16_MAX, &vendor) < 0 ||
            get_hex(p, o, "device", UINT16_MAX, &device) < 0 || parse_flags(p, o, &d->flags) < 0 ||
            get_string(p, o, "iommu_group", true, &d->iommu_group) < 0 ||
            get_string(p, o, "p2p_group", false, &d->p2p_group) < 0)
                return -EBADMSG;
        if (*d->p2p_group && !label_valid(d->p2p_group))
                return bad_field(p, "p2p_group",
                                 "is neither empty nor 1-64 characters from "
                                 "A-Z a-z 0-9 _ . : -");
        d->vendor_id = (uint16_t)vendor;
        d->device_id = (uint16_t)device;
        return 0;
}

static int parse_state(const Parser *p, json_t *o, SimDevice *d)
{
        json_t *counters = json_object_get(o, "counters");
        uint64_t size;

        if (get_state(p, o, "state", &d->state) < 0 ||
            get_uint(p, o, "generation", INT64_MAX, &d->generation) < 0 ||
            get_hex(p, o, "seed", UINT64_MAX, &d->seed) < 0 ||
            get_uint(p, o, "blob_size", SIM_BLOB_MAX, &size) < 0 ||
            get_string(p, o, "blob_sha256", false, &d->blob_sha256) < 0)
                return -EBADMSG;
        if (!sim_blob_size_valid((uint32_t)size))
                return bad_field(p, "blob_size", "is below the minimum of 16 bytes");
        d->blob_size = (uint32_t)size;
        /* Optional: files written before these existed have neither. */
        if (json_is_string(json_object_get(o, "last_save_sha256")) &&
            *json_string_value(json_object_get(o, "last_save_sha256")))
                d->saved_sha256 = g_strdup(json_string_value(json_object_get(o, "last_save_sha256")));
        if (json_is_string(json_object_get(o, "last_load_sha256")) &&
            *json_string_value(json_object_get(o, "last_load_sha256")))
                d->loaded_sha256 = g_strdup(json_string_value(json_object_get(o, "last_load_sha256")));
        if (json_object_get(o, "dma_off")) {
                if (!json_is_boolean(json_object_get(o, "dma_off")))
                        return bad_field(p, "dma_off", "is not true or false");
                d->dma_off = json_is_true(json_object_get(o, "dma_off"));
        }
        if (!json_is_object(counters) || get_uint(p, counters, "loads", INT64_MAX, &d->loads) < 0 ||
            get_uint(p, counters, "saves", INT64_MAX, &d->saves) < 0 ||
            get_uint(p, counters, "resets", INT64_MAX, &d->resets) < 0)
                return bad_field(p, "counters", "is missing or lacks loads, saves, resets");
        return 0;
}

static int sim_device_from_json(json_t *o, const char *path, const char *name, SimDevice **ret,
                                GError **error)
{
        g_autoptr(SimDevice) d = sim_device_new0();
        Parser p = {path, error};
        uint64_t format;

        if (!json_is_object(o))
                return sim_error(error, -EBADMSG,
                                 "Device file %s does not hold a JSON object; "
                                 "remove and recreate the device",
                                 path);
        if (get_uint(&p, o, "format", INT32_MAX, &format) < 0)
                return -EBADMSG;
        if (format != SIM_FORMAT)
                return bad_field(&p, "format", "is a version this vfio-migsim does not know");
        if (parse_identity(&p, o, d) < 0 || parse_state(&p, o, d) < 0 ||
            parse_latencies(&p, o, d) < 0 || parse_faults(&p, o, d->faults) < 0 ||
            parse_events(&p, o, d) < 0)
                return -EBADMSG;
        if (strcmp(d->name, name) != 0)
                return bad_field(&p, "name", "differs from the file name");
        *ret = g_steal_pointer(&d);
        return 0;
}

/*
 * ---- the peer index: DIR/.p2p/@GROUP/NAME ----
 *
 * An empty file per device of a P2P group, so a device finds its peers by listing its group
 * instead of reading every device file of the directory on every arc. Invariant: every
 * device whose file names group G has the entry DIR/.p2p/@G/NAME. The entry is added before
 * a file naming G is written and removed after the last such file is gone, both under the
 * device's lock; an entry may thus be stale (its device removed or moved to another group)
 * and readers check each candidate's file, as the full scan did. The '@' keeps group names
 * such as "." or ".." from being path components.
 *
 * DIR/.p2p/complete says every device of DIR has its entry. A directory without it (made
 * before the index existed, or after a failed entry write) is scanned in full by the next
 * arc, which adds the entries it finds and then the marker. Only entries are ever added
 * without a lock, which keeps the invariant: an entry too many is harmless.
 */

#define SIM_INDEX_DIR      ".p2p"
#define SIM_INDEX_COMPLETE "complete"
#define SIM_INDEX_TRIES    8

static char *index_root(const char *dir)
{
        return g_strdup_printf("%s/" SIM_INDEX_DIR, dir);
}

static char *index_group_dir(const char *dir, const char *group)
{
        return g_strdup_printf("%s/" SIM_INDEX_DIR "/@%s", dir, group);
}

static char *index_entry(const char *dir, const char *group, const char *name)
{
        return g_strdup_printf("%s/" SIM_INDEX_DIR "/@%s/%s", dir, group, name);
}

static char *index_marker(const char *dir)
{
        return g_strdup_printf("%s/" SIM_INDEX_DIR "/" SIM_INDEX_COMPLETE, dir);
}

/* Adds NAME to GROUP's entries; an existing entry costs one stat. */
static int index_add(const char *dir, const char *group, const char *name, GError **error)
{
        g_autofree char *entry = index_entry(dir, group, name);
        g_autofree char *gdir = NULL;
        int r;

        if (access(entry, F_OK) == 0)
                return 0;
        gdir = index_group_dir(dir, group);
        /* A remover may take away the group's directory between our mkdir and mknod. */
        for (unsigned i = 0; i < SIM_INDEX_TRIES; i++) {
                if (mknod(entry, S_IFREG | 0644, 0) == 0 || errno == EEXIST)
                        return 0;
                if (errno != ENOENT)
                        break;
                if (g_mkdir_with_parents(gdir, 0755) < 0)
                        break;
        }
        r = -errno;
        return sim_error(error, r,
                         "Cannot write the P2P peer index entry %s: %s; check that %s/.p2p is a "
                         "writable directory (remove it if not: it is rebuilt)",
                         entry, g_strerror(-r), dir);
}

/* Removes NAME from GROUP's entries, and the group's directory once empty. */
static void index_del(const char *dir, const char *group, const char *name)
{
        g_autofree char *entry = index_entry(dir, group, name);
        g_autofree char *gdir = index_group_dir(dir, group);

        if (unlink(entry) < 0 && errno != ENOENT)
                log_warning("cannot remove the P2P peer index entry %s: %s (a stale entry is "
                            "ignored)",
                            entry, g_strerror(errno));
        (void)rmdir(gdir); /* fails while other entries remain */
}

/* Removes NAME from every group: for a device whose file no longer says its group. */
static void index_del_everywhere(const char *dir, const char *name)
{
        g_autofree char *root = index_root(dir);
        const char *e;
        GDir *gd = g_dir_open(root, 0, NULL);

        while (gd && (e = g_dir_read_name(gd)))
                if (e[0] == '@')
                        index_del(dir, e + 1, name);
        if (gd)
                g_dir_close(gd);
}

/* A failed entry write: readers must scan again until a rebuild succeeds. */
static void index_invalidate(const char *dir)
{
        g_autofree char *marker = index_marker(dir);

        if (unlink(marker) < 0 && errno != ENOENT)
                log_warning("cannot invalidate the P2P peer index %s: %s", marker,
                            g_strerror(errno));
}

static bool index_complete(const char *dir)
{
        g_autofree char *marker = index_marker(dir);

        return access(marker, F_OK) == 0;
}

static int index_mark_complete(const char *dir)
{
        g_autofree char *marker = index_marker(dir);

        if (mknod(marker, S_IFREG | 0644, 0) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* For g_ptr_array_sort on char*. */
static int compare_strings(gconstpointer a, gconstpointer b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory without device files has nothing to index: the index is complete from the
 * start, sparing the first arc a scan. Devices created meanwhile add their entries first. */
static void index_start(const char *dir)
{
        const char *e;
        bool empty = true;
        GDir *gd;

        if (index_complete(dir))
                return;
        gd = g_dir_open(dir, 0, NULL);
        while (gd && empty && (e = g_dir_read_name(gd)))
                empty = !g_str_has_suffix(e, ".json") || e[0] == '.';
        if (gd)
                g_dir_close(gd);
        if (gd && empty) {
                g_autofree char *root = index_root(dir);

                if (g_mkdir_with_parents(root, 0755) == 0)
                        (void)index_mark_complete(dir);
        }
}

/* GROUP's entries, sorted; -errno when the group cannot be listed (a missing one is empty). */
static int index_names(const char *dir, const char *group, GPtrArray **ret)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *gdir = index_group_dir(dir, group);
        g_autoptr(GError) local = NULL;
        const char *e;
        GDir *gd = g_dir_open(gdir, 0, &local);

        if (!gd && !g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                return -EIO;
        while (gd && (e = g_dir_read_name(gd)))
                if (check_name(e, NULL) == 0)
                        g_ptr_array_add(names, g_strdup(e));
        if (gd)
                g_dir_close(gd);
        g_ptr_array_sort(names, compare_strings);
        *ret = g_steal_pointer(&names);
        return 0;
}

/* ---- files: unlocked reads, locked read-modify-write ---- */

/* Readers take no device lock: writers replace the file atomically and sim_file_read waits
 * out a rewrite of the inode it opened, so a read sees one whole version. */
static int sim_file_read_text(const char *dir, const char *name, char **ret_text, gsize *ret_len,
                              GError **error)
{
        g_autofree char *path = json_path(dir, name);
        int r = sim_file_read(path, ret_text, ret_len);

        if (r == -ENOENT)
                return sim_error(error, -ENOENT,
                                 "No sim device '%s' in %s (no %s); create it with 'vfio-migsim "
                                 "create %s' or check --dir",
                                 name, dir, path, name);
        if (r < 0)
                return sim_error(error, r, "Cannot read device file %s: %s", path, g_strerror(-r));
        return 0;
}

static int sim_text_parse(const char *dir, const char *name, const char *text, gsize len,
                          SimDevice **ret, GError **error)
{
        g_autofree char *path = json_path(dir, name);
        json_error_t jerr;
        json_t *root;
        int r;

        root = json_loadb(text, len, 0, &jerr);
        if (!root)
                return sim_error(error, -EBADMSG,
                                 "Device file %s is not valid JSON (line %d: %s); fix it, or "
                                 "remove and recreate the device",
                                 path, jerr.line, jerr.text);
        r = sim_device_from_json(root, path, name, ret, error);
        json_decref(root);
        return r;
}

static int sim_file_load(const char *dir, const char *name, SimDevice **ret, GError **error)
{
        g_autofree char *text = NULL;
        gsize len = 0;
        int r;

        r = sim_file_read_text(dir, name, &text, &len, error);
        if (r < 0)
                return r;
        return sim_text_parse(dir, name, text, len, ret, error);
}

/*
 * The lock file carries a version of the device file: readers that cached what they parsed
 * compare 8 bytes instead of parsing JSON again (a state read is on every sequencer step).
 * It starts at a random value so a device removed and created again never repeats one.
 */
static void version_bump(int lock_fd)
{
        uint64_t v;

        if (pread(lock_fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
                v = ((uint64_t)g_random_int() << 32) | g_random_int();
        v++;
        if (pwrite(lock_fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
                log_warning("cannot record the version of a sim device file: %s",
                            g_strerror(errno));
}

/* 0 when the device's lock file holds a version; -errno otherwise (then: no caching). */
static int version_read(const char *dir, const char *name, uint64_t *ret)
{
        g_autofree char *path = lock_path(dir, name);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (pread(fd, ret, sizeof(*ret), 0) != (ssize_t)sizeof(*ret))
                return -ENODATA;
        return 0;
}

/* Every writer holds the device's lock (lock_fd), which is what makes the version exact. */
static int sim_file_store(const char *dir, const SimDevice *d, int lock_fd, GError **error)
{
        g_autofree char *path = json_path(dir, d->name);
        json_t *o = sim_device_to_json(d);
        char *text = json_dumps(o, JSON_INDENT(2));
        g_autofree char *line = g_strconcat(text, "\n", NULL);
        int r;

        free(text);
        json_decref(o);
        /* Before the file says the group: a file hand-edited into a group gets its entry on
         * its next write; failing that, readers scan the directory again. */
        if (*d->p2p_group && index_add(dir, d->p2p_group, d->name, NULL) < 0)
                index_invalidate(dir);
        r = sim_file_replace(path, line, strlen(line), error);
        if (r >= 0)
                version_bump(lock_fd);
        return r;
}

/*
 * Returns the fd holding the device's lock. remove unlinks the lock file while holding it,
 * so after winning the lock we check it is still the file at the path, and retry if not.
 */
static int sim_lock(const char *dir, const char *name, GError **error)
{
        g_autofree char *path = lock_path(dir, name);

        for (;;) {
                struct stat held, named;
                /* Never through a link: the version counter is written into the lock. */
                int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

                if (fd < 0 && errno == ELOOP)
                        return sim_error(error, -ELOOP,
                                         "Lock file %s is a symbolic link, which vfio-migd never "
                                         "makes; remove it",
                                         path);
                if (fd < 0)
                        return sim_error(error, -errno,
                                         "Cannot create lock file %s: %s; check that the "
                                         "directory exists and is writable",
                                         path, g_strerror(errno));
                while (flock(fd, LOCK_EX) < 0)
                        if (errno != EINTR) {
                                int r = -errno;
                                close(fd);
                                return sim_error(error, r, "Cannot lock %s: %s", path,
                                                 g_strerror(-r));
                        }
                if (fstat(fd, &held) == 0 && lstat(path, &named) == 0 &&
                    held.st_ino == named.st_ino && held.st_dev == named.st_dev)
                        return fd;
                close(fd);
        }
}

/* Unlocks; a lock file created for a device that does not exist is removed again. */
static void sim_unlock(const char *dir, const char *name, int fd, bool device_exists)
{
        if (fd < 0)
                return;
        if (!device_exists) {
                g_autofree char *path = lock_path(dir, name);
                unlink(path);
        }
        close(fd);
}

typedef int (*SimUpdateFn)(SimDevice *d, void *userdata, GError **error);

/* One locked read-modify-write; fn returns 0 to store, > 0 to leave the file alone. */
static int sim_update(const char *dir, const char *name, SimUpdateFn fn, void *userdata,
                      GError **error)
{
        g_autoptr(SimDevice) d = NULL;
        bool exists;
        int fd, r;

        r = check_name(name, error);
        if (r < 0)
                return r;
        fd = sim_lock(dir, name, error);
        if (fd < 0)
                return fd;
        r = sim_file_load(dir, name, &d, error);
        exists = r != -ENOENT;
        if (r >= 0)
                r = fn(d, userdata, error);
        if (r == 0)
                r = sim_file_store(dir, d, fd, error);
        sim_unlock(dir, name, fd, exists);
        return r < 0 ? r : 0;
}

/* Device names in dir, sorted; a missing directory holds no devices. */
static int sim_dir_names(const char *dir, GPtrArray **ret, GError **error)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) local = NULL;
        const char *entry;
        GDir *gd;

        gd = g_dir_open(dir, 0, &local);
        if (!gd && !g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                return sim_error(error, -EIO, "Cannot list sim directory %s: %s", dir,
                                 local->message);
        while (gd && (entry = g_dir_read_name(gd))) {
                g_autofree char *name = NULL;

                if (!g_str_has_suffix(entry, ".json"))
                        continue;
                name = g_strndup(entry, strlen(entry) - strlen(".json"));
                if (check_name(name, NULL) == 0)
                        g_ptr_array_add(names, g_steal_pointer(&name));
        }
        if (gd)
                g_dir_close(gd);
        g_ptr_array_sort(names, compare_strings);
        *ret = g_steal_pointer(&names);
        return 0;
}

/* ---- management API ---- */

int sim_dir_check(const char *dir, bool create, GError **error)
{
        static const SafeDirUse use = {"sim directory", "--sim-dir (vfio-migsim: --dir)"};
        _cleanup_close_ int fd = -1;

        return safe_dir_open(dir, create ? 0755 : 0, &use, &fd, error);
}

static uint64_t seed_from_name(const char *name)
{
        uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */

        for (const char *p = name; *p; p++)
                h = (h ^ (uint8_t)*p) * UINT64_C(0x100000001b3);
        return h;
}

static int check_label(const char *what, const char *s, GError **error)
{
        if (!s || label_valid(s))
                return 0;
        return sim_error(error, -EINVAL,
                         "Invalid %s '%s': use 1-64 characters from A-Z a-z 0-9 _ . : -", what, s);
}

static int check_spec(const SimSpec *s, GError **error)
{
        int r = check_name(s->name, error);

        if (r >= 0)
                r = check_label("driver", s->driver, error);
        if (r >= 0)
                r = check_label("IOMMU group", s->iommu_group, error);
        if (r >= 0 && s->p2p_group && *s->p2p_group)
                r = check_label("P2P group", s->p2p_group, error);
        if (r < 0)
                return r;
        if (s->flags & ~MIG_FLAGS_KNOWN || (s->flags && !(s->flags & MIG_FLAG_STOP_COPY)))
                return sim_error(error, -EINVAL,
                                 "Invalid migration flags 0x%x for '%s': a migratable device "
                                 "has STOP_COPY, optionally P2P and PRE_COPY (or use none)",
                                 s->flags, s->name);
        if (s->blob_size && !sim_blob_size_valid(s->blob_size))
                return sim_error(error, -EINVAL,
                                 "Invalid blob size %u for '%s': use %u to %u bytes", s->blob_size,
                                 s->name, SIM_BLOB_MIN, SIM_BLOB_MAX);
        if (s->latency_ms > SIM_LATENCY_MAX_MS)
                return sim_error(error, -EINVAL, "Invalid latency %u ms for '%s': at most %u",
                                 s->latency_ms, s->name, SIM_LATENCY_MAX_MS);
        return 0;
}

static SimDevice *sim_device_from_spec(const SimSpec *s)
{
        SimDevice *d = sim_device_new0();

        d->name = g_strdup(s->name);
        d->driver = g_strdup(s->driver ? s->driver : SIM_DEFAULT_DRIVER);
        d->iommu_group = g_strdup(s->iommu_group ? s->iommu_group : s->name);
        d->p2p_group = g_strdup(s->p2p_group ? s->p2p_group : "");
        d->vendor_id = s->vendor_id;
        d->device_id = s->device_id;
        d->flags = s->flags;
        d->state = MIG_STATE_RUNNING;
        d->generation = SIM_FIRST_GENERATION;
        d->seed = s->seed ? s->seed : seed_from_name(s->name);
        d->blob_size = s->blob_size ? s->blob_size : SIM_DEFAULT_BLOB_SIZE;
        d->latency_ms = s->latency_ms;
        return d;
}

/* A fresh blob from (seed, generation) into the state file; its digest into d. */
static int sim_blob_regenerate(const char *dir, SimDevice *d, GError **error)
{
        g_autofree char *path = state_path(dir, d->name);
        SimBlob blob = {0};
        char hex[2 * SIM_DIGEST_LEN + 1];
        int r;

        sim_blob_generate(&blob, d->blob_size, d->seed, d->generation);
        r = sim_blob_write_file(path, &blob, error);
        sim_blob_digest_hex(&blob, hex);
        sim_blob_clear(&blob);
        if (r < 0)
                return r;
        g_free(d->blob_sha256);
        d->blob_sha256 = g_strdup(hex);
        return 0;
}

int sim_device_create(const char *dir, const SimSpec *spec, GError **error)
{
        g_autoptr(SimDevice) d = NULL;
        g_autofree char *path = NULL;
        int fd, r;

        r = check_spec(spec, error);
        if (r < 0)
                return r;
        r = sim_dir_check(dir, true, error);
        if (r < 0)
                return r;
        fd = sim_lock(dir, spec->name, error);
        if (fd < 0)
                return fd;
        d = sim_device_from_spec(spec);
        path = json_path(dir, spec->name);
        if (access(path, F_OK) == 0)
                r = sim_error(error, -EEXIST,
                              "Sim device '%s' already exists in %s; pick another name or "
                              "remove it first (vfio-migsim remove %s)",
                              spec->name, dir, spec->name);
        if (r < 0)
                goto out;
        index_start(dir);
        if (*d->p2p_group) {
                r = index_add(dir, d->p2p_group, d->name, error);
                if (r < 0)
                        goto out;
        }
        r = sim_blob_regenerate(dir, d, error);
        if (r >= 0)
                r = sim_file_store(dir, d, fd, error);
        if (r < 0 && *d->p2p_group)
                index_del(dir, d->p2p_group, d->name);
out:
        sim_unlock(dir, spec->name, fd, r >= 0 || r == -EEXIST);
        return r;
}

/* Works on a malformed device file too: removing is how a user gets rid of one. */
int sim_device_remove(const char *dir, const char *name, GError **error)
{
        g_autoptr(SimDevice) d = NULL;
        g_autofree char *json = NULL, *state = NULL, *group = NULL;
        int fd, r = check_name(name, error);

        if (r < 0)
                return r;
        fd = sim_lock(dir, name, error);
        if (fd < 0)
                return fd;
        json = json_path(dir, name);
        state = state_path(dir, name);
        /* The group, to drop the index entry after the file; NULL for a malformed file. */
        if (sim_file_load(dir, name, &d, NULL) >= 0)
                group = g_strdup(d->p2p_group);
        if (unlink(json) < 0)
                r = errno == ENOENT
                        ? sim_error(error, -ENOENT, "No sim device '%s' in %s", name, dir)
                        : sim_error(error, -errno, "Cannot remove %s: %s", json, g_strerror(errno));
        if (r >= 0) {
                g_autofree char *spare_json = g_strdup_printf("%s/.%s.json.tmp", dir, name);
                g_autofree char *spare_state = g_strdup_printf("%s/.%s.state.tmp", dir, name);

                unlink(state);
                unlink(spare_json);
                unlink(spare_state);
                if (!group)
                        index_del_everywhere(dir, name);
                else if (*group)
                        index_del(dir, group, name);
        }
        sim_unlock(dir, name, fd, r < 0 && r != -ENOENT);
        return r;
}

int sim_device_read(const char *dir, const char *name, SimDevice **ret, GError **error)
{
        int r = check_name(name, error);

        if (r < 0)
                return r;
        return sim_file_load(dir, name, ret, error);
}

int sim_device_list(const char *dir, GPtrArray **ret_devices, GError **error)
{
        g_autoptr(GPtrArray) names = NULL;
        g_autoptr(GPtrArray) devices =
            g_ptr_array_new_with_free_func((GDestroyNotify)sim_device_free);
        int r;

        r = sim_dir_names(dir, &names, error);
        if (r < 0)
                return r;
        for (guint i = 0; i < names->len; i++) {
                SimDevice *d = NULL;

                r = sim_file_load(dir, names->pdata[i], &d, error);
                if (r == -ENOENT) /* removed since the directory was read */
                        continue;
                if (r < 0)
                        return r;
                g_ptr_array_add(devices, d);
        }
        *ret_devices = g_steal_pointer(&devices);
        return 0;
}

static int fault_append(SimDevice *d, void *userdata, GError **error)
{
        g_array_append_val(d->faults, *(const SimFault *)userdata);
        return 0;
}

int sim_device_add_fault(const char *dir, const char *name, const SimFault *f, GError **error)
{
        SimFault copy = *f;

        if ((unsigned)f->from > MIG_STATE_COUNT || (unsigned)f->to > MIG_STATE_COUNT ||
            f->from == MIG_STATE_ERROR || f->to == MIG_STATE_ERROR ||
            (unsigned)f->action >= G_N_ELEMENTS(action_names) ||
            (unsigned)f->leave >= G_N_ELEMENTS(leave_names) || f->error < 0 || f->error > 4095)
                return sim_error(error, -EINVAL,
                                 "Invalid fault for '%s': give an arc between two states (or "
                                 "'*'), an action fail/error/hang and a positive errno",
                                 name);
        if (copy.error == 0)
                copy.error = EIO;
        return sim_update(dir, name, fault_append, &copy, error);
}

static int faults_clear(SimDevice *d, void *userdata, GError **error)
{
        g_array_set_size(d->faults, 0);
        return 0;
}

int sim_device_clear_faults(const char *dir, const char *name, GError **error)
{
        return sim_update(dir, name, faults_clear, NULL, error);
}

typedef struct LatencyChange {
        const char *arc; /* canonical "FROM>TO", NULL: the default */
        uint32_t ms;
} LatencyChange;

static int latency_set(SimDevice *d, void *userdata, GError **error)
{
        const LatencyChange *c = userdata;

        if (c->arc)
                g_hash_table_insert(d->arc_latency_ms, g_strdup(c->arc), GUINT_TO_POINTER(c->ms));
        else
                d->latency_ms = c->ms;
        return 0;
}

int sim_device_set_latency(const char *dir, const char *name, const char *arc, uint32_t ms,
                           GError **error)
{
        LatencyChange c = {NULL, ms};
        SimFault parsed;
        char canonical[64];
        int r;

        if (ms > SIM_LATENCY_MAX_MS)
                return sim_error(error, -EINVAL, "Invalid latency %u ms for '%s': at most %u", ms,
                                 name, SIM_LATENCY_MAX_MS);
        if (arc) {
                r = sim_fault_parse_arc(arc, &parsed, error);
                if (r < 0)
                        return r;
                if (parsed.from == MIG_STATE_COUNT || parsed.to == MIG_STATE_COUNT)
                        return sim_error(error, -EINVAL,
                                         "Invalid latency arc '%s': name both states, e.g. "
                                         "RUNNING>RUNNING_P2P (omit the arc for the default)",
                                         arc);
                c.arc = sim_fault_format_arc(&parsed, canonical, sizeof(canonical));
        }
        return sim_update(dir, name, latency_set, &c, error);
}

static int events_clear(SimDevice *d, void *userdata, GError **error)
{
        g_ptr_array_set_size(d->events, 0);
        d->events_dropped = 0;
        return 0;
}

int sim_device_clear_events(const char *dir, const char *name, GError **error)
{
        return sim_update(dir, name, events_clear, NULL, error);
}

static int state_force(SimDevice *d, void *userdata, GError **error)
{
        enum mig_state s = *(const enum mig_state *)userdata;

        if (s != MIG_STATE_ERROR && !mig_state_supported(d->flags, s))
                return sim_error(error, -EINVAL,
                                 "Sim device '%s' (flags %s) has no state %s; pick one its "
                                 "flags support",
                                 d->name, mig_flags_to_string(d->flags), mig_state_to_string(s));
        d->state = s;
        d->dma_off = false;
        return 0;
}

int sim_device_force_state(const char *dir, const char *name, enum mig_state s, GError **error)
{
        if ((unsigned)s >= MIG_STATE_COUNT)
                return sim_error(error, -EINVAL, "Invalid state %d for '%s'", (int)s, name);
        return sim_update(dir, name, state_force, &s, error);
}

int sim_device_set_p2p_group(const char *dir, const char *name, const char *group, GError **error)
{
        g_autoptr(SimDevice) d = NULL;
        g_autofree char *old = NULL;
        int fd, r;

        if (!group)
                group = "";
        r = check_name(name, error);
        if (r >= 0 && *group)
                r = check_label("P2P group", group, error);
        if (r < 0)
                return r;
        fd = sim_lock(dir, name, error);
        if (fd < 0)
                return fd;
        r = sim_file_load(dir, name, &d, error);
        if (r < 0 || strcmp(d->p2p_group, group) == 0)
                goto out;
        /* The new entry before the file says the group, the old one away after. */
        if (*group) {
                r = index_add(dir, group, name, error);
                if (r < 0)
                        goto out;
        }
        old = g_steal_pointer(&d->p2p_group);
        d->p2p_group = g_strdup(group);
        r = sim_file_store(dir, d, fd, error);
        if (r < 0 && *group)
                index_del(dir, group, name);
        else if (r >= 0 && *old)
                index_del(dir, old, name);
out:
        sim_unlock(dir, name, fd, r != -ENOENT);
        return r < 0 ? r : 0;
}

/* ---- peers: devices of one p2p_group can DMA into each other ---- */

typedef struct SimPeer {
        char *name;
        enum mig_state state;
        bool dma_off;
} SimPeer;

/* Whether a device in state s can write into a peer now (SimDevice.dma_off). */
static bool sim_initiates_p2p(enum mig_state s, bool dma_off)
{
        return mig_state_initiates_p2p(s) && !dma_off;
}

static void sim_peer_clear(gpointer p)
{
        g_free(((SimPeer *)p)->name);
}

/*
 * No complete index: every device file of dir, adding the index entries of those in a group
 * and then the marker, so the next arc lists its group instead. Returns the names to check
 * for peers: all of them. Without a writable index it stays a scan on every arc.
 */
static int sim_peers_rebuild(const char *dir, const SimDevice *self, GPtrArray **ret)
{
        g_autofree char *root = index_root(dir);
        g_autoptr(GError) error = NULL;
        bool complete;
        int r;

        r = sim_dir_names(dir, ret, &error);
        if (r < 0) {
                log_warning("sim device %s: cannot look for peers: %s", self->name, error->message);
                return r;
        }
        if (g_mkdir_with_parents(root, 0755) < 0) {
                static gint warned;

                if (g_atomic_int_compare_and_exchange(&warned, 0, 1))
                        log_warning("sim device %s: cannot create the P2P peer index %s: %s; "
                                    "every arc reads every device file until it can (remove "
                                    "what is in the way)",
                                    self->name, root, g_strerror(errno));
                return 0;
        }
        complete = true;
        for (guint i = 0; complete && i < (*ret)->len; i++) {
                g_autoptr(SimDevice) d = NULL;

                /* A device removed meanwhile needs no entry; a malformed one is no peer. */
                if (sim_file_load(dir, (*ret)->pdata[i], &d, NULL) < 0 || !*d->p2p_group)
                        continue;
                if (index_add(dir, d->p2p_group, d->name, &error) < 0) {
                        log_warning("sim device %s: %s", self->name, error->message);
                        complete = false;
                }
        }
        if (complete && (r = index_mark_complete(dir)) < 0)
                log_warning("sim device %s: cannot mark the P2P peer index %s complete: %s",
                            self->name, root, g_strerror(-r));
        else if (complete)
                log_info("sim directory %s: P2P peer index rebuilt for %u devices", dir,
                         (*ret)->len);
        return 0;
}

/* Peers are read without their locks: a peer's state is whatever its last write says. */
static GArray *sim_peers_read(const char *dir, const SimDevice *self)
{
        g_autofree char *needle = g_strdup_printf("\"%s\"", self->p2p_group);
        g_autoptr(GPtrArray) names = NULL;
        g_autoptr(GError) error = NULL;
        GArray *peers = g_array_new(FALSE, FALSE, sizeof(SimPeer));

        g_array_set_clear_func(peers, sim_peer_clear);
        /* The index names candidates, maybe stale ones: each is checked as the scan did. */
        if ((!index_complete(dir) || index_names(dir, self->p2p_group, &names) < 0) &&
            sim_peers_rebuild(dir, self, &names) < 0)
                return peers;
        for (guint i = 0; i < names->len; i++) {
                g_autoptr(SimDevice) d = NULL;
                g_autofree char *text = NULL;
                gsize len;

                if (strcmp(names->pdata[i], self->name) == 0 ||
                    sim_file_read_text(dir, names->pdata[i], &text, &len, NULL) < 0)
                        continue;
                /* Cheap filter: a file without the group's name is no peer, no need to parse. */
                if (!strstr(text, needle))
                        continue;
                if (sim_text_parse(dir, names->pdata[i], text, len, &d, &error) < 0) {
                        log_warning("sim device %s: skipping a peer: %s", self->name,
                                    error->message);
                        g_clear_error(&error);
                        continue;
                }
                if (strcmp(d->p2p_group, self->p2p_group) == 0)
                        g_array_append_val(peers,
                                           ((SimPeer){g_strdup(d->name), d->state, d->dma_off}));
        }
        return peers;
}

/*
 * Under d's lock, after d moved: records events on d for peers that can DMA into it now,
 * and returns the stopped peers d itself can now DMA into (marked by sim_peers_mark).
 */
static GPtrArray *sim_peers_check(const char *dir, SimDevice *d)
{
        bool stopped = state_is_stopped(d->state);
        bool initiates = sim_initiates_p2p(d->state, d->dma_off);
        GPtrArray *victims;
        GArray *peers;

        if (!*d->p2p_group || (!stopped && !initiates))
                return NULL;
        peers = sim_peers_read(dir, d);
        victims = g_ptr_array_new_with_free_func(g_free);
        for (guint i = 0; i < peers->len; i++) {
                const SimPeer *p = &g_array_index(peers, SimPeer, i);

                if (stopped && sim_initiates_p2p(p->state, p->dma_off))
                        sim_device_add_event(d, p->name, p->state);
                if (initiates && state_is_stopped(p->state))
                        g_ptr_array_add(victims, g_strdup(p->name));
        }
        g_array_unref(peers);
        return victims;
}

typedef struct PeerMark {
        const char *peer;
        enum mig_state peer_state;
} PeerMark;

static int peer_mark_corrupted(SimDevice *victim, void *userdata, GError **error)
{
        const PeerMark *m = userdata;

        if (!state_is_stopped(victim->state)) /* moved on meanwhile */
                return 1;
        sim_device_add_event(victim, m->peer, m->peer_state);
        return 0;
}

/* Called without the lock of the device that moved: holding it while taking a peer's lock
 * would deadlock with a peer doing the same towards us. */
static void sim_peers_mark(const char *dir, const char *peer, enum mig_state peer_state,
                           GPtrArray *victims)
{
        PeerMark m = {peer, peer_state};

        for (guint i = 0; victims && i < victims->len; i++) {
                g_autoptr(GError) error = NULL;

                if (sim_update(dir, victims->pdata[i], peer_mark_corrupted, &m, &error) < 0)
                        log_warning("sim device %s: cannot record corruption caused by %s: %s",
                                    (const char *)victims->pdata[i], peer, error->message);
        }
        if (victims)
                g_ptr_array_unref(victims);
}

/* ---- the backend: one handle per opened device ---- */

typedef struct SimHandle {
        char *dir;
        char *name;
        int session_fd; /* our dup of the open data session's fd, -1 when none */
        gint cancel;    /* set by cancel; a HANG polls it; cleared when set_state returns */
        /* What the file said at a version (see version_bump); guarded by cache_lock because
         * the event loop may read a state while a worker drives the device. */
        GMutex cache_lock;
        bool cache_valid;
        uint64_t cache_version;
        enum mig_state cache_state;
        uint32_t cache_flags;
} SimHandle;

/* The device's state and flags, parsing the file only when its version moved on. */
static int handle_peek(SimHandle *h, enum mig_state *ret_state, uint32_t *ret_flags)
{
        g_autoptr(SimDevice) d = NULL;
        g_autoptr(GError) error = NULL;
        uint64_t v = 0;
        bool versioned;
        int r;

        /* The version is read before the file: a write in between only costs a re-read. */
        versioned = version_read(h->dir, h->name, &v) >= 0;
        g_mutex_lock(&h->cache_lock);
        if (versioned && h->cache_valid && h->cache_version == v) {
                *ret_state = h->cache_state;
                *ret_flags = h->cache_flags;
                g_mutex_unlock(&h->cache_lock);
                return 0;
        }
        g_mutex_unlock(&h->cache_lock);
        r = sim_file_load(h->dir, h->name, &d, &error);
        if (r < 0) {
                log_warning("%s", error->message);
                return r;
        }
        g_mutex_lock(&h->cache_lock);
        h->cache_valid = versioned;
        h->cache_version = v;
        h->cache_state = d->state;
        h->cache_flags = d->flags;
        g_mutex_unlock(&h->cache_lock);
        *ret_state = d->state;
        *ret_flags = d->flags;
        return 0;
}

static int sim_op_query_flags(Device *dev, uint32_t *ret_flags)
{
        enum mig_state state;
        int r = handle_peek(dev->backend_data, &state, ret_flags);

        if (r < 0)
                return r;
        dev->info.migration_flags = *ret_flags;
        return 0;
}

static int sim_op_get_state(Device *dev, enum mig_state *ret_state)
{
        uint32_t flags;

        return handle_peek(dev->backend_data, ret_state, &flags);
}

static void session_end(SimHandle *h)
{
        closep(&h->session_fd);
}

static int session_record(SimHandle *h, SimDevice *d, int fd, enum sim_record_kind kind,
                          GError **error)
{
        g_autofree char *path = state_path(h->dir, h->name);
        SimIdentity id = {d->driver, d->vendor_id, d->device_id};
        int r;

        r = sim_record_append_from_state(fd, kind, &id, d->seed, d->generation, path,
                                         d->blob_size, error);
        if (r >= 0 && kind == SIM_RECORD_FINAL) {
                d->saves++;
                g_free(d->saved_sha256);
                d->saved_sha256 = g_strdup(d->blob_sha256);
        }
        return r;
}

/*
 * The data fd of a session: an unlinked file in the device directory, the simulated device's
 * own storage, as a real device keeps its state in its own memory. Not a memfd: a stream of
 * any size would then sit in the daemon's memory (issue 11, reproduction 9).
 */
static int session_file(SimHandle *h, GError **error)
{
        g_autofree char *tmpl = NULL;
        int fd = open(h->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

        if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
                goto out;
        /* A file system without O_TMPFILE: a unique name, unlinked at once. */
        tmpl = g_strdup_printf("%s/.%s.session-XXXXXX", h->dir, h->name);
        fd = g_mkstemp_full(tmpl, O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
                unlink(tmpl);
out:
        if (fd < 0)
                return sim_error(error, -errno,
                                 "Cannot create a data fd for %s in %s: %s; check the "
                                 "directory's permissions and free space",
                                 h->name, h->dir, g_strerror(errno));
        return fd;
}

/* A new data session: a file for the caller, our dup kept for later records and the load. */
static int session_open(SimHandle *h, SimDevice *d, enum sim_record_kind kind, int *ret_fd,
                        GError **error)
{
        _cleanup_close_ int fd = session_file(h, error);
        int keep, r;

        if (fd < 0)
                return fd;
        if (kind != SIM_RECORD_NONE) {
                r = session_record(h, d, fd, kind, error);
                if (r < 0)
                        return r;
        }
        keep = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (keep < 0)
                return sim_error(error, -errno, "Cannot duplicate the data fd of %s: %s", h->name,
                                 g_strerror(errno));
        session_end(h);
        h->session_fd = keep;
        closep(ret_fd);
        *ret_fd = steal_fd(&fd);
        return 0;
}

static int session_step(SimHandle *h, SimDevice *d, enum mig_state from, enum mig_state to,
                        int *ret_fd, GError **error)
{
        if (mig_arc_opens_data_fd(from, to))
                return session_open(h, d,
                                    to == MIG_STATE_RESUMING    ? SIM_RECORD_NONE
                                    : to == MIG_STATE_STOP_COPY ? SIM_RECORD_FINAL
                                                                : SIM_RECORD_PRECOPY,
                                    ret_fd, error);
        if (to == MIG_STATE_STOP_COPY) {
                /* PRE_COPY(_P2P)->STOP_COPY: the FINAL record follows the PRECOPY one on the
                 * same fd. A handle opened after the session began has no fd to append to;
                 * a fresh one is the best it can offer. */
                if (h->session_fd < 0)
                        return session_open(h, d, SIM_RECORD_FINAL, ret_fd, error);
                return session_record(h, d, h->session_fd, SIM_RECORD_FINAL, error);
        }
        if (mig_state_is_saving(from) && !mig_state_is_saving(to))
                session_end(h);
        return 0;
}

/* RESUMING->STOP: the device takes on what was written, or stays RESUMING as the kernel's do. */
static int resume_load(SimHandle *h, SimDevice *d, GError **error)
{
        g_autofree char *path = state_path(h->dir, h->name);
        g_autoptr(GError) defect = NULL;
        SimIdentity id = {d->driver, d->vendor_id, d->device_id};
        SimStreamFinalRef fin = {0};
        char hex[2 * SIM_DIGEST_LEN + 1];
        int r;

        /* Checked, then copied into the state file, a chunk at a time: the stream is never
         * in memory whole, whatever its size. */
        r = sim_stream_check_fd(h->session_fd, &id, &fin, &defect);
        if (r == -EINVAL)
                return sim_error(error, -EINVAL,
                                 "RESUMING>STOP rejected the migration stream: %s; the device "
                                 "stays RESUMING until reset",
                                 defect->message);
        if (r < 0)
                return sim_error(error, r, "RESUMING>STOP cannot read the data fd: %s",
                                 defect->message);
        r = sim_blob_write_file_from_fd(path, h->session_fd, fin.blob_offset, fin.blob_size, hex,
                                        error);
        if (r < 0)
                return r;
        d->seed = fin.seed;
        d->generation = fin.generation;
        d->blob_size = fin.blob_size;
        g_free(d->blob_sha256);
        d->blob_sha256 = g_strdup(hex);
        g_free(d->loaded_sha256);
        d->loaded_sha256 = g_strdup(hex);
        d->loads++;
        session_end(h);
        return 0;
}

static int arc_apply(SimHandle *h, SimDevice *d, enum mig_state from, enum mig_state to,
                     int *ret_fd, GError **error)
{
        int r;

        /* A running device changes its own state; leaving a running state shows that in the
         * generation and the blob, so a stream saved before the device stopped differs. */
        if (mig_state_is_running(from)) {
                g_autofree char *path = state_path(h->dir, h->name);
                char hex[2 * SIM_DIGEST_LEN + 1];

                r = sim_blob_mutate_file(path, d->blob_size, d->seed, d->generation + 1, hex,
                                         error);
                if (r < 0)
                        return r;
                d->generation++;
                g_free(d->blob_sha256);
                d->blob_sha256 = g_strdup(hex);
        }
        if (from == MIG_STATE_RESUMING && to == MIG_STATE_STOP)
                r = resume_load(h, d, error);
        else
                r = session_step(h, d, from, to, ret_fd, error);
        if (r >= 0) {
                d->state = to;
                d->dma_off = false; /* moving again: its driver runs it (SimDevice.dma_off) */
        }
        return r;
}

static int fault_match(const SimDevice *d, enum mig_state from, enum mig_state to)
{
        for (guint i = 0; i < d->faults->len; i++) {
                const SimFault *f = &g_array_index(d->faults, SimFault, i);

                if ((f->from == MIG_STATE_COUNT || f->from == from) &&
                    (f->to == MIG_STATE_COUNT || f->to == to))
                        return (int)i;
        }
        return -1;
}

static void fault_count_down(SimDevice *d, int idx)
{
        SimFault *f = &g_array_index(d->faults, SimFault, idx);

        if (f->remaining > 0 && --f->remaining == 0)
                g_array_remove_index(d->faults, (guint)idx);
}

static int fault_fire(SimHandle *h, SimDevice *d, int idx, enum mig_state original,
                      enum mig_state from, enum mig_state to, GError **error)
{
        SimFault f = g_array_index(d->faults, SimFault, idx);

        fault_count_down(d, idx);
        if (f.action == SIM_FAULT_ERROR)
                d->state = MIG_STATE_ERROR;
        else if (f.leave == SIM_LEAVE_ORIGINAL)
                d->state = original;
        if (!mig_state_is_saving(d->state) && d->state != MIG_STATE_RESUMING)
                session_end(h);
        return sim_error(error, -f.error, "%s>%s failed with injected %s (%s); device left %s",
                         mig_state_to_string(from), mig_state_to_string(to),
                         strerrorname_np(f.error) ?: "errno", sim_fault_action_to_string(f.action),
                         mig_state_to_string(d->state));
}

static int hang_count_down(SimDevice *d, void *userdata, GError **error)
{
        const SimFault *arc = userdata;
        int idx = fault_match(d, arc->from, arc->to);

        if (idx < 0 || g_array_index(d->faults, SimFault, idx).action != SIM_FAULT_HANG)
                return 1;
        fault_count_down(d, idx);
        return 0;
}

static bool hang_present(SimHandle *h, enum mig_state from, enum mig_state to)
{
        g_autoptr(SimDevice) d = NULL;
        int idx;

        /* An unreadable file ends the hang; the locked step after it reports the defect. */
        if (sim_file_load(h->dir, h->name, &d, NULL) < 0 || d->state != from)
                return false;
        idx = fault_match(d, from, to);
        return idx >= 0 && g_array_index(d->faults, SimFault, idx).action == SIM_FAULT_HANG;
}

static int hang_wait(SimHandle *h, enum mig_state from, enum mig_state to)
{
        SimFault arc = {.from = from, .to = to};

        log_info("sim device %s: %s>%s hangs (injected) until the fault is cleared or the "
                 "transition is cancelled",
                 h->name, mig_state_to_string(from), mig_state_to_string(to));
        while (!g_atomic_int_get(&h->cancel)) {
                if (!hang_present(h, from, to))
                        return 0;
                g_usleep(SIM_HANG_POLL_US);
        }
        /* A cancelled hang counts as one firing, so 'times' bounds how often it hangs. */
        sim_update(h->dir, h->name, hang_count_down, &arc, NULL);
        log_info("sim device %s: %s>%s cancelled; device stays %s", h->name,
                 mig_state_to_string(from), mig_state_to_string(to), mig_state_to_string(from));
        return -ECANCELED;
}

/* A set_state in progress: the lock is held across arcs without latency, so a zero-latency
 * walk reads the device file once and writes it once per arc. */
typedef struct Walk {
        SimHandle *h;
        SimDevice *d; /* the device as we last read or wrote it */
        int lock_fd;  /* >= 0 while we hold the device lock */
        enum mig_state original;
        int *ret_fd;
} Walk;

static void walk_unlock(Walk *w)
{
        sim_unlock(w->h->dir, w->h->name, w->lock_fd, true);
        w->lock_fd = -1;
}

/* Takes the lock and re-reads the device, which must still be where the walk left it. */
static int walk_lock(Walk *w, enum mig_state from, enum mig_state to, GError **error)
{
        int r;

        w->lock_fd = sim_lock(w->h->dir, w->h->name, error);
        if (w->lock_fd < 0)
                return w->lock_fd;
        g_clear_pointer(&w->d, sim_device_free);
        r = sim_file_load(w->h->dir, w->h->name, &w->d, error);
        if (r >= 0 && w->d->state != from)
                r = sim_error(error, -EBUSY,
                              "%s>%s found the device %s: its state was changed by someone "
                              "else meanwhile",
                              mig_state_to_string(from), mig_state_to_string(to),
                              mig_state_to_string(w->d->state));
        return r;
}

static uint32_t arc_latency_ms(const SimDevice *d, enum mig_state from, enum mig_state to)
{
        char key[64];
        gpointer ms;

        snprintf(key, sizeof(key), "%s>%s", mig_state_to_string(from), mig_state_to_string(to));
        if (g_hash_table_lookup_extended(d->arc_latency_ms, key, NULL, &ms))
                return GPOINTER_TO_UINT(ms);
        return d->latency_ms;
}

/* Sleeps the arc's latency, waits out a HANG; returns locked with the fault to fire or -1. */
static int walk_arc_ready(Walk *w, enum mig_state from, enum mig_state to, int *ret_fault,
                          GError **error)
{
        uint32_t ms = arc_latency_ms(w->d, from, to);
        int idx, r;

        for (;;) {
                if (ms || w->lock_fd < 0) {
                        walk_unlock(w);
                        /* The device "works" without its lock, so readers and peers go on. */
                        if (ms)
                                g_usleep((gulong)ms * 1000);
                        ms = 0;
                        r = walk_lock(w, from, to, error);
                        if (r < 0)
                                return r;
                }
                idx = fault_match(w->d, from, to);
                if (idx < 0 || g_array_index(w->d->faults, SimFault, idx).action != SIM_FAULT_HANG)
                        break;
                walk_unlock(w);
                r = hang_wait(w->h, from, to);
                if (r < 0)
                        return r;
        }
        *ret_fault = idx;
        return 0;
}

/* One arc: a fault fires or the arc happens; the device file is written either way (the
 * blob file may have moved on), then peers the device can now DMA into are marked. */
static int walk_arc(Walk *w, enum mig_state from, enum mig_state to)
{
        g_autoptr(GError) error = NULL;
        GPtrArray *victims;
        int idx = -1, r, stored;

        r = walk_arc_ready(w, from, to, &idx, &error);
        if (r == -ECANCELED)
                return r;
        if (r < 0)
                goto out;
        if (idx >= 0)
                r = fault_fire(w->h, w->d, idx, w->original, from, to, &error);
        else
                r = arc_apply(w->h, w->d, from, to, w->ret_fd, &error);
        victims = sim_peers_check(w->h->dir, w->d);
        stored = sim_file_store(w->h->dir, w->d, w->lock_fd, r >= 0 ? &error : NULL);
        r = r < 0 ? r : stored;
        if (victims) {
                /* Never hold our lock while taking a peer's: a peer may do the same to us. */
                walk_unlock(w);
                sim_peers_mark(w->h->dir, w->h->name, w->d->state, victims);
        }
        if (r < 0 && idx < 0)
                closep(w->ret_fd);
out:
        if (r < 0)
                log_warning("sim device %s: %s", w->h->name, error->message);
        return r;
}

static int sim_op_set_state(Device *dev, enum mig_state target, int *ret_fd)
{
        g_autoptr(GError) error = NULL;
        Walk w = {.h = dev->backend_data, .lock_fd = -1, .ret_fd = ret_fd};
        enum mig_state path[MIG_PATH_MAX];
        size_t len = 0;
        int r;

        *ret_fd = -1;
        w.lock_fd = sim_lock(w.h->dir, w.h->name, &error);
        r = w.lock_fd < 0 ? w.lock_fd : sim_file_load(w.h->dir, w.h->name, &w.d, &error);
        if (r < 0)
                log_warning("sim device %s: %s", w.h->name, error->message);
        else if ((r = mig_path(w.d->flags, w.d->state, target, path, &len)) < 0)
                log_info("sim device %s: %s>%s refused: not a request the kernel takes for "
                         "flags %s",
                         w.h->name, mig_state_to_string(w.d->state), mig_state_to_string(target),
                         mig_flags_to_string(w.d->flags));
        if (r >= 0)
                w.original = path[0];
        for (size_t i = 1; r >= 0 && i < len; i++)
                r = walk_arc(&w, path[i - 1], path[i]);
        walk_unlock(&w);
        sim_device_free(w.d);
        g_atomic_int_set(&w.h->cancel, 0);
        return r;
}

typedef struct ResetCtx {
        const char *dir;
        GPtrArray *victims;
} ResetCtx;

static int reset_apply(SimDevice *d, void *userdata, GError **error)
{
        ResetCtx *c = userdata;
        int r;

        /* A new generation regenerates every page: the state from before is gone. */
        d->generation++;
        r = sim_blob_regenerate(c->dir, d, error);
        if (r < 0)
                return r;
        d->state = MIG_STATE_RUNNING;
        d->dma_off = true;
        d->resets++;
        c->victims = sim_peers_check(c->dir, d);
        return 0;
}

static int sim_op_reset(Device *dev)
{
        SimHandle *h = dev->backend_data;
        g_autoptr(GError) error = NULL;
        ResetCtx c = {h->dir, NULL};
        int r;

        r = sim_update(h->dir, h->name, reset_apply, &c, &error);
        session_end(h);
        g_atomic_int_set(&h->cancel, 0);
        sim_peers_mark(h->dir, h->name, MIG_STATE_RUNNING, c.victims);
        if (r < 0)
                log_warning("sim device %s: reset failed: %s", h->name, error->message);
        return r;
}

static void sim_op_cancel(Device *dev)
{
        SimHandle *h = dev->backend_data;

        g_atomic_int_set(&h->cancel, 1);
}

static void sim_op_close(Device *dev)
{
        SimHandle *h = dev->backend_data;

        if (!h)
                return;
        session_end(h);
        g_mutex_clear(&h->cache_lock);
        g_free(h->dir);
        g_free(h->name);
        g_free(h);
        dev->backend_data = NULL;
}

static const DeviceOps sim_ops = {
    .query_flags = sim_op_query_flags,
    .get_state = sim_op_get_state,
    .set_state = sim_op_set_state,
    .reset = sim_op_reset,
    .cancel = sim_op_cancel,
    .close = sim_op_close,
};

static int sim_backend_enumerate(Backend *b, GPtrArray **ret_names)
{
        g_autoptr(GError) error = NULL;
        int r = sim_dir_names(b->data, ret_names, &error);

        if (r < 0)
                log_warning("%s", error->message);
        return r;
}

static int sim_backend_open(Backend *b, const char *name, Device **ret)
{
        g_autoptr(SimDevice) d = NULL;
        g_autoptr(GError) error = NULL;
        SimHandle *h;
        Device *dev;
        int r;

        if (check_name(name, NULL) < 0)
                return -ENOENT;
        r = sim_file_load(b->data, name, &d, &error);
        if (r < 0) {
                if (r != -ENOENT)
                        log_warning("%s", error->message);
                return r;
        }
        h = g_new0(SimHandle, 1);
        h->dir = g_strdup(b->data);
        h->name = g_strdup(name);
        h->session_fd = -1;
        g_mutex_init(&h->cache_lock);
        dev = g_new0(Device, 1);
        dev->ops = &sim_ops;
        dev->backend_data = h;
        dev->refcount = 1;
        dev->info = (DeviceInfo){
            .name = g_strdup(d->name),
            .driver = g_strdup(d->driver),
            .iommu_group = g_strdup(d->iommu_group),
            .vendor_id = d->vendor_id,
            .device_id = d->device_id,
            .migration_flags = d->flags,
        };
        *ret = dev;
        return 0;
}

static void sim_backend_free(Backend *b)
{
        g_free(b->data);
        g_free(b);
}

int sim_backend_new(const char *dir, Backend **ret, GError **error)
{
        Backend *b;
        int r;

        if (!dir || !*dir)
                return sim_error(error, -EINVAL, "No sim directory given");
        r = sim_dir_check(dir, true, error);
        if (r < 0)
                return r;
        b = g_new0(Backend, 1);
        b->name = "sim";
        b->enumerate = sim_backend_enumerate;
        b->open_device = sim_backend_open;
        b->free = sim_backend_free;
        b->data = g_strdup(dir);
        *ret = b;
        return 0;
}
