/* migctl-hook: vfio-migctl libvirt-hook, the libvirt qemu hook (docs/libvirt.md)
 *
 * libvirtd runs /etc/libvirt/hooks/qemu.d/vfio-migd DOMAIN OPERATION SUBOP EXTRA with the
 * domain XML on stdin; a non-zero exit vetoes the operation with our stderr as libvirt's
 * error, and for "migrate begin" stdout is the XML libvirt goes on with. The hook must never
 * hang libvirtd: every call has a timeout and an alarm bounds the whole run. When vfio-migd
 * cannot be asked, the policy's hook-daemon-unavailable decides, read from the policy files
 * by the hook itself.
 */
#include "migctl-verbs.h"

#include <errno.h>
#include <glib.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "libvirt/lv-domain.h"
#include "policy-files.h"
#include "vm.h"

#define HOOK_TIMEOUT_DEFAULT_SEC 10
#define HOOK_IDENTIFIER          "vfio-migd-hook"

typedef enum HookAction {
        HOOK_IGNORE,   /* every operation vfio-migd does not act on */
        HOOK_REGISTER, /* prepare begin, start begin */
        HOOK_MIGRATE,  /* migrate begin: the destination, before the domain starts */
        HOOK_RELEASE,  /* release end */
} HookAction;

typedef struct Hook {
        Ctl *c;
        const char *domain, *op, *subop;
        char *shown; /* the domain's name as messages show it: whole or vm_name_shown() */
        HookAction action;
        bool at_start; /* start begin, where NoSuchDevice vetoes (prepare: not yet) */
        char *xml;
        size_t xml_len;
        LvDomain *d;
        PolicySettings settings; /* this VM's, from the hook's own reading of the policy */
        char *policy_error;      /* the policy files are invalid: fail closed */
} Hook;

/* What the alarm does when the whole run outlives its bound: prepared before any wait. */
static struct {
        int code;
        char *message;
        const char *xml; /* fail-open migrate: the XML libvirt goes on with */
        size_t xml_len;
} alarm_verdict;

static void write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return;
                p += k;
                n -= (size_t)k;
        }
}

static void on_alarm(int sig)
{
        if (alarm_verdict.message)
                write_all(STDERR_FILENO, alarm_verdict.message, strlen(alarm_verdict.message));
        if (alarm_verdict.xml)
                write_all(STDOUT_FILENO, alarm_verdict.xml, alarm_verdict.xml_len);
        _exit(alarm_verdict.code);
}

static void hook_log(const Hook *h, int priority, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void hook_log(const Hook *h, int priority, const char *fmt, ...)
{
        g_autofree char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        fprintf(stderr, "vfio-migd hook: domain '%s' (%s %s): %s\n", h->shown, h->op, h->subop,
                msg);
        fflush(stderr);
        sd_journal_send("MESSAGE=domain '%s' (%s %s): %s", h->shown, h->op, h->subop, msg,
                        "PRIORITY=%i", priority, "SYSLOG_IDENTIFIER=" HOOK_IDENTIFIER,
                        "VFIO_MIGD_DOMAIN=%s", h->shown, "VFIO_MIGD_HOOK_OPERATION=%s %s", h->op,
                        h->subop, NULL);
}

static HookAction hook_action(const char *op, const char *subop)
{
        if ((strcmp(op, "prepare") == 0 || strcmp(op, "start") == 0) && strcmp(subop, "begin") == 0)
                return HOOK_REGISTER;
        if (strcmp(op, "migrate") == 0 && strcmp(subop, "begin") == 0)
                return HOOK_MIGRATE;
        if (strcmp(op, "release") == 0 && strcmp(subop, "end") == 0)
                return HOOK_RELEASE;
        return HOOK_IGNORE;
}

/* --timeout, else VFIO_MIGD_HOOK_TIMEOUT, else 10 s. */
static uint64_t hook_timeout_usec(const Hook *h)
{
        const char *env = getenv("VFIO_MIGD_HOOK_TIMEOUT");
        char *end;
        double sec;

        if (h->c->timeout_given)
                return h->c->timeout_usec;
        if (env) {
                errno = 0;
                sec = strtod(env, &end);
                if (!errno && !*end && sec > 0 && sec <= 3600)
                        return (uint64_t)(sec * 1e6);
                hook_log(h, LOG_WARNING,
                         "VFIO_MIGD_HOOK_TIMEOUT='%s' is not a number of seconds from 0 to 3600; "
                         "using %d",
                         env, HOOK_TIMEOUT_DEFAULT_SEC);
        }
        return HOOK_TIMEOUT_DEFAULT_SEC * UINT64_C(1000000);
}

static int read_stdin(Hook *h, GError **error)
{
        g_autoptr(GByteArray) buf = g_byte_array_new();
        uint8_t chunk[65536];

        for (;;) {
                ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                                    "cannot read the domain XML from stdin: %s", g_strerror(errno));
                        return -errno;
                }
                if (n == 0)
                        break;
                if (buf->len + (size_t)n > LV_DOMAIN_XML_MAX) {
                        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                                    "the domain XML on stdin is larger than %u bytes; libvirt "
                                    "gives the hook the domain XML, which is far smaller",
                                    LV_DOMAIN_XML_MAX);
                        return -EFBIG;
                }
                g_byte_array_append(buf, chunk, (guint)n);
        }
        h->xml_len = buf->len;
        g_byte_array_append(buf, (const uint8_t *)"", 1);
        h->xml = (char *)g_byte_array_free(g_steal_pointer(&buf), FALSE);
        return 0;
}

/* The hook's own reading of the policy: what applies to this VM when vfio-migd is silent. */
static void load_policy(Hook *h, const char *vm)
{
        const char *main_file = getenv("VFIO_MIGD_POLICY");
        const char *dir = getenv("VFIO_MIGD_POLICY_DIR");
        g_autoptr(Policy) p = NULL;
        g_autoptr(PolicyDecision) dec = NULL;
        char *err = NULL;

        policy_settings_default(&h->settings);
        g_clear_pointer(&h->policy_error, g_free);
        if (policy_files_load(main_file ? main_file : POLICY_MAIN_DEFAULT,
                              dir ? dir : POLICY_DROPIN_DEFAULT, &p, NULL, &err) < 0) {
                h->policy_error = err ? err : g_strdup("the policy files cannot be read");
                return;
        }
        if (policy_evaluate(p, NULL, NULL, vm, NULL, 0, &dec) >= 0)
                h->settings = dec->settings;
}

/* vfio-migd did not answer: the policy says whether libvirt goes on. */
static bool hook_fails_open(const Hook *h)
{
        return !h->policy_error && h->settings.hook_daemon_unavailable == POLICY_HOOK_FAIL_OPEN;
}

static const char *action_words(const Hook *h)
{
        switch (h->action) {
        case HOOK_REGISTER:
                return h->at_start ? "the start" : "the start (prepare)";
        case HOOK_MIGRATE:
                return "the incoming migration";
        default:
                return "the operation";
        }
}

static char *unavailable_sentence(const Hook *h, const char *reason)
{
        if (h->policy_error)
                return g_strdup_printf("vfio-migd cannot be asked (%s) and the policy is "
                                       "invalid (%s), so the hook refuses %s; fix the policy "
                                       "file ('vfio-migctl policy validate FILE') or start "
                                       "vfio-migd",
                                       reason, h->policy_error, action_words(h));
        if (!hook_fails_open(h))
                return g_strdup_printf("vfio-migd cannot be asked (%s); refusing %s because the "
                                       "policy's hook-daemon-unavailable is fail-closed; start "
                                       "vfio-migd ('systemctl start vfio-migd') and try again",
                                       reason, action_words(h));
        return g_strdup_printf("vfio-migd cannot be asked (%s); libvirt goes on without it "
                               "because the policy's hook-daemon-unavailable is fail-open: %s "
                               "is not coordinated by vfio-migd",
                               reason, h->action == HOOK_MIGRATE ? "this migration" : "this VM");
}

static int apply_unavailable(const Hook *h, const char *reason)
{
        g_autofree char *sentence = unavailable_sentence(h, reason);

        if (h->action == HOOK_RELEASE) {
                hook_log(h, LOG_WARNING,
                         "cannot unregister the VM: vfio-migd cannot be asked (%s). The VM "
                         "stays registered: vfio-migd's journal restores it when vfio-migd "
                         "starts again, holding its devices, until 'vfio-migctl unregister "
                         "%s' (the same domain starting again takes it over)",
                         reason, h->shown);
                return 0;
        }
        if (!hook_fails_open(h)) {
                hook_log(h, LOG_ERR, "%s", sentence);
                return 1;
        }
        hook_log(h, LOG_WARNING, "%s", sentence);
        if (h->action == HOOK_MIGRATE)
                write_all(STDOUT_FILENO, h->xml, h->xml_len);
        return 0;
}

static void arm_alarm(const Hook *h, uint64_t timeout_usec)
{
        /* Three calls at most (register, check, unregister), each bounded, and a margin. */
        unsigned seconds = (unsigned)(timeout_usec * 3 / 1000000) + 5;
        g_autofree char *sentence = unavailable_sentence(h, "the hook ran out of time");
        struct sigaction sa = {.sa_handler = on_alarm};

        alarm_verdict.code = hook_fails_open(h) || h->action == HOOK_RELEASE ? 0 : 1;
        g_free(alarm_verdict.message);
        alarm_verdict.message = g_strdup_printf("vfio-migd hook: domain '%s' (%s %s): %s\n",
                                                h->shown, h->op, h->subop, sentence);
        if (h->action == HOOK_MIGRATE && alarm_verdict.code == 0) {
                alarm_verdict.xml = h->xml;
                alarm_verdict.xml_len = h->xml_len;
        }
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        alarm(seconds);
}

/* The daemon is not there, does not answer, or is too old to know the method. */
static bool call_unavailable(const sd_bus_error *e, int r)
{
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT,
                                   SD_BUS_ERROR_DISCONNECTED, SD_BUS_ERROR_UNKNOWN_METHOD,
                                   SD_BUS_ERROR_UNKNOWN_OBJECT, SD_BUS_ERROR_UNKNOWN_INTERFACE))
                return true;
        return !sd_bus_error_is_set(e) && (r == -ETIMEDOUT || r == -ECONNRESET || r == -ENOTCONN ||
                                           r == -EPIPE || r == -ECONNREFUSED);
}

static char *call_reason(const char *method, const sd_bus_error *e, int r)
{
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT) ||
            r == -ETIMEDOUT)
                return g_strdup_printf("%s got no reply in time", method);
        if (sd_bus_error_is_set(e))
                return g_strdup_printf("%s: %s: %s", method, e->name, e->message ? e->message : "");
        return g_strdup_printf("%s: %s", method, strerror(-r));
}

static int hook_connect(Hook *h, uint64_t timeout_usec, char **ret_reason)
{
        int r = sd_bus_open_system(&h->c->bus);
        if (r >= 0)
                r = sd_bus_set_method_call_timeout(h->c->bus, timeout_usec);
        if (r < 0) {
                const char *address = getenv("DBUS_SYSTEM_BUS_ADDRESS");
                *ret_reason = g_strdup_printf(
                    "cannot connect to the system bus at %s: %s",
                    address ? address : "unix:path=/run/dbus/system_bus_socket", strerror(-r));
        }
        return r;
}

/* A registered VM's name, as the daemon reads it from the XML. */
static const char *registered_name(const Hook *h)
{
        return h->d ? h->d->name : h->domain;
}

/* A hostdev whose address cannot be used vetoes before the daemon is asked; every broken one
 * is named, so that one edit fixes them all. */
static int check_hostdevs(const Hook *h)
{
        g_autoptr(GString) problems = g_string_new(NULL);

        for (size_t i = 0; i < h->d->n_hostdevs; i++) {
                const LvHostdev *x = &h->d->hostdevs[i];
                g_autofree char *label = NULL;

                if (!x->problem)
                        continue;
                label = lv_hostdev_label(h->d, i);
                g_string_append_printf(problems, "%shostdev %s %s", problems->len ? "; " : "",
                                       label, x->problem);
        }
        if (problems->len == 0)
                return 0;
        hook_log(h, LOG_ERR,
                 "refusing %s: %s; fix the <hostdev> in the domain XML ('virsh edit %s')",
                 action_words(h), problems->str, h->shown);
        return 1;
}

static const char *register_fix(const sd_bus_error *e)
{
        if (ctl_error_is(e, "NoSuchDevice"))
                return "bind the device to a VFIO driver (libvirt does for managed='yes') "
                       "and check 'vfio-migctl list-devices'";
        if (ctl_error_is(e, "DeviceBusy"))
                return "a device belongs to one VM only: stop the VM holding it or "
                       "'vfio-migctl unregister' it";
        if (ctl_error_is(e, "VMExists"))
                return "a VM of this name is registered with other devices: 'vfio-migctl "
                       "unregister NAME' if it is stale";
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
                return "the hook runs as libvirtd's user, which needs root or vfio-migd's "
                       "operator group";
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_INVALID_ARGS))
                return "fix the domain XML ('virsh edit DOMAIN')";
        return "see 'journalctl -u vfio-migd'";
}

/* a(sss) into lines "  [id] device: sentence". */
static int read_problems(sd_bus_message *m, GString *out, size_t *ret_n)
{
        const char *id, *dev, *sentence;
        size_t n = 0;
        int r = sd_bus_message_enter_container(m, 'a', "(sss)");

        while (r >= 0 && (r = sd_bus_message_read(m, "(sss)", &id, &dev, &sentence)) > 0) {
                g_string_append_printf(out, "\n  [%s]%s%s: %s", id, dev[0] ? " " : "", dev,
                                       sentence);
                n++;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        *ret_n = n;
        return r;
}

/* From an a{sv}: the string under key (into *ret_string) or the strings under key (into
 * *ret_strv); other keys are skipped. */
static int read_details(sd_bus_message *m, const char *key, char **ret_string, char ***ret_strv)
{
        const char *k;
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");

        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &k);
                if (r >= 0 && strcmp(k, key) == 0 && ret_string &&
                    sd_bus_message_verify_type(m, 'v', "s") > 0) {
                        const char *s;
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r >= 0)
                                *ret_string = g_strdup(s);
                } else if (r >= 0 && strcmp(k, key) == 0 && ret_strv &&
                           sd_bus_message_verify_type(m, 'v', "as") > 0) {
                        char **l = NULL;
                        r = sd_bus_message_enter_container(m, 'v', "as");
                        if (r >= 0)
                                r = sd_bus_message_read_strv(m, &l);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(m);
                        if (r >= 0) {
                                g_strfreev(*ret_strv);
                                *ret_strv = l;
                        } else {
                                g_strfreev(l);
                        }
                } else if (r >= 0) {
                        r = sd_bus_message_skip(m, "v");
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r;
}

static void unregister_quietly(Hook *h)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(h->c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                   "UnregisterVM", &error, NULL, "s", registered_name(h));
        if (r < 0 && !ctl_error_is(&error, "NoSuchVM"))
                hook_log(h, LOG_WARNING, "could not unregister the refused VM: %s",
                         error.message ? error.message : strerror(-r));
        sd_bus_error_free(&error);
}

/* After registering: may the VM start when it could not migrate? */
static int hook_check_start(Hook *h)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        g_autoptr(GString) blockers = g_string_new(NULL);
        g_autofree char *daemon_setting = NULL;
        enum policy_start_unmigratable on_start = h->settings.on_start_unmigratable;
        size_t n = 0;
        int allowed = 0, r;

        r = sd_bus_call_method(h->c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                               "CheckMigration", &error, &reply, "s", registered_name(h));
        if (r < 0) {
                g_autofree char *reason = call_reason("CheckMigration", &error, r);
                if (call_unavailable(&error, r)) {
                        r = apply_unavailable(h, reason);
                } else {
                        hook_log(h, LOG_ERR, "refusing %s: the VM was registered but %s",
                                 action_words(h), reason);
                        r = 1;
                }
                goto out;
        }
        r = sd_bus_message_read(reply, "b", &allowed);
        if (r >= 0)
                r = read_problems(reply, blockers, &n);
        if (r >= 0)
                r = sd_bus_message_skip(reply, "a(ssss)as");
        if (r >= 0)
                r = read_details(reply, "on-start-unmigratable", &daemon_setting, NULL);
        if (r < 0) {
                hook_log(h, LOG_ERR,
                         "refusing %s: cannot read vfio-migd's CheckMigration reply: %s",
                         action_words(h), strerror(-r));
                r = 1;
                goto out;
        }
        /* The daemon's view of the policy when it gives one, else the hook's own. */
        if (daemon_setting)
                on_start = strcmp(daemon_setting, "refuse") == 0 ? POLICY_START_REFUSE
                                                                 : POLICY_START_ALLOW;
        else if (h->policy_error && !allowed)
                on_start = POLICY_START_REFUSE;
        if (allowed) {
                hook_log(h, LOG_INFO, "registered with vfio-migd; it may migrate");
                r = 0;
        } else if (on_start == POLICY_START_REFUSE) {
                unregister_quietly(h);
                hook_log(h, LOG_ERR,
                         "refusing %s: the VM could not migrate and %s; remove the blockers or "
                         "set on-start-unmigratable to allow for this VM:%s",
                         action_words(h),
                         daemon_setting || !h->policy_error
                             ? "the policy's on-start-unmigratable is refuse"
                             : "the hook cannot read on-start-unmigratable from the invalid "
                               "policy",
                         blockers->str);
                r = 1;
        } else {
                hook_log(h, LOG_WARNING,
                         "registered with vfio-migd, but the VM cannot migrate "
                         "(on-start-unmigratable is allow):%s",
                         blockers->str);
                r = 0;
        }
out:
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

static int hook_register(Hook *h)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r;

        r = check_hostdevs(h);
        if (r != 0)
                return r;
        r = sd_bus_call_method(h->c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                               "RegisterVMFromXML", &error, &reply, "sa{sv}", h->xml, 0);
        if (r < 0) {
                g_autofree char *reason = call_reason("RegisterVMFromXML", &error, r);
                if (call_unavailable(&error, r)) {
                        r = apply_unavailable(h, reason);
                } else if (ctl_error_is(&error, "NoSuchDevice") && !h->at_start) {
                        /* libvirt binds managed hostdevs to vfio-pci after this hook. */
                        hook_log(h, LOG_INFO,
                                 "not registered yet: %s; libvirt binds managed hostdevs to "
                                 "vfio-pci after prepare, so the hook registers at start",
                                 error.message);
                        r = 0;
                } else {
                        hook_log(h, LOG_ERR,
                                 "refusing %s: vfio-migd cannot register the VM: %s (%s)",
                                 action_words(h), error.message ? error.message : reason,
                                 register_fix(&error));
                        r = 1;
                }
                goto out;
        }
        r = hook_check_start(h);
out:
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

static int hook_migrate(Hook *h)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        g_autoptr(GString) problems = g_string_new(NULL);
        g_auto(GStrv) warnings = NULL;
        size_t n = 0;
        int allowed = 0, r;

        r = sd_bus_call_method(h->c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                               "CheckIncomingMigration", &error, &reply, "s", h->xml);
        if (r < 0) {
                g_autofree char *reason = call_reason("CheckIncomingMigration", &error, r);
                if (call_unavailable(&error, r)) {
                        r = apply_unavailable(h, reason);
                } else {
                        hook_log(h, LOG_ERR, "refusing the incoming migration: %s (%s)",
                                 error.message ? error.message : reason, register_fix(&error));
                        r = 1;
                }
                goto out;
        }
        r = sd_bus_message_read(reply, "b", &allowed);
        if (r >= 0)
                r = read_problems(reply, problems, &n);
        if (r >= 0)
                r = read_details(reply, "warnings", NULL, &warnings);
        if (r < 0) {
                hook_log(h, LOG_ERR,
                         "refusing the incoming migration: cannot read vfio-migd's "
                         "CheckIncomingMigration reply: %s",
                         strerror(-r));
                r = 1;
                goto out;
        }
        for (char **w = warnings; w && *w; w++)
                hook_log(h, LOG_WARNING, "%s", *w);
        if (!allowed) {
                hook_log(h, LOG_ERR,
                         "refusing the incoming migration: this host cannot take the VM's "
                         "VFIO devices (%zu problem%s):%s",
                         n, n == 1 ? "" : "s", problems->str);
                r = 1;
                goto out;
        }
        hook_log(h, LOG_INFO, "incoming migration allowed by vfio-migd");
        write_all(STDOUT_FILENO, h->xml, h->xml_len);
        r = 0;
out:
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

static int hook_release(Hook *h)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(h->c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                   "UnregisterVM", &error, NULL, "s", h->domain);

        if (r >= 0)
                hook_log(h, LOG_INFO, "unregistered from vfio-migd");
        else if (ctl_error_is(&error, "NoSuchVM"))
                r = 0; /* never registered: not a VFIO VM, or the daemon restarted */
        else if (call_unavailable(&error, r)) {
                g_autofree char *reason = call_reason("UnregisterVM", &error, r);
                apply_unavailable(h, reason);
        } else
                hook_log(h, LOG_WARNING, "cannot unregister the VM: %s",
                         error.message ? error.message : strerror(-r));
        sd_bus_error_free(&error);
        return 0; /* libvirt cannot undo a release */
}

/* libvirt took a name vfio-migd cannot take (longer than VM_NAME_MAX): the VM cannot be
 * coordinated, which on-start-unmigratable weighs like any other reason it cannot migrate. */
static int hook_unnamable(Hook *h)
{
        g_autoptr(GError) error = NULL;

        vm_name_check(h->d->name, "domain name", LV_DOMAIN_RENAME_FIX, &error);
        if (h->policy_error || h->settings.on_start_unmigratable == POLICY_START_REFUSE) {
                hook_log(h, LOG_ERR, "refusing %s: %s The policy's on-start-unmigratable is %s.",
                         action_words(h), error->message,
                         h->policy_error ? "unknown (the policy is invalid)" : "refuse");
                return 1;
        }
        hook_log(h, LOG_WARNING,
                 "libvirt goes on but vfio-migd does not coordinate this VM "
                 "(on-start-unmigratable is allow): %s",
                 error->message);
        if (h->action == HOOK_MIGRATE)
                write_all(STDOUT_FILENO, h->xml, h->xml_len);
        return 0;
}

static void hook_clear(Hook *h)
{
        lv_domain_free(h->d);
        g_free(h->shown);
        g_free(h->xml);
        g_free(h->policy_error);
}

int verb_libvirt_hook(Ctl *c, int argc, char **argv)
{
        Hook h = {.c = c, .domain = argv[0], .op = argv[1], .subop = argv[2]};
        g_autoptr(GError) error = NULL;
        g_autofree char *reason = NULL;
        uint64_t timeout_usec;
        int r;

        h.action = hook_action(h.op, h.subop);
        if (h.action == HOOK_IGNORE)
                return MIGCTL_EXIT_OK;
        h.at_start = strcmp(h.op, "start") == 0;
        /* A name vfio-migd could take is shown whole; any other is input, echoed bounded. */
        h.shown = vm_name_is_valid(h.domain) ? g_strdup(h.domain) : vm_name_shown(h.domain);

        timeout_usec = hook_timeout_usec(&h);
        load_policy(&h, h.domain);
        arm_alarm(&h, timeout_usec); /* from here on, libvirtd waits a bounded time */
        if (h.action != HOOK_RELEASE) {
                if (read_stdin(&h, &error) < 0 ||
                    lv_domain_parse(h.xml, h.xml_len, &h.d, &error) < 0) {
                        hook_log(&h, LOG_ERR, "refusing %s: %s", action_words(&h), error->message);
                        r = 1;
                        goto out;
                }
                if (strcmp(h.d->name, h.domain) != 0) {
                        g_autofree char *shown = vm_name_shown(h.d->name);
                        hook_log(&h, LOG_WARNING, "the domain XML names the domain '%s'", shown);
                }
                if (h.d->n_hostdevs == 0) {
                        /* not a VFIO VM: nothing to say, and the XML goes on unchanged */
                        if (h.action == HOOK_MIGRATE)
                                write_all(STDOUT_FILENO, h.xml, h.xml_len);
                        r = 0;
                        goto out;
                }
                load_policy(&h, h.d->name);
                arm_alarm(&h, timeout_usec); /* the verdict now carries the XML */
                if (!vm_name_is_valid(h.d->name)) {
                        r = hook_unnamable(&h);
                        goto out;
                }
        }
        if (hook_connect(&h, timeout_usec, &reason) < 0) {
                r = apply_unavailable(&h, reason);
                goto out;
        }
        switch (h.action) {
        case HOOK_REGISTER:
                r = hook_register(&h);
                break;
        case HOOK_MIGRATE:
                r = hook_migrate(&h);
                break;
        default:
                r = hook_release(&h);
                break;
        }
out:
        alarm(0);
        g_clear_pointer(&alarm_verdict.message, g_free);
        alarm_verdict.xml = NULL;
        hook_clear(&h);
        return r == 0 ? MIGCTL_EXIT_OK : MIGCTL_EXIT_FAILURE;
}
