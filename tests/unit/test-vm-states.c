/* test-vm-states: the loop serves a VM's states from its cache, never waiting on a device
 *
 * A fake device plays a kernel driver whose state lock is held by a step that never returns:
 * once it is stuck, MIG_DEVICE_STATE GET blocks as well. After the sequence reports it hung,
 * every read the bus serves on the loop (vm_state(), vm_device_state(), vm_plan_cached(), the
 * Abort's vm_plan()) must answer at once, from the cache, with its age growing. */
#include <errno.h>
#include <glib.h>
#include <systemd/sd-event.h>

#include "devices/device.h"
#include "util.h"
#include "vm.h"

typedef struct Stuck {
        GMutex lock;
        GCond cond;
        enum mig_state state;
        bool stick_on_stop; /* RUNNING_P2P -> STOP never returns, and GET waits for it */
        bool stuck, released;
        int gets; /* GETs that got through */
} Stuck;

static int stuck_get_state(Device *d, enum mig_state *ret)
{
        Stuck *s = d->backend_data;

        g_mutex_lock(&s->lock);
        while (s->stuck && !s->released)
                g_cond_wait(&s->cond, &s->lock);
        *ret = s->state;
        s->gets++;
        g_mutex_unlock(&s->lock);
        return 0;
}

static int stuck_set_state(Device *d, enum mig_state target, int *ret_fd)
{
        Stuck *s = d->backend_data;

        *ret_fd = -1;
        g_mutex_lock(&s->lock);
        if (target == MIG_STATE_STOP && s->stick_on_stop) {
                s->stuck = true;
                while (!s->released)
                        g_cond_wait(&s->cond, &s->lock);
                s->stuck = false;
        }
        s->state = target;
        g_mutex_unlock(&s->lock);
        return 0;
}

static int stuck_reset(Device *d)
{
        Stuck *s = d->backend_data;

        g_mutex_lock(&s->lock);
        s->state = MIG_STATE_RUNNING;
        g_mutex_unlock(&s->lock);
        return 0;
}

static void stuck_close(Device *d)
{
        Stuck *s = d->backend_data;

        g_mutex_clear(&s->lock);
        g_cond_clear(&s->cond);
        g_free(s);
}

/* No cancel op, as the kernel backend: an ioctl cannot be cancelled. */
static const DeviceOps stuck_ops = {
    .get_state = stuck_get_state,
    .set_state = stuck_set_state,
    .reset = stuck_reset,
    .close = stuck_close,
};

static Device *stuck_new(const char *name, bool stick_on_stop)
{
        Device *d = g_new0(Device, 1);
        Stuck *s = g_new0(Stuck, 1);

        g_mutex_init(&s->lock);
        g_cond_init(&s->cond);
        s->state = MIG_STATE_RUNNING;
        s->stick_on_stop = stick_on_stop;
        d->ops = &stuck_ops;
        d->backend_data = s;
        d->refcount = 1;
        d->info.name = g_strdup(name);
        d->info.migration_flags = MIG_FLAG_STOP_COPY | MIG_FLAG_P2P;
        return d;
}

static void release(Device *d)
{
        Stuck *s = d->backend_data;

        g_mutex_lock(&s->lock);
        s->released = true;
        g_cond_broadcast(&s->cond);
        g_mutex_unlock(&s->lock);
}

static bool is_stuck(Device *d)
{
        Stuck *s = d->backend_data;
        bool r;

        g_mutex_lock(&s->lock);
        r = s->stuck;
        g_mutex_unlock(&s->lock);
        return r;
}

static void on_done(Vm *vm, int error, const SeqReport *report, void *userdata)
{
        sd_event *event = userdata;

        g_assert_cmpint(error, ==, -ETIMEDOUT);
        g_assert_cmpuint(report->hung->len, ==, 1);
        (void)sd_event_exit(event, 0);
}

static void test_reads_after_a_hung_step_answer_from_the_cache(void)
{
        Device *devs[2] = {stuck_new("nic0", false), stuck_new("gpu0", true)};
        g_autoptr(GError) error = NULL;
        sd_event *event = NULL;
        VmOptions o;
        Vm *vm = NULL;
        Plan *plan = NULL;
        enum mig_state s;
        uint64_t t0;

        g_assert_cmpint(sd_event_new(&event), >=, 0);
        vm_options_init(&o);
        o.phase_deadline_ms = 20;
        g_assert_cmpint(vm_new(event, "vm1", devs, 2, &o, &vm), ==, 0);
        g_assert_cmpint(vm_start_operation(vm, PLAN_OP_QUIESCE, -1, NULL, on_done, event, &error),
                        ==, 0);
        g_assert_no_error(error);
        /* The deadline passes, the cancel grace (1 s) too: gpu0 is reported hung. */
        g_assert_cmpint(sd_event_loop(event), ==, 0);
        g_assert_true(is_stuck(devs[1]));

        /* None of these may wait for gpu0 (each would block until release() otherwise). */
        g_assert_cmpstr(vm_state(vm), !=, "");
        g_assert_cmpint(vm_device_state(vm, 1, &s), ==, 0);
        g_assert_cmpint(s, ==, MIG_STATE_RUNNING_P2P); /* the last state the sequencer saw */
        (void)vm_plan_cached(vm, PLAN_OP_SAVE, &plan, NULL);
        plan_free(g_steal_pointer(&plan));
        /* Abort's plan reads the devices that answer and keeps gpu0's last known state. */
        g_assert_cmpint(vm_plan(vm, PLAN_OP_ABORT, &plan, &error), ==, 0);
        g_assert_no_error(error);
        plan_free(g_steal_pointer(&plan));
        t0 = now_usec();
        g_usleep(VM_STATES_FRESH_USEC + 50000);
        (void)vm_state(vm); /* starts a refresh on a thread; gpu0 is not asked */
        g_assert_cmpuint(vm_states_age_usec(vm), >=, now_usec() - t0);
        g_assert_true(is_stuck(devs[1]));

        release(devs[1]);
        vm_free(vm);
        device_unref(devs[0]);
        device_unref(devs[1]);
        sd_event_unref(event);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/vm-states/reads-after-a-hung-step-answer-from-the-cache",
                        test_reads_after_a_hung_step_answer_from_the_cache);
        return g_test_run();
}
