/* offload: pure work on a worker thread, its continuation back on the event loop */
#pragma once

/*
 * For work a caller can make long (parsing a 16 MiB domain XML takes half a second) that
 * needs nothing the loop owns: work() runs on one of a few worker threads and may touch only
 * its data; done() then runs on the loop thread, in the order the work finished, where it
 * may use everything (the registry, the bus). The loop goes on serving others meanwhile.
 *
 * Errors: negative errno (-ENOMEM, the event loop's errors); offload_run() runs nothing when
 * it fails.
 */

#include <systemd/sd-event.h>

typedef struct Offload Offload;
typedef void (*OffloadFunc)(void *data);

/* At most max_threads pieces of work run at once; more wait their turn. */
int offload_new(sd_event *event, unsigned max_threads, Offload **ret);
/* Waits for the work in flight and runs the done() of all that finished. NULL is fine. */
void offload_free(Offload *o);

int offload_run(Offload *o, OffloadFunc work, OffloadFunc done, void *data);
