// SPDX-License-Identifier: GPL-2.0
/*
 * vfio_migtest: a software mdev that migrates through the VFIO core's migration uAPI v2,
 * so vfio-migd's sequencing can be tested against the kernel's own state machine
 * (vfio_mig_get_next_state() and the MIG_DEVICE_STATE ioctl path).
 *
 * Types: migtest-sc (STOP_COPY), migtest-p2p (STOP_COPY | P2P). Each mdev is a VFIO device
 * in an IOMMU group of its own (vfio_register_emulated_iommu_dev), with a PCI config space
 * region and nothing else. Per-device controls and observations under
 * /sys/bus/mdev/devices/<UUID>/migtest/; see README.md beside this file.
 */

#include <linux/device.h>
#include <linux/idr.h>
#include <linux/module.h>
#include <linux/pci_regs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "migtest.h"

#define MIGTEST_NAME "migtest"
#define MIGTEST_VENDOR 0x1b36 /* Red Hat's ID, as QEMU's emulated devices use */
#define MIGTEST_DEVICE 0x7e57 /* made up: no such PCI device exists */
#define MIGTEST_OFFSET_SHIFT 40 /* vfio-pci's region offset encoding */
#define MIGTEST_OFFSET_MASK ((1ULL << MIGTEST_OFFSET_SHIFT) - 1)

unsigned int migtest_delay_ms;
module_param_named(delay_ms, migtest_delay_ms, uint, 0644);
MODULE_PARM_DESC(delay_ms, "Latency of every arc in ms, for devices whose own delay_ms is -1 (default 0)");

unsigned int migtest_state_bytes = 16384;
module_param_named(state_bytes, migtest_state_bytes, uint, 0444);
MODULE_PARM_DESC(state_bytes, "Size of each device's internal state (default 16384, 64 to 16 MiB)");

static unsigned int migtest_max_devices = 64;
module_param_named(max_devices, migtest_max_devices, uint, 0444);
MODULE_PARM_DESC(max_devices, "Most mdevs at a time, all types together (default 64)");

/* The device list and every device's peer_group (see migtest.h for the lock order). */
DEFINE_MUTEX(migtest_list_lock);
LIST_HEAD(migtest_devices);
static DEFINE_IDA(migtest_ida);

static struct migtest_type migtest_types[] = {
	{ .type.sysfs_name = "sc", .type.pretty_name = "migtest STOP_COPY",
	  .name = MIGTEST_NAME "-sc", .mig_flags = VFIO_MIGRATION_STOP_COPY },
	{ .type.sysfs_name = "p2p", .type.pretty_name = "migtest STOP_COPY|P2P",
	  .name = MIGTEST_NAME "-p2p",
	  .mig_flags = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P },
};

static struct mdev_type *migtest_mdev_types[] = {
	&migtest_types[0].type,
	&migtest_types[1].type,
};

static struct {
	struct class *class;
	struct device dev;
	struct mdev_parent parent;
} migtest_parent;

static const struct vfio_device_ops migtest_dev_ops;

/* ---- the VFIO device ---- */

static void migtest_config_init(struct migtest_device *md)
{
	u8 *c = md->vconfig;

	*(__le16 *)&c[PCI_VENDOR_ID] = cpu_to_le16(MIGTEST_VENDOR);
	*(__le16 *)&c[PCI_DEVICE_ID] = cpu_to_le16(MIGTEST_DEVICE);
	c[PCI_REVISION_ID] = 1;
	c[PCI_CLASS_DEVICE + 1] = 0xff; /* class: unassigned */
	*(__le16 *)&c[PCI_SUBSYSTEM_VENDOR_ID] = cpu_to_le16(MIGTEST_VENDOR);
	*(__le16 *)&c[PCI_SUBSYSTEM_ID] = cpu_to_le16(md->type->mig_flags);
}

static int migtest_init_dev(struct vfio_device *vdev)
{
	struct migtest_device *md = vdev_to_migtest(vdev);
	struct mdev_device *mdev = to_mdev_device(vdev->dev);
	int id, ret;

	md->mdev = mdev;
	md->type = container_of(mdev->type, struct migtest_type, type);
	id = ida_alloc_min(&migtest_ida, 1, GFP_KERNEL);
	if (id < 0)
		return id;
	md->id = id;
	mutex_init(&md->state_mutex);
	mutex_init(&md->data_lock);
	INIT_LIST_HEAD(&md->node);
	ret = migtest_state_alloc(md);
	if (ret) {
		ida_free(&migtest_ida, md->id);
		return ret;
	}
	migtest_state_generate(md, (u64)md->id << 32);
	md->mig_state = VFIO_DEVICE_STATE_RUNNING;
	md->delay_ms = -1;
	migtest_config_init(md);

	/* Static properties of the vfio_device: set before it is registered. */
	vdev->migration_flags = md->type->mig_flags;
	vdev->mig_ops = &migtest_mig_ops;
	return 0;
}

/* 6.1: the driver's release must call vfio_free_device() itself. */
static void migtest_release_dev(struct vfio_device *vdev)
{
	struct migtest_device *md = vdev_to_migtest(vdev);

	migtest_state_free(md);
	ida_free(&migtest_ida, md->id);
	mutex_destroy(&md->data_lock);
	mutex_destroy(&md->state_mutex);
	vfio_free_device(vdev);
}

static int migtest_open_device(struct vfio_device *vdev)
{
	migtest_mig_open(vdev_to_migtest(vdev));
	return 0;
}

static void migtest_close_device(struct vfio_device *vdev)
{
	migtest_mig_close(vdev_to_migtest(vdev));
}

/* The config space region; everything else has size 0. Writes are accepted and dropped. */
static ssize_t migtest_rw(struct migtest_device *md, char __user *ubuf, const char __user *wbuf,
			  size_t count, loff_t *ppos)
{
	unsigned int index = *ppos >> MIGTEST_OFFSET_SHIFT;
	u64 off = *ppos & MIGTEST_OFFSET_MASK;

	if (index != VFIO_PCI_CONFIG_REGION_INDEX || off >= MIGTEST_CONFIG_SIZE)
		return -EINVAL;
	count = min_t(size_t, count, MIGTEST_CONFIG_SIZE - off);
	if (ubuf && copy_to_user(ubuf, md->vconfig + off, count))
		return -EFAULT;
	*ppos += count;
	return count;
}

static ssize_t migtest_read(struct vfio_device *vdev, char __user *buf, size_t count,
			    loff_t *ppos)
{
	return migtest_rw(vdev_to_migtest(vdev), buf, NULL, count, ppos);
}

static ssize_t migtest_write(struct vfio_device *vdev, const char __user *buf, size_t count,
			     loff_t *ppos)
{
	return migtest_rw(vdev_to_migtest(vdev), NULL, buf, count, ppos);
}

static long migtest_ioctl(struct vfio_device *vdev, unsigned int cmd, unsigned long arg)
{
	struct migtest_device *md = vdev_to_migtest(vdev);
	void __user *uarg = (void __user *)arg;
	unsigned long minsz;

	switch (cmd) {
	case VFIO_DEVICE_GET_INFO: {
		struct vfio_device_info info;

		minsz = offsetofend(struct vfio_device_info, num_irqs);
		if (copy_from_user(&info, uarg, minsz))
			return -EFAULT;
		if (info.argsz < minsz)
			return -EINVAL;
		info.flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
		info.num_regions = VFIO_PCI_NUM_REGIONS;
		info.num_irqs = VFIO_PCI_NUM_IRQS;
		return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_GET_REGION_INFO: {
		struct vfio_region_info info;

		minsz = offsetofend(struct vfio_region_info, offset);
		if (copy_from_user(&info, uarg, minsz))
			return -EFAULT;
		if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_REGIONS)
			return -EINVAL;
		info.offset = (u64)info.index << MIGTEST_OFFSET_SHIFT;
		if (info.index == VFIO_PCI_CONFIG_REGION_INDEX) {
			info.size = MIGTEST_CONFIG_SIZE;
			info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
		} else {
			info.size = 0;
			info.flags = 0;
		}
		return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_GET_IRQ_INFO: {
		struct vfio_irq_info info;

		minsz = offsetofend(struct vfio_irq_info, count);
		if (copy_from_user(&info, uarg, minsz))
			return -EFAULT;
		if (info.argsz < minsz || info.index >= VFIO_PCI_NUM_IRQS)
			return -EINVAL;
		info.flags = 0;
		info.count = 0;
		return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
	}
	case VFIO_DEVICE_RESET:
		return migtest_mig_reset(md);
	}
	return -ENOTTY;
}

static const struct vfio_device_ops migtest_dev_ops = {
	.name = "vfio-migtest",
	.init = migtest_init_dev,
	.release = migtest_release_dev,
	.open_device = migtest_open_device,
	.close_device = migtest_close_device,
	.read = migtest_read,
	.write = migtest_write,
	.ioctl = migtest_ioctl,
};

/* ---- sysfs: /sys/bus/mdev/devices/<UUID>/migtest/ ---- */

static struct migtest_device *dev_to_migtest(struct device *dev)
{
	return dev_get_drvdata(dev);
}

#define MIGTEST_SHOW(name, fmt, expr)                                                   \
	static ssize_t name##_show(struct device *dev, struct device_attribute *attr,  \
				   char *buf)                                          \
	{                                                                              \
		struct migtest_device *md = dev_to_migtest(dev);                       \
		ssize_t n;                                                             \
											       \
		mutex_lock(&md->data_lock);                                            \
		n = sysfs_emit(buf, fmt "\n", expr);                                   \
		mutex_unlock(&md->data_lock);                                          \
		return n;                                                              \
	}

#define STATE_HDR(md) ((struct migtest_state_hdr *)(md)->state)

MIGTEST_SHOW(type, "%s", md->type->name)
MIGTEST_SHOW(id, "%u", md->id)
MIGTEST_SHOW(flags, "%u", md->type->mig_flags)
MIGTEST_SHOW(state, "%s", migtest_state_name(md->mig_state))
MIGTEST_SHOW(generation, "%llu", le64_to_cpu(STATE_HDR(md)->generation))
MIGTEST_SHOW(writes_in, "%llu", le64_to_cpu(STATE_HDR(md)->writes_in))
MIGTEST_SHOW(writes_out, "%llu", le64_to_cpu(STATE_HDR(md)->writes_out))
MIGTEST_SHOW(resets, "%llu", md->resets)
MIGTEST_SHOW(loaded_from, "%u", md->loaded_from)
MIGTEST_SHOW(stream_error, "%s", md->stream_error)
static DEVICE_ATTR_RO(type);
static DEVICE_ATTR_RO(id);
static DEVICE_ATTR_RO(flags);
static DEVICE_ATTR_RO(state);
static DEVICE_ATTR_RO(generation);
static DEVICE_ATTR_RO(writes_in);
static DEVICE_ATTR_RO(writes_out);
static DEVICE_ATTR_RO(resets);
static DEVICE_ATTR_RO(loaded_from);
static DEVICE_ATTR_RO(stream_error);

static ssize_t state_digest_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct migtest_device *md = dev_to_migtest(dev);
	u8 d[SHA256_DIGEST_SIZE];

	mutex_lock(&md->data_lock);
	migtest_state_digest(md, d);
	mutex_unlock(&md->data_lock);
	return sysfs_emit(buf, "%*phN\n", SHA256_DIGEST_SIZE, d);
}
static DEVICE_ATTR_RO(state_digest);

static ssize_t digest_show(struct migtest_device *md, const u8 *d, const bool *valid, char *buf)
{
	ssize_t n;

	mutex_lock(&md->data_lock);
	n = *valid ? sysfs_emit(buf, "%*phN\n", SHA256_DIGEST_SIZE, d) : sysfs_emit(buf, "-\n");
	mutex_unlock(&md->data_lock);
	return n;
}

static ssize_t saved_digest_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct migtest_device *md = dev_to_migtest(dev);

	return digest_show(md, md->saved_digest, &md->saved, buf);
}
static DEVICE_ATTR_RO(saved_digest);

static ssize_t loaded_digest_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct migtest_device *md = dev_to_migtest(dev);

	return digest_show(md, md->loaded_digest, &md->loaded, buf);
}
static DEVICE_ATTR_RO(loaded_digest);

static ssize_t peer_group_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct migtest_device *md = dev_to_migtest(dev);
	ssize_t n;

	mutex_lock(&migtest_list_lock);
	n = sysfs_emit(buf, "%s\n", md->peer_group);
	mutex_unlock(&migtest_list_lock);
	return n;
}

static ssize_t peer_group_store(struct device *dev, struct device_attribute *attr,
				const char *buf, size_t count)
{
	struct migtest_device *md = dev_to_migtest(dev);
	size_t n = strcspn(buf, "\n");

	if (n >= MIGTEST_GROUP_LEN)
		return -ENAMETOOLONG;
	mutex_lock(&migtest_list_lock);
	memcpy(md->peer_group, buf, n);
	md->peer_group[n] = '\0';
	mutex_unlock(&migtest_list_lock);
	return count;
}
static DEVICE_ATTR_RW(peer_group);

static ssize_t peer_writes_while_stopped_show(struct device *dev, struct device_attribute *attr,
					      char *buf)
{
	struct migtest_device *md = dev_to_migtest(dev);
	ssize_t n;

	mutex_lock(&md->data_lock);
	n = sysfs_emit(buf, "%llu\n", md->peer_writes_while_stopped);
	mutex_unlock(&md->data_lock);
	return n;
}

/* Writing 0 clears the counter. */
static ssize_t peer_writes_while_stopped_store(struct device *dev,
					       struct device_attribute *attr, const char *buf,
					       size_t count)
{
	struct migtest_device *md = dev_to_migtest(dev);
	u64 v;

	if (kstrtou64(buf, 0, &v) || v)
		return -EINVAL;
	mutex_lock(&md->data_lock);
	md->peer_writes_while_stopped = 0;
	mutex_unlock(&md->data_lock);
	return count;
}
static DEVICE_ATTR_RW(peer_writes_while_stopped);

static ssize_t delay_ms_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct migtest_device *md = dev_to_migtest(dev);
	ssize_t n;

	mutex_lock(&md->data_lock);
	n = sysfs_emit(buf, "%d\n", md->delay_ms);
	mutex_unlock(&md->data_lock);
	return n;
}

/* -1: the module's delay_ms; 0..60000: this device's latency per arc. */
static ssize_t delay_ms_store(struct device *dev, struct device_attribute *attr, const char *buf,
			      size_t count)
{
	struct migtest_device *md = dev_to_migtest(dev);
	int v;

	if (kstrtoint(buf, 0, &v) || v < -1 || v > 60000)
		return -EINVAL;
	mutex_lock(&md->data_lock);
	md->delay_ms = v;
	mutex_unlock(&md->data_lock);
	return count;
}
static DEVICE_ATTR_RW(delay_ms);

static ssize_t fault_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct migtest_device *md = dev_to_migtest(dev);
	struct migtest_fault f;

	mutex_lock(&md->data_lock);
	f = md->fault;
	mutex_unlock(&md->data_lock);
	if (!f.armed)
		return sysfs_emit(buf, "none\n");
	return sysfs_emit(buf, "%s>%s %s %d\n", migtest_state_name(f.from),
			  migtest_state_name(f.to), f.to_error ? "error" : "errno", f.err);
}

/*
 * "FROM>TO errno N": the arc fails with -N, the device stays in FROM.
 * "FROM>TO error [N]": the arc fails with -N (default EIO), the device falls into ERROR.
 * "none": no fault. A fault stays armed until replaced.
 */
static ssize_t fault_store(struct device *dev, struct device_attribute *attr, const char *buf,
			   size_t count)
{
	struct migtest_device *md = dev_to_migtest(dev);
	struct migtest_fault f = { .armed = true, .err = EIO };
	char arc[32], kind[8];
	const char *gt;
	int n, fields;

	if (sysfs_streq(buf, "none") || sysfs_streq(buf, "")) {
		f.armed = false;
		goto set;
	}
	fields = sscanf(buf, "%31s %7s %d", arc, kind, &n);
	if (fields < 2)
		return -EINVAL;
	gt = strchr(arc, '>');
	if (!gt || migtest_state_parse(arc, gt - arc, &f.from) ||
	    migtest_state_parse(gt + 1, strlen(gt + 1), &f.to))
		return -EINVAL;
	if (!strcmp(kind, "errno")) {
		if (fields < 3)
			return -EINVAL;
	} else if (!strcmp(kind, "error")) {
		f.to_error = true;
		if (fields < 3)
			n = EIO;
	} else {
		return -EINVAL;
	}
	if (n <= 0 || n >= MAX_ERRNO)
		return -EINVAL;
	f.err = n;
set:
	mutex_lock(&md->data_lock);
	md->fault = f;
	mutex_unlock(&md->data_lock);
	return count;
}
static DEVICE_ATTR_RW(fault);

static ssize_t arc_log_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return migtest_log_show(dev_to_migtest(dev), buf, false);
}

/* Any write clears the log. */
static ssize_t arc_log_store(struct device *dev, struct device_attribute *attr, const char *buf,
			     size_t count)
{
	struct migtest_device *md = dev_to_migtest(dev);

	mutex_lock(&md->data_lock);
	md->log_next = 0;
	mutex_unlock(&md->data_lock);
	return count;
}
static DEVICE_ATTR_RW(arc_log);

/* The same log with each arc's start and end (µs, CLOCK_MONOTONIC): the benchmarks' clock. */
static ssize_t arc_times_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return migtest_log_show(dev_to_migtest(dev), buf, true);
}
static DEVICE_ATTR_RO(arc_times);

static struct attribute *migtest_attrs[] = {
	&dev_attr_type.attr,
	&dev_attr_id.attr,
	&dev_attr_flags.attr,
	&dev_attr_state.attr,
	&dev_attr_generation.attr,
	&dev_attr_writes_in.attr,
	&dev_attr_writes_out.attr,
	&dev_attr_resets.attr,
	&dev_attr_state_digest.attr,
	&dev_attr_saved_digest.attr,
	&dev_attr_loaded_digest.attr,
	&dev_attr_loaded_from.attr,
	&dev_attr_stream_error.attr,
	&dev_attr_peer_group.attr,
	&dev_attr_peer_writes_while_stopped.attr,
	&dev_attr_delay_ms.attr,
	&dev_attr_fault.attr,
	&dev_attr_arc_log.attr,
	&dev_attr_arc_times.attr,
	NULL,
};

static const struct attribute_group migtest_attr_group = {
	.name = MIGTEST_NAME,
	.attrs = migtest_attrs,
};

static const struct attribute_group *migtest_attr_groups[] = {
	&migtest_attr_group,
	NULL,
};

/* ---- the mdev driver and parent ---- */

static int migtest_probe(struct mdev_device *mdev)
{
	struct migtest_device *md;
	int ret;

	md = vfio_alloc_device(migtest_device, vdev, &mdev->dev, &migtest_dev_ops);
	if (IS_ERR(md))
		return PTR_ERR(md);
	dev_set_drvdata(&mdev->dev, md);
	ret = vfio_register_emulated_iommu_dev(&md->vdev);
	if (ret) {
		vfio_put_device(&md->vdev);
		return ret;
	}
	mutex_lock(&migtest_list_lock);
	list_add_tail(&md->node, &migtest_devices);
	mutex_unlock(&migtest_list_lock);
	return 0;
}

static void migtest_remove(struct mdev_device *mdev)
{
	struct migtest_device *md = dev_get_drvdata(&mdev->dev);

	mutex_lock(&migtest_list_lock);
	list_del_init(&md->node);
	mutex_unlock(&migtest_list_lock);
	vfio_unregister_group_dev(&md->vdev);
	vfio_put_device(&md->vdev);
}

static ssize_t migtest_show_description(struct mdev_type *mtype, char *buf)
{
	struct migtest_type *t = container_of(mtype, struct migtest_type, type);

	return sysfs_emit(buf, "migration test device, VFIO migration flags 0x%x\n",
			  t->mig_flags);
}

static struct mdev_driver migtest_driver = {
	.device_api = VFIO_DEVICE_API_PCI_STRING,
	.driver = {
		.name = "vfio_migtest",
		.owner = THIS_MODULE,
		.mod_name = KBUILD_MODNAME,
		.dev_groups = migtest_attr_groups,
	},
	.probe = migtest_probe,
	.remove = migtest_remove,
	.show_description = migtest_show_description,
};

static void migtest_parent_release(struct device *dev)
{
}

static int __init migtest_init(void)
{
	int ret;

	if (migtest_state_bytes < sizeof(struct migtest_state_hdr) + 32 ||
	    migtest_state_bytes > (16u << 20)) {
		pr_err("vfio_migtest: state_bytes=%u is outside 64..16777216\n",
		       migtest_state_bytes);
		return -EINVAL;
	}
	migtest_driver.max_instances = migtest_max_devices;
	ret = mdev_register_driver(&migtest_driver);
	if (ret)
		return ret;

	/* The class name is the prefix of the type directories: migtest-sc, migtest-p2p. */
	migtest_parent.class = class_create(THIS_MODULE, MIGTEST_NAME);
	if (IS_ERR(migtest_parent.class)) {
		ret = PTR_ERR(migtest_parent.class);
		goto err_driver;
	}
	migtest_parent.dev.class = migtest_parent.class;
	migtest_parent.dev.release = migtest_parent_release;
	dev_set_name(&migtest_parent.dev, "%s", MIGTEST_NAME);
	ret = device_register(&migtest_parent.dev);
	if (ret) {
		put_device(&migtest_parent.dev);
		goto err_class;
	}
	ret = mdev_register_parent(&migtest_parent.parent, &migtest_parent.dev, &migtest_driver,
				   migtest_mdev_types, ARRAY_SIZE(migtest_mdev_types));
	if (ret)
		goto err_device;
	migtest_tick_start();
	return 0;

err_device:
	device_unregister(&migtest_parent.dev);
err_class:
	class_destroy(migtest_parent.class);
err_driver:
	mdev_unregister_driver(&migtest_driver);
	return ret;
}

static void __exit migtest_exit(void)
{
	migtest_tick_stop();
	mdev_unregister_parent(&migtest_parent.parent);
	device_unregister(&migtest_parent.dev);
	class_destroy(migtest_parent.class);
	mdev_unregister_driver(&migtest_driver);
	ida_destroy(&migtest_ida);
}

module_init(migtest_init);
module_exit(migtest_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("VFIO migration test device (mdev) for vfio-migd");
