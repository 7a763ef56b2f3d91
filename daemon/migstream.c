/* migstream: one byte stream carrying every device's migration data of a VM */
#include "migstream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define FRAME_HEADER_SIZE 16
#define DIGEST_SIZE       32
/* A VM holds at most 256 devices; anything far above is a corrupt header. */
#define DEVICES_MAX 4096

struct MigStreamWriter {
        int fd;
        int fd_flags; /* the fd's flags before O_NONBLOCK, restored by _free; -1: none */
        MigStreamIo io;
        char *what;      /* "the migration stream of VM 'NAME'", for messages */
        GMutex lock;     /* one frame at a time: frames of several devices interleave */
        uint64_t offset; /* bytes written, for messages */
        int broken;      /* first write error; a stream cut mid-frame cannot continue */
        size_t n;
        char **names;
        bool *claimed; /* a pump started for the device */
        bool *ended;   /* its END frame is out */
};

struct MigStreamReader {
        int fd;
        int fd_flags;
        MigStreamIo io;
        char *what;
        uint64_t offset; /* bytes consumed, for messages */
        char *vm_name;
        uint8_t id[MIGSTREAM_ID_SIZE];
        size_t n;
        MigStreamDevice *devices; /* names owned */
};

static const MigStreamIo io_default = {.abort_fd = -1};

static char *stream_what(const char *vm_name)
{
        return vm_name && *vm_name ? g_strdup_printf("the migration stream of VM '%s'", vm_name)
                                   : g_strdup("the migration stream");
}

/* The stream fd waits in poll(), never in read or write: a blocking fd would hold a worker
 * in a 1 MiB write after POLLOUT. */
static int fd_set_nonblocking(int fd, int *ret_flags)
{
        int flags = fcntl(fd, F_GETFL);

        *ret_flags = -1;
        if (flags < 0)
                return -errno;
        if (flags & O_NONBLOCK)
                return 0;
        if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        *ret_flags = flags;
        return 0;
}

static void fd_restore_flags(int fd, int flags)
{
        if (flags >= 0)
                (void)fcntl(fd, F_SETFL, flags);
}

void migstream_id_generate(uint8_t id[MIGSTREAM_ID_SIZE])
{
        for (size_t i = 0; i < MIGSTREAM_ID_SIZE; i += 4) {
                uint32_t v = g_random_int();
                memcpy(id + i, &v, sizeof(v));
        }
}

char *migstream_id_to_string(const uint8_t id[MIGSTREAM_ID_SIZE])
{
        char *s = g_malloc(2 * MIGSTREAM_ID_SIZE + 1);

        for (size_t i = 0; i < MIGSTREAM_ID_SIZE; i++)
                g_snprintf(s + 2 * i, 3, "%02x", id[i]);
        return s;
}

static void put_u16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
        put_u16(p, (uint16_t)v);
        put_u16(p + 2, (uint16_t)(v >> 16));
}

static uint16_t get_u16(const uint8_t *p)
{
        return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32(const uint8_t *p)
{
        return (uint32_t)get_u16(p) | (uint32_t)get_u16(p + 2) << 16;
}

/* Sets a GError in G_FILE_ERROR (code from the errno) and returns r, a negative errno. */
static int G_GNUC_PRINTF(3, 4) fail(GError **error, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        g_propagate_error(error,
                          g_error_new_valist(G_FILE_ERROR, g_file_error_from_errno(-r), fmt, ap));
        va_end(ap);
        return r;
}

/*
 * Waits until fd is ready for events, the abort fd is readable (-ECANCELED) or stall_us pass
 * without either (-ETIMEDOUT). Every read and write polls first, so an abort is seen between
 * any two chunks even on fds that are always ready.
 */
static int wait_fd(int fd, short events, const MigStreamIo *io)
{
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = io->abort_fd, .events = POLLIN}};
        int64_t deadline = io->stall_us ? g_get_monotonic_time() + (int64_t)io->stall_us : 0;

        for (;;) {
                int timeout_ms = -1, r;

                if (deadline) {
                        int64_t left = deadline - g_get_monotonic_time();
                        timeout_ms = left > 0 ? (int)MIN((left + 999) / 1000, G_MAXINT) : 0;
                }
                r = poll(p, 2, timeout_ms);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (p[1].revents & POLLIN)
                        return -ECANCELED;
                if (r == 0)
                        return -ETIMEDOUT;
                if (p[0].revents & POLLNVAL)
                        return -EBADF;
                /* Ready, or an error or hang-up the read or write itself will report. */
                return 0;
        }
}

/* Reads until len bytes or end of file; returns the count (short only at EOF) or -errno. */
static ssize_t read_full(int fd, void *buf, size_t len, const MigStreamIo *io)
{
        size_t done = 0;

        while (done < len) {
                ssize_t n;
                int r = wait_fd(fd, POLLIN, io);

                if (r < 0)
                        return r;
                n = read(fd, (uint8_t *)buf + done, len - done);
                if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        return (ssize_t)done;
}

/*
 * A reader that goes away must give this thread EPIPE, not kill the process with SIGPIPE
 * (the daemon also ignores it process-wide): the signal is blocked around the write and one
 * the write raised is consumed, whether the write failed or was cut short by it.
 */
static ssize_t writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt)
{
        sigset_t pipe_set, old_set, pending;
        bool was_pending;
        ssize_t n;
        int saved;

        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
        sigpending(&pending);
        was_pending = sigismember(&pending, SIGPIPE);
        n = writev(fd, iov, iovcnt);
        saved = errno;
        if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
                const struct timespec zero = {0};
                while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                        ;
        }
        pthread_sigmask(SIG_SETMASK, &old_set, NULL);
        errno = saved;
        return n;
}

/* Writes every byte of iov (modified), across short writes, EINTR and EAGAIN. */
static int writev_full(int fd, struct iovec *iov, int iovcnt, const MigStreamIo *io,
                       uint64_t *ret_done)
{
        while (iovcnt > 0) {
                ssize_t n;
                int r = wait_fd(fd, POLLOUT, io);

                if (r < 0)
                        return r;
                n = writev_nosigpipe(fd, iov, iovcnt);
                if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                        continue;
                if (n < 0)
                        return -errno;
                if (ret_done)
                        *ret_done += (uint64_t)n;
                while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
                        n -= (ssize_t)iov->iov_len;
                        iov++;
                        iovcnt--;
                }
                if (iovcnt > 0) {
                        iov->iov_base = (uint8_t *)iov->iov_base + n;
                        iov->iov_len -= (size_t)n;
                }
        }
        return 0;
}

static int write_full(int fd, const void *buf, size_t len, const MigStreamIo *io,
                      uint64_t *ret_done)
{
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

        return writev_full(fd, &iov, len ? 1 : 0, io, ret_done);
}

static uint64_t stall_ms(const MigStreamIo *io)
{
        return (io->stall_us + 999) / 1000;
}

/* The writer's errors say what happened to the stream, in the operator's words. */
static int writer_error(MigStreamWriter *w, int r, const char *device, GError **error)
{
        g_autofree char *what =
            device ? g_strdup_printf(" while writing device '%s'", device) : g_strdup("");

        if (r == -EPIPE)
                return fail(error, r,
                            "the reader of %s went away (broken pipe) after %" G_GUINT64_FORMAT
                            " bytes%s",
                            w->what, w->offset, what);
        if (r == -ENOSPC)
                return fail(error, r, "no space left for %s after %" G_GUINT64_FORMAT " bytes%s",
                            w->what, w->offset, what);
        if (r == -ETIMEDOUT)
                return fail(error, r,
                            "%s accepted no data for %" G_GUINT64_FORMAT
                            " ms after %" G_GUINT64_FORMAT " bytes%s; is its reader still reading?",
                            w->what, stall_ms(&w->io), w->offset, what);
        if (r == -ECANCELED)
                return fail(error, r, "%s was aborted after %" G_GUINT64_FORMAT " bytes%s", w->what,
                            w->offset, what);
        return fail(error, r, "writing %s failed after %" G_GUINT64_FORMAT " bytes%s: %s", w->what,
                    w->offset, what, g_strerror(-r));
}

static void append_u16(GByteArray *b, uint16_t v)
{
        uint8_t p[2];

        put_u16(p, v);
        g_byte_array_append(b, p, sizeof(p));
}

static void append_u32(GByteArray *b, uint32_t v)
{
        uint8_t p[4];

        put_u32(p, v);
        g_byte_array_append(b, p, sizeof(p));
}

static int header_build(const char *vm_name, const uint8_t id[MIGSTREAM_ID_SIZE],
                        const MigStreamDevice *devices, size_t n, GByteArray **ret, GError **error)
{
        g_autoptr(GByteArray) b = g_byte_array_new();
        size_t vm_len = vm_name ? strlen(vm_name) : 0;

        if (vm_len == 0 || vm_len > G_MAXUINT16)
                return fail(error, -EINVAL, "the stream needs a VM name of 1 to %u bytes",
                            G_MAXUINT16);
        if (n > DEVICES_MAX)
                return fail(error, -EINVAL, "%zu devices cannot share one stream (at most %d)", n,
                            DEVICES_MAX);
        g_byte_array_append(b, (const uint8_t *)MIGSTREAM_MAGIC, 8);
        append_u32(b, MIGSTREAM_VERSION);
        append_u16(b, (uint16_t)vm_len);
        g_byte_array_append(b, (const uint8_t *)vm_name, (guint)vm_len);
        g_byte_array_append(b, id, MIGSTREAM_ID_SIZE);
        append_u32(b, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
                size_t len = devices[i].name ? strlen(devices[i].name) : 0;

                if (len == 0 || len > G_MAXUINT16)
                        return fail(error, -EINVAL, "device %zu needs a name of 1 to %u bytes", i,
                                    G_MAXUINT16);
                append_u16(b, (uint16_t)len);
                g_byte_array_append(b, (const uint8_t *)devices[i].name, (guint)len);
                append_u32(b, devices[i].flags);
                append_u16(b, devices[i].vendor_id);
                append_u16(b, devices[i].device_id);
        }
        *ret = g_steal_pointer(&b);
        return 0;
}

int migstream_writer_new(int out_fd, const char *vm_name, const uint8_t id[MIGSTREAM_ID_SIZE],
                         const MigStreamDevice *devices, size_t n, const MigStreamIo *io,
                         MigStreamWriter **ret, GError **error)
{
        g_autoptr(GByteArray) header = NULL;
        g_autoptr(MigStreamWriter) w = NULL;
        int r;

        r = header_build(vm_name, id, devices, n, &header, error);
        if (r < 0)
                return r;
        w = g_new0(MigStreamWriter, 1);
        g_mutex_init(&w->lock);
        w->fd = out_fd;
        w->io = io ? *io : io_default;
        w->what = stream_what(vm_name);
        w->n = n;
        w->names = g_new0(char *, n + 1);
        for (size_t i = 0; i < n; i++)
                w->names[i] = g_strdup(devices[i].name);
        w->claimed = g_new0(bool, n ? n : 1);
        w->ended = g_new0(bool, n ? n : 1);
        r = fd_set_nonblocking(out_fd, &w->fd_flags);
        if (r < 0)
                return fail(error, r, "%s cannot be made non-blocking: %s", w->what,
                            g_strerror(-r));
        r = write_full(out_fd, header->data, header->len, &w->io, &w->offset);
        if (r < 0)
                return writer_error(w, r, NULL, error);
        *ret = g_steal_pointer(&w);
        return 0;
}

uint64_t migstream_writer_offset(MigStreamWriter *w)
{
        uint64_t off;

        g_mutex_lock(&w->lock);
        off = w->offset;
        g_mutex_unlock(&w->lock);
        return off;
}

/* One frame, whole, under the lock; after a failure every later frame fails the same way. */
static int write_frame(MigStreamWriter *w, uint32_t index, uint32_t kind, const void *payload,
                       uint32_t len, GError **error)
{
        uint8_t head[FRAME_HEADER_SIZE];
        struct iovec iov[2] = {{head, sizeof(head)}, {(void *)payload, len}};
        const char *device = index < w->n ? w->names[index] : NULL;
        int r;

        put_u32(head, MIGSTREAM_FRAME_MAGIC);
        put_u32(head + 4, index);
        put_u32(head + 8, kind);
        put_u32(head + 12, len);
        g_mutex_lock(&w->lock);
        r = w->broken;
        if (r == 0)
                r = writev_full(w->fd, iov, len ? 2 : 1, &w->io, &w->offset);
        if (r < 0) {
                w->broken = r;
                writer_error(w, r, device, error);
        }
        g_mutex_unlock(&w->lock);
        return r;
}

/* The policy's per-device bound: a stream cannot make the daemon or a device take more. */
static int device_too_big(GError **error, const char *device, uint64_t at_least,
                          const MigStreamIo *io)
{
        return fail(error, -EFBIG,
                    "device '%s' carries at least %" G_GUINT64_FORMAT
                    " bytes of migration data, more than %s (%" G_GUINT64_FORMAT
                    " bytes); raise %s in the policy if the device really holds that much",
                    device, at_least, io->setting ? io->setting : "the limit", io->max_device_bytes,
                    io->setting ? io->setting : "the limit");
}

static int writer_claim(MigStreamWriter *w, size_t index, GError **error)
{
        int r = 0;

        if (index >= w->n)
                return fail(error, -EINVAL,
                            "device index %zu is not in the stream (it has %zu devices)", index,
                            w->n);
        g_mutex_lock(&w->lock);
        if (w->claimed[index])
                r = fail(error, -EALREADY,
                         "device '%s' was already streamed; each device is pumped once",
                         w->names[index]);
        w->claimed[index] = true;
        g_mutex_unlock(&w->lock);
        return r;
}

int migstream_writer_pump(MigStreamWriter *w, size_t index, int data_fd, uint64_t *ret_bytes,
                          GError **error)
{
        g_autoptr(GChecksum) sha = g_checksum_new(G_CHECKSUM_SHA256);
        g_autofree uint8_t *buf = NULL;
        uint8_t digest[DIGEST_SIZE];
        gsize digest_len = sizeof(digest);
        uint64_t total = 0;
        ssize_t got;
        int r;

        r = writer_claim(w, index, error);
        if (r < 0)
                return r;
        buf = g_malloc(MIGSTREAM_CHUNK_MAX);
        do {
                got = read_full(data_fd, buf, MIGSTREAM_CHUNK_MAX, &w->io);
                if (got == -ETIMEDOUT)
                        return fail(error, (int)got,
                                    "device '%s' gave no data for %" G_GUINT64_FORMAT
                                    " ms after %" G_GUINT64_FORMAT " bytes",
                                    w->names[index], stall_ms(&w->io), total);
                if (got == -ECANCELED)
                        return fail(error, (int)got,
                                    "%s was aborted after %" G_GUINT64_FORMAT
                                    " bytes of device '%s'",
                                    w->what, total, w->names[index]);
                if (got < 0)
                        return fail(error, (int)got,
                                    "reading device '%s' data after %" G_GUINT64_FORMAT
                                    " bytes failed: %s",
                                    w->names[index], total, g_strerror((int)-got));
                if (got == 0)
                        break;
                if (w->io.max_device_bytes && total + (uint64_t)got > w->io.max_device_bytes)
                        return device_too_big(error, w->names[index], total + (uint64_t)got,
                                              &w->io);
                g_checksum_update(sha, buf, got);
                r = write_frame(w, (uint32_t)index, MIGSTREAM_FRAME_DATA, buf, (uint32_t)got,
                                error);
                if (r < 0)
                        return r;
                total += (uint64_t)got;
                if (ret_bytes)
                        *ret_bytes = total;
        } while (got == MIGSTREAM_CHUNK_MAX);

        g_checksum_get_digest(sha, digest, &digest_len);
        r = write_frame(w, (uint32_t)index, MIGSTREAM_FRAME_END, digest, DIGEST_SIZE, error);
        if (r < 0)
                return r;
        g_mutex_lock(&w->lock);
        w->ended[index] = true;
        g_mutex_unlock(&w->lock);
        if (ret_bytes)
                *ret_bytes = total;
        return 0;
}

int migstream_writer_finish(MigStreamWriter *w, GError **error)
{
        for (size_t i = 0; i < w->n; i++) {
                bool ended;

                g_mutex_lock(&w->lock);
                ended = w->ended[i];
                g_mutex_unlock(&w->lock);
                if (!ended)
                        return fail(error, -EINVAL,
                                    "device '%s' was not streamed completely; the "
                                    "trailer would cut it off",
                                    w->names[i]);
        }
        return write_frame(w, MIGSTREAM_TRAILER_INDEX, MIGSTREAM_FRAME_TRAILER, NULL, 0, error);
}

void migstream_writer_free(MigStreamWriter *w)
{
        if (!w)
                return;
        fd_restore_flags(w->fd, w->fd_flags);
        g_free(w->what);
        g_mutex_clear(&w->lock);
        g_strfreev(w->names);
        g_free(w->claimed);
        g_free(w->ended);
        g_free(w);
}

/* Every stream defect is -EBADMSG; the sentence says where. */
#define bad_stream(error, ...) fail(error, -EBADMSG, __VA_ARGS__)

/* Read failures of the stream itself, as a sentence with the offset. */
static int stream_read_error(MigStreamReader *r, int k, GError **error)
{
        if (k == -ETIMEDOUT)
                return fail(error, k,
                            "%s sent nothing for %" G_GUINT64_FORMAT " ms after %" G_GUINT64_FORMAT
                            " bytes; is its writer still sending?",
                            r->what, stall_ms(&r->io), r->offset);
        if (k == -ECANCELED)
                return fail(error, k, "%s was aborted after %" G_GUINT64_FORMAT " bytes", r->what,
                            r->offset);
        return fail(error, k, "reading %s at byte %" G_GUINT64_FORMAT " failed: %s", r->what,
                    r->offset, g_strerror(-k));
}

/* Reads exactly len bytes: 1 when they came, 0 at end of stream (short), or -errno. */
static int reader_take(MigStreamReader *r, void *buf, size_t len, GError **error)
{
        ssize_t got = read_full(r->fd, buf, len, &r->io);

        if (got < 0)
                return stream_read_error(r, (int)got, error);
        r->offset += (uint64_t)got;
        return (size_t)got == len;
}

static int read_magic(MigStreamReader *r, GError **error)
{
        uint8_t magic[8];
        ssize_t got = read_full(r->fd, magic, sizeof(magic), &r->io);

        if (got < 0)
                return stream_read_error(r, (int)got, error);
        r->offset = (uint64_t)got;
        /* A short stream that starts wrong is foreign, not truncated. */
        if (memcmp(magic, MIGSTREAM_MAGIC, (size_t)got) != 0)
                return bad_stream(error, "bad magic: not a vfio-migd stream");
        if (got == 0)
                return bad_stream(error, "the stream is empty: no vfio-migd header");
        if ((size_t)got < sizeof(magic))
                return bad_stream(error, "stream truncated at byte %zd inside the header magic",
                                  got);
        return 0;
}

static int read_device_entry(MigStreamReader *r, uint32_t i, uint32_t count, GError **error)
{
        MigStreamDevice *d = &r->devices[i];
        uint8_t len_buf[2], tail[8];
        char *name;
        uint16_t len;
        int k;

        k = reader_take(r, len_buf, sizeof(len_buf), error);
        if (k <= 0)
                goto short_read;
        len = get_u16(len_buf);
        if (len == 0)
                return bad_stream(error,
                                  "device %u of the header has an empty name at byte "
                                  "%" G_GUINT64_FORMAT,
                                  i, r->offset - 2);
        name = g_malloc0((size_t)len + 1);
        d->name = name;
        k = reader_take(r, name, len, error);
        if (k <= 0)
                goto short_read;
        if (strlen(name) != len)
                return bad_stream(error, "device %u of the header has a NUL byte in its name", i);
        k = reader_take(r, tail, sizeof(tail), error);
        if (k <= 0)
                goto short_read;
        d->flags = get_u32(tail);
        d->vendor_id = get_u16(tail + 4);
        d->device_id = get_u16(tail + 6);
        return 0;
short_read:
        if (k < 0)
                return k;
        return bad_stream(error,
                          "stream truncated at byte %" G_GUINT64_FORMAT
                          " inside the header (device %u of %u)",
                          r->offset, i + 1, count);
}

/* Version 2's binding: the VM that saved the stream and the migration's id. */
static int read_binding(MigStreamReader *r, GError **error)
{
        uint8_t len_buf[2];
        uint16_t len;
        int k;

        k = reader_take(r, len_buf, sizeof(len_buf), error);
        if (k <= 0)
                goto short_read;
        len = get_u16(len_buf);
        if (len == 0)
                return bad_stream(
                    error, "the header names no VM (empty VM name at byte %" G_GUINT64_FORMAT ")",
                    r->offset - 2);
        r->vm_name = g_malloc0((size_t)len + 1);
        k = reader_take(r, r->vm_name, len, error);
        if (k <= 0)
                goto short_read;
        if (strlen(r->vm_name) != len)
                return bad_stream(error, "the header's VM name has a NUL byte");
        k = reader_take(r, r->id, sizeof(r->id), error);
        if (k <= 0)
                goto short_read;
        return 0;
short_read:
        if (k < 0)
                return k;
        return bad_stream(error, "stream truncated at byte %" G_GUINT64_FORMAT " inside the header",
                          r->offset);
}

static int read_header(MigStreamReader *r, GError **error)
{
        uint8_t buf[4];
        uint32_t version, count;
        int k;

        k = read_magic(r, error);
        if (k < 0)
                return k;
        k = reader_take(r, buf, sizeof(buf), error);
        if (k < 0)
                return k;
        if (k == 0)
                return bad_stream(
                    error, "stream truncated at byte %" G_GUINT64_FORMAT " inside the header",
                    r->offset);
        version = get_u32(buf);
        if (version == 1)
                return bad_stream(error,
                                  "the stream has format version 1, written by a vfio-migd from "
                                  "before streams named their VM and migration; this daemon "
                                  "reads version %u only: save the VM again with this vfio-migd",
                                  MIGSTREAM_VERSION);
        if (version != MIGSTREAM_VERSION)
                return bad_stream(error,
                                  "unsupported stream version %u (this daemon reads version %u)",
                                  version, MIGSTREAM_VERSION);
        k = read_binding(r, error);
        if (k < 0)
                return k;
        k = reader_take(r, buf, sizeof(buf), error);
        if (k < 0)
                return k;
        if (k == 0)
                return bad_stream(
                    error, "stream truncated at byte %" G_GUINT64_FORMAT " inside the header",
                    r->offset);
        count = get_u32(buf);
        if (count > DEVICES_MAX)
                return bad_stream(error, "implausible device count %u in the header", count);
        r->n = count;
        r->devices = g_new0(MigStreamDevice, count ? count : 1);
        for (uint32_t i = 0; i < count; i++) {
                k = read_device_entry(r, i, count, error);
                if (k < 0)
                        return k;
        }
        return 0;
}

int migstream_reader_new(int in_fd, const MigStreamIo *io, MigStreamReader **ret, GError **error)
{
        g_autoptr(MigStreamReader) r = g_new0(MigStreamReader, 1);
        int k;

        r->fd = in_fd;
        r->io = io ? *io : io_default;
        r->what = stream_what(r->io.vm_name);
        r->io.vm_name = NULL; /* borrowed: not kept past this call */
        k = fd_set_nonblocking(in_fd, &r->fd_flags);
        if (k < 0)
                return fail(error, k, "%s cannot be made non-blocking: %s", r->what,
                            g_strerror(-k));
        k = read_header(r, error);
        if (k < 0)
                return k;
        *ret = g_steal_pointer(&r);
        return 0;
}

const char *migstream_reader_vm_name(const MigStreamReader *r)
{
        return r->vm_name;
}

const uint8_t *migstream_reader_migration_id(const MigStreamReader *r)
{
        return r->id;
}

uint64_t migstream_reader_offset(const MigStreamReader *r)
{
        return r->offset;
}

size_t migstream_reader_n_devices(const MigStreamReader *r)
{
        return r->n;
}

const MigStreamDevice *migstream_reader_device(const MigStreamReader *r, size_t index)
{
        return index < r->n ? &r->devices[index] : NULL;
}

void migstream_reader_free(MigStreamReader *r)
{
        if (!r)
                return;
        fd_restore_flags(r->fd, r->fd_flags);
        g_free(r->what);
        g_free(r->vm_name);
        for (size_t i = 0; r->devices && i < r->n; i++)
                g_free((char *)r->devices[i].name);
        g_free(r->devices);
        g_free(r);
}

/* What reader_pump tracks per device while the frames go by. */
typedef struct LoadState {
        const int *data_fds;
        uint64_t *bytes;
        GChecksum **sha;
        bool *ended;
        uint8_t *buf;
} LoadState;

static int load_data(MigStreamReader *r, LoadState *ls, uint32_t index, uint32_t len, uint64_t at,
                     GError **error)
{
        const char *name = r->devices[index].name;
        int k;

        if (ls->ended[index])
                return bad_stream(error,
                                  "data for device '%s' after its END frame at byte "
                                  "%" G_GUINT64_FORMAT,
                                  name, at);
        if (len > MIGSTREAM_CHUNK_MAX)
                return bad_stream(error,
                                  "frame of %u bytes for device '%s' at byte %" G_GUINT64_FORMAT
                                  " is larger than the 1 MiB limit",
                                  len, name, at);
        k = reader_take(r, ls->buf, len, error);
        if (k < 0)
                return k;
        if (k == 0)
                return bad_stream(
                    error, "stream truncated at byte %" G_GUINT64_FORMAT " inside device '%s' data",
                    r->offset, name);
        if (ls->data_fds[index] < 0)
                return fail(error, -EBADF, "device '%s' has no open data fd to load into", name);
        if (r->io.max_device_bytes && ls->bytes[index] + len > r->io.max_device_bytes)
                return device_too_big(error, name, ls->bytes[index] + len, &r->io);
        k = write_full(ls->data_fds[index], ls->buf, len, &r->io, NULL);
        if (k == -ECANCELED)
                return stream_read_error(r, k, error);
        if (k == -ETIMEDOUT)
                return fail(error, k,
                            "device '%s' took no data for %" G_GUINT64_FORMAT
                            " ms after %" G_GUINT64_FORMAT " bytes",
                            name, stall_ms(&r->io), ls->bytes[index]);
        if (k < 0)
                return fail(error, k, "writing %u bytes of stream data to device '%s' failed: %s",
                            len, name, g_strerror(-k));
        g_checksum_update(ls->sha[index], ls->buf, len);
        ls->bytes[index] += len;
        return 0;
}

static int load_end(MigStreamReader *r, LoadState *ls, uint32_t index, uint32_t len, uint64_t at,
                    GError **error)
{
        const char *name = r->devices[index].name;
        uint8_t want[DIGEST_SIZE], got[DIGEST_SIZE];
        gsize got_len = sizeof(got);
        int k;

        if (ls->ended[index])
                return bad_stream(
                    error, "second END frame for device '%s' at byte %" G_GUINT64_FORMAT, name, at);
        if (len != DIGEST_SIZE)
                return bad_stream(error,
                                  "END frame for device '%s' at byte %" G_GUINT64_FORMAT
                                  " has %u bytes, not a %d-byte SHA-256",
                                  name, at, len, DIGEST_SIZE);
        k = reader_take(r, want, sizeof(want), error);
        if (k < 0)
                return k;
        if (k == 0)
                return bad_stream(error,
                                  "stream truncated at byte %" G_GUINT64_FORMAT
                                  " inside device '%s' checksum",
                                  r->offset, name);
        g_checksum_get_digest(ls->sha[index], got, &got_len);
        if (memcmp(want, got, sizeof(got)) != 0)
                return bad_stream(error,
                                  "checksum mismatch for device '%s' (END frame at byte "
                                  "%" G_GUINT64_FORMAT ")",
                                  name, at);
        ls->ended[index] = true;
        return 0;
}

/* 1 when the trailer closed a complete stream. */
static int load_trailer(MigStreamReader *r, LoadState *ls, uint32_t index, uint32_t len,
                        uint64_t at, GError **error)
{
        if (index != MIGSTREAM_TRAILER_INDEX || len != 0)
                return bad_stream(error, "malformed trailer at byte %" G_GUINT64_FORMAT, at);
        for (size_t i = 0; i < r->n; i++)
                if (!ls->ended[i])
                        return bad_stream(error,
                                          "device '%s' has no END frame before the trailer at "
                                          "byte %" G_GUINT64_FORMAT,
                                          r->devices[i].name, at);
        return 1;
}

static int load_frame(MigStreamReader *r, LoadState *ls, GError **error)
{
        uint8_t head[FRAME_HEADER_SIZE];
        uint64_t at = r->offset;
        uint32_t magic, index, kind, len;
        int k;

        k = reader_take(r, head, sizeof(head), error);
        if (k < 0)
                return k;
        if (k == 0 && r->offset == at)
                return bad_stream(error,
                                  "stream ended at byte %" G_GUINT64_FORMAT
                                  " without a trailer: it is incomplete",
                                  at);
        if (k == 0)
                return bad_stream(
                    error, "stream truncated at byte %" G_GUINT64_FORMAT " inside a frame header",
                    r->offset);
        magic = get_u32(head);
        index = get_u32(head + 4);
        kind = get_u32(head + 8);
        len = get_u32(head + 12);
        if (magic != MIGSTREAM_FRAME_MAGIC)
                return bad_stream(error, "bad frame magic 0x%08x at byte %" G_GUINT64_FORMAT, magic,
                                  at);
        if (kind == MIGSTREAM_FRAME_TRAILER)
                return load_trailer(r, ls, index, len, at, error);
        if (kind != MIGSTREAM_FRAME_DATA && kind != MIGSTREAM_FRAME_END)
                return bad_stream(error, "unknown frame kind %u at byte %" G_GUINT64_FORMAT, kind,
                                  at);
        if (index >= r->n)
                return bad_stream(error,
                                  "unknown device index %u at byte %" G_GUINT64_FORMAT
                                  " (the stream has %zu devices)",
                                  index, at, r->n);
        if (kind == MIGSTREAM_FRAME_DATA)
                return load_data(r, ls, index, len, at, error);
        return load_end(r, ls, index, len, at, error);
}

int migstream_reader_pump(MigStreamReader *r, const int *data_fds, size_t n, uint64_t *ret_bytes,
                          GError **error)
{
        g_autofree uint64_t *bytes = g_new0(uint64_t, n ? n : 1);
        g_autofree GChecksum **sha = g_new0(GChecksum *, n ? n : 1);
        g_autofree bool *ended = g_new0(bool, n ? n : 1);
        g_autofree uint8_t *buf = NULL;
        LoadState ls = {data_fds, bytes, sha, ended, NULL};
        int k;

        if (n != r->n)
                return fail(error, -EINVAL,
                            "the stream carries %zu devices but %zu data fds were given", r->n, n);
        buf = g_malloc(MIGSTREAM_CHUNK_MAX);
        ls.buf = buf;
        for (size_t i = 0; i < n; i++)
                sha[i] = g_checksum_new(G_CHECKSUM_SHA256);
        do
                k = load_frame(r, &ls, error);
        while (k == 0);
        for (size_t i = 0; i < n; i++) {
                g_checksum_free(sha[i]);
                if (ret_bytes)
                        ret_bytes[i] = bytes[i];
        }
        return k < 0 ? k : 0;
}
