/* lv-event: libvirt's event loop implementation on the daemon's sd-event loop */
#include "libvirt/lv-event.h"

#include <errno.h>
#include <glib.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <sys/epoll.h>

#include "log.h"

typedef struct LvSource {
        int id;
        bool is_timeout;
        int fd;
        int timeout_ms; /* timeouts: -1 off, 0 every iteration, else the period */
        sd_event_source *source;
        virEventHandleCallback handle_cb;
        virEventTimeoutCallback timeout_cb;
        void *opaque;
        virFreeCallback ff;
} LvSource;

typedef struct PendingFree {
        virFreeCallback ff;
        void *opaque;
} PendingFree;

static struct {
        sd_event *event;
        GHashTable *sources; /* id -> LvSource* */
        GArray *pending;     /* PendingFree */
        sd_event_source *free_source;
        int next_id;
        bool impl_registered;
} lv;

static void run_pending_frees(void)
{
        /* A free callback may remove more sources and so queue more frees. */
        while (lv.pending && lv.pending->len > 0) {
                PendingFree p = g_array_index(lv.pending, PendingFree, 0);

                g_array_remove_index(lv.pending, 0);
                p.ff(p.opaque);
        }
}

static int on_free_deferred(sd_event_source *s, void *userdata)
{
        run_pending_frees();
        return 0;
}

static void source_free(LvSource *src)
{
        sd_event_source_disable_unref(src->source);
        if (src->ff) {
                PendingFree p = {src->ff, src->opaque};

                g_array_append_val(lv.pending, p);
                if (lv.free_source)
                        (void)sd_event_source_set_enabled(lv.free_source, SD_EVENT_ONESHOT);
        }
        g_free(src);
}

static uint32_t epoll_from_vir(int events)
{
        uint32_t e = 0;

        if (events & VIR_EVENT_HANDLE_READABLE)
                e |= EPOLLIN;
        if (events & VIR_EVENT_HANDLE_WRITABLE)
                e |= EPOLLOUT;
        return e;
}

static int vir_from_epoll(uint32_t e)
{
        int events = 0;

        if (e & EPOLLIN)
                events |= VIR_EVENT_HANDLE_READABLE;
        if (e & EPOLLOUT)
                events |= VIR_EVENT_HANDLE_WRITABLE;
        if (e & EPOLLERR)
                events |= VIR_EVENT_HANDLE_ERROR;
        if (e & EPOLLHUP)
                events |= VIR_EVENT_HANDLE_HANGUP;
        return events;
}

static LvSource *source_get(int id, bool is_timeout)
{
        LvSource *src = lv.sources ? g_hash_table_lookup(lv.sources, GINT_TO_POINTER(id)) : NULL;

        return src && src->is_timeout == is_timeout ? src : NULL;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        LvSource *src = userdata;
        int id = src->id;

        /* The callback may remove this very handle: src is not touched afterwards. */
        src->handle_cb(id, fd, vir_from_epoll(revents), src->opaque);
        return 0;
}

/* libvirt wants handles with no events to stay registered but silent. */
static void handle_apply_events(LvSource *src, int events)
{
        uint32_t e = epoll_from_vir(events);

        if (e == 0) {
                (void)sd_event_source_set_enabled(src->source, SD_EVENT_OFF);
                return;
        }
        (void)sd_event_source_set_io_events(src->source, e);
        (void)sd_event_source_set_enabled(src->source, SD_EVENT_ON);
}

static int add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
                      virFreeCallback ff)
{
        LvSource *src;
        int r;

        if (!lv.event)
                return -1;
        src = g_new0(LvSource, 1);
        src->id = ++lv.next_id;
        src->fd = fd;
        src->handle_cb = cb;
        src->opaque = opaque;
        r = sd_event_add_io(lv.event, &src->source, fd, EPOLLIN, on_io, src);
        if (r < 0) {
                log_warning("libvirt: cannot watch fd %d: %s", fd, g_strerror(-r));
                g_free(src);
                return -1;
        }
        (void)sd_event_source_set_description(src->source, "libvirt-handle");
        handle_apply_events(src, events);
        /* Only now: a failed add must not call ff (libvirt frees opaque itself then). */
        src->ff = ff;
        g_hash_table_insert(lv.sources, GINT_TO_POINTER(src->id), src);
        return src->id;
}

static void update_handle(int id, int events)
{
        LvSource *src = source_get(id, false);

        if (src)
                handle_apply_events(src, events);
}

static int remove_handle(int id)
{
        LvSource *src = source_get(id, false);

        if (!src)
                return -1;
        g_hash_table_steal(lv.sources, GINT_TO_POINTER(id));
        source_free(src);
        return 0;
}

static void timeout_arm(LvSource *src)
{
        uint64_t now = 0;

        if (src->timeout_ms < 0) {
                (void)sd_event_source_set_enabled(src->source, SD_EVENT_OFF);
                return;
        }
        (void)sd_event_now(lv.event, CLOCK_MONOTONIC, &now);
        (void)sd_event_source_set_time(src->source, now + (uint64_t)src->timeout_ms * 1000);
        (void)sd_event_source_set_enabled(src->source, SD_EVENT_ONESHOT);
}

static int on_time(sd_event_source *s, uint64_t usec, void *userdata)
{
        LvSource *src = userdata;
        int id = src->id;

        /* libvirt's timeouts repeat until updated to -1 or removed. Re-armed first, because
         * the callback may update or remove this timeout. */
        timeout_arm(src);
        src->timeout_cb(id, src->opaque);
        return 0;
}

static int add_timeout(int timeout_ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff)
{
        LvSource *src;
        int r;

        if (!lv.event)
                return -1;
        src = g_new0(LvSource, 1);
        src->id = ++lv.next_id;
        src->is_timeout = true;
        src->timeout_ms = timeout_ms;
        src->timeout_cb = cb;
        src->opaque = opaque;
        r = sd_event_add_time(lv.event, &src->source, CLOCK_MONOTONIC, UINT64_MAX, 0, on_time, src);
        if (r < 0) {
                log_warning("libvirt: cannot add a timer: %s", g_strerror(-r));
                g_free(src);
                return -1;
        }
        (void)sd_event_source_set_description(src->source, "libvirt-timeout");
        timeout_arm(src);
        src->ff = ff;
        g_hash_table_insert(lv.sources, GINT_TO_POINTER(src->id), src);
        return src->id;
}

static void update_timeout(int id, int timeout_ms)
{
        LvSource *src = source_get(id, true);

        if (!src)
                return;
        src->timeout_ms = timeout_ms;
        timeout_arm(src);
}

static int remove_timeout(int id)
{
        LvSource *src = source_get(id, true);

        if (!src)
                return -1;
        g_hash_table_steal(lv.sources, GINT_TO_POINTER(id));
        source_free(src);
        return 0;
}

int lv_event_register(sd_event *event)
{
        int r;

        if (lv.event)
                return -EALREADY;
        r = sd_event_add_defer(event, &lv.free_source, on_free_deferred, NULL);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(lv.free_source, SD_EVENT_OFF);
        (void)sd_event_source_set_description(lv.free_source, "libvirt-free");
        lv.event = sd_event_ref(event);
        lv.sources = g_hash_table_new(g_direct_hash, g_direct_equal);
        lv.pending = g_array_new(false, false, sizeof(PendingFree));
        if (!lv.impl_registered) {
                virEventRegisterImpl(add_handle, update_handle, remove_handle, add_timeout,
                                     update_timeout, remove_timeout);
                lv.impl_registered = true;
        }
        return 0;
}

void lv_event_unregister(void)
{
        GHashTableIter it;
        LvSource *src;

        if (!lv.event)
                return;
        g_hash_table_iter_init(&it, lv.sources);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&src)) {
                g_hash_table_iter_steal(&it);
                source_free(src);
        }
        run_pending_frees();
        /* Frees may have removed sources added meanwhile; nothing is left to run them later. */
        g_hash_table_destroy(lv.sources);
        lv.sources = NULL;
        g_array_free(lv.pending, true);
        lv.pending = NULL;
        lv.free_source = sd_event_source_disable_unref(lv.free_source);
        lv.event = sd_event_unref(lv.event);
}

unsigned lv_event_n_sources(void)
{
        return lv.sources ? g_hash_table_size(lv.sources) : 0;
}
