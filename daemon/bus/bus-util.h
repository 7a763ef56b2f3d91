/* bus-util: object paths, caller authorization and small sd-bus helpers */
#pragma once

/*
 * Errors: negative errno; functions taking sd_bus_error set it to the error the caller
 * should receive.
 */

#include <glib.h>
#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "util.h"

#define BUS_NAME          "org.vfiomig.Coordinator1"
#define BUS_PATH_ROOT     "/org/vfiomig/Coordinator1"
#define BUS_PATH_VM       BUS_PATH_ROOT "/vm"
#define BUS_PATH_DEVICE   BUS_PATH_ROOT "/device"
#define BUS_IFACE_MANAGER "org.vfiomig.Coordinator1.Manager"
#define BUS_IFACE_VM      "org.vfiomig.Coordinator1.VM"
#define BUS_IFACE_DEVICE  "org.vfiomig.Coordinator1.Device"

/* sd-bus brings sd_bus_message_unrefp() and friends for _cleanup_(). */

/* Who may call the methods that change things: uid 0, and members of one group. */
typedef struct BusAuth {
        char *group; /* NULL: root only */
        gid_t gid;
        GHashTable *callers; /* unique name -> what the bus said about it (bus-util.c) */
        GHashTable *pending; /* request sd_bus_message* -> its question to the bus */
} BusAuth;

/* Resolves group (NULL or "" for none) with getgrnam; -ENOENT when there is no such group. */
int bus_auth_init(BusAuth *auth, const char *group);
void bus_auth_clear(BusAuth *auth);

/*
 * Whether the sender of m may change things, without ever waiting on the loop (systemd's
 * bus-polkit shape): the bus driver is asked who the sender is (GetConnectionCredentials:
 * uid and the groups it saw on the socket) asynchronously, once per sender; meanwhile this
 * returns 0 and the handler returns 1 at once, sending nothing. When the answer comes, sd-bus
 * dispatches the same request again (sd_bus_enqueue_for_read) and this returns the verdict.
 * So a handler must call it after validating and before changing anything:
 *
 *     r = bus_authorize(m, &d->auth, action, error);
 *     if (r < 0)
 *             return r;
 *     if (r == 0)
 *             return 1;  (asked the bus; the call comes back with the answer)
 *
 * 1 when the caller is uid 0 or in the operator group (the bus's list of its groups, else
 * the group database); -EACCES with AccessDenied and a sentence naming the action (e.g.
 * "register VM web-1") and the group that would allow it, also when the bus cannot say.
 */
int bus_authorize(sd_bus_message *m, BusAuth *auth, const char *action, sd_bus_error *error);

/* "/org/vfiomig/Coordinator1/vm/<escaped name>"; NULL on allocation failure. */
char *bus_vm_path(const char *name);
char *bus_device_path(const char *name);
/* The name in a VM or device path; NULL when the path is not below the prefix. */
char *bus_path_name(const char *path, const char *prefix);

/* Appends every name as prefix/<escaped name> to an "ao" reply; names is char*. */
int bus_append_paths(sd_bus_message *m, const char *prefix, const char *const *names, size_t n);
