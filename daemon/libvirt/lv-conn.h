/* lv-conn: the daemon's libvirt connection: connect, domain events, reconnect with backoff */
#pragma once

/*
 * One connection to one URI, on the daemon's sd-event loop (lv-event must be registered
 * first). lv_conn_new() tries to connect at once; when that fails, or when libvirtd goes away
 * later (the close callback), it retries with exponential backoff: 1 s, doubling up to 60 s,
 * back to 1 s after a success. Each failure is logged once per distinct message, not per
 * attempt. The connection is opened read-write (needed to store metadata); when that is
 * refused and a read-only connection works, it stays read-only and says so.
 *
 * The owner hears of everything through callbacks on the loop thread: the connection came up
 * or went down, and "the domains changed" for every lifecycle, device-added and
 * device-removed event (with the domain and whether it stopped). The callbacks must not free
 * the LvConn.
 *
 * Errors: negative errno.
 */

#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#define LV_CONN_BACKOFF_MIN_USEC (1ULL * 1000000ULL)
#define LV_CONN_BACKOFF_MAX_USEC (60ULL * 1000000ULL)

typedef struct LvConn LvConn;

typedef struct LvConnCallbacks {
        void (*connected)(LvConn *c, bool connected, void *userdata);
        /* stopped: a lifecycle event said the domain stopped (or crashed). */
        void (*domain_event)(LvConn *c, const char *domain, bool stopped, void *userdata);
} LvConnCallbacks;

int lv_conn_new(sd_event *event, const char *uri, const LvConnCallbacks *callbacks, void *userdata,
                LvConn **ret);
void lv_conn_free(LvConn *c);

const char *lv_conn_uri(const LvConn *c);
/* The live connection, or NULL while disconnected. Borrowed. */
virConnectPtr lv_conn_get(const LvConn *c);
bool lv_conn_read_only(const LvConn *c);
/* libvirt's last error message on this thread, for logs. */
const char *lv_conn_last_error(void);
