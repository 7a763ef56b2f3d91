/* migstream: one byte stream carrying every device's migration data of a VM */
#pragma once

/*
 * Format (all integers little-endian):
 *   header  "VFIOMIG1" | u32 version (2) | u16 VM name length | VM name |
 *           16-byte migration id | u32 device count |
 *           per device: u16 name length | name | u32 migration flags | u16 vendor | u16 device
 *   frames  u32 magic 0x52464d56 ("VMFR") | u32 device index | u32 kind | u32 length | payload
 *           kind DATA: payload is the next piece of that device's data (chunks up to 1 MiB;
 *           devices may interleave); kind END: payload is the 32-byte SHA-256 of all of that
 *           device's data; kind TRAILER (index 0xffffffff): end of stream, no payload.
 * The VM name and the migration id (random, one per Save) bind a stream to the migration
 * that wrote it. Version 1 streams (no VM name, no id) are refused with a sentence.
 * The reader checks magic, version, that every device index is known, each device's
 * SHA-256 and that every device saw END before TRAILER; anything else is -EBADMSG with a
 * sentence saying which device and which byte offset.
 *
 * I/O: the stream fd is switched to O_NONBLOCK for the writer's or reader's lifetime (its
 * flags are restored by _free) and every read and write, the header's included, waits in
 * poll() on the fd and on MigStreamIo.abort_fd: -ECANCELED once the abort fd is readable,
 * -ETIMEDOUT when no byte moves for stall_us. Device data fds are polled the same way.
 * Memory is one chunk (1 MiB) per pumping device whatever the stream's size; a device whose
 * data passes max_device_bytes is refused (-EFBIG) by the writer and by the reader.
 *
 * Errors: 0 or negative errno, plus a GError sentence.
 */

#include <glib.h>
#include <stdint.h>

/* The numbers behind the format above. */
#define MIGSTREAM_MAGIC         "VFIOMIG1"
#define MIGSTREAM_VERSION       2u
#define MIGSTREAM_ID_SIZE       16u
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

/* How the stream waits; a zeroed struct with abort_fd -1, or NULL: wait forever, no limit. */
typedef struct MigStreamIo {
        uint64_t stall_us;         /* -ETIMEDOUT when no byte moves this long; 0: no bound */
        int abort_fd;              /* readable: -ECANCELED at once; -1: not abortable */
        uint64_t max_device_bytes; /* -EFBIG for a device with more data; 0: no limit */
        const char *setting;       /* names the limit in messages ("max-device-state-bytes") */
        const char *vm_name;       /* reader: the VM loading the stream, for messages */
} MigStreamIo;

typedef struct MigStreamWriter MigStreamWriter;
typedef struct MigStreamReader MigStreamReader;

/* A fresh random migration id, and its 32-character hex form (g_free). */
void migstream_id_generate(uint8_t id[MIGSTREAM_ID_SIZE]);
char *migstream_id_to_string(const uint8_t id[MIGSTREAM_ID_SIZE]);

/* Writes the header naming VM vm_name and migration id to out_fd (not owned). */
int migstream_writer_new(int out_fd, const char *vm_name, const uint8_t id[MIGSTREAM_ID_SIZE],
                         const MigStreamDevice *devices, size_t n, const MigStreamIo *io,
                         MigStreamWriter **ret, GError **error);
/* Reads data_fd to EOF and frames it as device index; thread-safe (one call per device). */
int migstream_writer_pump(MigStreamWriter *w, size_t index, int data_fd, uint64_t *ret_bytes,
                          GError **error);
/* Writes the trailer; every device must have been pumped. */
int migstream_writer_finish(MigStreamWriter *w, GError **error);
/* Bytes written so far (header and frames). */
uint64_t migstream_writer_offset(MigStreamWriter *w);
void migstream_writer_free(MigStreamWriter *w);

/* Reads and checks the header from in_fd (not owned). */
int migstream_reader_new(int in_fd, const MigStreamIo *io, MigStreamReader **ret, GError **error);
const char *migstream_reader_vm_name(const MigStreamReader *r);
const uint8_t *migstream_reader_migration_id(const MigStreamReader *r);
size_t migstream_reader_n_devices(const MigStreamReader *r);
const MigStreamDevice *migstream_reader_device(const MigStreamReader *r, size_t index);
/* Reads every frame to the trailer, writing device i's data to data_fds[i]; per-device byte
 * counts into ret_bytes[n] when not NULL. */
int migstream_reader_pump(MigStreamReader *r, const int *data_fds, size_t n, uint64_t *ret_bytes,
                          GError **error);
/* Bytes consumed so far. */
uint64_t migstream_reader_offset(const MigStreamReader *r);
void migstream_reader_free(MigStreamReader *r);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(MigStreamWriter, migstream_writer_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(MigStreamReader, migstream_reader_free)
