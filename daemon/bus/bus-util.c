/* bus-util: object paths, caller authorization and small sd-bus helpers */
#include "bus/bus-util.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/*
 * Who a caller is, as the bus driver saw it on the caller's socket: its uid (SO_PEERCRED) and
 * its groups (SO_PEERGROUPS, "UnixGroupIDs": complete or absent, by the D-Bus specification;
 * dbus-daemon 1.14 on Linux 4.13+ reports them). Both are fixed for the connection's life and
 * a unique name is never reused, so they are kept per sender.
 */
typedef struct BusCaller {
        uid_t uid;
        bool has_gids;
        GArray *gids; /* gid_t */
} BusCaller;

/* One request waiting for the bus's answer about its sender (systemd's bus-polkit shape). */
typedef struct AuthQuery {
        BusAuth *auth;
        sd_bus_message *request;
        sd_bus_slot *slot;
        char *error; /* the bus could not say who the caller is: why */
        bool done;
} AuthQuery;

/* A bound on the callers remembered; dropping them all only costs a question to the bus. */
#define BUS_AUTH_CALLERS_MAX 1024u

static void bus_caller_free(BusCaller *c)
{
        if (c->gids)
                g_array_unref(c->gids);
        g_free(c);
}

static void auth_query_free(AuthQuery *q)
{
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        g_free(q->error);
        g_free(q);
}

static void bus_auth_tables(BusAuth *auth)
{
        if (!auth->callers)
                auth->callers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                      (GDestroyNotify)bus_caller_free);
        if (!auth->pending)
                auth->pending = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                                      (GDestroyNotify)auth_query_free);
}

int bus_auth_init(BusAuth *auth, const char *group)
{
        struct group grbuf, *gr = NULL;
        g_autofree char *buf = NULL;
        long size = sysconf(_SC_GETGR_R_SIZE_MAX);
        int r;

        *auth = (BusAuth){.gid = (gid_t)-1};
        bus_auth_tables(auth);
        if (!group || !*group)
                return 0;
        if (size <= 0)
                size = 16384;
        for (;;) {
                buf = g_malloc((size_t)size);
                r = getgrnam_r(group, &grbuf, buf, (size_t)size, &gr);
                if (r != ERANGE)
                        break;
                g_clear_pointer(&buf, g_free);
                size *= 2;
        }
        if (r != 0)
                return -r;
        if (!gr)
                return -ENOENT;
        auth->group = g_strdup(group);
        auth->gid = gr->gr_gid;
        return 0;
}

void bus_auth_clear(BusAuth *auth)
{
        g_clear_pointer(&auth->group, g_free);
        g_clear_pointer(&auth->pending, g_hash_table_unref);
        g_clear_pointer(&auth->callers, g_hash_table_unref);
}

/* The group database's memberships of uid, as dbus-daemon evaluates <policy group=...>. */
static bool user_in_group_db(uid_t uid, gid_t gid)
{
        struct passwd pwbuf, *pw = NULL;
        g_autofree char *buf = NULL;
        g_autofree gid_t *groups = NULL;
        long size = sysconf(_SC_GETPW_R_SIZE_MAX);
        int ngroups = 64;

        if (size <= 0)
                size = 16384;
        buf = g_malloc((size_t)size);
        if (getpwuid_r(uid, &pwbuf, buf, (size_t)size, &pw) != 0 || !pw)
                return false;
        if (pw->pw_gid == gid)
                return true;
        for (;;) {
                int n = ngroups;
                groups = g_renew(gid_t, groups, (size_t)n);
                if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) >= 0) {
                        for (int i = 0; i < n; i++)
                                if (groups[i] == gid)
                                        return true;
                        return false;
                }
                if (n <= ngroups) /* glibc reports the size it needs in n */
                        n = ngroups * 2;
                ngroups = n;
        }
}

/* GetConnectionCredentials' a{sv}: UnixUserID (required) and UnixGroupIDs (optional). */
static int caller_from_credentials(sd_bus_message *reply, BusCaller **ret)
{
        g_autoptr(GArray) gids = NULL;
        bool has_uid = false;
        uint32_t uid = 0;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const uint32_t *v;
                const char *key;
                size_t size;

                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "UnixUserID") == 0) {
                        r = sd_bus_message_read(reply, "v", "u", &uid);
                        has_uid = r >= 0;
                } else if (strcmp(key, "UnixGroupIDs") == 0) {
                        r = sd_bus_message_enter_container(reply, 'v', "au");
                        if (r > 0)
                                r = sd_bus_message_read_array(reply, 'u', (const void **)&v, &size);
                        if (r >= 0) {
                                gids = g_array_new(FALSE, FALSE, sizeof(gid_t));
                                for (size_t i = 0; i < size / sizeof(uint32_t); i++) {
                                        gid_t g = (gid_t)v[i];
                                        g_array_append_val(gids, g);
                                }
                                r = sd_bus_message_exit_container(reply);
                        }
                } else {
                        r = sd_bus_message_skip(reply, "v");
                }
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!has_uid)
                return -ENODATA;
        *ret = g_new0(BusCaller, 1);
        (*ret)->uid = (uid_t)uid;
        (*ret)->has_gids = gids != NULL;
        (*ret)->gids = g_steal_pointer(&gids);
        return 0;
}

/* The bus answered: remember the caller, then let sd-bus dispatch the request again. */
static int on_credentials(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        AuthQuery *q = userdata;
        BusAuth *auth = q->auth;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        BusCaller *caller = NULL;
        int r;

        q->slot = sd_bus_slot_unref(q->slot);
        q->done = true;
        if (e) {
                q->error = g_strdup_printf("%s: %s", e->name, e->message ? e->message : "");
        } else if ((r = caller_from_credentials(reply, &caller)) < 0) {
                q->error = g_strdup_printf("its GetConnectionCredentials answer is unusable: %s",
                                           g_strerror(-r));
        } else {
                if (g_hash_table_size(auth->callers) >= BUS_AUTH_CALLERS_MAX)
                        g_hash_table_remove_all(auth->callers);
                g_hash_table_replace(auth->callers, g_strdup(sd_bus_message_get_sender(q->request)),
                                     caller);
        }
        r = sd_bus_enqueue_for_read(sd_bus_message_get_bus(q->request), q->request);
        if (r < 0)
                (void)sd_bus_reply_method_errorf(q->request, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Permission denied: the answer about the "
                                                 "caller could not be processed (%s).",
                                                 g_strerror(-r));
        /* The caller is remembered: the request needs its query only to carry an error. */
        if (r < 0 || !q->error)
                g_hash_table_remove(auth->pending, q->request);
        return 1;
}

/* Asks the bus who the sender of m is, without waiting: on_credentials() continues. */
static int ask_bus(BusAuth *auth, sd_bus_message *m, const char *sender, const char *action,
                   sd_bus_error *error)
{
        AuthQuery *q = g_new0(AuthQuery, 1);
        int r;

        q->auth = auth;
        q->request = sd_bus_message_ref(m);
        r = sd_bus_call_method_async(sd_bus_message_get_bus(m), &q->slot, "org.freedesktop.DBus",
                                     "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                     "GetConnectionCredentials", on_credentials, q, "s", sender);
        if (r < 0) {
                auth_query_free(q);
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied to %s: cannot ask the bus who the "
                                         "caller is (%s).",
                                         action, g_strerror(-r));
        }
        g_hash_table_insert(auth->pending, m, q);
        return 0;
}

static int verdict(const BusAuth *auth, const BusCaller *c, const char *action, sd_bus_error *error)
{
        bool member = false;

        if (c->uid == 0)
                return 1;
        if (!auth->group)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied to %s: only root may (the caller "
                                         "has uid %u); start vfio-migd with --operator-group "
                                         "to let a group do it.",
                                         action, (unsigned)c->uid);
        /*
         * Group membership: the caller's groups as the bus saw them when it connected, which
         * is what a dropped or added group (setpriv, newgrp) really leaves the process with.
         * Without them, the group database, the same fallback dbus-daemon uses for its own
         * <policy group="..."> rules, so the bus policy and this check agree either way.
         */
        if (c->has_gids) {
                for (guint i = 0; i < c->gids->len; i++)
                        member |= g_array_index(c->gids, gid_t, i) == auth->gid;
        } else {
                member = user_in_group_db(c->uid, auth->gid);
        }
        if (member)
                return 1;
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Permission denied to %s: the caller (uid %u) is neither root "
                                 "nor a member of group %s.",
                                 action, (unsigned)c->uid, auth->group);
}

/* A peer-to-peer connection (no bus driver): the socket's own credentials, no call. */
static int authorize_peer(sd_bus_message *m, const BusAuth *auth, const char *action,
                          sd_bus_error *error)
{
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        BusCaller c = {0};
        int r;

        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
        if (r >= 0 && !(sd_bus_creds_get_augmented_mask(creds) & SD_BUS_CREDS_EUID))
                r = sd_bus_creds_get_euid(creds, &c.uid);
        else if (r >= 0)
                r = -ENODATA;
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied to %s: the bus did not say who the "
                                         "caller is (%s).",
                                         action, g_strerror(-r));
        return verdict(auth, &c, action, error);
}

int bus_authorize(sd_bus_message *m, BusAuth *auth, const char *action, sd_bus_error *error)
{
        const char *sender = sd_bus_message_get_sender(m);
        const BusCaller *caller;
        AuthQuery *q;

        if (!sender)
                return authorize_peer(m, auth, action, error);
        bus_auth_tables(auth);
        q = g_hash_table_lookup(auth->pending, m);
        if (q && !q->done)
                return 0;
        if (q && q->error) {
                log_notice("Refused to %s: the bus did not say who %s is (%s).", action, sender,
                           q->error);
                sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                  "Permission denied to %s: the bus did not say who the caller "
                                  "is (%s).",
                                  action, q->error);
                g_hash_table_remove(auth->pending, m);
                return -EACCES;
        }
        if (q)
                g_hash_table_remove(auth->pending, m);
        caller = g_hash_table_lookup(auth->callers, sender);
        if (caller)
                return verdict(auth, caller, action, error);
        /* Answered, yet forgotten since (the bound): ask again rather than loop. */
        return ask_bus(auth, m, sender, action, error);
}

/* Strings from sd-bus come from malloc(); GLib >= 2.46 frees with free(), so g_free fits. */

char *bus_vm_path(const char *name)
{
        char *path = NULL;

        return sd_bus_path_encode(BUS_PATH_VM, name, &path) < 0 ? NULL : path;
}

char *bus_device_path(const char *name)
{
        char *path = NULL;

        return sd_bus_path_encode(BUS_PATH_DEVICE, name, &path) < 0 ? NULL : path;
}

char *bus_path_name(const char *path, const char *prefix)
{
        char *name = NULL;

        if (sd_bus_path_decode(path, prefix, &name) <= 0)
                return NULL;
        return name;
}

int bus_append_paths(sd_bus_message *m, const char *prefix, const char *const *names, size_t n)
{
        int r;

        r = sd_bus_message_open_container(m, 'a', "o");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                g_autofree char *path = NULL;

                r = sd_bus_path_encode(prefix, names[i], &path);
                if (r < 0)
                        return r;
                r = sd_bus_message_append(m, "o", path);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}
