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

/* Opens the state file (never through a link) and checks its size matches blob_size. */
static int state_file_open(SafeDir *dir, const char *name, int flags, uint32_t size, GError **error)
{
        uint64_t want = size + (uint64_t)sim_blob_n_pages(size) * SIM_DIGEST_LEN;
        g_autoptr(GError) local = NULL;
        struct stat st;
        int fd = safe_dir_open_file(dir, name, flags, &local);

        if (fd < 0)
                return sim_error(error, fd, "Cannot open state file: %s; recreate the device",
                                 local->message);
        if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != want) {
                close(fd);
                return sim_error(error, -EBADMSG,
                                 "State file %s/%s does not match blob_size %u (expected %" PRIu64
                                 " bytes); reset or recreate the device",
                                 safe_dir_path(dir), name, size, want);
        }
        /* A state file from a version that wrote 0644 files becomes private: it is mutated in
         * place, so no rewrite would ever change its mode. */
        if ((st.st_mode & 07777) != SIM_FILE_MODE)
                (void)fchmod(fd, SIM_FILE_MODE);
        return fd;
}

int sim_blob_read_file(SafeDir *dir, const char *name, uint32_t size, SimBlob *b, GError **error)
{
        _cleanup_close_ int fd = state_file_open(dir, name, O_RDONLY, size, error);
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
                return sim_error(error, r, "Cannot read state file %s/%s: %s", safe_dir_path(dir),
                                 name, g_strerror(-r));
        }
        return 0;
}

int sim_blob_write_file(SafeDir *dir, const char *name, const SimBlob *b, GError **error)
{
        size_t dlen = (size_t)b->n_pages * SIM_DIGEST_LEN;
        g_autofree uint8_t *buf = g_malloc((size_t)b->size + dlen);

        memcpy(buf, b->data, b->size);
        memcpy(buf + b->size, b->page_digests, dlen);
        return sim_file_replace(dir, name, buf, (size_t)b->size + dlen, error);
}

int sim_blob_mutate_file(SafeDir *dir, const char *name, uint32_t size, uint64_t seed,
                         uint64_t generation, char hex[2 * SIM_DIGEST_LEN + 1], GError **error)
{
        _cleanup_close_ int fd = state_file_open(dir, name, O_RDWR, size, error);
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
                return sim_error(error, r, "Cannot read state file %s/%s: %s", safe_dir_path(dir),
                                 name, g_strerror(-r));
        page_fill(data, len, seed, generation, page);
        sha256(data, len, slot);
        r = pwrite_all(fd, data, len, (off_t)page * SIM_PAGE_SIZE);
        if (r >= 0)
                r = pwrite_all(fd, slot, SIM_DIGEST_LEN,
                               (off_t)size + (off_t)page * SIM_DIGEST_LEN);
        if (r < 0)
                return sim_error(error, r, "Cannot write state file %s/%s: %s", safe_dir_path(dir),
                                 name, g_strerror(-r));
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
        size_t len; /* the whole record, digest included */
} Record;

static int stream_defect(GError **error, unsigned index, size_t off, const char *what)
{
        return sim_error(error, -EINVAL, "record %u at byte %zu %s", index, off, what);
}

/* Structure first (magic, version, lengths), then the checksum, so a flipped bit reads as
 * corruption rather than as a foreign device. */
static int record_parse(const uint8_t *p, size_t left, unsigned index, size_t off, Record *rec,
                        GError **error)
{
        size_t dlen, need;
        uint8_t digest[SIM_DIGEST_LEN];

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
        rec->blob = p + need;
        if (!sim_blob_size_valid(rec->blob_size))
                return stream_defect(error, index, off, "has a blob length out of range");
        if (left - need < (size_t)rec->blob_size + SIM_DIGEST_LEN)
                return stream_defect(error, index, off, "is truncated (stream incomplete)");
        rec->len = need + rec->blob_size + SIM_DIGEST_LEN;
        sha256(p, need + rec->blob_size, digest);
        if (memcmp(digest, p + need + rec->blob_size, SIM_DIGEST_LEN) != 0)
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

static int flock_retry(int fd, int op)
{
        while (flock(fd, op) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

/*
 * The temporary file is the version before last: after RENAME_EXCHANGE the old version sits
 * at the temporary name and is rewritten next time. Reusing it spares an inode allocation
 * and an unlink per write, which on ext4 without a journal cost more than the rest of an arc
 * (the allocator skips recently deleted inodes). A reader may still be reading that old
 * version, so readers hold a shared flock on the file they read (sim_file_read) and the
 * writer an exclusive one while it rewrites: a reader sees one whole version.
 */
/* The spare for the next write, never a planted one: whatever sits at the spare's name that
 * is not a plain file of ours is replaced by a fresh file, not followed. */
static int spare_open(SafeDir *dir, const char *tmp, GError **error)
{
        struct stat st;
        int fd = safe_dir_open_file(dir, tmp, O_WRONLY, NULL);

        if (fd == -ENOENT || fd == -ELOOP || fd == -EUCLEAN || fd == -EISDIR)
                return safe_dir_create_temp(dir, tmp, O_WRONLY, SIM_FILE_MODE, error);
        if (fd < 0)
                return safe_dir_open_file(dir, tmp, O_WRONLY, error);
        /* A spare from a version that wrote 0644 files becomes private on its next use. */
        if (fstat(fd, &st) == 0 && (st.st_mode & 07777) != SIM_FILE_MODE)
                (void)fchmod(fd, SIM_FILE_MODE);
        return fd;
}

int sim_file_replace(SafeDir *dir, const char *name, const void *data, size_t len, GError **error)
{
        g_autofree char *tmp = g_strdup_printf(".%s.tmp", name);
        g_autoptr(GError) local = NULL;
        _cleanup_close_ int fd = -1;
        int dfd = safe_dir_fd(dir);
        int r;

        fd = spare_open(dir, tmp, &local);
        if (fd < 0)
                return sim_error(error, fd,
                                 "Cannot create a temporary file for %s/%s: %s; check the "
                                 "directory's permissions and free space",
                                 safe_dir_path(dir), name, local->message);
        r = flock_retry(fd, LOCK_EX);
        /* Overwrite, then cut to length: ext4 flushes a file truncated to zero when it is
         * closed (auto_da_alloc), which would put a disk write into every arc. */
        if (r >= 0)
                r = pwrite_all(fd, data, len, 0);
        if (r >= 0 && ftruncate(fd, (off_t)len) < 0)
                r = -errno;
        if (r < 0)
                return sim_error(error, r, "Cannot write %s/%s: %s; check free space",
                                 safe_dir_path(dir), tmp, g_strerror(-r));
        if (renameat2(dfd, tmp, dfd, name, RENAME_EXCHANGE) == 0)
                return 0;
        /* No old version yet, or a file system without exchange: a plain atomic rename. */
        if (renameat(dfd, tmp, dfd, name) < 0) {
                r = -errno;
                unlinkat(dfd, tmp, 0);
                return sim_error(error, r, "Cannot replace %s/%s: %s", safe_dir_path(dir), name,
                                 g_strerror(-r));
        }
        return 0;
}

int sim_file_read(SafeDir *dir, const char *name, char **ret_text, size_t *ret_len, GError **error)
{
        _cleanup_close_ int fd = safe_dir_open_file(dir, name, O_RDONLY, error);
        struct stat st;
        char *buf;
        ssize_t n;
        int r;

        if (fd < 0)
                return fd;
        r = flock_retry(fd, LOCK_SH);
        if (r >= 0 && fstat(fd, &st) < 0)
                r = -errno;
        if (r >= 0 && (uint64_t)st.st_size > SIM_FILE_MAX)
                return sim_error(error, -EFBIG,
                                 "Device file %s/%s is %jd bytes, more than a device file can "
                                 "be; remove and recreate the device",
                                 safe_dir_path(dir), name, (intmax_t)st.st_size);
        if (r < 0)
                return sim_error(error, r, "Cannot read %s/%s: %s", safe_dir_path(dir), name,
                                 g_strerror(-r));
        buf = g_malloc((size_t)st.st_size + 1);
        do
                n = pread(fd, buf, (size_t)st.st_size, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                r = -errno;
                g_free(buf);
                return sim_error(error, r, "Cannot read %s/%s: %s", safe_dir_path(dir), name,
                                 g_strerror(-r));
        }
        /* Writers need the exclusive lock, so the size holds; a short read shows up as a
         * parse error in the caller. */
        buf[n] = '\0';
        *ret_text = buf;
        *ret_len = (size_t)n;
        return 0;
}
