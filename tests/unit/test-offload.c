/* test-offload: work runs on a worker thread, its continuation on the event loop */
#include <glib.h>
#include <systemd/sd-event.h>

#include "offload.h"

typedef struct Job {
        GThread *loop_thread, *work_thread, *done_thread;
        int *finished;
        int order;
        sd_event *event;
        int expected;
} Job;

static void job_work(void *data)
{
        Job *j = data;

        j->work_thread = g_thread_self();
}

static void job_done(void *data)
{
        Job *j = data;

        j->done_thread = g_thread_self();
        j->order = ++*j->finished;
        if (j->event && *j->finished == j->expected)
                sd_event_exit(j->event, 0);
}

static void test_work_off_the_loop_done_on_it(void)
{
        sd_event *event = NULL;
        Offload *o = NULL;
        Job jobs[8] = {0};
        int finished = 0;

        g_assert_cmpint(sd_event_new(&event), >=, 0);
        g_assert_cmpint(offload_new(event, 2, &o), ==, 0);
        for (size_t i = 0; i < G_N_ELEMENTS(jobs); i++) {
                jobs[i] = (Job){
                    .finished = &finished, .event = event, .expected = (int)G_N_ELEMENTS(jobs)};
                g_assert_cmpint(offload_run(o, job_work, job_done, &jobs[i]), ==, 0);
        }
        g_assert_cmpint(sd_event_loop(event), ==, 0);
        for (size_t i = 0; i < G_N_ELEMENTS(jobs); i++) {
                g_assert_true(jobs[i].work_thread != g_thread_self());
                g_assert_true(jobs[i].done_thread == g_thread_self());
                g_assert_cmpint(jobs[i].order, >=, 1);
        }
        offload_free(o);
        sd_event_unref(event);
}

static void test_free_runs_what_is_left(void)
{
        sd_event *event = NULL;
        Offload *o = NULL;
        Job job = {0};
        int finished = 0;

        job.finished = &finished;
        g_assert_cmpint(sd_event_new(&event), >=, 0);
        g_assert_cmpint(offload_new(event, 1, &o), ==, 0);
        g_assert_cmpint(offload_run(o, job_work, job_done, &job), ==, 0);
        /* The loop never ran: free waits for the work and runs its continuation. */
        offload_free(o);
        g_assert_cmpint(finished, ==, 1);
        g_assert_true(job.done_thread == g_thread_self());
        sd_event_unref(event);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/offload/work-off-the-loop-done-on-it", test_work_off_the_loop_done_on_it);
        g_test_add_func("/offload/free-runs-what-is-left", test_free_runs_what_is_left);
        return g_test_run();
}
