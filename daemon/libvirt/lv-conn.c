/* lv-conn: the daemon's libvirt connection: connect, domain events, reconnect with backoff */
#include "libvirt/lv-conn.h"

#include <errno.h>
#include <glib.h>
#include <libvirt/virterror.h>

#include "log.h"

enum { EVENT_LIFECYCLE, EVENT_DEVICE_ADDED, EVENT_DEVICE_REMOVED, N_EVENTS };

struct LvConn {
        sd_event *event;
        char *uri;
        LvConnCallbacks cb;
        void *userdata;
        virConnectPtr conn;
        bool read_only;
        int event_ids[N_EVENTS];
        uint64_t backoff_usec;
        sd_event_source *retry_source; /* the next attempt; also drops a closed connection */
        char *last_failure;            /* logged once until it changes */
        bool closed;                   /* libvirt said the connection is gone */
};

static void ignore_libvirt_error(void *userdata, virErrorPtr error)
{
        /* Without a handler libvirt prints every error on stderr; the daemon logs its own. */
}

const char *lv_conn_last_error(void)
{
        const char *msg = virGetLastErrorMessage();

        return msg ? msg : "unknown libvirt error";
}

const char *lv_conn_uri(const LvConn *c)
{
        return c->uri;
}

virConnectPtr lv_conn_get(const LvConn *c)
{
        return c->closed ? NULL : c->conn;
}

bool lv_conn_read_only(const LvConn *c)
{
        return c->read_only;
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        LvConn *c = opaque;

        log_debug("libvirt: domain %s: lifecycle event %d/%d.", virDomainGetName(dom), event,
                  detail);
        c->cb.domain_event(c, virDomainGetName(dom),
                           event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_CRASHED,
                           c->userdata);
        return 0;
}

static void on_device_changed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque)
{
        LvConn *c = opaque;

        log_debug("libvirt: domain %s: device %s added or removed.", virDomainGetName(dom), alias);
        c->cb.domain_event(c, virDomainGetName(dom), false, c->userdata);
}

static void schedule_retry(LvConn *c, uint64_t delay_usec);

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
        LvConn *c = opaque;

        if (c->closed)
                return;
        log_warning("libvirt: the connection to %s closed (%s); reconnecting.", c->uri,
                    reason == VIR_CONNECT_CLOSE_REASON_EOF         ? "end of file"
                    : reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE ? "keepalive timeout"
                    : reason == VIR_CONNECT_CLOSE_REASON_CLIENT    ? "closed by the client"
                                                                   : "error");
        /* The connection is released from the loop, not inside libvirt's own callback. */
        c->closed = true;
        c->cb.connected(c, false, c->userdata);
        schedule_retry(c, 0);
}

static void conn_drop(LvConn *c)
{
        if (!c->conn)
                return;
        for (int i = 0; i < N_EVENTS; i++)
                if (c->event_ids[i] >= 0)
                        (void)virConnectDomainEventDeregisterAny(c->conn, c->event_ids[i]);
        (void)virConnectUnregisterCloseCallback(c->conn, on_close);
        (void)virConnectClose(c->conn);
        c->conn = NULL;
        for (int i = 0; i < N_EVENTS; i++)
                c->event_ids[i] = -1;
}

static int conn_subscribe(LvConn *c)
{
        static const struct {
                int id;
                virConnectDomainEventGenericCallback cb;
        } events[N_EVENTS] = {
            [EVENT_LIFECYCLE] = {VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                 VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle)},
            [EVENT_DEVICE_ADDED] = {VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
                                    VIR_DOMAIN_EVENT_CALLBACK(on_device_changed)},
            [EVENT_DEVICE_REMOVED] = {VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                      VIR_DOMAIN_EVENT_CALLBACK(on_device_changed)},
        };

        if (virConnectRegisterCloseCallback(c->conn, on_close, c, NULL) < 0)
                log_debug("libvirt: %s has no close callback: %s", c->uri, lv_conn_last_error());
        for (int i = 0; i < N_EVENTS; i++) {
                c->event_ids[i] = virConnectDomainEventRegisterAny(c->conn, NULL, events[i].id,
                                                                   events[i].cb, c, NULL);
                if (c->event_ids[i] < 0) {
                        log_warning("libvirt: cannot subscribe to domain events on %s: %s", c->uri,
                                    lv_conn_last_error());
                        return -EIO;
                }
        }
        /* A libvirtd that hangs without closing the socket is noticed too. */
        (void)virConnectSetKeepAlive(c->conn, 5, 3);
        return 0;
}

static void note_failure(LvConn *c, const char *msg)
{
        if (g_strcmp0(c->last_failure, msg) == 0) {
                log_debug("libvirt: still cannot connect to %s: %s", c->uri, msg);
                return;
        }
        log_warning("libvirt: cannot connect to %s: %s; retrying with backoff (up to every "
                    "%llu s).",
                    c->uri, msg, LV_CONN_BACKOFF_MAX_USEC / 1000000ULL);
        g_free(c->last_failure);
        c->last_failure = g_strdup(msg);
}

/* 0 connected; -ECONNREFUSED otherwise, having logged why. */
static int conn_try(LvConn *c)
{
        g_autofree char *rw_error = NULL;

        c->conn = virConnectOpen(c->uri);
        c->read_only = false;
        if (!c->conn) {
                rw_error = g_strdup(lv_conn_last_error());
                c->conn = virConnectOpenReadOnly(c->uri);
                c->read_only = true;
        }
        if (!c->conn) {
                note_failure(c, rw_error);
                return -ECONNREFUSED;
        }
        c->closed = false;
        if (conn_subscribe(c) < 0) {
                conn_drop(c);
                note_failure(c, "cannot subscribe to domain events");
                return -ECONNREFUSED;
        }
        if (c->read_only)
                log_warning("libvirt: connected to %s read-only (read-write was refused: %s); "
                            "vfio-migd cannot store its metadata in the domains.",
                            c->uri, rw_error);
        else
                log_info("libvirt: connected to %s.", c->uri);
        g_clear_pointer(&c->last_failure, g_free);
        c->backoff_usec = LV_CONN_BACKOFF_MIN_USEC;
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        LvConn *c = userdata;

        conn_drop(c);
        if (conn_try(c) == 0) {
                c->cb.connected(c, true, c->userdata);
                return 0;
        }
        schedule_retry(c, c->backoff_usec);
        c->backoff_usec = MIN(c->backoff_usec * 2, LV_CONN_BACKOFF_MAX_USEC);
        return 0;
}

static void schedule_retry(LvConn *c, uint64_t delay_usec)
{
        uint64_t now = 0;

        (void)sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        (void)sd_event_source_set_time(c->retry_source, now + delay_usec);
        (void)sd_event_source_set_enabled(c->retry_source, SD_EVENT_ONESHOT);
}

int lv_conn_new(sd_event *event, const char *uri, const LvConnCallbacks *callbacks, void *userdata,
                LvConn **ret)
{
        LvConn *c = g_new0(LvConn, 1);
        int r;

        c->event = sd_event_ref(event);
        c->uri = g_strdup(uri);
        c->cb = *callbacks;
        c->userdata = userdata;
        c->backoff_usec = LV_CONN_BACKOFF_MIN_USEC;
        for (int i = 0; i < N_EVENTS; i++)
                c->event_ids[i] = -1;
        virSetErrorFunc(NULL, ignore_libvirt_error);
        r = sd_event_add_time(event, &c->retry_source, CLOCK_MONOTONIC, UINT64_MAX, 0, on_retry, c);
        if (r < 0) {
                lv_conn_free(c);
                return r;
        }
        (void)sd_event_source_set_description(c->retry_source, "libvirt-reconnect");
        (void)sd_event_source_set_enabled(c->retry_source, SD_EVENT_OFF);
        if (conn_try(c) < 0) {
                schedule_retry(c, c->backoff_usec);
                c->backoff_usec = MIN(c->backoff_usec * 2, LV_CONN_BACKOFF_MAX_USEC);
        }
        *ret = c;
        return 0;
}

void lv_conn_free(LvConn *c)
{
        if (!c)
                return;
        conn_drop(c);
        sd_event_source_disable_unref(c->retry_source);
        sd_event_unref(c->event);
        g_free(c->last_failure);
        g_free(c->uri);
        g_free(c);
}
