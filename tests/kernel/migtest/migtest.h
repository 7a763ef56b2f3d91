/* SPDX-License-Identifier: GPL-2.0 */
/* vfio_migtest: a software mdev that migrates through the VFIO core's migration uAPI v2 */
#ifndef MIGTEST_H
#define MIGTEST_H

/*
 * Written against Linux 6.1 (Debian 12's kernel): migration callbacks live in
 * struct vfio_migration_ops (vfio_device.mig_ops), mdev parents register with
 * mdev_register_parent(), PRE_COPY does not exist yet.
 *
 * Locking, outermost first:
 *   migtest_device.state_mutex   one migration state change, reset, open/close at a time;
 *                                held across the injected arc latency
 *   migtest_list_lock            the device list and every device's peer_group
 *   migtest_device.data_lock     mig_state, the state blob, counters, digests, the arc log,
 *                                the injected delay and fault
 * Only one data_lock is ever held at a time, so peers can write into each other while
 * both run an arc in parallel.
 *
 * Errors: negative errno, as the VFIO core expects.
 */

#include <linux/list.h>
#include <linux/mdev.h>
#include <linux/mutex.h>
#include <linux/types.h>
#include <linux/vfio.h>
#include <crypto/sha2.h>

#define MIGTEST_GROUP_LEN 32   /* peer_group, with its NUL */
#define MIGTEST_LOG_ENTRIES 96 /* the arc log keeps this many of the last entries */
#define MIGTEST_CONFIG_SIZE 256

struct migtest_type {
	struct mdev_type type;
	const char *name; /* the type directory's name: "migtest-" + type.sysfs_name */
	u32 mig_flags;
};

/* An injected fault: the arc FROM>TO fails with -err; with to_error the device lands in ERROR. */
struct migtest_fault {
	bool armed;
	bool to_error;
	u8 from, to;
	int err; /* positive */
};

/* One line of the arc log. */
struct migtest_log_entry {
	u8 kind; /* MIGTEST_LOG_* */
	u8 from, to;
	int result; /* ARC: 0 or -errno */
	u64 start_ns, end_ns; /* ktime_get_ns() when the arc began and ended (arc_times) */
};

enum {
	MIGTEST_LOG_ARC,
	MIGTEST_LOG_ARC_TO_ERROR, /* the arc failed and left the device in ERROR */
	MIGTEST_LOG_RESET,
	MIGTEST_LOG_OPEN,
};

/* A data session (save or resume): the struct file's private data. */
struct migtest_file {
	struct file *filp;
	struct mutex lock; /* everything below */
	bool disabled; /* the device left the data state; reads and writes fail with ENODEV */
	u8 *buf;
	size_t len; /* save: the stream's length; resume: bytes written so far */
	size_t cap; /* resume: most bytes accepted */
};

struct migtest_device {
	struct vfio_device vdev;
	struct mdev_device *mdev;
	const struct migtest_type *type;
	u32 id;

	struct list_head node;              /* migtest_devices, under migtest_list_lock */
	char peer_group[MIGTEST_GROUP_LEN]; /* under migtest_list_lock; "" = no peers */

	struct mutex state_mutex; /* see the lock order above */
	struct migtest_file *saving;   /* under state_mutex */
	struct migtest_file *resuming; /* under state_mutex */

	struct mutex data_lock; /* everything below but vconfig (constant) */
	enum vfio_device_mig_state mig_state;
	u8 *state; /* internal state, state_len bytes, struct migtest_state_hdr first */
	size_t state_len;
	u64 resets;
	u64 peer_writes_while_stopped;
	u8 saved_digest[SHA256_DIGEST_SIZE]; /* the state as the last save stream carried it */
	u8 loaded_digest[SHA256_DIGEST_SIZE];
	bool saved, loaded;
	u32 loaded_from; /* the device id in the last stream loaded */
	char stream_error[80]; /* why the last load failed; "" when it did not */
	int delay_ms;          /* -1: the module parameter delay_ms */
	struct migtest_fault fault;
	struct migtest_log_entry log[MIGTEST_LOG_ENTRIES];
	unsigned int log_next;   /* total entries ever logged since the last clear */

	u8 vconfig[MIGTEST_CONFIG_SIZE];
};

/* The head of the internal state; the rest is payload bytes. Little-endian. */
struct migtest_state_hdr {
	__le64 generation;  /* bumped while running (timer tick, state GET) */
	__le64 writes_in;   /* peer writes received */
	__le64 writes_out;  /* peer writes issued */
	__le64 seed;
} __packed;

extern struct mutex migtest_list_lock;
extern struct list_head migtest_devices;
extern unsigned int migtest_delay_ms;
extern unsigned int migtest_state_bytes;

static inline struct migtest_device *vdev_to_migtest(struct vfio_device *vdev)
{
	return container_of(vdev, struct migtest_device, vdev);
}

const char *migtest_state_name(u32 state);
int migtest_state_parse(const char *s, size_t n, u8 *ret);

/* migtest-mig.c: the migration state machine, peers, the arc log */
extern const struct vfio_migration_ops migtest_mig_ops;
void migtest_mig_open(struct migtest_device *md);
void migtest_mig_close(struct migtest_device *md);
int migtest_mig_reset(struct migtest_device *md);
void migtest_log_add(struct migtest_device *md, u8 kind, u8 from, u8 to, int result,
		     u64 start_ns);
ssize_t migtest_log_show(struct migtest_device *md, char *buf, bool times);
void migtest_tick_start(void);
void migtest_tick_stop(void);

/*
 * migtest-stream.c: the state blob, the save stream, data files. Callers hold data_lock
 * for the blob functions.
 */
int migtest_state_alloc(struct migtest_device *md);
void migtest_state_free(struct migtest_device *md);
void migtest_state_generate(struct migtest_device *md, u64 seed);
void migtest_state_tick(struct migtest_device *md);
void migtest_state_peer_write(struct migtest_device *md, u32 writer_id);
void migtest_state_wrote_peers(struct migtest_device *md, u64 n);
void migtest_state_digest(struct migtest_device *md, u8 out[SHA256_DIGEST_SIZE]);
struct migtest_file *migtest_save_file_new(struct migtest_device *md);
struct migtest_file *migtest_resume_file_new(struct migtest_device *md);
int migtest_resume_load(struct migtest_device *md, struct migtest_file *migf);
void migtest_file_disable(struct migtest_file *migf);

#endif
