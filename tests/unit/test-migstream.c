/* test-migstream: the stream format, concurrent writers, and every defect the reader catches */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migstream.h"
#include "util.h"

static const MigStreamDevice two_devices[] = {
    {"nic0", 7, 0x15b3, 0x101e},
    {"nic1", 3, 0x1dd8, 0x1002},
};

static const uint8_t test_id[MIGSTREAM_ID_SIZE] = {0, 1, 2,  3,  4,  5,  6,  7,
                                                   8, 9, 10, 11, 12, 13, 14, 15};

static int memfd_with(const void *data, size_t len)
{
        int fd = memfd_create("test-migstream", MFD_CLOEXEC);

        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, data, len), ==, (ssize_t)len);
        g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
        return fd;
}

static GBytes *read_all(int fd)
{
        GByteArray *b = g_byte_array_new();
        uint8_t buf[65536];
        ssize_t n;

        g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                g_byte_array_append(b, buf, (guint)n);
        g_assert_cmpint(n, ==, 0);
        return g_byte_array_free_to_bytes(b);
}

/* Deterministic device data of any size. */
static GBytes *pattern(size_t len, uint8_t seed)
{
        uint8_t *p = g_malloc(len ? len : 1);

        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(seed + i * 7 + (i >> 11));
        return g_bytes_new_take(p, len);
}

/* Writes a stream of devices[i] carrying data[i], pumped one after another, into a memfd. */
static int stream_of(const MigStreamDevice *devices, GBytes **data, size_t n)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        int out = memfd_create("stream", MFD_CLOEXEC);

        g_assert_cmpint(migstream_writer_new(out, "vm1", test_id, devices, n, NULL, &w, &error), ==,
                        0);
        for (size_t i = 0; i < n; i++) {
                _cleanup_close_ int in =
                    memfd_with(g_bytes_get_data(data[i], NULL), g_bytes_get_size(data[i]));
                uint64_t bytes = 0;

                g_assert_cmpint(migstream_writer_pump(w, i, in, &bytes, &error), ==, 0);
                g_assert_no_error(error);
                g_assert_cmpuint(bytes, ==, g_bytes_get_size(data[i]));
        }
        g_assert_cmpint(migstream_writer_finish(w, &error), ==, 0);
        g_assert_cmpint(lseek(out, 0, SEEK_SET), ==, 0);
        return out;
}

/* Loads stream bytes into n memfds; returns the reader's result and fills *ret_error. */
static int load_bytes(GBytes *stream, size_t n, GBytes **ret_data, GError **ret_error)
{
        _cleanup_close_ int in =
            memfd_with(g_bytes_get_data(stream, NULL), g_bytes_get_size(stream));
        g_autoptr(MigStreamReader) r = NULL;
        int fds[8];
        int k;

        g_assert_cmpuint(n, <=, G_N_ELEMENTS(fds));
        k = migstream_reader_new(in, NULL, &r, ret_error);
        if (k < 0)
                return k;
        for (size_t i = 0; i < n; i++)
                fds[i] = memfd_create("dev", MFD_CLOEXEC);
        k = migstream_reader_pump(r, fds, n, NULL, ret_error);
        for (size_t i = 0; i < n; i++) {
                if (ret_data)
                        ret_data[i] = read_all(fds[i]);
                close(fds[i]);
        }
        return k;
}

static GBytes *good_stream(void)
{
        g_autoptr(GBytes) d0 = pattern(3 * 1024 * 1024 + 17, 1);
        g_autoptr(GBytes) d1 = pattern(5000, 2);
        GBytes *data[2] = {d0, d1};
        _cleanup_close_ int fd = stream_of(two_devices, data, 2);

        return read_all(fd);
}

/* Offset of the first frame: the header of two_devices. */
static size_t header_size(void)
{
        return 8 + 4 + 2 + 3 + MIGSTREAM_ID_SIZE + 4 + (2 + 4 + 4 + 2 + 2) * 2;
}

static void test_round_trip(void)
{
        g_autoptr(GBytes) d0 = pattern(3 * 1024 * 1024 + 17, 1);
        g_autoptr(GBytes) d1 = pattern(5000, 2);
        GBytes *data[2] = {d0, d1};
        g_autoptr(GError) error = NULL;
        g_autoptr(MigStreamReader) r = NULL;
        _cleanup_close_ int in = stream_of(two_devices, data, 2);
        int fds[2] = {memfd_create("a", 0), memfd_create("b", 0)};
        uint64_t bytes[2];

        g_assert_cmpint(migstream_reader_new(in, NULL, &r, &error), ==, 0);
        g_assert_cmpuint(migstream_reader_n_devices(r), ==, 2);
        for (size_t i = 0; i < 2; i++) {
                const MigStreamDevice *d = migstream_reader_device(r, i);
                g_assert_cmpstr(d->name, ==, two_devices[i].name);
                g_assert_cmpuint(d->flags, ==, two_devices[i].flags);
                g_assert_cmpuint(d->vendor_id, ==, two_devices[i].vendor_id);
                g_assert_cmpuint(d->device_id, ==, two_devices[i].device_id);
        }
        g_assert_null(migstream_reader_device(r, 2));
        g_assert_cmpint(migstream_reader_pump(r, fds, 2, bytes, &error), ==, 0);
        g_assert_no_error(error);
        for (size_t i = 0; i < 2; i++) {
                g_autoptr(GBytes) got = read_all(fds[i]);
                g_assert_true(g_bytes_equal(got, data[i]));
                g_assert_cmpuint(bytes[i], ==, g_bytes_get_size(data[i]));
                close(fds[i]);
        }
}

/* The documented layout, byte for byte. */
static void test_header_layout(void)
{
        static const uint8_t want[] = {
            'V', 'F', 'I', 'O', 'M', 'I', 'G', '1', 2, 0, 0,    0, /* magic, version 2 */
            3,   0,   'v', 'm', '1',                               /* the VM's name */
            0,   1,   2,   3,   4,   5,   6,   7,   8, 9, 10,   11,   12,   13,
            14,  15,          /* migration id */
            2,   0,   0,   0, /* device count */
            4,   0,   'n', 'i', 'c', '0', 7,   0,   0, 0, 0xb3, 0x15, 0x1e, 0x10,
            4,   0,   'n', 'i', 'c', '1', 3,   0,   0, 0, 0xd8, 0x1d, 0x02, 0x10,
        };
        static const uint8_t trailer[] = {0x56, 0x4d, 0x46, 0x52, 0xff, 0xff, 0xff, 0xff,
                                          3,    0,    0,    0,    0,    0,    0,    0};
        g_autoptr(GBytes) d0 = pattern(0, 0);
        GBytes *data[2] = {d0, d0};
        _cleanup_close_ int fd = stream_of(two_devices, data, 2);
        g_autoptr(GBytes) s = read_all(fd);
        const uint8_t *p = g_bytes_get_data(s, NULL);
        size_t len = g_bytes_get_size(s);

        g_assert_cmpuint(header_size(), ==, sizeof(want));
        g_assert_cmpmem(p, sizeof(want), want, sizeof(want));
        /* two END frames of 16 + 32 bytes, then the trailer */
        g_assert_cmpuint(len, ==, sizeof(want) + 2 * 48 + 16);
        g_assert_cmpmem(p + len - 16, 16, trailer, sizeof(trailer));
}

static void test_empty_device_data(void)
{
        g_autoptr(GBytes) empty = pattern(0, 0);
        g_autoptr(GBytes) some = pattern(10, 3);
        GBytes *data[2] = {empty, some};
        _cleanup_close_ int fd = stream_of(two_devices, data, 2);
        g_autoptr(GBytes) s = read_all(fd);
        g_autoptr(GError) error = NULL;
        GBytes *got[2];

        g_assert_cmpint(load_bytes(s, 2, got, &error), ==, 0);
        g_assert_cmpuint(g_bytes_get_size(got[0]), ==, 0);
        g_assert_true(g_bytes_equal(got[1], some));
        g_bytes_unref(got[0]);
        g_bytes_unref(got[1]);
}

static void test_zero_devices(void)
{
        _cleanup_close_ int fd = stream_of(NULL, NULL, 0);
        g_autoptr(GBytes) s = read_all(fd);
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(load_bytes(s, 0, NULL, &error), ==, 0);
}

/* ---- hand-built streams: the reader follows the format, not the writer ---- */

static void put32(GByteArray *b, uint32_t v)
{
        uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
        g_byte_array_append(b, p, 4);
}

static void put16(GByteArray *b, uint16_t v)
{
        uint8_t p[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
        g_byte_array_append(b, p, 2);
}

static GByteArray *hand_header(const MigStreamDevice *d, size_t n)
{
        GByteArray *b = g_byte_array_new();

        g_byte_array_append(b, (const uint8_t *)"VFIOMIG1", 8);
        put32(b, 2);
        put16(b, 3);
        g_byte_array_append(b, (const uint8_t *)"vm1", 3);
        g_byte_array_append(b, test_id, sizeof(test_id));
        put32(b, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
                put16(b, (uint16_t)strlen(d[i].name));
                g_byte_array_append(b, (const uint8_t *)d[i].name, (guint)strlen(d[i].name));
                put32(b, d[i].flags);
                put16(b, d[i].vendor_id);
                put16(b, d[i].device_id);
        }
        return b;
}

static void hand_frame(GByteArray *b, uint32_t index, uint32_t kind, const void *p, uint32_t len)
{
        put32(b, 0x52464d56);
        put32(b, index);
        put32(b, kind);
        put32(b, len);
        if (len)
                g_byte_array_append(b, p, len);
}

static void hand_end(GByteArray *b, uint32_t index, const char *all_data)
{
        uint8_t digest[32];
        gsize len = sizeof(digest);
        g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);

        g_checksum_update(c, (const guchar *)all_data, (gssize)strlen(all_data));
        g_checksum_get_digest(c, digest, &len);
        hand_frame(b, index, MIGSTREAM_FRAME_END, digest, 32);
}

static void test_reader_accepts_interleaved_frames(void)
{
        GByteArray *b = hand_header(two_devices, 2);
        g_autoptr(GBytes) s = NULL;
        g_autoptr(GError) error = NULL;
        GBytes *got[2];

        hand_frame(b, 1, MIGSTREAM_FRAME_DATA, "wor", 3);
        hand_frame(b, 0, MIGSTREAM_FRAME_DATA, "hel", 3);
        hand_frame(b, 1, MIGSTREAM_FRAME_DATA, "ld", 2);
        hand_end(b, 1, "world");
        hand_frame(b, 0, MIGSTREAM_FRAME_DATA, "lo", 2);
        hand_end(b, 0, "hello");
        hand_frame(b, MIGSTREAM_TRAILER_INDEX, MIGSTREAM_FRAME_TRAILER, NULL, 0);
        s = g_byte_array_free_to_bytes(b);
        g_assert_cmpint(load_bytes(s, 2, got, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpmem(g_bytes_get_data(got[0], NULL), g_bytes_get_size(got[0]), "hello", 5);
        g_assert_cmpmem(g_bytes_get_data(got[1], NULL), g_bytes_get_size(got[1]), "world", 5);
        g_bytes_unref(got[0]);
        g_bytes_unref(got[1]);
}

/* Expects -EBADMSG with a message containing want. */
static void expect_bad(GBytes *s, const char *want)
{
        g_autoptr(GError) error = NULL;
        GBytes *got[2] = {NULL, NULL};

        g_assert_cmpint(load_bytes(s, 2, got, &error), ==, -EBADMSG);
        g_assert_nonnull(error);
        if (!strstr(error->message, want))
                g_error("expected '%s' in '%s'", want, error->message);
        g_clear_pointer(&got[0], g_bytes_unref);
        g_clear_pointer(&got[1], g_bytes_unref);
}

static GBytes *cut(GBytes *s, size_t len)
{
        return g_bytes_new_from_bytes(s, 0, len);
}

static void test_truncated_inside_data(void)
{
        g_autoptr(GBytes) s = good_stream();
        size_t at = header_size() + 16 + 1000;
        g_autoptr(GBytes) t = cut(s, at);
        g_autofree char *want =
            g_strdup_printf("stream truncated at byte %zu inside device 'nic0' data", at);

        expect_bad(t, want);
}

static void test_truncated_inside_header(void)
{
        g_autoptr(GBytes) s = good_stream();
        g_autoptr(GBytes) t = cut(s, 41);

        expect_bad(t, "stream truncated at byte 41 inside the header (device 1 of 2)");
}

static void test_truncated_inside_frame_header(void)
{
        g_autoptr(GBytes) s = good_stream();
        g_autoptr(GBytes) t = cut(s, header_size() + 5);
        g_autofree char *want = g_strdup_printf(
            "stream truncated at byte %zu inside a frame header", header_size() + 5);

        expect_bad(t, want);
}

static void test_missing_trailer(void)
{
        g_autoptr(GBytes) s = good_stream();
        size_t at = g_bytes_get_size(s) - 16;
        g_autoptr(GBytes) t = cut(s, at);
        g_autofree char *want = g_strdup_printf("stream ended at byte %zu without a trailer", at);

        expect_bad(t, want);
}

static void test_empty_stream(void)
{
        g_autoptr(GBytes) s = g_bytes_new(NULL, 0);

        expect_bad(s, "the stream is empty");
}

static void test_bit_flip_in_data(void)
{
        g_autoptr(GBytes) s = good_stream();
        gsize len;
        uint8_t *p = g_bytes_unref_to_data(g_bytes_ref(s), &len);
        g_autoptr(GBytes) flipped = NULL;

        p[header_size() + 16 + 12345] ^= 0x10;
        flipped = g_bytes_new_take(p, len);
        expect_bad(flipped, "checksum mismatch for device 'nic0'");
}

static void test_bit_flip_in_checksum(void)
{
        g_autoptr(GBytes) s = good_stream();
        gsize len;
        uint8_t *p = g_bytes_unref_to_data(g_bytes_ref(s), &len);
        g_autoptr(GBytes) flipped = NULL;

        /* nic1's END frame is the last frame before the trailer */
        p[len - 16 - 1] ^= 0x01;
        flipped = g_bytes_new_take(p, len);
        expect_bad(flipped, "checksum mismatch for device 'nic1'");
}

static void test_wrong_magic(void)
{
        g_autoptr(GBytes) s = good_stream();
        gsize len;
        uint8_t *p = g_bytes_unref_to_data(g_bytes_ref(s), &len);
        g_autoptr(GBytes) bad = NULL;

        memcpy(p, "QEVM\0\0\0\3", 8);
        bad = g_bytes_new_take(p, len);
        expect_bad(bad, "bad magic: not a vfio-migd stream");
}

static void test_short_foreign_stream(void)
{
        g_autoptr(GBytes) s = g_bytes_new_static("{}\n", 3);

        expect_bad(s, "bad magic: not a vfio-migd stream");
}

static void test_unknown_version(void)
{
        GByteArray *b = g_byte_array_new();
        g_autoptr(GBytes) s = NULL;

        g_byte_array_append(b, (const uint8_t *)"VFIOMIG1", 8);
        put32(b, 3);
        put32(b, 0);
        s = g_byte_array_free_to_bytes(b);
        expect_bad(s, "unsupported stream version 3");
}

/* Issue 11, reproduction 7: a version 1 stream names no VM, so it cannot be checked. */
static void test_version_1_is_refused(void)
{
        GByteArray *b = g_byte_array_new();
        g_autoptr(GBytes) s = NULL;

        g_byte_array_append(b, (const uint8_t *)"VFIOMIG1", 8);
        put32(b, 1);
        put32(b, 0);
        s = g_byte_array_free_to_bytes(b);
        expect_bad(s, "format version 1");
}

static void test_unknown_device_index(void)
{
        GByteArray *b = hand_header(two_devices, 2);
        g_autoptr(GBytes) s = NULL;
        g_autofree char *want =
            g_strdup_printf("unknown device index 7 at byte %zu", header_size());

        hand_frame(b, 7, MIGSTREAM_FRAME_DATA, "x", 1);
        s = g_byte_array_free_to_bytes(b);
        expect_bad(s, want);
}

static void test_bad_frame_magic(void)
{
        GByteArray *b = hand_header(two_devices, 2);
        g_autoptr(GBytes) s = NULL;

        put32(b, 0xdeadbeef);
        put32(b, 0);
        put32(b, 1);
        put32(b, 0);
        s = g_byte_array_free_to_bytes(b);
        expect_bad(s, "bad frame magic 0xdeadbeef");
}

static void test_unknown_frame_kind(void)
{
        GByteArray *b = hand_header(two_devices, 2);
        g_autoptr(GBytes) s = NULL;

        hand_frame(b, 0, 9, NULL, 0);
        s = g_byte_array_free_to_bytes(b);
        expect_bad(s, "unknown frame kind 9");
}

static void test_oversized_frame(void)
{
        GByteArray *b = hand_header(two_devices, 2);
        g_autoptr(GBytes) s = NULL;

        put32(b, 0x52464d56);
        put32(b, 1);
        put32(b, MIGSTREAM_FRAME_DATA);
        put32(b, 0x7fffffff);
        s = g_byte_array_free_to_bytes(b);
        expect_bad(s, "larger than the 1 MiB limit");
}

static void test_trailer_before_end(void)
{
        GByteArray *b = hand_header(two_devices, 2);
        g_autoptr(GBytes) s = NULL;

        hand_frame(b, 0, MIGSTREAM_FRAME_DATA, "ab", 2);
        hand_end(b, 0, "ab");
        hand_frame(b, 1, MIGSTREAM_FRAME_DATA, "cd", 2);
        hand_frame(b, MIGSTREAM_TRAILER_INDEX, MIGSTREAM_FRAME_TRAILER, NULL, 0);
        s = g_byte_array_free_to_bytes(b);
        expect_bad(s, "device 'nic1' has no END frame before the trailer");
}

static void test_data_after_end(void)
{
        GByteArray *b = hand_header(two_devices, 2);
        g_autoptr(GBytes) s = NULL;

        hand_end(b, 0, "");
        hand_frame(b, 0, MIGSTREAM_FRAME_DATA, "late", 4);
        s = g_byte_array_free_to_bytes(b);
        expect_bad(s, "data for device 'nic0' after its END frame");
}

static void test_reader_fd_count_must_match(void)
{
        g_autoptr(GBytes) s = good_stream();
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(s, NULL), g_bytes_get_size(s));
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        int fds[1] = {-1};

        g_assert_cmpint(migstream_reader_new(in, NULL, &r, &error), ==, 0);
        g_assert_cmpint(migstream_reader_pump(r, fds, 1, NULL, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "carries 2 devices"));
}

/* ---- the writer ---- */

#define FEEDERS 4

typedef struct Feeder {
        int fd;
        GBytes *data;
        size_t piece;
} Feeder;

/*
 * Feeds FEEDERS pipes in turn, one piece each per round, each pipe holding one piece: a pipe
 * takes piece k + 1 only once its pump has read piece k, which it does only after writing its
 * frame of piece k - 1. No pump can run more than a few frames ahead of another, so the frames
 * interleave however the threads are scheduled.
 */
static void *feed_in_turn(void *p)
{
        Feeder *f = p;
        gboolean more = TRUE;

        for (size_t off = 0; more; off += f[0].piece) {
                more = FALSE;
                for (size_t i = 0; i < FEEDERS; i++) {
                        const uint8_t *d = g_bytes_get_data(f[i].data, NULL);
                        size_t len = g_bytes_get_size(f[i].data), k;

                        if (off >= len)
                                continue;
                        k = MIN(f[i].piece, len - off);
                        g_assert_cmpint(write(f[i].fd, d + off, k), ==, (ssize_t)k);
                        more |= off + k < len;
                }
        }
        for (size_t i = 0; i < FEEDERS; i++)
                close(f[i].fd);
        return NULL;
}

typedef struct Pump {
        MigStreamWriter *w;
        size_t index;
        int fd;
        int result;
} Pump;

static void *pump(void *p)
{
        Pump *pu = p;
        g_autoptr(GError) error = NULL;

        pu->result = migstream_writer_pump(pu->w, pu->index, pu->fd, NULL, &error);
        close(pu->fd);
        return NULL;
}

/* Four devices pumped at once from four threads: frames interleave, every device arrives whole. */
static void test_concurrent_pumps(void)
{
        static const MigStreamDevice devs[4] = {
            {"a", 7, 1, 1}, {"b", 7, 1, 2}, {"c", 3, 1, 3}, {"d", 1, 1, 4}};
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int out = memfd_create("stream", MFD_CLOEXEC);
        GBytes *data[4];
        GThread *threads[5];
        Feeder feeders[FEEDERS];
        Pump pumps[4];
        g_autoptr(GBytes) s = NULL;
        GBytes *got[4];
        _cleanup_close_ int in = -1;
        g_autoptr(MigStreamReader) r = NULL;
        int fds[4];
        const uint8_t *p;
        size_t off, switches = 0;
        uint32_t last = UINT32_MAX;

        g_assert_cmpint(migstream_writer_new(out, "vm1", test_id, devs, 4, NULL, &w, &error), ==,
                        0);
        for (size_t i = 0; i < FEEDERS; i++) {
                int pfd[2];
                g_assert_cmpint(pipe(pfd), ==, 0);
                g_assert_cmpint(fcntl(pfd[1], F_SETPIPE_SZ, 65536), >=, 65536);
                data[i] = pattern(2 * 1024 * 1024 + i * 333, (uint8_t)i);
                feeders[i] = (Feeder){pfd[1], data[i], 65536};
                pumps[i] = (Pump){w, i, pfd[0], 1};
                threads[i] = g_thread_new("pump", pump, &pumps[i]);
        }
        threads[FEEDERS] = g_thread_new("feed", feed_in_turn, feeders);
        for (size_t i = 0; i < G_N_ELEMENTS(threads); i++)
                g_thread_join(threads[i]);
        for (size_t i = 0; i < 4; i++)
                g_assert_cmpint(pumps[i].result, ==, 0);
        g_assert_cmpint(migstream_writer_finish(w, &error), ==, 0);
        s = read_all(out);

        /* count how often consecutive frames change device: interleaved means > 3 */
        p = g_bytes_get_data(s, NULL);
        off = 16 + 2 + 3 + MIGSTREAM_ID_SIZE + 4 * (2 + 1 + 8);
        while (off + 16 <= g_bytes_get_size(s)) {
                uint32_t index =
                    p[off + 4] | p[off + 5] << 8 | p[off + 6] << 16 | (uint32_t)p[off + 7] << 24;
                uint32_t len = p[off + 12] | p[off + 13] << 8 | p[off + 14] << 16 |
                               (uint32_t)p[off + 15] << 24;
                if (index != last && last != UINT32_MAX && index != MIGSTREAM_TRAILER_INDEX)
                        switches++;
                last = index;
                off += 16 + len;
        }
        g_assert_cmpuint(off, ==, g_bytes_get_size(s));
        g_assert_cmpuint(switches, >, 3);

        in = memfd_with(g_bytes_get_data(s, NULL), g_bytes_get_size(s));
        g_assert_cmpint(migstream_reader_new(in, NULL, &r, &error), ==, 0);
        for (size_t i = 0; i < 4; i++)
                fds[i] = memfd_create("dev", 0);
        g_assert_cmpint(migstream_reader_pump(r, fds, 4, NULL, &error), ==, 0);
        for (size_t i = 0; i < 4; i++) {
                got[i] = read_all(fds[i]);
                g_assert_true(g_bytes_equal(got[i], data[i]));
                g_bytes_unref(got[i]);
                g_bytes_unref(data[i]);
                close(fds[i]);
        }
}

static void test_pump_twice_refused(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int out = memfd_create("s", 0);
        _cleanup_close_ int in = memfd_with("x", 1);

        g_assert_cmpint(migstream_writer_new(out, "vm1", test_id, two_devices, 2, NULL, &w, &error),
                        ==, 0);
        g_assert_cmpint(migstream_writer_pump(w, 0, in, NULL, &error), ==, 0);
        g_assert_cmpint(migstream_writer_pump(w, 0, in, NULL, &error), ==, -EALREADY);
        g_assert_nonnull(strstr(error->message, "'nic0' was already streamed"));
        g_clear_error(&error);
        g_assert_cmpint(migstream_writer_pump(w, 2, in, NULL, &error), ==, -EINVAL);
}

static void test_finish_needs_every_device(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int out = memfd_create("s", 0);
        _cleanup_close_ int in = memfd_with("x", 1);

        g_assert_cmpint(migstream_writer_new(out, "vm1", test_id, two_devices, 2, NULL, &w, &error),
                        ==, 0);
        g_assert_cmpint(migstream_writer_pump(w, 1, in, NULL, &error), ==, 0);
        g_assert_cmpint(migstream_writer_finish(w, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "device 'nic0' was not streamed"));
}

/* SIGPIPE keeps its default action here: the writer must turn it into -EPIPE. */
static void test_reader_gone_is_epipe(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) d = pattern(300000, 5);
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(d, NULL), g_bytes_get_size(d));
        int pfd[2];

        g_assert_cmpint(pipe(pfd), ==, 0);
        g_assert_cmpint(
            migstream_writer_new(pfd[1], "vm1", test_id, two_devices, 2, NULL, &w, &error), ==, 0);
        close(pfd[0]);
        g_assert_cmpint(migstream_writer_pump(w, 0, in, NULL, &error), ==, -EPIPE);
        g_assert_nonnull(strstr(error->message, "broken pipe"));
        g_assert_nonnull(strstr(error->message, "device 'nic0'"));
        g_clear_error(&error);
        /* the stream is cut: later frames fail the same way, without touching the fd */
        g_assert_cmpint(migstream_writer_pump(w, 1, in, NULL, &error), ==, -EPIPE);
        close(pfd[1]);
}

static void test_disk_full_is_enospc(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int out = open("/dev/full", O_WRONLY | O_CLOEXEC);

        if (out < 0) {
                g_test_skip("no /dev/full");
                return;
        }
        g_assert_cmpint(migstream_writer_new(out, "vm1", test_id, two_devices, 2, NULL, &w, &error),
                        ==, -ENOSPC);
        g_assert_nonnull(strstr(error->message, "no space left for the migration stream"));
}

typedef struct Drain {
        int fd;
        GByteArray *got;
} Drain;

/* Reads a pipe slowly, in small pieces, so the writer meets short writes and EAGAIN. */
static void *drain(void *p)
{
        Drain *dr = p;
        uint8_t buf[1000];
        ssize_t n;

        for (;;) {
                struct pollfd pfd = {dr->fd, POLLIN, 0};
                poll(&pfd, 1, -1);
                n = read(dr->fd, buf, sizeof(buf));
                if (n < 0 && errno == EAGAIN)
                        continue;
                if (n <= 0)
                        break;
                g_byte_array_append(dr->got, buf, (guint)n);
                if (dr->got->len % 50000 < 1000)
                        g_usleep(100);
        }
        close(dr->fd);
        return NULL;
}

/* A non-blocking pipe of one page towards the stream: short writes and EAGAIN all along. */
static void test_writer_short_writes(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) d = pattern(1500000, 9);
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(d, NULL), g_bytes_get_size(d));
        _cleanup_close_ int in2 = memfd_with("x", 1);
        Drain dr = {-1, g_byte_array_new()};
        g_autoptr(GBytes) s = NULL;
        GBytes *got[2];
        GThread *t;
        int pfd[2];

        g_assert_cmpint(pipe2(pfd, O_NONBLOCK), ==, 0);
        fcntl(pfd[1], F_SETPIPE_SZ, 4096);
        dr.fd = pfd[0];
        t = g_thread_new("drain", drain, &dr);
        g_assert_cmpint(
            migstream_writer_new(pfd[1], "vm1", test_id, two_devices, 2, NULL, &w, &error), ==, 0);
        g_assert_cmpint(migstream_writer_pump(w, 0, in, NULL, &error), ==, 0);
        g_assert_cmpint(migstream_writer_pump(w, 1, in2, NULL, &error), ==, 0);
        g_assert_cmpint(migstream_writer_finish(w, &error), ==, 0);
        close(pfd[1]);
        g_thread_join(t);
        s = g_byte_array_free_to_bytes(dr.got);
        g_assert_cmpint(load_bytes(s, 2, got, &error), ==, 0);
        g_assert_true(g_bytes_equal(got[0], d));
        g_bytes_unref(got[0]);
        g_bytes_unref(got[1]);
}

/* Loading into a small non-blocking pipe: partial writes to the device fd are completed. */
static void test_reader_partial_device_writes(void)
{
        g_autoptr(GBytes) s = good_stream();
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(s, NULL), g_bytes_get_size(s));
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) want = pattern(3 * 1024 * 1024 + 17, 1);
        g_autoptr(GBytes) got = NULL;
        Drain dr = {-1, g_byte_array_new()};
        int fds[2] = {-1, memfd_create("b", 0)};
        GThread *t;
        int pfd[2];

        g_assert_cmpint(pipe2(pfd, O_NONBLOCK), ==, 0);
        fcntl(pfd[1], F_SETPIPE_SZ, 4096);
        dr.fd = pfd[0];
        fds[0] = pfd[1];
        t = g_thread_new("drain", drain, &dr);
        g_assert_cmpint(migstream_reader_new(in, NULL, &r, &error), ==, 0);
        g_assert_cmpint(migstream_reader_pump(r, fds, 2, NULL, &error), ==, 0);
        close(pfd[1]);
        close(fds[1]);
        g_thread_join(t);
        got = g_byte_array_free_to_bytes(dr.got);
        g_assert_true(g_bytes_equal(got, want));
}

/* A sender that keeps its end open and sends nothing fails the load after the stall bound. */
static void test_reader_stall_timeout(void)
{
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        GByteArray *b = hand_header(two_devices, 2);
        int pfd[2], fds[2] = {memfd_create("a", 0), memfd_create("b", 0)};
        MigStreamIo io = {.stall_us = 50000, .abort_fd = -1};
        uint64_t t0;

        g_assert_cmpint(pipe(pfd), ==, 0);
        g_assert_cmpint(write(pfd[1], b->data, b->len), ==, (ssize_t)b->len);
        g_byte_array_unref(b);
        g_assert_cmpint(migstream_reader_new(pfd[0], &io, &r, &error), ==, 0);
        t0 = now_usec();
        g_assert_cmpint(migstream_reader_pump(r, fds, 2, NULL, &error), ==, -ETIMEDOUT);
        g_assert_cmpuint(now_usec() - t0, >=, 45000);
        g_assert_nonnull(strstr(error->message, "sent nothing for 50 ms after "));
        for (int i = 0; i < 2; i++) {
                close(pfd[i]);
                close(fds[i]);
        }
}

/* Issue 11, reproduction 3: a writer that opens the pipe and sends nothing, not even the
 * header, fails at the stall bound instead of holding the Resume forever. */
static void test_reader_header_stall_times_out(void)
{
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        MigStreamIo io = {.stall_us = 50000, .abort_fd = -1, .vm_name = "vm1"};
        int pfd[2];
        uint64_t t0;

        g_assert_cmpint(pipe(pfd), ==, 0);
        t0 = now_usec();
        g_assert_cmpint(migstream_reader_new(pfd[0], &io, &r, &error), ==, -ETIMEDOUT);
        g_assert_cmpuint(now_usec() - t0, >=, 45000);
        g_assert_cmpstr(error->message, ==,
                        "the migration stream of VM 'vm1' sent nothing for 50 ms after 0 bytes; "
                        "is its writer still sending?");
        /* The caller's fd is given back as it came: blocking. */
        g_assert_cmpint(fcntl(pfd[0], F_GETFL) & O_NONBLOCK, ==, 0);
        close(pfd[0]);
        close(pfd[1]);
}

typedef struct Later {
        void *unused;
        int fd;
        unsigned delay_ms;
} Later;

/* Makes an eventfd readable after a delay, as an Abort does to a SeqAbort. */
static void *signal_later(void *p)
{
        Later *l = p;
        uint64_t one = 1;

        g_usleep(l->delay_ms * 1000);
        g_assert_cmpint(write(l->fd, &one, sizeof(one)), ==, sizeof(one));
        return NULL;
}

/* With no stall bound at all, the abort fd still ends a read of a silent writer. */
static void test_reader_abort_preempts_the_header(void)
{
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        Later later = {NULL, eventfd(0, EFD_CLOEXEC), 30};
        MigStreamIo io = {.abort_fd = later.fd};
        GThread *t;
        int pfd[2];

        g_assert_cmpint(pipe(pfd), ==, 0);
        t = g_thread_new("abort", signal_later, &later);
        g_assert_cmpint(migstream_reader_new(pfd[0], &io, &r, &error), ==, -ECANCELED);
        g_assert_cmpstr(error->message, ==, "the migration stream was aborted after 0 bytes");
        g_thread_join(t);
        close(later.fd);
        close(pfd[0]);
        close(pfd[1]);
}

/* A reader that never reads: the writer fills the pipe, then waits in poll, not in writev. */
static int stalled_pipe(int pfd[2])
{
        g_assert_cmpint(pipe(pfd), ==, 0);
        g_assert_cmpint(fcntl(pfd[1], F_SETPIPE_SZ, 4096), >=, 4096);
        return pfd[1];
}

/* Issue 11, reproduction 3: a Save into a FIFO nobody reads fails with the bytes that went
 * through, instead of blocking a worker in a 1 MiB writev after POLLOUT. */
static void test_writer_stall_names_the_stream_and_bytes(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) d = pattern(1500000, 4);
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(d, NULL), g_bytes_get_size(d));
        MigStreamIo io = {.stall_us = 50000, .abort_fd = -1};
        g_autofree char *want = NULL;
        int pfd[2];

        stalled_pipe(pfd);
        g_assert_cmpint(
            migstream_writer_new(pfd[1], "vm1", test_id, two_devices, 2, &io, &w, &error), ==, 0);
        g_assert_cmpint(migstream_writer_pump(w, 0, in, NULL, &error), ==, -ETIMEDOUT);
        want = g_strdup_printf("the migration stream of VM 'vm1' accepted no data for 50 ms "
                               "after %" G_GUINT64_FORMAT " bytes while writing device 'nic0'",
                               migstream_writer_offset(w));
        g_assert_nonnull(strstr(error->message, want));
        /* what went through is what the pipe holds: the header at least, not the device */
        g_assert_cmpuint(migstream_writer_offset(w), >=, header_size());
        g_assert_cmpuint(migstream_writer_offset(w), <, 1500000);
        close(pfd[0]);
        close(pfd[1]);
}

static void test_writer_abort_preempts_a_stalled_write(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) d = pattern(1500000, 4);
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(d, NULL), g_bytes_get_size(d));
        Later later = {NULL, eventfd(0, EFD_CLOEXEC), 30};
        MigStreamIo io = {.abort_fd = later.fd};
        GThread *t;
        int pfd[2];

        stalled_pipe(pfd);
        g_assert_cmpint(
            migstream_writer_new(pfd[1], "vm1", test_id, two_devices, 2, &io, &w, &error), ==, 0);
        t = g_thread_new("abort", signal_later, &later);
        g_assert_cmpint(migstream_writer_pump(w, 0, in, NULL, &error), ==, -ECANCELED);
        g_assert_nonnull(strstr(error->message, "the migration stream of VM 'vm1' was aborted"));
        /* the stream is cut: nothing more is written to it */
        g_clear_error(&error);
        g_assert_cmpint(migstream_writer_finish(w, &error), <, 0);
        g_thread_join(t);
        close(later.fd);
        close(pfd[0]);
        close(pfd[1]);
}

typedef struct Quitter {
        int fd;
        size_t after;
} Quitter;

/* Reads a little, then goes away in the middle of the writer's frame. */
static void *read_then_quit(void *p)
{
        Quitter *q = p;
        uint8_t buf[4096];
        size_t got = 0;

        while (got < q->after) {
                ssize_t n = read(q->fd, buf, sizeof(buf));
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        close(q->fd);
        return NULL;
}

/* Issue 11, reproduction 3: a reader killed during a partial write is EPIPE for the Save,
 * and no SIGPIPE is left pending to kill the process later (this test runs with SIGPIPE's
 * default action: a leaked one would end it). */
static void test_reader_dying_mid_write_is_epipe(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) d = pattern(3 * 1024 * 1024, 5);
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(d, NULL), g_bytes_get_size(d));
        Quitter q;
        sigset_t pending;
        GThread *t;
        int pfd[2];

        stalled_pipe(pfd);
        q = (Quitter){pfd[0], 100000};
        g_assert_cmpint(
            migstream_writer_new(pfd[1], "vm1", test_id, two_devices, 2, NULL, &w, &error), ==, 0);
        t = g_thread_new("quitter", read_then_quit, &q);
        g_assert_cmpint(migstream_writer_pump(w, 0, in, NULL, &error), ==, -EPIPE);
        g_thread_join(t);
        g_assert_nonnull(strstr(error->message, "went away (broken pipe)"));
        g_assert_cmpint(sigpending(&pending), ==, 0);
        g_assert_false(sigismember(&pending, SIGPIPE));
        close(pfd[1]);
}

/* Issue 11, reproduction 9: the policy's per-device bound, on both ends. */
static void test_writer_refuses_a_device_over_the_limit(void)
{
        g_autoptr(MigStreamWriter) w = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) d = pattern(5000, 6);
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(d, NULL), g_bytes_get_size(d));
        _cleanup_close_ int out = memfd_create("stream", MFD_CLOEXEC);
        MigStreamIo io = {
            .abort_fd = -1, .max_device_bytes = 4096, .setting = "max-device-state-bytes"};

        g_assert_cmpint(migstream_writer_new(out, "vm1", test_id, two_devices, 2, &io, &w, &error),
                        ==, 0);
        g_assert_cmpint(migstream_writer_pump(w, 0, in, NULL, &error), ==, -EFBIG);
        g_assert_cmpstr(error->message, ==,
                        "device 'nic0' carries at least 5000 bytes of migration data, more than "
                        "max-device-state-bytes (4096 bytes); raise max-device-state-bytes in "
                        "the policy if the device really holds that much");
}

static void test_reader_refuses_a_device_over_the_limit(void)
{
        g_autoptr(GBytes) s = good_stream(); /* nic0: 3 MiB + 17, nic1: 5000 bytes */
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(s, NULL), g_bytes_get_size(s));
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        MigStreamIo io = {.abort_fd = -1,
                          .max_device_bytes = 2 * 1024 * 1024,
                          .setting = "max-device-state-bytes"};
        int fds[2] = {memfd_create("a", MFD_CLOEXEC), memfd_create("b", MFD_CLOEXEC)};
        struct stat st;

        g_assert_cmpint(migstream_reader_new(in, &io, &r, &error), ==, 0);
        g_assert_cmpint(migstream_reader_pump(r, fds, 2, NULL, &error), ==, -EFBIG);
        g_assert_nonnull(strstr(error->message, "device 'nic0' carries at least 3145728 bytes"));
        g_assert_nonnull(strstr(error->message, "max-device-state-bytes (2097152 bytes)"));
        /* refused before the device was given more than the limit */
        g_assert_cmpint(fstat(fds[0], &st), ==, 0);
        g_assert_cmpint(st.st_size, <=, 2 * 1024 * 1024);
        close(fds[0]);
        close(fds[1]);
}

/* The header binds the stream to its VM and migration. */
static void test_reader_reports_vm_and_migration_id(void)
{
        g_autoptr(GBytes) s = good_stream();
        _cleanup_close_ int in = memfd_with(g_bytes_get_data(s, NULL), g_bytes_get_size(s));
        g_autoptr(MigStreamReader) r = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *hex = NULL;
        uint8_t a[MIGSTREAM_ID_SIZE], b[MIGSTREAM_ID_SIZE];

        g_assert_cmpint(migstream_reader_new(in, NULL, &r, &error), ==, 0);
        g_assert_cmpstr(migstream_reader_vm_name(r), ==, "vm1");
        g_assert_cmpmem(migstream_reader_migration_id(r), MIGSTREAM_ID_SIZE, test_id,
                        sizeof(test_id));
        hex = migstream_id_to_string(test_id);
        g_assert_cmpstr(hex, ==, "000102030405060708090a0b0c0d0e0f");
        migstream_id_generate(a);
        migstream_id_generate(b);
        g_assert_true(memcmp(a, b, sizeof(a)) != 0);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/migstream/round-trip", test_round_trip);
        g_test_add_func("/migstream/header-layout", test_header_layout);
        g_test_add_func("/migstream/empty-device-data", test_empty_device_data);
        g_test_add_func("/migstream/zero-devices", test_zero_devices);
        g_test_add_func("/migstream/reader/interleaved-frames",
                        test_reader_accepts_interleaved_frames);
        g_test_add_func("/migstream/reader/truncated-inside-data", test_truncated_inside_data);
        g_test_add_func("/migstream/reader/truncated-inside-header", test_truncated_inside_header);
        g_test_add_func("/migstream/reader/truncated-inside-frame-header",
                        test_truncated_inside_frame_header);
        g_test_add_func("/migstream/reader/missing-trailer", test_missing_trailer);
        g_test_add_func("/migstream/reader/empty-stream", test_empty_stream);
        g_test_add_func("/migstream/reader/bit-flip-in-data", test_bit_flip_in_data);
        g_test_add_func("/migstream/reader/bit-flip-in-checksum", test_bit_flip_in_checksum);
        g_test_add_func("/migstream/reader/wrong-magic", test_wrong_magic);
        g_test_add_func("/migstream/reader/short-foreign-stream", test_short_foreign_stream);
        g_test_add_func("/migstream/reader/unknown-version", test_unknown_version);
        g_test_add_func("/migstream/reader/version-1-refused", test_version_1_is_refused);
        g_test_add_func("/migstream/reader/unknown-device-index", test_unknown_device_index);
        g_test_add_func("/migstream/reader/bad-frame-magic", test_bad_frame_magic);
        g_test_add_func("/migstream/reader/unknown-frame-kind", test_unknown_frame_kind);
        g_test_add_func("/migstream/reader/oversized-frame", test_oversized_frame);
        g_test_add_func("/migstream/reader/trailer-before-end", test_trailer_before_end);
        g_test_add_func("/migstream/reader/data-after-end", test_data_after_end);
        g_test_add_func("/migstream/reader/fd-count-must-match", test_reader_fd_count_must_match);
        g_test_add_func("/migstream/reader/partial-device-writes",
                        test_reader_partial_device_writes);
        g_test_add_func("/migstream/reader/stall-timeout", test_reader_stall_timeout);
        g_test_add_func("/migstream/writer/concurrent-pumps", test_concurrent_pumps);
        g_test_add_func("/migstream/writer/pump-twice-refused", test_pump_twice_refused);
        g_test_add_func("/migstream/writer/finish-needs-every-device",
                        test_finish_needs_every_device);
        g_test_add_func("/migstream/writer/reader-gone-is-epipe", test_reader_gone_is_epipe);
        g_test_add_func("/migstream/writer/disk-full-is-enospc", test_disk_full_is_enospc);
        g_test_add_func("/migstream/writer/short-writes", test_writer_short_writes);
        g_test_add_func("/migstream/reader/header-stall-times-out",
                        test_reader_header_stall_times_out);
        g_test_add_func("/migstream/reader/abort-preempts-the-header",
                        test_reader_abort_preempts_the_header);
        g_test_add_func("/migstream/writer/stall-names-the-stream-and-bytes",
                        test_writer_stall_names_the_stream_and_bytes);
        g_test_add_func("/migstream/writer/abort-preempts-a-stalled-write",
                        test_writer_abort_preempts_a_stalled_write);
        g_test_add_func("/migstream/writer/reader-dying-mid-write-is-epipe",
                        test_reader_dying_mid_write_is_epipe);
        g_test_add_func("/migstream/writer/device-over-the-limit",
                        test_writer_refuses_a_device_over_the_limit);
        g_test_add_func("/migstream/reader/device-over-the-limit",
                        test_reader_refuses_a_device_over_the_limit);
        g_test_add_func("/migstream/reader/vm-and-migration-id",
                        test_reader_reports_vm_and_migration_id);
        return g_test_run();
}
