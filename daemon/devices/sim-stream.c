/* sim-stream: a simulated device's internal state blob and the save records that carry it */
#include "sim-stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "safe-dir.h"
#include "util.h"

#define RECORD_MAGIC     "VMSIMREC"
#define RECORD_MAGIC_LEN 8u
#define RECORD_VERSION   1u
/* magic, version, kind, vendor, device, driver length */
#define RECORD_FIXED_LEN  (RECORD_MAGIC_LEN + 4u + 4u + 2u + 2u + 2u)
#define RECORD_DRIVER_MAX 255u

int sim_error(GError **error, int r, const char *fmt, ...)
{
        va_list ap;

        if (error && !*error) {
                va_start(ap, fmt);
                *error = g_error_new_valist(G_FILE_ERROR, g_file_error_from_errno(-r), fmt, ap);
                va_end(ap);
        }
        return r;
}

static uint64_t splitmix64(uint64_t *x)
{
        uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint32_t page_len(uint32_t size, uint32_t page)
{
        return MIN(SIM_PAGE_SIZE, size - page * SIM_PAGE_SIZE);
}

/* A page depends only on where and when it was written, so a stream can be checked against
 * a device that regenerates it. */
static void page_fill(uint8_t *p, uint32_t len, uint64_t seed, uint64_t generation, uint32_t page)
{
        uint64_t x = seed ^ (generation * UINT64_C(0xd1b54a32d192ed03)) ^
                     ((uint64_t)page * UINT64_C(0x8cb92ba72f3d8dd7));

        for (uint32_t i = 0; i < len; i += 8) {
                uint64_t v = GUINT64_TO_LE(splitmix64(&x));
                memcpy(p + i, &v, MIN(8u, len - i));
        }
}

static void sha256(const void *data, size_t len, uint8_t out[SIM_DIGEST_LEN])
{
        GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);
        gsize n = SIM_DIGEST_LEN;

        g_checksum_update(c, data, len);
        g_checksum_get_digest(c, out, &n);
        g_checksum_free(c);
}

static void top_digest_hex(uint32_t size, const uint8_t *page_digests, uint32_t n_pages,
                           char hex[2 * SIM_DIGEST_LEN + 1])
{
        GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);
        uint32_t le = GUINT32_TO_LE(size);

        g_checksum_update(c, (const guchar *)&le, sizeof(le));
        g_checksum_update(c, page_digests, (gsize)n_pages * SIM_DIGEST_LEN);
        g_strlcpy(hex, g_checksum_get_string(c), 2 * SIM_DIGEST_LEN + 1);
        g_checksum_free(c);
}

bool sim_blob_size_valid(uint32_t size)
{
        return size >= SIM_BLOB_MIN && size <= SIM_BLOB_MAX;
}

static void blob_hash_pages(SimBlob *b)
{
        for (uint32_t i = 0; i < b->n_pages; i++)
                sha256(b->data + (size_t)i * SIM_PAGE_SIZE, page_len(b->size, i),
                       b->page_digests + (size_t)i * SIM_DIGEST_LEN);
}

void sim_blob_adopt(SimBlob *b, uint8_t *data, uint32_t size)
{
        sim_blob_clear(b);
        b->data = data;
        b->size = size;
        b->n_pages = sim_blob_n_pages(size);
        b->page_digests = g_malloc((size_t)b->n_pages * SIM_DIGEST_LEN);
        blob_hash_pages(b);
}

void sim_blob_generate(SimBlob *b, uint32_t size, uint64_t seed, uint64_t generation)
{
        uint8_t *data = g_malloc(size);

        for (uint32_t i = 0; i < sim_blob_n_pages(size); i++)
                page_fill(data + (size_t)i * SIM_PAGE_SIZE, page_len(size, i), seed, generation, i);
        sim_blob_adopt(b, data, size);
}

void sim_blob_clear(SimBlob *b)
{
        g_clear_pointer(&b->data, g_free);
        g_clear_pointer(&b->page_digests, g_free);
        b->size = b->n_pages = 0;
}

void sim_blob_digest_hex(const SimBlob *b, char hex[2 * SIM_DIGEST_LEN + 1])
{
        top_digest_hex(b->size, b->page_digests, b->n_pages, hex);
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
        for (size_t done = 0; done < len;) {
                ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, off + (off_t)done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ENODATA;
                done += (size_t)n;
        }
        return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
        for (size_t done = 0; done < len;) {
                ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, off + (off_t)done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                done += (size_t)n;
        }
        return 0;
}

/* Opens the state file and checks its size matches the device file's blob_size. */
static int state_file_open(const char *path, int flags, uint32_t size, GError **error)
{
        uint64_t want = size + (uint64_t)sim_blob_n_pages(size) * SIM_DIGEST_LEN;
        struct stat st;
        int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                return sim_error(error, -errno,
                                 "Cannot open state file %s: %s; recreate the device", path,
                                 g_strerror(errno));
        if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != want) {
                close(fd);
                return sim_error(error, -EBADMSG,
                                 "State file %s does not match blob_size %u (expected %" PRIu64
                                 " bytes); reset or recreate the device",
                                 path, size, want);
        }
        return fd;
}

int sim_blob_read_file(const char *path, uint32_t size, SimBlob *b, GError **error)
{
        _cleanup_close_ int fd = state_file_open(path, O_RDONLY, size, error);
        uint32_t n_pages = sim_blob_n_pages(size);
        int r;

        if (fd < 0)
                return fd;
        sim_blob_clear(b);
        b->data = g_malloc(size);
        b->page_digests = g_malloc((size_t)n_pages * SIM_DIGEST_LEN);
        b->size = size;
        b->n_pages = n_pages;
        r = pread_all(fd, b->data, size, 0);
        if (r >= 0)
                r = pread_all(fd, b->page_digests, (size_t)n_pages * SIM_DIGEST_LEN, size);
        if (r < 0) {
                sim_blob_clear(b);
                return sim_error(error, r, "Cannot read state file %s: %s", path, g_strerror(-r));
        }
        return 0;
}

int sim_blob_write_file(const char *path, const SimBlob *b, GError **error)
{
        size_t dlen = (size_t)b->n_pages * SIM_DIGEST_LEN;
        g_autofree uint8_t *buf = g_malloc((size_t)b->size + dlen);

        memcpy(buf, b->data, b->size);
        memcpy(buf + b->size, b->page_digests, dlen);
        return sim_file_replace(path, buf, (size_t)b->size + dlen, error);
}

int sim_blob_mutate_file(const char *path, uint32_t size, uint64_t seed, uint64_t generation,
                         char hex[2 * SIM_DIGEST_LEN + 1], GError **error)
{
        _cleanup_close_ int fd = state_file_open(path, O_RDWR, size, error);
        uint32_t n_pages = sim_blob_n_pages(size);
        uint64_t x = seed ^ generation;
        uint32_t page = (uint32_t)(splitmix64(&x) % n_pages);
        uint32_t len = page_len(size, page);
        g_autofree uint8_t *digests = g_malloc((size_t)n_pages * SIM_DIGEST_LEN);
        uint8_t data[SIM_PAGE_SIZE];
        uint8_t *slot = digests + (size_t)page * SIM_DIGEST_LEN;
        int r;

        if (fd < 0)
                return fd;
        /* Written in place, not replaced: only lock holders read the state file, and a
         * whole-file rewrite per arc would cost more than the rest of the arc together. */
        r = pread_all(fd, digests, (size_t)n_pages * SIM_DIGEST_LEN, size);
        if (r < 0)
                return sim_error(error, r, "Cannot read state file %s: %s", path, g_strerror(-r));
        page_fill(data, len, seed, generation, page);
        sha256(data, len, slot);
        r = pwrite_all(fd, data, len, (off_t)page * SIM_PAGE_SIZE);
        if (r >= 0)
                r = pwrite_all(fd, slot, SIM_DIGEST_LEN,
                               (off_t)size + (off_t)page * SIM_DIGEST_LEN);
        if (r < 0)
                return sim_error(error, r, "Cannot write state file %s: %s", path, g_strerror(-r));
        top_digest_hex(size, digests, n_pages, hex);
        return 0;
}

static size_t put_bytes(uint8_t *p, const void *v, size_t n)
{
        memcpy(p, v, n);
        return n;
}

static size_t put_le16(uint8_t *p, uint16_t v)
{
        v = GUINT16_TO_LE(v);
        return put_bytes(p, &v, sizeof(v));
}

static size_t put_le32(uint8_t *p, uint32_t v)
{
        v = GUINT32_TO_LE(v);
        return put_bytes(p, &v, sizeof(v));
}

static size_t put_le64(uint8_t *p, uint64_t v)
{
        v = GUINT64_TO_LE(v);
        return put_bytes(p, &v, sizeof(v));
}

int sim_record_append(int fd, enum sim_record_kind kind, const SimIdentity *id, uint64_t seed,
                      uint64_t generation, const SimBlob *blob, GError **error)
{
        uint8_t hdr[RECORD_FIXED_LEN + RECORD_DRIVER_MAX + 8 + 8 + 4];
        size_t dlen = strlen(id->driver), n = 0;
        uint8_t digest[SIM_DIGEST_LEN];
        GChecksum *c;
        gsize clen = sizeof(digest);
        struct stat st;
        int r;

        if (dlen == 0 || dlen > RECORD_DRIVER_MAX)
                return sim_error(error, -EINVAL, "Driver name '%s' cannot go into a record",
                                 id->driver);
        n += put_bytes(hdr, RECORD_MAGIC, RECORD_MAGIC_LEN);
        n += put_le32(hdr + n, RECORD_VERSION);
        n += put_le32(hdr + n, kind);
        n += put_le16(hdr + n, id->vendor_id);
        n += put_le16(hdr + n, id->device_id);
        n += put_le16(hdr + n, (uint16_t)dlen);
        n += put_bytes(hdr + n, id->driver, dlen);
        n += put_le64(hdr + n, seed);
        n += put_le64(hdr + n, generation);
        n += put_le32(hdr + n, blob->size);

        c = g_checksum_new(G_CHECKSUM_SHA256);
        g_checksum_update(c, hdr, n);
        g_checksum_update(c, blob->data, blob->size);
        g_checksum_get_digest(c, digest, &clen);
        g_checksum_free(c);

        /* pwrite at the end: the reader's offset (shared with the caller's fd) must not move. */
        if (fstat(fd, &st) < 0)
                return sim_error(error, -errno, "Cannot stat the data fd: %s", g_strerror(errno));
        r = pwrite_all(fd, hdr, n, st.st_size);
        if (r >= 0)
                r = pwrite_all(fd, blob->data, blob->size, st.st_size + (off_t)n);
        if (r >= 0)
                r = pwrite_all(fd, digest, sizeof(digest), st.st_size + (off_t)(n + blob->size));
        if (r < 0)
                return sim_error(error, r, "Cannot write a record to the data fd: %s",
                                 g_strerror(-r));
        return 0;
}

int sim_fd_read_all(int fd, uint8_t **ret_buf, size_t *ret_len)
{
        struct stat st;
        uint8_t *buf;
        int r;

        if (fstat(fd, &st) < 0)
                return -errno;
        buf = g_malloc((size_t)st.st_size + 1);
        r = pread_all(fd, buf, (size_t)st.st_size, 0);
        if (r < 0) {
                g_free(buf);
                return r;
        }
        *ret_buf = buf;
        *ret_len = (size_t)st.st_size;
        return 0;
}

static uint16_t get_le16(const uint8_t *p)
{
        uint16_t v;
        memcpy(&v, p, sizeof(v));
        return GUINT16_FROM_LE(v);
}

static uint32_t get_le32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return GUINT32_FROM_LE(v);
}

static uint64_t get_le64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return GUINT64_FROM_LE(v);
}

typedef struct Record {
        uint32_t kind;
        uint16_t vendor_id, device_id;
        char driver[RECORD_DRIVER_MAX + 1];
        uint64_t seed, generation;
        uint32_t blob_size;
        const uint8_t *blob;
        size_t head_len; /* the bytes before the blob */
        size_t len;      /* the whole record, digest included */
} Record;

static int stream_defect(GError **error, unsigned index, size_t off, const char *what)
{
        return sim_error(error, -EINVAL, "record %u at byte %zu %s", index, off, what);
}

/* The most bytes a record has before its blob: the fixed part, the driver, seed, generation
 * and blob length. */
#define RECORD_HEAD_MAX (RECORD_FIXED_LEN + RECORD_DRIVER_MAX + 8 + 8 + 4)

/* Structure first (magic, version, lengths), then the checksum, so a flipped bit reads as
 * corruption rather than as a foreign device. p holds the record's head (at least
 * MIN(left, RECORD_HEAD_MAX) bytes); left is what the stream has from there on. Sets
 * rec->head_len; rec->blob is left to the caller. */
static int record_parse_head(const uint8_t *p, size_t left, unsigned index, size_t off,
                             Record *rec, GError **error)
{
        size_t dlen, need;

        if (left < RECORD_FIXED_LEN)
                return stream_defect(error, index, off, "is truncated (stream incomplete)");
        if (memcmp(p, RECORD_MAGIC, RECORD_MAGIC_LEN) != 0)
                return stream_defect(error, index, off, "has a bad magic (not a sim stream)");
        if (get_le32(p + 8) != RECORD_VERSION)
                return stream_defect(error, index, off, "has an unknown version");
        rec->kind = get_le32(p + 12);
        if (rec->kind != SIM_RECORD_PRECOPY && rec->kind != SIM_RECORD_FINAL)
                return stream_defect(error, index, off, "has an unknown kind");
        rec->vendor_id = get_le16(p + 16);
        rec->device_id = get_le16(p + 18);
        dlen = get_le16(p + 20);
        if (dlen == 0 || dlen > RECORD_DRIVER_MAX)
                return stream_defect(error, index, off, "has a bad driver name length");
        need = RECORD_FIXED_LEN + dlen + 8 + 8 + 4;
        if (left < need)
                return stream_defect(error, index, off, "is truncated (stream incomplete)");
        memcpy(rec->driver, p + RECORD_FIXED_LEN, dlen);
        rec->driver[dlen] = '\0';
        rec->seed = get_le64(p + RECORD_FIXED_LEN + dlen);
        rec->generation = get_le64(p + RECORD_FIXED_LEN + dlen + 8);
        rec->blob_size = get_le32(p + RECORD_FIXED_LEN + dlen + 16);
        rec->head_len = need;
        if (!sim_blob_size_valid(rec->blob_size))
                return stream_defect(error, index, off, "has a blob length out of range");
        if (left - need < (size_t)rec->blob_size + SIM_DIGEST_LEN)
                return stream_defect(error, index, off, "is truncated (stream incomplete)");
        rec->len = need + rec->blob_size + SIM_DIGEST_LEN;
        return 0;
}

static int record_parse(const uint8_t *p, size_t left, unsigned index, size_t off, Record *rec,
                        GError **error)
{
        uint8_t digest[SIM_DIGEST_LEN];
        int r = record_parse_head(p, left, index, off, rec, error);

        if (r < 0)
                return r;
        rec->blob = p + rec->head_len;
        sha256(p, rec->head_len + rec->blob_size, digest);
        if (memcmp(digest, p + rec->head_len + rec->blob_size, SIM_DIGEST_LEN) != 0)
                return stream_defect(error, index, off, "fails its SHA-256 (data corrupted)");
        return 0;
}

static int record_check_identity(const Record *rec, const SimIdentity *self, unsigned index,
                                 size_t off, GError **error)
{
        if (rec->vendor_id == self->vendor_id && rec->device_id == self->device_id &&
            strcmp(rec->driver, self->driver) == 0)
                return 0;
        return sim_error(error, -EINVAL,
                         "record %u at byte %zu comes from %04x:%04x %s, not %04x:%04x %s "
                         "(a foreign device's stream)",
                         index, off, rec->vendor_id, rec->device_id, rec->driver, self->vendor_id,
                         self->device_id, self->driver);
}

int sim_stream_parse(const uint8_t *buf, size_t len, const SimIdentity *self, SimStreamFinal *ret,
                     GError **error)
{
        Record rec = {0};
        size_t off = 0;
        unsigned index = 0;
        int r;

        if (len == 0)
                return sim_error(error, -EINVAL, "stream is empty (nothing was written)");
        for (; off < len; off += rec.len, index++) {
                if (rec.kind == SIM_RECORD_FINAL)
                        return sim_error(error, -EINVAL,
                                         "%zu trailing bytes follow the FINAL record at byte %zu",
                                         len - off, off);
                r = record_parse(buf + off, len - off, index, off, &rec, error);
                if (r >= 0)
                        r = record_check_identity(&rec, self, index, off, error);
                if (r < 0)
                        return r;
        }
        if (rec.kind != SIM_RECORD_FINAL)
                return sim_error(error, -EINVAL,
                                 "stream ends without a FINAL record (the save never reached "
                                 "STOP_COPY)");
        ret->seed = rec.seed;
        ret->generation = rec.generation;
        ret->blob = g_memdup2(rec.blob, rec.blob_size);
        ret->blob_size = rec.blob_size;
        ret->n_records = index;
        return 0;
}

/* The chunk the fd-based functions below hold: the whole of their memory, whatever the size
 * of the blob or the stream (a multiple of the page size, for the page digests). */
#define CHUNK_SIZE (64u * SIM_PAGE_SIZE)

int sim_stream_check_fd(int fd, const SimIdentity *self, SimStreamFinalRef *ret, GError **error)
{
        g_autofree uint8_t *chunk = g_malloc(CHUNK_SIZE);
        Record rec = {0};
        struct stat st;
        size_t off = 0, len;
        unsigned index = 0;
        int r;

        if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0)
                return sim_error(error, -EINVAL, "stream is empty (nothing was written)");
        len = (size_t)st.st_size;
        for (; off < len; off += rec.len, index++) {
                size_t head = MIN(len - off, (size_t)RECORD_HEAD_MAX);
                uint8_t digest[SIM_DIGEST_LEN], want[SIM_DIGEST_LEN];
                gsize dlen = sizeof(digest);
                GChecksum *c;

                if (rec.kind == SIM_RECORD_FINAL)
                        return sim_error(error, -EINVAL,
                                         "%zu trailing bytes follow the FINAL record at byte %zu",
                                         len - off, off);
                r = pread_all(fd, chunk, head, (off_t)off);
                if (r < 0)
                        return sim_error(error, r, "record %u at byte %zu cannot be read: %s",
                                         index, off, g_strerror(-r));
                r = record_parse_head(chunk, len - off, index, off, &rec, error);
                if (r >= 0)
                        r = record_check_identity(&rec, self, index, off, error);
                if (r < 0)
                        return r;
                /* The digest covers head and blob: hash the blob a chunk at a time. */
                c = g_checksum_new(G_CHECKSUM_SHA256);
                g_checksum_update(c, chunk, rec.head_len);
                for (size_t done = 0; r >= 0 && done < rec.blob_size;) {
                        size_t n = MIN((size_t)CHUNK_SIZE, rec.blob_size - done);
                        r = pread_all(fd, chunk, n, (off_t)(off + rec.head_len + done));
                        if (r >= 0)
                                g_checksum_update(c, chunk, n);
                        done += n;
                }
                g_checksum_get_digest(c, digest, &dlen);
                g_checksum_free(c);
                if (r >= 0)
                        r = pread_all(fd, want, sizeof(want),
                                      (off_t)(off + rec.head_len + rec.blob_size));
                if (r < 0)
                        return sim_error(error, r, "record %u at byte %zu cannot be read: %s",
                                         index, off, g_strerror(-r));
                if (memcmp(digest, want, sizeof(want)) != 0)
                        return stream_defect(error, index, off,
                                             "fails its SHA-256 (data corrupted)");
                ret->blob_offset = (uint64_t)(off + rec.head_len);
        }
        if (rec.kind != SIM_RECORD_FINAL)
                return sim_error(error, -EINVAL,
                                 "stream ends without a FINAL record (the save never reached "
                                 "STOP_COPY)");
        ret->seed = rec.seed;
        ret->generation = rec.generation;
        ret->blob_size = rec.blob_size;
        ret->n_records = index;
        return 0;
}

typedef struct BlobCopy {
        int from;
        uint64_t offset;
        uint32_t size;
        char *hex;
} BlobCopy;

/* Writes the blob from the data fd, then its page digests, a chunk at a time. */
static int blob_copy_write(int to, void *userdata)
{
        BlobCopy *bc = userdata;
        uint32_t n_pages = sim_blob_n_pages(bc->size);
        g_autofree uint8_t *digests = g_malloc((size_t)n_pages * SIM_DIGEST_LEN);
        g_autofree uint8_t *chunk = g_malloc(CHUNK_SIZE);
        int r = 0;

        for (uint32_t done = 0; r >= 0 && done < bc->size;) {
                uint32_t n = MIN(CHUNK_SIZE, bc->size - done);

                r = pread_all(bc->from, chunk, n, (off_t)(bc->offset + done));
                if (r >= 0)
                        r = pwrite_all(to, chunk, n, (off_t)done);
                for (uint32_t p = 0; r >= 0 && p < n; p += SIM_PAGE_SIZE)
                        sha256(chunk + p, MIN(SIM_PAGE_SIZE, n - p),
                               digests + (size_t)((done + p) / SIM_PAGE_SIZE) * SIM_DIGEST_LEN);
                done += n;
        }
        if (r >= 0)
                r = pwrite_all(to, digests, (size_t)n_pages * SIM_DIGEST_LEN, bc->size);
        if (r >= 0 && ftruncate(to, (off_t)bc->size + (off_t)n_pages * SIM_DIGEST_LEN) < 0)
                r = -errno;
        if (r >= 0)
                top_digest_hex(bc->size, digests, n_pages, bc->hex);
        return r;
}

static int file_replace_with(const char *path, int (*write_fn)(int fd, void *userdata),
                             void *userdata, GError **error);

int sim_blob_write_file_from_fd(const char *path, int fd, uint64_t offset, uint32_t size,
                                char hex[2 * SIM_DIGEST_LEN + 1], GError **error)
{
        BlobCopy bc = {fd, offset, size, hex};

        return file_replace_with(path, blob_copy_write, &bc, error);
}

int sim_record_append_from_state(int fd, enum sim_record_kind kind, const SimIdentity *id,
                                 uint64_t seed, uint64_t generation, const char *state_path,
                                 uint32_t blob_size, GError **error)
{
        uint8_t hdr[RECORD_HEAD_MAX];
        size_t dlen = strlen(id->driver), n = 0;
        g_autofree uint8_t *chunk = NULL;
        uint8_t digest[SIM_DIGEST_LEN];
        gsize clen = sizeof(digest);
        g_autoptr(GChecksum) c = NULL;
        _cleanup_close_ int state = -1;
        struct stat st;
        off_t at;
        int r;

        if (dlen == 0 || dlen > RECORD_DRIVER_MAX)
                return sim_error(error, -EINVAL, "Driver name '%s' cannot go into a record",
                                 id->driver);
        state = state_file_open(state_path, O_RDONLY, blob_size, error);
        if (state < 0)
                return state;
        n += put_bytes(hdr, RECORD_MAGIC, RECORD_MAGIC_LEN);
        n += put_le32(hdr + n, RECORD_VERSION);
        n += put_le32(hdr + n, kind);
        n += put_le16(hdr + n, id->vendor_id);
        n += put_le16(hdr + n, id->device_id);
        n += put_le16(hdr + n, (uint16_t)dlen);
        n += put_bytes(hdr + n, id->driver, dlen);
        n += put_le64(hdr + n, seed);
        n += put_le64(hdr + n, generation);
        n += put_le32(hdr + n, blob_size);

        /* pwrite at the end: the reader's offset (shared with the caller's fd) must not move. */
        if (fstat(fd, &st) < 0)
                return sim_error(error, -errno, "Cannot stat the data fd: %s", g_strerror(errno));
        at = st.st_size;
        c = g_checksum_new(G_CHECKSUM_SHA256);
        g_checksum_update(c, hdr, n);
        r = pwrite_all(fd, hdr, n, at);
        at += (off_t)n;
        chunk = g_malloc(CHUNK_SIZE);
        for (uint32_t done = 0; r >= 0 && done < blob_size;) {
                uint32_t len = MIN(CHUNK_SIZE, blob_size - done);

                r = pread_all(state, chunk, len, done);
                if (r < 0)
                        return sim_error(error, r, "Cannot read state file %s: %s", state_path,
                                         g_strerror(-r));
                g_checksum_update(c, chunk, len);
                r = pwrite_all(fd, chunk, len, at);
                at += len;
                done += len;
        }
        g_checksum_get_digest(c, digest, &clen);
        if (r >= 0)
                r = pwrite_all(fd, digest, sizeof(digest), at);
        if (r < 0)
                return sim_error(error, r, "Cannot write a record to the data fd: %s",
                                 g_strerror(-r));
        return 0;
}

static int flock_retry(int fd, int op)
{
        while (flock(fd, op) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

typedef struct BufferWrite {
        const void *data;
        size_t len;
} BufferWrite;

/* Overwrite, then cut to length: ext4 flushes a file truncated to zero when it is closed
 * (auto_da_alloc), which would put a disk write into every arc. */
static int buffer_write(int fd, void *userdata)
{
        BufferWrite *bw = userdata;
        int r = pwrite_all(fd, bw->data, bw->len, 0);

        if (r >= 0 && ftruncate(fd, (off_t)bw->len) < 0)
                r = -errno;
        return r;
}

int sim_file_replace(const char *path, const void *data, size_t len, GError **error)
{
        BufferWrite bw = {data, len};

        return file_replace_with(path, buffer_write, &bw, error);
}

/*
 * The temporary file is the version before last: after RENAME_EXCHANGE the old version sits
 * at the temporary name and is rewritten next time. Reusing it spares an inode allocation
 * and an unlink per write, which on ext4 without a journal cost more than the rest of an arc
 * (the allocator skips recently deleted inodes). A reader may still be reading that old
 * version, so readers hold a shared flock on the file they read (sim_file_read) and the
 * writer an exclusive one while it rewrites: a reader sees one whole version.
 *
 * write_fn fills the locked temporary file (and cuts it to length); then the atomic swap.
 */
static int file_replace_with(const char *path, int (*write_fn)(int fd, void *userdata),
                             void *userdata, GError **error)
{
        g_autofree char *dir = g_path_get_dirname(path);
        g_autofree char *base = g_path_get_basename(path);
        g_autofree char *tmp = g_strdup_printf(".%s.tmp", base);
        _cleanup_close_ int dir_fd = -1, fd = -1;
        int r;

        dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return sim_error(error, -errno, "Cannot open the directory of %s: %s", path,
                                 g_strerror(errno));
        /* The spare is reused only if it is our own regular file: anything else at its
         * name (a link someone planted) is unlinked, never written through. */
        fd = safe_file_open_temp(dir_fd, dir, tmp, 0600, true, error);
        if (fd < 0)
                return fd;
        r = flock_retry(fd, LOCK_EX);
        if (r >= 0)
                r = write_fn(fd, userdata);
        if (r < 0)
                return sim_error(error, r, "Cannot write %s/%s: %s; check free space", dir, tmp,
                                 g_strerror(-r));
        if (renameat2(dir_fd, tmp, dir_fd, base, RENAME_EXCHANGE) == 0)
                return 0;
        /* No old version yet, or a file system without exchange: a plain atomic rename. */
        if (renameat(dir_fd, tmp, dir_fd, base) < 0) {
                r = -errno;
                unlinkat(dir_fd, tmp, 0);
                return sim_error(error, r, "Cannot replace %s: %s", path, g_strerror(-r));
        }
        return 0;
}

int sim_file_read(const char *path, char **ret_text, size_t *ret_len)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        char *buf;
        ssize_t n;
        int r;

        if (fd < 0)
                return -errno;
        r = flock_retry(fd, LOCK_SH);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        buf = g_malloc((size_t)st.st_size + 1);
        do
                n = pread(fd, buf, (size_t)st.st_size, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                r = -errno;
                g_free(buf);
                return r;
        }
        /* Writers need the exclusive lock, so the size holds; a short read shows up as a
         * parse error in the caller. */
        buf[n] = '\0';
        *ret_text = buf;
        *ret_len = (size_t)n;
        return 0;
}
