/* migstream: one byte stream carrying every device's migration data of a VM */
#pragma once

/*
 * Format (all integers little-endian):
 *   header  "VFIOMIG1" | u32 version (1) | u32 device count |
 *           per device: u16 name length | name | u32 migration flags | u16 vendor | u16 device
 *   frames  u32 magic 0x52464d56 ("VMFR") | u32 device index | u32 kind | u32 length | payload
 *           kind DATA: payload is the next piece of that device's data (chunks up to 1 MiB;
 *           devices may interleave); kind END: payload is the 32-byte SHA-256 of all of that
 *           device's data; kind TRAILER (index 0xffffffff): end of stream, no payload.
 * The reader checks magic, version, that every device index is known, each device's
 * SHA-256 and that every device saw END before TRAILER; anything else is -EBADMSG with a
 * sentence saying which device and which byte offset.
 *
 * Errors: 0 or negative errno, plus a GError sentence.
 */

#include <glib.h>
#include <stdint.h>

/* The numbers behind the format above. */
#define MIGSTREAM_MAGIC         "VFIOMIG1"
#define MIGSTREAM_VERSION       1u
#define MIGSTREAM_FRAME_MAGIC   0x52464d56u
#define MIGSTREAM_TRAILER_INDEX 0xffffffffu
#define MIGSTREAM_CHUNK_MAX     (1024u * 1024u)
enum migstream_frame_kind {
        MIGSTREAM_FRAME_DATA = 1,
        MIGSTREAM_FRAME_END = 2,
        MIGSTREAM_FRAME_TRAILER = 3,
};

typedef struct MigStreamDevice {
        const char *name;
        uint32_t flags;
        uint16_t vendor_id, device_id;
} MigStreamDevice;

typedef struct MigStreamWriter MigStreamWriter;
typedef struct MigStreamReader MigStreamReader;

/* Writes the header to out_fd (not owned). */
int migstream_writer_new(int out_fd, const MigStreamDevice *devices, size_t n,
                         MigStreamWriter **ret, GError **error);
/* Reads data_fd to EOF and frames it as device index; thread-safe (one call per device). */
int migstream_writer_pump(MigStreamWriter *w, size_t index, int data_fd, uint64_t *ret_bytes,
                          GError **error);
/* Writes the trailer; every device must have been pumped. */
int migstream_writer_finish(MigStreamWriter *w, GError **error);
void migstream_writer_free(MigStreamWriter *w);
/* Fail with -ETIMEDOUT when no byte moves on an fd for this long (0, the default: wait
 * forever). A stall bound, not a total: a big device over a slow link still completes. */
void migstream_writer_set_stall_timeout(MigStreamWriter *w, uint64_t usec);

/* Reads and checks the header from in_fd (not owned). */
int migstream_reader_new(int in_fd, MigStreamReader **ret, GError **error);
size_t migstream_reader_n_devices(const MigStreamReader *r);
const MigStreamDevice *migstream_reader_device(const MigStreamReader *r, size_t index);
/* Reads every frame to the trailer, writing device i's data to data_fds[i]; per-device byte
 * counts into ret_bytes[n] when not NULL. */
int migstream_reader_pump(MigStreamReader *r, const int *data_fds, size_t n, uint64_t *ret_bytes,
                          GError **error);
void migstream_reader_free(MigStreamReader *r);
/* As migstream_writer_set_stall_timeout(), for the stream and the device fds. */
void migstream_reader_set_stall_timeout(MigStreamReader *r, uint64_t usec);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MigStreamWriter, migstream_writer_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MigStreamReader, migstream_reader_free)
