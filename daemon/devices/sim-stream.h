/* sim-stream: a simulated device's internal state blob and the save records that carry it */
#pragma once

/*
 * Private to the sim backend (sim.c) and its tests.
 *
 * Blob: blob_size pseudo-random bytes. Page i (SIM_PAGE_SIZE bytes, the last one shorter)
 * is a pure function of (seed, generation, i), where generation is the one at which the
 * page was last written: creation and reset write every page, a mutation rewrites one.
 * The blob digest is SHA-256(u32 LE blob_size || SHA-256 of each page), so a mutation
 * rehashes one page instead of the whole blob (a 64 KiB SHA-256 costs ~200 us, a page ~13).
 * The state file DIR/<name>.state is the blob followed by the page digests.
 *
 * Record (all integers little-endian), appended to a data fd:
 *   "VMSIMREC" | u32 version (1) | u32 kind (1 PRECOPY, 2 FINAL) | u16 vendor | u16 device |
 *   u16 driver length | driver | u64 seed | u64 generation | u32 blob length | blob |
 *   32-byte SHA-256 of everything before it in the record.
 * A valid stream is one or more records, all of this device's identity, the last FINAL,
 * nothing after it.
 *
 * Errors: 0 or negative errno, plus a GError sentence.
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fills error (when asked and still empty) with a G_FILE_ERROR for errno -r and returns r, so
 * callers can 'return sim_error(...)'. */
int sim_error(GError **error, int r, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

#define SIM_PAGE_SIZE  4096u
#define SIM_BLOB_MIN   16u
#define SIM_BLOB_MAX   (256u << 20)
#define SIM_DIGEST_LEN 32u

enum sim_record_kind {
        SIM_RECORD_NONE = 0, /* an empty session (RESUMING) */
        SIM_RECORD_PRECOPY = 1,
        SIM_RECORD_FINAL = 2,
};

typedef struct SimIdentity {
        const char *driver;
        uint16_t vendor_id, device_id;
} SimIdentity;

typedef struct SimBlob {
        uint8_t *data;
        uint32_t size;
        uint32_t n_pages;
        uint8_t *page_digests; /* n_pages * SIM_DIGEST_LEN */
} SimBlob;

static inline uint32_t sim_blob_n_pages(uint32_t size)
{
        return (size + SIM_PAGE_SIZE - 1) / SIM_PAGE_SIZE;
}

/* Within [SIM_BLOB_MIN, SIM_BLOB_MAX]. */
bool sim_blob_size_valid(uint32_t size);
/* Every page from (seed, generation). */
void sim_blob_generate(SimBlob *b, uint32_t size, uint64_t seed, uint64_t generation);
/* Takes the bytes of a loaded record; computes the page digests. */
void sim_blob_adopt(SimBlob *b, uint8_t *data, uint32_t size);
void sim_blob_clear(SimBlob *b);
void sim_blob_digest_hex(const SimBlob *b, char hex[2 * SIM_DIGEST_LEN + 1]);

/* The state file: whole reads and atomic writes (caller holds the device lock). */
int sim_blob_read_file(const char *path, uint32_t size, SimBlob *b, GError **error);
int sim_blob_write_file(const char *path, const SimBlob *b, GError **error);
/* Rewrites one page in place from (seed, generation) and returns the new digest; reads only
 * the page digests, so it costs one page whatever the blob size. */
int sim_blob_mutate_file(const char *path, uint32_t size, uint64_t seed, uint64_t generation,
                         char hex[2 * SIM_DIGEST_LEN + 1], GError **error);

/* Appends one record at the fd's end with pwrite, leaving the shared file offset alone. */
int sim_record_append(int fd, enum sim_record_kind kind, const SimIdentity *id, uint64_t seed,
                      uint64_t generation, const SimBlob *blob, GError **error);

typedef struct SimStreamFinal {
        uint64_t seed, generation;
        uint8_t *blob; /* owned: g_free, or hand to sim_blob_adopt */
        uint32_t blob_size;
        unsigned n_records;
} SimStreamFinal;

/* Parses a whole stream written for a device of identity self; -EINVAL with the defect
 * (empty, truncated, bad magic/version/kind, foreign, checksum, not ending in FINAL). */
int sim_stream_parse(const uint8_t *buf, size_t len, const SimIdentity *self, SimStreamFinal *ret,
                     GError **error);
/* Reads fd from offset 0 to its end with pread (the shared offset is left alone). */
int sim_fd_read_all(int fd, uint8_t **ret_buf, size_t *ret_len);

/*
 * The same, without holding a whole blob or stream in memory (what the backend uses): each
 * works through its fds one 256 KiB chunk at a time, whatever the blob or stream size.
 */
/* As sim_record_append, the blob read from the state file (checked against blob_size). */
int sim_record_append_from_state(int fd, enum sim_record_kind kind, const SimIdentity *id,
                                 uint64_t seed, uint64_t generation, const char *state_path,
                                 uint32_t blob_size, GError **error);
typedef struct SimStreamFinalRef {
        uint64_t seed, generation;
        uint64_t blob_offset; /* where the FINAL record's blob starts in the fd */
        uint32_t blob_size;
        unsigned n_records;
} SimStreamFinalRef;
/* As sim_stream_parse, on the whole of fd (pread from offset 0; -1 reads as empty). */
int sim_stream_check_fd(int fd, const SimIdentity *self, SimStreamFinalRef *ret, GError **error);
/* Writes the state file from the blob at offset in fd (page digests computed on the way)
 * through a temporary file and an atomic replace; hex is the new blob digest. */
int sim_blob_write_file_from_fd(const char *path, int fd, uint64_t offset, uint32_t size,
                                char hex[2 * SIM_DIGEST_LEN + 1], GError **error);

/* Writes data to path through a temporary file and an atomic replace; readers that use
 * sim_file_read (no device lock needed) see the old or the new version, never a mix. */
int sim_file_replace(const char *path, const void *data, size_t len, GError **error);
/* Reads a whole file written by sim_file_replace; NUL-terminated; -errno on failure. */
int sim_file_read(const char *path, char **ret_text, size_t *ret_len);
