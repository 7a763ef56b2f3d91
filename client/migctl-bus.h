/* migctl-bus: vfio-migctl's connection to vfio-migd, method calls, errors and exit codes */
#pragma once

/*
 * Every subcommand returns one of the MIGCTL_EXIT_* codes; ctl_fail() turns a failed call
 * into the exit code, a message on stderr naming what went wrong and how to fix it and, with
 * --json, an error object on stdout.
 *
 * Errors: functions returning int return 0 or a negative errno unless they say otherwise.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-bus.h>

#define MIGD_BUS_NAME      "org.vfiomig.Coordinator1"
#define MIGD_ROOT_PATH     "/org/vfiomig/Coordinator1"
#define MIGD_VM_PREFIX     MIGD_ROOT_PATH "/vm"
#define MIGD_DEVICE_PREFIX MIGD_ROOT_PATH "/device"
#define MIGD_MANAGER_IFACE MIGD_BUS_NAME ".Manager"
#define MIGD_VM_IFACE      MIGD_BUS_NAME ".VM"
#define MIGD_DEVICE_IFACE  MIGD_BUS_NAME ".Device"
#define MIGD_ERROR_PREFIX  MIGD_BUS_NAME ".Error."

enum migctl_exit {
        MIGCTL_EXIT_OK = 0,
        MIGCTL_EXIT_FAILURE = 1,     /* anything not listed below */
        MIGCTL_EXIT_USAGE = 2,       /* bad command line */
        MIGCTL_EXIT_UNREACHABLE = 3, /* no bus, or vfio-migd is not on it */
        MIGCTL_EXIT_NOT_FOUND = 4,   /* no such VM or device */
        MIGCTL_EXIT_DENIED = 5,      /* the caller may not change anything */
        MIGCTL_EXIT_REFUSED = 6,     /* refused before anything moved */
        MIGCTL_EXIT_ROLLED_BACK = 7, /* the sequence failed and was rolled back */
};

typedef struct Ctl {
        sd_bus *bus;
        bool json;
        uint64_t timeout_usec;
        bool timeout_given;
        FILE *out;                /* stdout, or stderr while stdout carries a migration stream */
        const char *renamed_from; /* resume --renamed-from: the VM that saved the stream */
} Ctl;

/* Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS when set); returns a MIGCTL_EXIT_*. */
int ctl_connect(Ctl *c);

/* e is vfio-migd's error org.vfiomig.Coordinator1.Error.<short_name>. */
bool ctl_error_is(const sd_bus_error *e, const char *short_name);

/* The exit code for a failed call: r is the negative errno sd-bus returned. */
int ctl_exit_code(const sd_bus_error *error, int r);

/*
 * Reports a failed call ("what" says what was attempted, e.g. "quiesce VM 'vm1'") on stderr
 * with the error's name, its message and a hint, and on stdout as JSON with --json.
 * Returns the exit code.
 */
int ctl_fail(Ctl *c, const char *what, const sd_bus_error *error, int r);
/* A failure that is not a D-Bus error (a file that cannot be opened, ...). */
int ctl_fail_errno(Ctl *c, int exit_code, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* org.freedesktop.DBus.Properties.GetAll(iface) on path, as a JSON object. */
int ctl_get_all(Ctl *c, const char *path, const char *iface, json_t **ret, sd_bus_error *error);
/* One property as JSON. */
int ctl_get_property(Ctl *c, const char *path, const char *iface, const char *property,
                     json_t **ret, sd_bus_error *error);

/* GetVM / GetDevice: the object path of a name; the path is strdup'ed into *ret. */
int ctl_vm_path(Ctl *c, const char *name, char **ret, sd_bus_error *error);
int ctl_device_path(Ctl *c, const char *name, char **ret, sd_bus_error *error);

/* The name inside an object path under prefix ("/" and foreign paths give NULL); free it. */
char *ctl_path_to_name(const char *path, const char *prefix);
