/* lv-event: libvirt's event loop implementation on the daemon's sd-event loop */
#pragma once

/*
 * libvirt needs an event loop for its connections' sockets, keepalives and the test driver's
 * event queue. Instead of a second loop on a thread of its own, lv_event_register() hands
 * libvirt (virEventRegisterImpl) functions that put its handles on sd_event_add_io() sources
 * and its timeouts on CLOCK_MONOTONIC time sources of the daemon's loop, so libvirt's
 * callbacks (domain events, the close callback) run on the loop thread like everything else.
 *
 * libvirt is called from the loop thread only. Removing a handle or timeout never calls its
 * free callback synchronously (libvirt may hold locks the callback takes): the frees are
 * deferred to the next loop iteration through an sd-event defer source, and
 * lv_event_unregister() runs the ones still pending.
 *
 * Registering must happen before the first virConnectOpen(), and at most once per process:
 * libvirt keeps the implementation for the process's lifetime. After lv_event_unregister()
 * the functions refuse new handles (-1) so a late libvirt call finds no dangling loop.
 *
 * Errors: negative errno.
 */

#include <systemd/sd-event.h>

/* Points libvirt at this loop; -EALREADY when a loop is registered already. */
int lv_event_register(sd_event *event);
/* Removes every remaining source, runs the pending free callbacks, detaches the loop. */
void lv_event_unregister(void);
/* Number of libvirt handles and timeouts currently on the loop (tests, debugging). */
unsigned lv_event_n_sources(void);
