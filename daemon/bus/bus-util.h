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
} BusAuth;

/* Resolves group (NULL or "" for none) with getgrnam; -ENOENT when there is no such group. */
int bus_auth_init(BusAuth *auth, const char *group);
void bus_auth_clear(BusAuth *auth);

/*
 * 0 when the sender of m may change things; else -EACCES with AccessDenied and a sentence
 * that names the action (e.g. "register VM web-1") and the group that would allow it.
 */
int bus_authorize(sd_bus_message *m, const BusAuth *auth, const char *action, sd_bus_error *error);

/* "/org/vfiomig/Coordinator1/vm/<escaped name>"; NULL on allocation failure. */
char *bus_vm_path(const char *name);
char *bus_device_path(const char *name);
/* The name in a VM or device path; NULL when the path is not below the prefix. */
char *bus_path_name(const char *path, const char *prefix);

/* Appends every name as prefix/<escaped name> to an "ao" reply; names is char*. */
int bus_append_paths(sd_bus_message *m, const char *prefix, const char *const *names, size_t n);
