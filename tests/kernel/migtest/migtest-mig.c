// SPDX-License-Identifier: GPL-2.0
/* migtest-mig: the migration state machine, peer writes, injected faults, the arc log */

#include <linux/file.h>
#include <linux/hrtimer.h>
#include <linux/sched/signal.h>
#include <linux/workqueue.h>

#include "migtest.h"

static unsigned int migtest_tick_ms = 10;
module_param_named(tick_ms, migtest_tick_ms, uint, 0644);
MODULE_PARM_DESC(tick_ms, "A running device's state moves on, and a RUNNING device writes into its peers, every tick_ms (0: never; default 10)");

static const char *const migtest_state_names[] = {
	[VFIO_DEVICE_STATE_ERROR] = "ERROR",
	[VFIO_DEVICE_STATE_STOP] = "STOP",
	[VFIO_DEVICE_STATE_RUNNING] = "RUNNING",
	[VFIO_DEVICE_STATE_STOP_COPY] = "STOP_COPY",
	[VFIO_DEVICE_STATE_RESUMING] = "RESUMING",
	[VFIO_DEVICE_STATE_RUNNING_P2P] = "RUNNING_P2P",
};

const char *migtest_state_name(u32 state)
{
	return state < ARRAY_SIZE(migtest_state_names) ? migtest_state_names[state] : "?";
}

/* The state named by the n bytes at s. */
int migtest_state_parse(const char *s, size_t n, u8 *ret)
{
	u8 i;

	for (i = 0; i < ARRAY_SIZE(migtest_state_names); i++) {
		if (strlen(migtest_state_names[i]) == n && !strncmp(s, migtest_state_names[i], n)) {
			*ret = i;
			return 0;
		}
	}
	return -EINVAL;
}

static bool migtest_state_stopped(enum vfio_device_mig_state s)
{
	return s == VFIO_DEVICE_STATE_STOP || s == VFIO_DEVICE_STATE_STOP_COPY ||
	       s == VFIO_DEVICE_STATE_RESUMING;
}

static bool migtest_state_running(enum vfio_device_mig_state s)
{
	return s == VFIO_DEVICE_STATE_RUNNING || s == VFIO_DEVICE_STATE_RUNNING_P2P;
}

/* ---- the arc log ---- */

/* start_ns: when the arc began (0: an event without duration, OPEN or RESET). */
void migtest_log_add(struct migtest_device *md, u8 kind, u8 from, u8 to, int result,
		     u64 start_ns)
{
	struct migtest_log_entry *e;
	u64 now = ktime_get_ns();

	mutex_lock(&md->data_lock);
	e = &md->log[md->log_next++ % MIGTEST_LOG_ENTRIES];
	*e = (struct migtest_log_entry){ .kind = kind, .from = from, .to = to, .result = result,
					 .start_ns = start_ns ?: now, .end_ns = now };
	mutex_unlock(&md->data_lock);
}

/*
 * arc_log, or with times arc_times: each line prefixed with when its arc began and ended,
 * in microseconds of CLOCK_MONOTONIC (one clock for every device, so the arcs of a VM can be
 * ordered and timed across devices). scnprintf stops at the page: 96 lines of arc_times
 * take about 4 KiB, and the tests clear the log long before that.
 */
ssize_t migtest_log_show(struct migtest_device *md, char *buf, bool times)
{
	unsigned int i, first;
	ssize_t n = 0;

	mutex_lock(&md->data_lock);
	first = md->log_next > MIGTEST_LOG_ENTRIES ? md->log_next - MIGTEST_LOG_ENTRIES : 0;
	if (first)
		n += scnprintf(buf + n, PAGE_SIZE - n, "...\n");
	for (i = first; i < md->log_next; i++) {
		const struct migtest_log_entry *e = &md->log[i % MIGTEST_LOG_ENTRIES];
		const char *from = migtest_state_name(e->from), *to = migtest_state_name(e->to);

		if (times)
			n += scnprintf(buf + n, PAGE_SIZE - n, "%llu %llu ",
				       div_u64(e->start_ns, NSEC_PER_USEC),
				       div_u64(e->end_ns, NSEC_PER_USEC));

		switch (e->kind) {
		case MIGTEST_LOG_ARC:
			if (e->result)
				n += scnprintf(buf + n, PAGE_SIZE - n, "%s>%s failed %d\n",
					       from, to, e->result);
			else
				n += scnprintf(buf + n, PAGE_SIZE - n, "%s>%s\n", from, to);
			break;
		case MIGTEST_LOG_ARC_TO_ERROR:
			n += scnprintf(buf + n, PAGE_SIZE - n, "%s>%s failed %d, ERROR\n", from, to,
				       e->result);
			break;
		case MIGTEST_LOG_RESET:
			n += scnprintf(buf + n, PAGE_SIZE - n, "RESET\n");
			break;
		case MIGTEST_LOG_OPEN:
			n += scnprintf(buf + n, PAGE_SIZE - n, "OPEN\n");
			break;
		}
	}
	mutex_unlock(&md->data_lock);
	return n;
}

/* ---- peers ---- */

/*
 * src's DMA lands in every device of its peer group. A write into a device that is stopped
 * (STOP, STOP_COPY, RESUMING) is what the P2P quiesce exists to prevent: counted there.
 * Caller holds migtest_list_lock and no data_lock.
 */
static void __migtest_write_peers(struct migtest_device *src)
{
	struct migtest_device *peer;
	u64 n = 0;

	if (!src->peer_group[0])
		return;
	list_for_each_entry(peer, &migtest_devices, node) {
		if (peer == src || strcmp(peer->peer_group, src->peer_group))
			continue;
		mutex_lock(&peer->data_lock);
		migtest_state_peer_write(peer, src->id);
		if (migtest_state_stopped(peer->mig_state))
			peer->peer_writes_while_stopped++;
		mutex_unlock(&peer->data_lock);
		n++;
	}
	if (n) {
		mutex_lock(&src->data_lock);
		migtest_state_wrote_peers(src, n);
		mutex_unlock(&src->data_lock);
	}
}

static void migtest_write_peers(struct migtest_device *src)
{
	mutex_lock(&migtest_list_lock);
	__migtest_write_peers(src);
	mutex_unlock(&migtest_list_lock);
}

/* ---- the running clock ---- */

static void migtest_tick_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(migtest_tick_work, migtest_tick_fn);
static bool migtest_ticking;

static void migtest_tick_fn(struct work_struct *work)
{
	unsigned int ms = READ_ONCE(migtest_tick_ms);
	struct migtest_device *md;
	bool writer;

	if (ms) {
		mutex_lock(&migtest_list_lock);
		list_for_each_entry(md, &migtest_devices, node) {
			mutex_lock(&md->data_lock);
			if (migtest_state_running(md->mig_state))
				migtest_state_tick(md);
			writer = md->mig_state == VFIO_DEVICE_STATE_RUNNING;
			mutex_unlock(&md->data_lock);
			if (writer)
				__migtest_write_peers(md);
		}
		mutex_unlock(&migtest_list_lock);
	}
	/* With ticks off, look again later: the parameter is writable at run time. */
	if (READ_ONCE(migtest_ticking))
		queue_delayed_work(system_wq, &migtest_tick_work, msecs_to_jiffies(ms ? ms : 100));
}

void migtest_tick_start(void)
{
	WRITE_ONCE(migtest_ticking, true);
	queue_delayed_work(system_wq, &migtest_tick_work, 0);
}

void migtest_tick_stop(void)
{
	WRITE_ONCE(migtest_ticking, false);
	cancel_delayed_work_sync(&migtest_tick_work);
}

/* ---- arcs ---- */

static void migtest_disable_fds(struct migtest_device *md)
{
	if (md->saving) {
		migtest_file_disable(md->saving);
		fput(md->saving->filp);
		md->saving = NULL;
	}
	if (md->resuming) {
		migtest_file_disable(md->resuming);
		fput(md->resuming->filp);
		md->resuming = NULL;
	}
}

static void migtest_set_mig_state(struct migtest_device *md, enum vfio_device_mig_state s)
{
	mutex_lock(&md->data_lock);
	md->mig_state = s;
	mutex_unlock(&md->data_lock);
}

/*
 * The injected latency, in an interruptible sleep on an hrtimer: msleep() would round
 * 20 ms up to whole jiffies plus one (24 ms at HZ=250).
 */
static int migtest_arc_delay(struct migtest_device *md)
{
	ktime_t end;
	int ms;

	mutex_lock(&md->data_lock);
	ms = md->delay_ms;
	mutex_unlock(&md->data_lock);
	if (ms < 0)
		ms = READ_ONCE(migtest_delay_ms);
	if (!ms)
		return 0;
	end = ktime_add_ms(ktime_get(), ms);
	for (;;) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (signal_pending(current)) {
			__set_current_state(TASK_RUNNING);
			return -EINTR;
		}
		if (!schedule_hrtimeout(&end, HRTIMER_MODE_ABS))
			return 0;
	}
}

/* The device's own work for one arc; the arcs are those vfio_mig_get_next_state() uses. */
static struct file *migtest_arc_action(struct migtest_device *md, u32 from, u32 to)
{
	struct migtest_file *migf;
	int ret;

	if (from == VFIO_DEVICE_STATE_STOP && to == VFIO_DEVICE_STATE_STOP_COPY) {
		migf = migtest_save_file_new(md);
		if (IS_ERR(migf))
			return ERR_CAST(migf);
		get_file(migf->filp);
		md->saving = migf;
		return migf->filp;
	}
	if (from == VFIO_DEVICE_STATE_STOP && to == VFIO_DEVICE_STATE_RESUMING) {
		migf = migtest_resume_file_new(md);
		if (IS_ERR(migf))
			return ERR_CAST(migf);
		get_file(migf->filp);
		md->resuming = migf;
		return migf->filp;
	}
	if (from == VFIO_DEVICE_STATE_RESUMING && to == VFIO_DEVICE_STATE_STOP) {
		ret = migtest_resume_load(md, md->resuming);
		if (ret)
			return ERR_PTR(ret);
	}
	/* Leaving STOP_COPY or RESUMING ends the data session (the uAPI's "end of stream"). */
	if (from == VFIO_DEVICE_STATE_STOP_COPY || from == VFIO_DEVICE_STATE_RESUMING)
		migtest_disable_fds(md);
	/* RUNNING <-> RUNNING_P2P, RUNNING_P2P <-> STOP, RUNNING <-> STOP: just the state. */
	return NULL;
}

static struct file *migtest_arc(struct migtest_device *md, u32 from, u32 to)
{
	struct migtest_fault fault;
	struct file *res;
	u64 start = ktime_get_ns();
	int ret;

	/* The last outbound DMA of a device that is about to quiesce or stop. */
	if (from == VFIO_DEVICE_STATE_RUNNING)
		migtest_write_peers(md);

	ret = migtest_arc_delay(md);
	if (ret) {
		migtest_log_add(md, MIGTEST_LOG_ARC, from, to, ret, start);
		return ERR_PTR(ret);
	}

	mutex_lock(&md->data_lock);
	fault = md->fault;
	mutex_unlock(&md->data_lock);
	if (fault.armed && fault.from == from && fault.to == to) {
		if (fault.to_error) {
			migtest_disable_fds(md);
			migtest_set_mig_state(md, VFIO_DEVICE_STATE_ERROR);
			migtest_log_add(md, MIGTEST_LOG_ARC_TO_ERROR, from, to, -fault.err, start);
		} else {
			migtest_log_add(md, MIGTEST_LOG_ARC, from, to, -fault.err, start);
		}
		return ERR_PTR(-fault.err);
	}

	res = migtest_arc_action(md, from, to);
	if (IS_ERR(res)) {
		migtest_log_add(md, MIGTEST_LOG_ARC, from, to, PTR_ERR(res), start);
		return res;
	}
	migtest_set_mig_state(md, to);
	migtest_log_add(md, MIGTEST_LOG_ARC, from, to, 0, start);

	/* The first DMA of a device that runs again. */
	if (to == VFIO_DEVICE_STATE_RUNNING)
		migtest_write_peers(md);
	return res;
}

static enum vfio_device_mig_state migtest_cur_state(struct migtest_device *md)
{
	enum vfio_device_mig_state s;

	mutex_lock(&md->data_lock);
	s = md->mig_state;
	mutex_unlock(&md->data_lock);
	return s;
}

/*
 * The loop of the real drivers (mlx5, hisi_acc): walk the kernel's path one arc at a time.
 * On failure the device stays where the failed arc started (or in ERROR, when the fault
 * says so); the VFIO core keeps no state of its own, copies the requested state back to
 * userspace and returns the error, so userspace must GET to learn where the device is.
 */
static struct file *migtest_set_state(struct vfio_device *vdev,
				      enum vfio_device_mig_state new_state)
{
	struct migtest_device *md = vdev_to_migtest(vdev);
	enum vfio_device_mig_state cur, next;
	struct file *res = NULL;
	int ret;

	mutex_lock(&md->state_mutex);
	cur = migtest_cur_state(md);
	/*
	 * Only VFIO_DEVICE_RESET leaves ERROR. vfio_mig_get_next_state() in 6.1 would refuse
	 * too, but with a WARN_ON (its flag table gives ERROR ~0U, which no device matches).
	 */
	if (cur == VFIO_DEVICE_STATE_ERROR) {
		res = ERR_PTR(-EINVAL);
		goto out;
	}
	while (new_state != cur) {
		ret = vfio_mig_get_next_state(vdev, cur, new_state, &next);
		if (ret) {
			res = ERR_PTR(ret);
			break;
		}
		res = migtest_arc(md, cur, next);
		if (IS_ERR(res))
			break;
		cur = next;
		if (WARN_ON(res && new_state != cur)) {
			fput(res);
			res = ERR_PTR(-EINVAL);
			break;
		}
	}
out:
	mutex_unlock(&md->state_mutex);
	return res;
}

static int migtest_get_state(struct vfio_device *vdev, enum vfio_device_mig_state *curr_state)
{
	struct migtest_device *md = vdev_to_migtest(vdev);

	mutex_lock(&md->data_lock);
	*curr_state = md->mig_state;
	/* A running device's state moves on between looks, even with the clock off. */
	if (migtest_state_running(md->mig_state))
		migtest_state_tick(md);
	mutex_unlock(&md->data_lock);
	return 0;
}

const struct vfio_migration_ops migtest_mig_ops = {
	.migration_set_state = migtest_set_state,
	.migration_get_state = migtest_get_state,
};

/* open_device: a fresh user finds the device RUNNING, as with mlx5 and hisi_acc. */
void migtest_mig_open(struct migtest_device *md)
{
	mutex_lock(&md->state_mutex);
	migtest_disable_fds(md);
	migtest_set_mig_state(md, VFIO_DEVICE_STATE_RUNNING);
	migtest_log_add(md, MIGTEST_LOG_OPEN, 0, 0, 0, 0);
	mutex_unlock(&md->state_mutex);
}

/* close_device: the uAPI wants every data fd at its end before close returns. */
void migtest_mig_close(struct migtest_device *md)
{
	mutex_lock(&md->state_mutex);
	migtest_disable_fds(md);
	mutex_unlock(&md->state_mutex);
}

/* VFIO_DEVICE_RESET: RUNNING again from any state, ERROR included; the state is lost. */
int migtest_mig_reset(struct migtest_device *md)
{
	mutex_lock(&md->state_mutex);
	migtest_disable_fds(md);
	mutex_lock(&md->data_lock);
	md->resets++;
	migtest_state_generate(md, ((u64)md->id << 32) | md->resets);
	md->mig_state = VFIO_DEVICE_STATE_RUNNING;
	mutex_unlock(&md->data_lock);
	migtest_log_add(md, MIGTEST_LOG_RESET, 0, 0, 0, 0);
	mutex_unlock(&md->state_mutex);
	return 0;
}
