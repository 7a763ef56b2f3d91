/* bus-util: object paths, caller authorization and small sd-bus helpers */
#include "bus/bus-util.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int bus_auth_init(BusAuth *auth, const char *group)
{
        struct group grbuf, *gr = NULL;
        g_autofree char *buf = NULL;
        long size = sysconf(_SC_GETGR_R_SIZE_MAX);
        int r;

        *auth = (BusAuth){.gid = (gid_t)-1};
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

/*
 * The caller's groups as the bus driver saw them on its socket (SO_PEERGROUPS), from its
 * GetConnectionCredentials "UnixGroupIDs": complete or absent, by the D-Bus specification.
 * sd-bus (252) does not pass this entry on in its creds, hence the call of our own.
 * 1 and the verdict in *ret_member, or 0 when the bus does not say.
 */
static int bus_driver_says_member(sd_bus_message *m, gid_t gid, bool *ret_member)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        const char *sender = sd_bus_message_get_sender(m);
        int r;

        if (!sender)
                return 0;
        r = sd_bus_call_method(sd_bus_message_get_bus(m), "org.freedesktop.DBus",
                               "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "GetConnectionCredentials", &e, &reply, "s", sender);
        if (r < 0)
                return 0;
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return 0;
        while (sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
                const uint32_t *gids;
                const char *key;
                size_t size;

                if (sd_bus_message_read(reply, "s", &key) < 0)
                        return 0;
                if (strcmp(key, "UnixGroupIDs") != 0) {
                        if (sd_bus_message_skip(reply, "v") < 0 ||
                            sd_bus_message_exit_container(reply) < 0)
                                return 0;
                        continue;
                }
                if (sd_bus_message_enter_container(reply, 'v', "au") <= 0 ||
                    sd_bus_message_read_array(reply, 'u', (const void **)&gids, &size) < 0)
                        return 0;
                *ret_member = false;
                for (size_t i = 0; i < size / sizeof(uint32_t); i++)
                        if (gids[i] == (uint32_t)gid)
                                *ret_member = true;
                return 1;
        }
        return 0;
}

/* The gids sd-bus has for the caller, straight from the bus (never read from /proc). */
static int creds_say_member(sd_bus_creds *creds, gid_t gid, bool *ret_member)
{
        uint64_t augmented = sd_bus_creds_get_augmented_mask(creds);
        const gid_t *gids;
        gid_t g;
        int n;

        if (augmented & SD_BUS_CREDS_SUPPLEMENTARY_GIDS)
                return 0;
        n = sd_bus_creds_get_supplementary_gids(creds, &gids);
        if (n < 0)
                return 0;
        *ret_member = false;
        for (int i = 0; i < n; i++)
                if (gids[i] == gid)
                        *ret_member = true;
        if (!(augmented & SD_BUS_CREDS_EGID) && sd_bus_creds_get_egid(creds, &g) >= 0 && g == gid)
                *ret_member = true;
        return 1;
}

int bus_authorize(sd_bus_message *m, const BusAuth *auth, const char *action, sd_bus_error *error)
{
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uint64_t augmented;
        bool member = false;
        uid_t uid;
        int r;

        r = sd_bus_query_sender_creds(m,
                                      SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID | SD_BUS_CREDS_EGID |
                                          SD_BUS_CREDS_GID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS,
                                      &creds);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied to %s: the bus did not say who the "
                                         "caller is (%s).",
                                         action, strerror(-r));

        /*
         * dbus-daemon reports the effective uid the caller connected with (SO_PEERCRED),
         * which sd-bus files as EUID; UID is the fallback for buses that say only that.
         * Values sd-bus would have read from /proc are racy (pid reuse) and never trusted.
         */
        augmented = sd_bus_creds_get_augmented_mask(creds);
        if ((augmented & SD_BUS_CREDS_EUID) || sd_bus_creds_get_euid(creds, &uid) < 0)
                if ((augmented & SD_BUS_CREDS_UID) || sd_bus_creds_get_uid(creds, &uid) < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Permission denied to %s: the bus did not "
                                                 "report the caller's uid.",
                                                 action);
        if (uid == 0)
                return 0;
        if (!auth->group)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Permission denied to %s: only root may (the caller "
                                         "has uid %u); start vfio-migd with --operator-group "
                                         "to let a group do it.",
                                         action, (unsigned)uid);

        /*
         * Group membership: the caller's groups as the bus saw them when it connected, which
         * is what a dropped or added group (setpriv, newgrp) really leaves the process with.
         * dbus-daemon reports them where the kernel hands them over (SO_PEERGROUPS, Linux
         * 4.13; Debian 12's 1.14 does); without them we fall back to the group database,
         * the same fallback dbus-daemon uses for its own <policy group="..."> rules, so the
         * bus policy and this check agree either way.
         */
        if (creds_say_member(creds, auth->gid, &member) > 0 ||
            bus_driver_says_member(m, auth->gid, &member) > 0) {
                if (member)
                        return 0;
        } else if (user_in_group_db(uid, auth->gid)) {
                return 0;
        }
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Permission denied to %s: the caller (uid %u) is neither root "
                                 "nor a member of group %s.",
                                 action, (unsigned)uid, auth->group);
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
