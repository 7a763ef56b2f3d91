/* migctl-bus: vfio-migctl's connection to vfio-migd, method calls, errors and exit codes */
#include "migctl-bus.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "migctl-json.h"

int ctl_connect(Ctl *c)
{
        const char *address = getenv("DBUS_SYSTEM_BUS_ADDRESS");
        int r = sd_bus_open_system(&c->bus);
        if (r < 0) {
                fprintf(stderr,
                        "vfio-migctl: cannot connect to the system bus at %s: %s\n"
                        "  (is dbus running? DBUS_SYSTEM_BUS_ADDRESS selects another bus)\n",
                        address ? address : "unix:path=/run/dbus/system_bus_socket", strerror(-r));
                return MIGCTL_EXIT_UNREACHABLE;
        }
        r = sd_bus_set_method_call_timeout(c->bus, c->timeout_usec);
        if (r < 0) {
                fprintf(stderr, "vfio-migctl: cannot set the call timeout: %s\n", strerror(-r));
                return MIGCTL_EXIT_FAILURE;
        }
        return MIGCTL_EXIT_OK;
}

bool ctl_error_is(const sd_bus_error *e, const char *short_name)
{
        return sd_bus_error_is_set(e) &&
               strncmp(e->name, MIGD_ERROR_PREFIX, strlen(MIGD_ERROR_PREFIX)) == 0 &&
               strcmp(e->name + strlen(MIGD_ERROR_PREFIX), short_name) == 0;
}

static bool error_is_any_of(const sd_bus_error *e, const char *const *short_names)
{
        for (size_t i = 0; short_names[i]; i++)
                if (ctl_error_is(e, short_names[i]))
                        return true;
        return false;
}

static const char *const not_found_errors[] = {"NoSuchVM", "NoSuchDevice", NULL};
static const char *const refused_errors[] = {"InvalidState", "NotMigratable", "Busy", "VMExists",
                                             "DeviceBusy",   "PolicyInvalid", NULL};
static const char *const rolled_back_errors[] = {"SequenceFailed", "Timeout", "StreamInvalid",
                                                 NULL};

int ctl_exit_code(const sd_bus_error *e, int r)
{
        if (error_is_any_of(e, not_found_errors) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT))
                return MIGCTL_EXIT_NOT_FOUND;
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
                return MIGCTL_EXIT_DENIED;
        if (error_is_any_of(e, refused_errors) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_INVALID_ARGS))
                return MIGCTL_EXIT_REFUSED;
        if (error_is_any_of(e, rolled_back_errors))
                return MIGCTL_EXIT_ROLLED_BACK;
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   SD_BUS_ERROR_DISCONNECTED))
                return MIGCTL_EXIT_UNREACHABLE;
        if (!sd_bus_error_is_set(e) && (r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE))
                return MIGCTL_EXIT_UNREACHABLE;
        return MIGCTL_EXIT_FAILURE;
}

/* Whether vfio-migd owns its name now: a NoReply from a daemon that died is not a timeout. */
static bool daemon_on_bus(const Ctl *c)
{
        sd_bus_message *reply = NULL;
        int has = 1;

        if (!c->bus ||
            sd_bus_call_method(c->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "NameHasOwner", NULL, &reply, "s",
                               MIGD_BUS_NAME) < 0 ||
            sd_bus_message_read(reply, "b", &has) < 0)
                has = 1; /* unknown: keep the timeout's hint */
        sd_bus_message_unref(reply);
        return has;
}

static const char *error_hint(const Ctl *c, const sd_bus_error *e)
{
        if (ctl_error_is(e, "NoSuchVM"))
                return "see 'vfio-migctl list-vms' for the registered VMs";
        if (ctl_error_is(e, "NoSuchDevice") ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT))
                return "see 'vfio-migctl list-devices' for the devices vfio-migd knows; "
                       "'vfio-migctl rescan' finds new ones";
        if (ctl_error_is(e, "VMExists"))
                return "choose another name, or 'vfio-migctl unregister NAME' first";
        if (ctl_error_is(e, "DeviceBusy"))
                return "a device belongs to one VM only: 'vfio-migctl unregister' the VM holding "
                       "it";
        if (ctl_error_is(e, "Busy"))
                return "a sequence is running on this VM: wait for it ('vfio-migctl monitor') "
                       "and try again";
        if (ctl_error_is(e, "InvalidState"))
                return "nothing moved; 'vfio-migctl show VM' lists the device states and "
                       "'vfio-migctl abort VM' brings every device back to RUNNING";
        if (ctl_error_is(e, "PolicyInvalid"))
                return "the policy in force stays; 'vfio-migctl policy validate FILE...' checks "
                       "files before they are installed";
        if (ctl_error_is(e, "NotMigratable"))
                return "nothing moved; 'vfio-migctl show VM' lists the blockers; a VM whose "
                       "IOMMU context has no P2P mappings may register with --p2p-mode p2p-blocked";
        if (error_is_any_of(e, rolled_back_errors))
                return "the VM was rolled back; the failed attempt's timeline follows, and "
                       "'vfio-migctl last VM' shows it again";
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
                return "changing anything needs root or membership in vfio-migd's operator "
                       "group (vfio-migd --operator-group); reading needs nothing";
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                return "vfio-migd is not running on this bus: 'systemctl start vfio-migd'";
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT) &&
            !daemon_on_bus(c))
                return "vfio-migd left the bus without replying (it stopped or crashed): "
                       "'journalctl -u vfio-migd' says why; 'systemctl status vfio-migd'";
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT))
                return c->timeout_given ? "no reply within --timeout; the sequence may still be "
                                          "running: see 'vfio-migctl show VM'"
                                        : "no reply within 300 s (--timeout SEC waits longer); "
                                          "the sequence may still be running: see "
                                          "'vfio-migctl show VM'";
        return NULL;
}

int ctl_fail(Ctl *c, const char *what, const sd_bus_error *e, int r)
{
        int code = ctl_exit_code(e, r);
        const char *name = sd_bus_error_is_set(e) ? e->name : NULL;
        const char *message = e->message ? e->message : strerror(-r);
        const char *hint = error_hint(c, e);

        if (name)
                fprintf(stderr, "vfio-migctl: %s: %s: %s\n", what, name, message);
        else
                fprintf(stderr, "vfio-migctl: %s: %s\n", what, message);
        if (hint)
                fprintf(stderr, "  (%s)\n", hint);
        if (c->json) {
                json_t *j = json_pack("{s:{s:s?,s:s},s:i}", "error", "name", name, "message",
                                      message, "exit-code", code);
                json_print(c->out, j);
                json_decref(j);
        }
        return code;
}

int ctl_fail_errno(Ctl *c, int exit_code, int r, const char *fmt, ...)
{
        char *what = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
                what = NULL;
        va_end(ap);
        fprintf(stderr, "vfio-migctl: %s%s%s\n", what ? what : "error", r ? ": " : "",
                r ? strerror(-r) : "");
        if (c->json) {
                json_t *j = json_pack("{s:{s:n,s:s},s:i}", "error", "name", "message",
                                      what ? what : "error", "exit-code", exit_code);
                json_print(c->out, j);
                json_decref(j);
        }
        free(what);
        return exit_code;
}

int ctl_get_all(Ctl *c, const char *path, const char *iface, json_t **ret, sd_bus_error *error)
{
        sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, path, "org.freedesktop.DBus.Properties",
                                   "GetAll", error, &reply, "s", iface);
        if (r >= 0)
                r = json_from_bus_value(reply, ret);
        sd_bus_message_unref(reply);
        return r;
}

int ctl_get_property(Ctl *c, const char *path, const char *iface, const char *property,
                     json_t **ret, sd_bus_error *error)
{
        sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, path, "org.freedesktop.DBus.Properties",
                                   "Get", error, &reply, "ss", iface, property);
        if (r >= 0)
                r = json_from_bus_value(reply, ret);
        sd_bus_message_unref(reply);
        return r;
}

static int get_path(Ctl *c, const char *method, const char *name, char **ret, sd_bus_error *error)
{
        sd_bus_message *reply = NULL;
        const char *path;
        int r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                   method, error, &reply, "s", name);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0) {
                *ret = strdup(path);
                r = *ret ? 0 : -ENOMEM;
        }
        sd_bus_message_unref(reply);
        return r;
}

int ctl_vm_path(Ctl *c, const char *name, char **ret, sd_bus_error *error)
{
        return get_path(c, "GetVM", name, ret, error);
}

int ctl_device_path(Ctl *c, const char *name, char **ret, sd_bus_error *error)
{
        return get_path(c, "GetDevice", name, ret, error);
}

char *ctl_path_to_name(const char *path, const char *prefix)
{
        char *name = NULL;
        if (!path || sd_bus_path_decode(path, prefix, &name) <= 0)
                return NULL;
        return name;
}
