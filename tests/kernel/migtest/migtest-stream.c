// SPDX-License-Identifier: GPL-2.0
/* migtest-stream: the device's internal state, its save stream, and the data files */

#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "migtest.h"

/*
 * The save stream, all integers little-endian:
 *   struct migtest_stream_hdr | the state (state_len bytes) | SHA-256 of everything before
 * A stream loads into a device of the same type and state size only; the source's device
 * id travels along and shows up in the destination's loaded_from.
 */
#define MIGTEST_MAGIC "VMIGTEST"
#define MIGTEST_STREAM_VERSION 1

struct migtest_stream_hdr {
	u8 magic[8];
	__le32 version;
	__le32 hdr_len;
	char type[16]; /* NUL-padded type name, e.g. "migtest-p2p" */
	__le32 mig_flags;
	__le32 device_id;
	__le64 state_len;
} __packed;

static size_t migtest_stream_len(const struct migtest_device *md)
{
	return sizeof(struct migtest_stream_hdr) + md->state_len + SHA256_DIGEST_SIZE;
}

int migtest_state_alloc(struct migtest_device *md)
{
	md->state_len = migtest_state_bytes;
	md->state = kvzalloc(md->state_len, GFP_KERNEL);
	return md->state ? 0 : -ENOMEM;
}

void migtest_state_free(struct migtest_device *md)
{
	kvfree(md->state);
	md->state = NULL;
}

static struct migtest_state_hdr *state_hdr(struct migtest_device *md)
{
	return (struct migtest_state_hdr *)md->state;
}

static u8 *state_payload(struct migtest_device *md, size_t *len)
{
	*len = md->state_len - sizeof(struct migtest_state_hdr);
	return md->state + sizeof(struct migtest_state_hdr);
}

/* Fresh state from seed: what the device holds after creation and after a reset. */
void migtest_state_generate(struct migtest_device *md, u64 seed)
{
	struct migtest_state_hdr *h = state_hdr(md);
	u64 x = seed | 1;
	size_t len, i;
	u8 *p = state_payload(md, &len);

	for (i = 0; i < len; i++) {
		/* xorshift64*: cheap, and distinct for every seed */
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (x * 0x2545F4914F6CDD1DULL) >> 56;
	}
	h->generation = 0;
	h->writes_in = 0;
	h->writes_out = 0;
	h->seed = cpu_to_le64(seed);
}

/* The device runs: its state moves on. */
void migtest_state_tick(struct migtest_device *md)
{
	struct migtest_state_hdr *h = state_hdr(md);
	u64 gen = le64_to_cpu(h->generation) + 1;
	size_t len;
	u8 *p = state_payload(md, &len);

	h->generation = cpu_to_le64(gen);
	p[(gen * 2654435761ULL) % len] += (u8)gen | 1;
}

/* A peer's DMA lands in this device's memory. */
void migtest_state_peer_write(struct migtest_device *md, u32 writer_id)
{
	struct migtest_state_hdr *h = state_hdr(md);
	u64 n = le64_to_cpu(h->writes_in) + 1;
	size_t len;
	u8 *p = state_payload(md, &len);

	h->writes_in = cpu_to_le64(n);
	p[(n * 40503ULL + writer_id) % len] ^= (u8)(writer_id * 2 + 1);
}

/* This device's DMA landed in n peers. */
void migtest_state_wrote_peers(struct migtest_device *md, u64 n)
{
	struct migtest_state_hdr *h = state_hdr(md);

	h->writes_out = cpu_to_le64(le64_to_cpu(h->writes_out) + n);
}

void migtest_state_digest(struct migtest_device *md, u8 out[SHA256_DIGEST_SIZE])
{
	sha256(md->state, md->state_len, out);
}

void migtest_file_disable(struct migtest_file *migf)
{
	mutex_lock(&migf->lock);
	migf->disabled = true;
	mutex_unlock(&migf->lock);
}

static int migtest_file_release(struct inode *inode, struct file *filp)
{
	struct migtest_file *migf = filp->private_data;

	kvfree(migf->buf);
	mutex_destroy(&migf->lock);
	kfree(migf);
	return 0;
}

static ssize_t migtest_save_read(struct file *filp, char __user *buf, size_t len, loff_t *pos)
{
	struct migtest_file *migf = filp->private_data;
	ssize_t done;

	if (pos) /* stream_open(): reads come without a position */
		return -ESPIPE;
	pos = &filp->f_pos;

	mutex_lock(&migf->lock);
	if (migf->disabled) {
		done = -ENODEV;
		goto out;
	}
	if (*pos < 0 || *pos > migf->len) {
		done = -EINVAL;
		goto out;
	}
	len = min_t(size_t, len, migf->len - *pos);
	if (len && copy_to_user(buf, migf->buf + *pos, len)) {
		done = -EFAULT;
		goto out;
	}
	*pos += len;
	done = len;
out:
	mutex_unlock(&migf->lock);
	return done;
}

static ssize_t migtest_resume_write(struct file *filp, const char __user *buf, size_t len,
				    loff_t *pos)
{
	struct migtest_file *migf = filp->private_data;
	ssize_t done;

	if (pos)
		return -ESPIPE;

	mutex_lock(&migf->lock);
	if (migf->disabled) {
		done = -ENODEV;
		goto out;
	}
	/* Longer than any stream this device takes: keep the excess out of memory. */
	if (len > migf->cap - migf->len) {
		done = -EFBIG;
		goto out;
	}
	if (copy_from_user(migf->buf + migf->len, buf, len)) {
		done = -EFAULT;
		goto out;
	}
	migf->len += len;
	filp->f_pos += len;
	done = len;
out:
	mutex_unlock(&migf->lock);
	return done;
}

static const struct file_operations migtest_save_fops = {
	.owner = THIS_MODULE,
	.read = migtest_save_read,
	.release = migtest_file_release,
	.llseek = no_llseek,
};

static const struct file_operations migtest_resume_fops = {
	.owner = THIS_MODULE,
	.write = migtest_resume_write,
	.release = migtest_file_release,
	.llseek = no_llseek,
};

static struct migtest_file *migtest_file_new(const struct file_operations *fops, int flags,
					     size_t cap)
{
	struct migtest_file *migf;
	int err;

	migf = kzalloc(sizeof(*migf), GFP_KERNEL);
	if (!migf)
		return ERR_PTR(-ENOMEM);
	migf->buf = kvzalloc(cap, GFP_KERNEL);
	if (!migf->buf) {
		kfree(migf);
		return ERR_PTR(-ENOMEM);
	}
	migf->cap = cap;
	mutex_init(&migf->lock);
	migf->filp = anon_inode_getfile("vfio_migtest", fops, migf, flags);
	if (IS_ERR(migf->filp)) {
		err = PTR_ERR(migf->filp);
		kvfree(migf->buf);
		kfree(migf);
		return ERR_PTR(err);
	}
	stream_open(migf->filp->f_inode, migf->filp);
	return migf;
}

/* STOP -> STOP_COPY: the stream is the state as of this arc; the device is stopped. */
struct migtest_file *migtest_save_file_new(struct migtest_device *md)
{
	size_t slen = migtest_stream_len(md);
	struct migtest_stream_hdr *h;
	struct migtest_file *migf;

	migf = migtest_file_new(&migtest_save_fops, O_RDONLY, slen);
	if (IS_ERR(migf))
		return migf;

	h = (struct migtest_stream_hdr *)migf->buf;
	memcpy(h->magic, MIGTEST_MAGIC, sizeof(h->magic));
	h->version = cpu_to_le32(MIGTEST_STREAM_VERSION);
	h->hdr_len = cpu_to_le32(sizeof(*h));
	strscpy(h->type, md->type->name, sizeof(h->type));
	h->mig_flags = cpu_to_le32(md->type->mig_flags);
	h->device_id = cpu_to_le32(md->id);
	h->state_len = cpu_to_le64(md->state_len);

	mutex_lock(&md->data_lock);
	memcpy(migf->buf + sizeof(*h), md->state, md->state_len);
	migtest_state_digest(md, md->saved_digest);
	md->saved = true;
	mutex_unlock(&md->data_lock);

	sha256(migf->buf, slen - SHA256_DIGEST_SIZE, migf->buf + slen - SHA256_DIGEST_SIZE);
	migf->len = slen;
	return migf;
}

/* STOP -> RESUMING. */
struct migtest_file *migtest_resume_file_new(struct migtest_device *md)
{
	return migtest_file_new(&migtest_resume_fops, O_WRONLY, migtest_stream_len(md) + PAGE_SIZE);
}

/* Why buf (len bytes) is not a stream this device can load; NULL when it is one. */
static const char *migtest_stream_defect(struct migtest_device *md, const u8 *buf, size_t len,
					 char *why, size_t why_len)
{
	const struct migtest_stream_hdr *h = (const void *)buf;
	size_t want = migtest_stream_len(md);
	u8 digest[SHA256_DIGEST_SIZE];

	if (len < sizeof(*h)) {
		snprintf(why, why_len, "short: %zu bytes, not even a header", len);
		return why;
	}
	if (memcmp(h->magic, MIGTEST_MAGIC, sizeof(h->magic)))
		return "bad magic";
	if (le32_to_cpu(h->version) != MIGTEST_STREAM_VERSION ||
	    le32_to_cpu(h->hdr_len) != sizeof(*h))
		return "unknown stream version";
	if (strncmp(h->type, md->type->name, sizeof(h->type)) ||
	    le32_to_cpu(h->mig_flags) != md->type->mig_flags) {
		snprintf(why, why_len, "foreign: a %.16s stream, this is %s", h->type,
			 md->type->name);
		return why;
	}
	if (le64_to_cpu(h->state_len) != md->state_len) {
		snprintf(why, why_len, "foreign: state of %llu bytes, this device holds %zu",
			 le64_to_cpu(h->state_len), md->state_len);
		return why;
	}
	if (len < want) {
		snprintf(why, why_len, "short: %zu of %zu bytes", len, want);
		return why;
	}
	if (len > want) {
		snprintf(why, why_len, "%zu bytes after the end of the stream", len - want);
		return why;
	}
	sha256(buf, want - SHA256_DIGEST_SIZE, digest);
	if (memcmp(digest, buf + want - SHA256_DIGEST_SIZE, SHA256_DIGEST_SIZE))
		return "checksum mismatch";
	return NULL;
}

/* RESUMING -> STOP: load what was written, or fail and leave the device as it was. */
int migtest_resume_load(struct migtest_device *md, struct migtest_file *migf)
{
	const struct migtest_stream_hdr *h = (const void *)migf->buf;
	char why[sizeof(md->stream_error)];
	const char *defect;
	int ret = 0;

	mutex_lock(&migf->lock);
	defect = migtest_stream_defect(md, migf->buf, migf->len, why, sizeof(why));
	mutex_lock(&md->data_lock);
	if (defect) {
		strscpy(md->stream_error, defect, sizeof(md->stream_error));
		ret = -EINVAL;
	} else {
		memcpy(md->state, migf->buf + sizeof(*h), md->state_len);
		migtest_state_digest(md, md->loaded_digest);
		md->loaded = true;
		md->loaded_from = le32_to_cpu(h->device_id);
		md->stream_error[0] = '\0';
	}
	mutex_unlock(&md->data_lock);
	mutex_unlock(&migf->lock);
	if (defect)
		dev_info(&md->mdev->dev, "migtest: refusing the stream: %s\n", defect);
	return ret;
}
