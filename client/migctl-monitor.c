/* migctl-monitor: 'vfio-migctl monitor', vfio-migd's signals as lines of text or JSON */
#include "migctl-monitor.h"

#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "migctl-json.h"
#include "migctl-print.h"

typedef struct SignalNames {
        const char *member;
        const char *args[9];
} SignalNames;

/* Argument names of the signals of the contract (docs/dbus-api.md), for --json "fields". */
static const SignalNames signal_names[] = {
    {"VMNew", {"name", "vm", NULL}},
    {"VMRemoved", {"name", "vm", NULL}},
    {"DeviceStateChanged", {"device", "path", "old_state", "new_state", NULL}},
    {"SequenceProgress",
     {"vm", "path", "operation", "phase", "index", "count", "status", "elapsed_us", NULL}},
    {"GroupChanged", {"group", "added", "removed", "vms", NULL}},
    {"PropertiesChanged", {"interface", "changed", "invalidated", NULL}},
    {"NameOwnerChanged", {"name", "old_owner", "new_owner", NULL}},
};

static const SignalNames *names_of(const char *member)
{
        for (size_t i = 0; i < G_N_ELEMENTS(signal_names); i++)
                if (strcmp(signal_names[i].member, member) == 0)
                        return &signal_names[i];
        return NULL;
}

static const char *arg_str(const json_t *args, size_t i)
{
        const char *s = json_string_value(json_array_get(args, i));
        return s ? s : "?";
}

static uint64_t arg_u64(const json_t *args, size_t i)
{
        const json_t *v = json_array_get(args, i);
        return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

/* A short name for an object path of ours: "vm1", "device nic0", else the path. */
static char *short_object(const char *path)
{
        char *name = ctl_path_to_name(path, MIGD_VM_PREFIX);
        if (name)
                return name;
        name = ctl_path_to_name(path, MIGD_DEVICE_PREFIX);
        if (name) {
                char *s = g_strdup_printf("device %s", name);
                free(name);
                return s;
        }
        return g_strdup(path);
}

static void print_changed(FILE *f, const json_t *changed)
{
        json_t *obj = (json_t *)changed;

        for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
                const char *key = json_object_iter_key(it);
                json_t *v = json_object_iter_value(it);
                char total[32];

                if (json_is_object(v) && json_object_get(v, "operation")) {
                        /* LastSequence: its summary, the whole report is for 'last' */
                        fprintf(f, " %s=<%s %s in %s>", key, json_str(v, "operation", "?"),
                                json_str(v, "result", "?"),
                                fmt_ms(json_u64(v, "total-us"), total, sizeof(total)));
                } else {
                        g_autofree char *text = fmt_value(v);
                        fprintf(f, " %s=%s", key, text);
                }
        }
}

static void print_human(FILE *f, const char *member, const char *path, const json_t *args)
{
        struct timeval tv;
        struct tm tm;
        char stamp[32], elapsed[32];

        gettimeofday(&tv, NULL);
        localtime_r(&tv.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        fprintf(f, "%s.%03ld %s", stamp, (long)(tv.tv_usec / 1000), member);

        if (strcmp(member, "VMNew") == 0 || strcmp(member, "VMRemoved") == 0)
                fprintf(f, " %s %s", arg_str(args, 0), arg_str(args, 1));
        else if (strcmp(member, "DeviceStateChanged") == 0)
                fprintf(f, " %s: %s -> %s", arg_str(args, 0), arg_str(args, 2), arg_str(args, 3));
        else if (strcmp(member, "SequenceProgress") == 0) /* index counts from 0 */
                fprintf(f,
                        " %s %s: phase %s (%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT ") %s at %s",
                        arg_str(args, 0), arg_str(args, 2), arg_str(args, 3), arg_u64(args, 4) + 1,
                        arg_u64(args, 5), arg_str(args, 6),
                        fmt_ms(arg_u64(args, 7), elapsed, sizeof(elapsed)));
        else if (strcmp(member, "GroupChanged") == 0) {
                g_autofree char *added = fmt_value(json_array_get(args, 1));
                g_autofree char *removed = fmt_value(json_array_get(args, 2));
                g_autofree char *vms = fmt_value(json_array_get(args, 3));
                fprintf(f, " IOMMU group %s: joined %s, left %s; held by %s", arg_str(args, 0),
                        added, removed, vms);
        } else if (strcmp(member, "PropertiesChanged") == 0) {
                g_autofree char *object = short_object(path);
                const char *iface = arg_str(args, 0);
                const char *dot = strrchr(iface, '.');
                fprintf(f, " %s (%s):", object, dot ? dot + 1 : iface);
                print_changed(f, json_array_get(args, 1));
                if (json_array_size(json_array_get(args, 2)) > 0) {
                        g_autofree char *inv = fmt_value(json_array_get(args, 2));
                        fprintf(f, " invalidated: %s", inv);
                }
        } else if (strcmp(member, "NameOwnerChanged") == 0) {
                if (arg_str(args, 2)[0])
                        fprintf(f, " vfio-migd is on the bus as %s", arg_str(args, 2));
                else
                        fprintf(f, " vfio-migd left the bus");
        } else {
                g_autofree char *text = fmt_value(args);
                fprintf(f, " %s %s", path, text);
        }
        fputc('\n', f);
        fflush(f);
}

static void print_json(FILE *f, sd_bus_message *m, json_t *args)
{
        const SignalNames *n = names_of(sd_bus_message_get_member(m));
        struct timeval tv;
        json_t *j;

        gettimeofday(&tv, NULL);
        j = json_pack("{s:I,s:s,s:s,s:s,s:O}", "time-us",
                      (json_int_t)tv.tv_sec * 1000000 + tv.tv_usec, "signal",
                      sd_bus_message_get_member(m), "interface", sd_bus_message_get_interface(m),
                      "path", sd_bus_message_get_path(m), "args", args);
        if (n) {
                json_t *fields = json_object();
                for (size_t i = 0; n->args[i] && i < json_array_size(args); i++)
                        json_object_set(fields, n->args[i], json_array_get(args, i));
                json_object_set_new(j, "fields", fields);
        }
        json_dumpf(j, f, JSON_COMPACT);
        fputc('\n', f);
        fflush(f);
        json_decref(j);
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Ctl *c = userdata;
        json_t *args = NULL;
        int r = json_from_bus_message(m, &args);

        if (r < 0) {
                fprintf(stderr, "vfio-migctl: cannot read signal %s: %s\n",
                        sd_bus_message_get_member(m), strerror(-r));
                return 0;
        }
        if (c->json)
                print_json(c->out, m, args);
        else
                print_human(c->out, sd_bus_message_get_member(m), sd_bus_message_get_path(m), args);
        json_decref(args);
        return 0;
}

static int on_quit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

int ctl_monitor(Ctl *c)
{
        sd_event *e = NULL;
        sigset_t mask;
        int r;

        r = sd_bus_add_match(c->bus, NULL,
                             "type='signal',sender='" MIGD_BUS_NAME "',"
                             "path_namespace='" MIGD_ROOT_PATH "'",
                             on_signal, c);
        if (r >= 0)
                r = sd_bus_add_match(c->bus, NULL,
                                     "type='signal',sender='org.freedesktop.DBus',"
                                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                     "arg0='" MIGD_BUS_NAME "'",
                                     on_signal, c);
        if (r < 0)
                return ctl_fail_errno(c, MIGCTL_EXIT_UNREACHABLE, r,
                                      "cannot subscribe to vfio-migd's signals");

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&e);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGINT, on_quit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGTERM, on_quit_signal, NULL);
        if (r >= 0 && c->timeout_given)
                r = sd_event_add_time_relative(e, NULL, CLOCK_MONOTONIC, c->timeout_usec, 0,
                                               on_timeout, NULL);
        if (r >= 0)
                r = sd_bus_attach_event(c->bus, e, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_set_exit_on_disconnect(c->bus, true);
        if (r < 0) {
                sd_event_unref(e);
                return ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, r, "cannot set up the event loop");
        }

        fprintf(stderr, "Monitoring the signals of %s; Ctrl-C stops.\n", MIGD_BUS_NAME);
        r = sd_event_loop(e);
        sd_bus_detach_event(c->bus);
        sd_event_unref(e);
        if (r < 0)
                return ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, r, "the event loop failed");
        /* sd-bus closes the connection when the loop exits; on a disconnect it exits the
         * loop with EXIT_FAILURE (sd_bus_set_exit_on_disconnect), our own exits use 0. */
        if (r > 0) {
                fprintf(stderr, "vfio-migctl: lost the connection to the bus\n");
                return MIGCTL_EXIT_UNREACHABLE;
        }
        return MIGCTL_EXIT_OK;
}
