/* offload: pure work on a worker thread, its continuation back on the event loop */
#include "offload.h"

#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util.h"

typedef struct OffloadJob {
        OffloadFunc work, done;
        void *data;
} OffloadJob;

struct Offload {
        GThreadPool *pool;
        sd_event_source *wake_source;
        int wake_fd;  /* eventfd: finished jobs wait in queue */
        GMutex lock;  /* guards queue */
        GQueue queue; /* OffloadJob*, finished */
};

static void offload_worker(gpointer item, gpointer userdata)
{
        static const uint64_t one = 1;
        OffloadJob *job = item;
        Offload *o = userdata;

        job->work(job->data);
        g_mutex_lock(&o->lock);
        g_queue_push_tail(&o->queue, job);
        g_mutex_unlock(&o->lock);
        (void)!write(o->wake_fd, &one, sizeof(one));
}

static void offload_drain(Offload *o)
{
        for (;;) {
                OffloadJob *job;

                g_mutex_lock(&o->lock);
                job = g_queue_pop_head(&o->queue);
                g_mutex_unlock(&o->lock);
                if (!job)
                        return;
                job->done(job->data);
                g_free(job);
        }
}

static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        uint64_t count;

        (void)!read(fd, &count, sizeof(count));
        offload_drain(userdata);
        return 0;
}

int offload_new(sd_event *event, unsigned max_threads, Offload **ret)
{
        Offload *o = g_new0(Offload, 1);
        GError *error = NULL;
        int r;

        g_mutex_init(&o->lock);
        g_queue_init(&o->queue);
        o->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (o->wake_fd < 0) {
                r = -errno;
                offload_free(o);
                return r;
        }
        r = sd_event_add_io(event, &o->wake_source, o->wake_fd, EPOLLIN, on_wake, o);
        if (r < 0) {
                offload_free(o);
                return r;
        }
        (void)sd_event_source_set_description(o->wake_source, "offload");
        o->pool = g_thread_pool_new(offload_worker, o, (gint)(max_threads ? max_threads : 1), FALSE,
                                    &error);
        if (!o->pool) {
                g_error_free(error);
                offload_free(o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

void offload_free(Offload *o)
{
        if (!o)
                return;
        if (o->pool)
                g_thread_pool_free(o->pool, FALSE, TRUE);
        offload_drain(o);
        sd_event_source_disable_unref(o->wake_source);
        if (o->wake_fd >= 0)
                close(o->wake_fd);
        g_mutex_clear(&o->lock);
        g_free(o);
}

int offload_run(Offload *o, OffloadFunc work, OffloadFunc done, void *data)
{
        OffloadJob *job = g_new0(OffloadJob, 1);

        *job = (OffloadJob){.work = work, .done = done, .data = data};
        if (!g_thread_pool_push(o->pool, job, NULL)) {
                g_free(job);
                return -ENOMEM;
        }
        return 0;
}
