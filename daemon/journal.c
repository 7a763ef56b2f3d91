/* journal: the crash-safe record of registered VMs and the sequences in flight */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safe-dir.h"
#include "util.h"

#define JOURNAL_TMP JOURNAL_FILE ".tmp"

struct Journal {
        char *dir, *path;
        int dir_fd;
        GHashTable *vms; /* name -> JournalVm* */
        json_t *payload; /* {"vms": {name: record}}: one record rebuilt per change */
        bool dirty;      /* a phase is recorded in memory only (journal_phase()) */
        uint64_t n_writes, n_syncs;
};

void journal_sequence_free(JournalSequence *s)
{
        if (!s)
                return;
        g_free(s->begin_states);
        g_strfreev(s->phases);
        g_free(s->phase);
        g_free(s);
}

JournalSequence *journal_sequence_copy(const JournalSequence *s, size_t n_devices)
{
        JournalSequence *c = g_new0(JournalSequence, 1);

        *c = *s;
        c->begin_states = g_memdup2(s->begin_states, n_devices * sizeof(enum mig_state));
        c->phases = g_strdupv(s->phases);
        c->phase = g_strdup(s->phase);
        return c;
}

void journal_vm_free(JournalVm *v)
{
        if (!v)
                return;
        g_free(v->name);
        g_free(v->origin);
        g_strfreev(v->devices);
        journal_sequence_free(v->seq);
        g_free(v);
}

static JournalVm *journal_vm_copy(const JournalVm *v)
{
        JournalVm *c = g_new0(JournalVm, 1);

        c->name = g_strdup(v->name);
        c->origin = g_strdup(v->origin);
        c->devices = g_strdupv(v->devices);
        c->n_devices = v->n_devices;
        c->options = v->options;
        c->seq = v->seq ? journal_sequence_copy(v->seq, v->n_devices) : NULL;
        c->handoff = v->handoff;
        return c;
}

static const char *const handoff_names[] = {
    [JOURNAL_HANDOFF_NONE] = "none",
    [JOURNAL_HANDOFF_COMMITTING] = "committing",
    [JOURNAL_HANDOFF_HANDED_OFF] = "handed-off",
};

const char *journal_handoff_to_string(JournalHandoff h)
{
        return (size_t)h < G_N_ELEMENTS(handoff_names) ? handoff_names[h] : "none";
}

static int handoff_from_string(const char *s, JournalHandoff *ret)
{
        for (size_t i = 0; i < G_N_ELEMENTS(handoff_names); i++)
                if (strcmp(s, handoff_names[i]) == 0) {
                        *ret = (JournalHandoff)i;
                        return 0;
                }
        return -EINVAL;
}

static int journal_error(GError **error, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int journal_error(GError **error, int err, const char *fmt, ...)
{
        va_list ap;

        if (error) {
                va_start(ap, fmt);
                g_autofree char *msg = g_strdup_vprintf(fmt, ap);
                va_end(ap);
                g_set_error_literal(error, G_FILE_ERROR, g_file_error_from_errno(-err), msg);
        }
        return err;
}

/* The pid a lock file names, or 0. */
static long lock_holder(int fd)
{
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

        return n > 0 ? strtol(buf, NULL, 10) : 0;
}

static const SafeDirUse state_dir_use = {"state directory", "--state-dir"};

int journal_lock_dir(const char *dir, int *ret_fd, GError **error)
{
        g_autofree char *path = g_build_filename(dir, JOURNAL_LOCK_FILE, NULL);
        g_autofree char *pid = g_strdup_printf("%ld\n", (long)getpid());
        _cleanup_close_ int dir_fd = -1, fd = -1;
        long holder;
        int r;

        r = safe_dir_open(dir, 0700, &state_dir_use, &dir_fd, error);
        if (r < 0)
                return r;
        fd = safe_file_open(dir_fd, JOURNAL_LOCK_FILE, O_RDWR | O_CREAT, 0600);
        if (fd < 0)
                return journal_error(error, fd,
                                     "Cannot open the state directory's lock %s: %s. The state "
                                     "directory must be writable (the crash journal lives "
                                     "there): fix it, or give another one with --state-dir.",
                                     path, g_strerror(-fd));
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                r = -errno;
                if (r != -EWOULDBLOCK)
                        return journal_error(error, r, "Cannot lock %s: %s.", path, g_strerror(-r));
                holder = lock_holder(fd);
                return journal_error(error, -EWOULDBLOCK,
                                     "The state directory %s is in use by another vfio-migd "
                                     "(pid %ld holds %s). Two daemons must not share a crash "
                                     "journal: give this one its own --state-dir.",
                                     dir, holder, path);
        }
        errno = 0;
        if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, strlen(pid), 0) != (ssize_t)strlen(pid))
                return journal_error(error, -errno ? -errno : -EIO,
                                     "Cannot write to the state directory's lock %s: %s. The "
                                     "state directory must be writable: fix it, or give another "
                                     "one with --state-dir.",
                                     path, g_strerror(errno ? errno : EIO));
        *ret_fd = steal_fd(&fd);
        return 0;
}

int journal_open(const char *dir, Journal **ret, GError **error)
{
        g_autoptr(Journal) j = g_new0(Journal, 1);
        int r;

        j->dir_fd = -1;
        j->dir = g_strdup(dir);
        j->path = g_build_filename(dir, JOURNAL_FILE, NULL);
        j->vms =
            g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)journal_vm_free);
        j->payload = json_pack("{s:{}}", "vms");
        r = safe_dir_open(dir, 0700, &state_dir_use, &j->dir_fd, error);
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&j);
        return 0;
}

void journal_free(Journal *j)
{
        if (!j)
                return;
        closep(&j->dir_fd);
        g_hash_table_destroy(j->vms);
        json_decref(j->payload);
        g_free(j->dir);
        g_free(j->path);
        g_free(j);
}

const char *journal_path(const Journal *j)
{
        return j->path;
}

static int journal_write(Journal *j, bool sync, GError **error);

uint64_t journal_n_writes(const Journal *j)
{
        return j->n_writes;
}

uint64_t journal_n_syncs(const Journal *j)
{
        return j->n_syncs;
}

bool journal_dirty(const Journal *j)
{
        return j->dirty;
}

int journal_flush(Journal *j, GError **error)
{
        return j->dirty ? journal_write(j, false, error) : 0;
}

const JournalVm *journal_get_vm(const Journal *j, const char *name)
{
        return g_hash_table_lookup(j->vms, name);
}

size_t journal_n_vms(const Journal *j)
{
        return g_hash_table_size(j->vms);
}

/* ---- records as JSON ---- */

static json_t *strv_to_json(char *const *v)
{
        json_t *a = json_array();

        for (; v && *v; v++)
                json_array_append_new(a, json_string(*v));
        return a;
}

static json_t *options_to_json(const VmOptions *o)
{
        json_t *obj = json_object();

        if (o->explicit_mask & VM_OPT_STRATEGY)
                json_object_set_new(obj, "strategy",
                                    json_string(plan_strategy_to_string(o->strategy)));
        if (o->explicit_mask & VM_OPT_P2P_MODE)
                json_object_set_new(obj, "p2p-mode",
                                    json_string(plan_p2p_mode_to_string(o->p2p_mode)));
        if (o->explicit_mask & VM_OPT_PHASE_DEADLINE)
                json_object_set_new(obj, "phase-deadline-ms", json_integer(o->phase_deadline_ms));
        if (o->explicit_mask & VM_OPT_PARALLELISM)
                json_object_set_new(obj, "parallelism", json_integer(o->parallelism));
        return obj;
}

static json_t *sequence_to_json(const JournalSequence *s, size_t n_devices)
{
        json_t *states = json_array();

        for (size_t i = 0; i < n_devices; i++)
                json_array_append_new(states, json_string(mig_state_to_string(s->begin_states[i])));
        return json_pack("{s:s,s:o,s:o,s:s?,s:I,s:b,s:I}", "operation", plan_op_to_string(s->op),
                         "begin-states", states, "phases", strv_to_json(s->phases), "phase",
                         s->phase, "phase-index", (json_int_t)s->phase_index, "rollback",
                         s->rollback, "started-us", (json_int_t)s->started_us);
}

static json_t *vm_to_json(const JournalVm *v)
{
        json_t *o = json_pack("{s:s,s:o,s:o}", "origin", v->origin, "devices",
                              strv_to_json(v->devices), "options", options_to_json(&v->options));

        if (v->seq)
                json_object_set_new(o, "sequence", sequence_to_json(v->seq, v->n_devices));
        /* Absent when none, so a journal without hand-offs reads as before. */
        if (v->handoff != JOURNAL_HANDOFF_NONE)
                json_object_set_new(o, "handoff",
                                    json_string(journal_handoff_to_string(v->handoff)));
        return o;
}

/* ---- writing ---- */

static char *payload_checksum(const char *payload)
{
        return g_compute_checksum_for_string(G_CHECKSUM_SHA256, payload, -1);
}

/*
 * The whole file, through a temporary file, so a crash leaves the old one or the new one:
 * the rename alone is atomic for every process that reads after the daemon died. sync adds
 * the fsyncs that make it durable across a crash of the host too.
 */
static int journal_write(Journal *j, bool sync, GError **error)
{
        g_autofree char *payload = json_dumps(j->payload, JSON_COMPACT | JSON_SORT_KEYS);
        g_autofree char *sum = NULL, *text = NULL;
        g_autoptr(GError) local = NULL;
        int r;

        if (!payload)
                return journal_error(error, -ENOMEM, "Cannot serialize the journal %s.", j->path);
        sum = payload_checksum(payload);
        text = g_strdup_printf("{\"format\":\"%s\",\"version\":%d,\"checksum\":\"%s\","
                               "\"payload\":%s}\n",
                               JOURNAL_FORMAT, JOURNAL_VERSION, sum, payload);

        r = safe_file_replace(j->dir_fd, j->dir, JOURNAL_FILE, JOURNAL_TMP, text, strlen(text),
                              0600, sync ? SAFE_FILE_SYNC : 0, &local);
        if (r < 0)
                return journal_error(error, r, "Journal %s: %s; the previous journal stays.",
                                     j->path, local->message);
        j->n_writes++;
        j->dirty = false;
        if (sync)
                j->n_syncs++;
        return 0;
}

static void payload_update(Journal *j, const JournalVm *v)
{
        json_object_set_new(json_object_get(j->payload, "vms"), v->name, vm_to_json(v));
}

/*
 * Writes the records as they are in memory. They stay dirty until a write succeeds, so a
 * change whose write failed is carried by the next write (or journal_flush()), never lost.
 */
static int journal_store(Journal *j, bool sync, GError **error)
{
        j->dirty = true;
        return journal_write(j, sync, error);
}

/* ---- reading ---- */

static int bad(GError **error, const Journal *j, const char *vm, const char *what)
{
        if (vm)
                return journal_error(error, -EBADMSG,
                                     "Journal %s: VM '%s' %s; the file was not written by this "
                                     "daemon or was damaged.",
                                     j->path, vm, what);
        return journal_error(error, -EBADMSG,
                             "Journal %s: %s; the file was not written by this daemon or was "
                             "damaged.",
                             j->path, what);
}

static int strv_from_json(const json_t *a, char ***ret, size_t *ret_n)
{
        g_autoptr(GPtrArray) v = g_ptr_array_new_with_free_func(g_free);
        size_t i;
        json_t *e;

        if (!json_is_array(a))
                return -EBADMSG;
        json_array_foreach(a, i, e)
        {
                if (!json_is_string(e))
                        return -EBADMSG;
                g_ptr_array_add(v, g_strdup(json_string_value(e)));
        }
        if (ret_n)
                *ret_n = v->len;
        g_ptr_array_add(v, NULL);
        *ret = (char **)g_ptr_array_free(g_steal_pointer(&v), false);
        return 0;
}

static int options_from_json(const json_t *o, VmOptions *ret)
{
        const char *key;
        json_t *v;

        vm_options_init(ret);
        if (!json_is_object(o))
                return -EBADMSG;
        json_object_foreach((json_t *)o, key, v)
        {
                if (strcmp(key, "strategy") == 0 && json_is_string(v) &&
                    plan_strategy_from_string(json_string_value(v), &ret->strategy) >= 0)
                        ret->explicit_mask |= VM_OPT_STRATEGY;
                else if (strcmp(key, "p2p-mode") == 0 && json_is_string(v) &&
                         plan_p2p_mode_from_string(json_string_value(v), &ret->p2p_mode) >= 0)
                        ret->explicit_mask |= VM_OPT_P2P_MODE;
                else if (strcmp(key, "phase-deadline-ms") == 0 && json_is_integer(v) &&
                         json_integer_value(v) >= 1 &&
                         json_integer_value(v) <= VM_PHASE_DEADLINE_MAX) {
                        ret->phase_deadline_ms = (uint32_t)json_integer_value(v);
                        ret->explicit_mask |= VM_OPT_PHASE_DEADLINE;
                } else if (strcmp(key, "parallelism") == 0 && json_is_integer(v) &&
                           json_integer_value(v) >= 0 &&
                           json_integer_value(v) <= VM_PARALLELISM_MAX) {
                        ret->parallelism = (uint32_t)json_integer_value(v);
                        ret->explicit_mask |= VM_OPT_PARALLELISM;
                } else
                        return -EBADMSG;
        }
        return 0;
}

static int sequence_from_json(const json_t *o, size_t n_devices, JournalSequence **ret)
{
        JournalSequence *s;
        const char *op, *phase = NULL;
        json_t *states, *phases, *e, *phase_json = NULL;
        json_int_t index, started;
        int rollback;
        size_t i;

        /* "phase" is null until the first phase begins (a crash can come before that). */
        if (json_unpack((json_t *)o, "{s:s,s:o,s:o,s?o,s:I,s:b,s:I}", "operation", &op,
                        "begin-states", &states, "phases", &phases, "phase", &phase_json,
                        "phase-index", &index, "rollback", &rollback, "started-us",
                        &started) < 0)
                return -EBADMSG;
        if (phase_json && !json_is_null(phase_json)) {
                if (!json_is_string(phase_json))
                        return -EBADMSG;
                phase = json_string_value(phase_json);
        }
        if (!json_is_array(states) || json_array_size(states) != n_devices || index < -1 ||
            started < 0)
                return -EBADMSG;
        s = g_new0(JournalSequence, 1);
        s->begin_states = g_new0(enum mig_state, n_devices ? n_devices : 1);
        s->phase = g_strdup(phase);
        s->phase_index = index;
        s->rollback = rollback;
        s->started_us = (uint64_t)started;
        if (plan_op_from_string(op, &s->op) < 0 || strv_from_json(phases, &s->phases, NULL) < 0)
                goto fail;
        json_array_foreach(states, i,
                           e) if (!json_is_string(e) ||
                                  mig_state_from_string(json_string_value(e), &s->begin_states[i]) <
                                      0) goto fail;
        *ret = s;
        return 0;
fail:
        journal_sequence_free(s);
        return -EBADMSG;
}

static int vm_from_json(const Journal *j, const char *name, const json_t *o, JournalVm **ret,
                        GError **error)
{
        g_autoptr(JournalVm) v = g_new0(JournalVm, 1);
        json_t *devices, *options, *seq = NULL;
        const char *origin, *handoff = NULL;

        v->name = g_strdup(name);
        if (!vm_name_is_valid(name))
                return bad(error, j, name, "has a name that is not a valid VM name");
        if (json_unpack((json_t *)o, "{s:s,s:o,s:o,s?o,s?s}", "origin", &origin, "devices",
                        &devices, "options", &options, "sequence", &seq, "handoff", &handoff) < 0)
                return bad(error, j, name, "lacks origin, devices or options");
        if (handoff && handoff_from_string(handoff, &v->handoff) < 0)
                return bad(error, j, name, "has an unknown hand-off state");
        v->origin = g_strdup(origin);
        if (strv_from_json(devices, &v->devices, &v->n_devices) < 0 || v->n_devices < 1 ||
            v->n_devices > VM_DEVICES_MAX)
                return bad(error, j, name, "has a device list that is not 1 or more names");
        if (options_from_json(options, &v->options) < 0)
                return bad(error, j, name, "has an unknown or invalid option");
        if (seq && sequence_from_json(seq, v->n_devices, &v->seq) < 0)
                return bad(error, j, name, "has a malformed sequence record");
        *ret = g_steal_pointer(&v);
        return 0;
}

/* The file's envelope: format, version, checksum over the canonical payload. */
static int check_envelope(const Journal *j, json_t *root, json_t **ret_payload, GError **error)
{
        g_autofree char *canonical = NULL, *sum = NULL;
        const char *format, *checksum;
        json_t *payload, *version;

        if (json_unpack(root, "{s:s,s:o,s:s,s:o}", "format", &format, "version", &version,
                        "checksum", &checksum, "payload", &payload) < 0 ||
            strcmp(format, JOURNAL_FORMAT) != 0)
                return bad(error, j, NULL,
                           "is not a vfio-migd journal (format, version, checksum "
                           "or payload missing)");
        if (!json_is_integer(version) || json_integer_value(version) != JOURNAL_VERSION) {
                g_autofree char *v =
                    json_is_integer(version)
                        ? g_strdup_printf("%" JSON_INTEGER_FORMAT, json_integer_value(version))
                        : g_strdup("(not a number)");
                return journal_error(error, -EPROTO,
                                     "Journal %s has format version %s; this daemon reads "
                                     "version %d. It was written by another vfio-migd release.",
                                     j->path, v, JOURNAL_VERSION);
        }
        canonical = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
        sum = canonical ? payload_checksum(canonical) : NULL;
        if (!sum || g_ascii_strcasecmp(sum, checksum) != 0)
                return bad(error, j, NULL, "has a checksum that does not match its payload");
        *ret_payload = payload;
        return 0;
}

static int compare_vm_names(gconstpointer a, gconstpointer b)
{
        return strcmp((*(JournalVm *const *)a)->name, (*(JournalVm *const *)b)->name);
}

int journal_load(Journal *j, GPtrArray **ret_vms, GError **error)
{
        g_autoptr(GPtrArray) vms = g_ptr_array_new_with_free_func((GDestroyNotify)journal_vm_free);
        g_autofree char *text = NULL;
        json_error_t jerr;
        json_t *root, *payload = NULL, *records = NULL, *rec;
        const char *name;
        size_t len;
        int r;

        r = safe_file_read(j->dir_fd, JOURNAL_FILE, &text, &len);
        if (r == -ENOENT)
                return journal_error(error, -ENOENT, "No journal at %s.", j->path);
        /* Never written by us: whoever put a link there wants it read as ours. */
        if (r == -ELOOP)
                return journal_error(error, -EBADMSG,
                                     "Journal %s is a symbolic link, not a journal this daemon "
                                     "wrote.",
                                     j->path);
        if (r < 0)
                return journal_error(error, -EIO, "Cannot read the journal %s: %s.", j->path,
                                     g_strerror(-r));
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return journal_error(error, -EBADMSG,
                                     "Journal %s is not valid JSON (torn or damaged): line %d, "
                                     "column %d: %s.",
                                     j->path, jerr.line, jerr.column, jerr.text);
        r = check_envelope(j, root, &payload, error);
        if (r >= 0 && (!(records = json_object_get(payload, "vms")) || !json_is_object(records)))
                r = bad(error, j, NULL, "has a payload without its 'vms' object");
        if (r >= 0)
                json_object_foreach(records, name, rec)
                {
                        JournalVm *v = NULL;
                        r = vm_from_json(j, name, rec, &v, error);
                        if (r < 0)
                                break;
                        g_ptr_array_add(vms, v);
                }
        json_decref(root);
        if (r < 0)
                return r;

        g_ptr_array_sort(vms, compare_vm_names);
        g_hash_table_remove_all(j->vms);
        json_object_clear(json_object_get(j->payload, "vms"));
        for (guint i = 0; i < vms->len; i++) {
                JournalVm *v = journal_vm_copy(vms->pdata[i]);
                g_hash_table_insert(j->vms, v->name, v);
                payload_update(j, v);
        }
        if (ret_vms)
                *ret_vms = g_steal_pointer(&vms);
        return 0;
}

int journal_quarantine(Journal *j, char **ret_path, GError **error)
{
        g_autoptr(GDateTime) now = g_date_time_new_now_utc();
        g_autofree char *stamp = g_date_time_format(now, "%Y%m%dT%H%M%S");
        g_autofree char *name = g_strdup_printf("%s.corrupt-%s", JOURNAL_FILE, stamp);
        g_autofree char *path = g_build_filename(j->dir, name, NULL);

        if (renameat(j->dir_fd, JOURNAL_FILE, j->dir_fd, name) < 0)
                return journal_error(error, -errno, "Cannot move the journal %s aside to %s: %s.",
                                     j->path, path, g_strerror(errno));
        (void)fsync(j->dir_fd);
        if (ret_path)
                *ret_path = g_steal_pointer(&path);
        return 0;
}

/* ---- changes ---- */

int journal_put_vm(Journal *j, const char *name, const char *origin, const char *const *devices,
                   size_t n_devices, const VmOptions *options, GError **error)
{
        JournalVm *old = g_hash_table_lookup(j->vms, name);
        JournalVm *v = g_new0(JournalVm, 1);

        v->name = g_strdup(name);
        v->origin = g_strdup(origin ? origin : "dbus");
        v->devices = g_new0(char *, n_devices + 1);
        for (size_t i = 0; i < n_devices; i++)
                v->devices[i] = g_strdup(devices[i]);
        v->n_devices = n_devices;
        v->options = *options;
        if (old && old->seq && old->n_devices == n_devices)
                v->seq = g_steal_pointer(&old->seq);
        /* Registered again (libvirt, a restart): the stream may still be out there. */
        if (old)
                v->handoff = old->handoff;
        g_hash_table_replace(j->vms, v->name, v);
        payload_update(j, v);
        return journal_store(j, true, error);
}

int journal_remove_vm(Journal *j, const char *name, GError **error)
{
        gpointer key, value;
        JournalVm *v;
        int r;

        if (!g_hash_table_steal_extended(j->vms, name, &key, &value))
                return journal_error(error, -ENOENT, "Journal %s records no VM %s.", j->path, name);
        v = value;
        json_object_del(json_object_get(j->payload, "vms"), v->name);
        r = journal_store(j, true, error);
        if (r < 0) {
                /* Not forgotten unless it is forgotten on disk too. */
                g_hash_table_insert(j->vms, v->name, v);
                payload_update(j, v);
                j->dirty = true; /* the rename may have happened before the failure */
                return r;
        }
        journal_vm_free(v);
        return 0;
}

static JournalVm *lookup(Journal *j, const char *name, GError **error)
{
        JournalVm *v = g_hash_table_lookup(j->vms, name);

        if (!v)
                journal_error(error, -ENOENT, "Journal %s records no VM %s.", j->path, name);
        return v;
}

int journal_begin(Journal *j, const char *name, const JournalSequence *seq, GError **error)
{
        JournalVm *v = lookup(j, name, error);
        JournalSequence *old;
        int r;

        if (!v)
                return -ENOENT;
        old = g_steal_pointer(&v->seq);
        v->seq = journal_sequence_copy(seq, v->n_devices);
        payload_update(j, v);
        r = journal_store(j, true, error);
        if (r < 0) {
                journal_sequence_free(v->seq);
                v->seq = old;
                payload_update(j, v);
                j->dirty = true; /* the rename may have happened before the failure */
                return r;
        }
        journal_sequence_free(old);
        return 0;
}

int journal_phase(Journal *j, const char *name, const char *phase, int64_t index, bool rollback,
                  GError **error)
{
        JournalVm *v = lookup(j, name, error);

        if (!v)
                return -ENOENT;
        if (!v->seq)
                return 0;
        g_free(v->seq->phase);
        v->seq->phase = g_strdup(phase);
        v->seq->phase_index = index;
        v->seq->rollback |= rollback;
        payload_update(j, v);
        j->dirty = true;
        return 0;
}

int journal_end(Journal *j, const char *name, GError **error)
{
        JournalVm *v = lookup(j, name, error);

        if (!v)
                return -ENOENT;
        if (!v->seq)
                return 0;
        g_clear_pointer(&v->seq, journal_sequence_free);
        payload_update(j, v);
        return journal_store(j, false, error);
}

int journal_commit(Journal *j, const char *name, GError **error)
{
        JournalVm *v = lookup(j, name, error);
        JournalHandoff old;
        int r;

        if (!v)
                return -ENOENT;
        old = v->handoff;
        v->handoff = JOURNAL_HANDOFF_COMMITTING;
        payload_update(j, v);
        r = journal_store(j, true, error);
        if (r < 0) {
                v->handoff = old;
                payload_update(j, v);
                j->dirty = true; /* the rename may have happened before the failure */
        }
        return r;
}

int journal_set_handoff(Journal *j, const char *name, JournalHandoff h, GError **error)
{
        JournalVm *v = lookup(j, name, error);

        if (!v)
                return -ENOENT;
        if (v->handoff == h)
                return 0;
        v->handoff = h;
        payload_update(j, v);
        j->dirty = true;
        return 0;
}
