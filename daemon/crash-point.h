/* crash-point: named places where a test build can make the daemon die, one at a time */
#pragma once

/*
 * crash_point("journal-begin") marks a place where a crash must leave every device in a
 * state its VM's journal record explains. In a build with -Dcrash_points=enabled (on
 * whenever the tests are built) the points are counted, process-wide and across threads,
 * in the order they are reached:
 *
 *   VFIO_MIGD_CRASH_AT=N     abort() at the N-th point reached (1-based), after logging
 *                            "crash point N: NAME: aborting"
 *   VFIO_MIGD_CRASH_COUNT=1  log "crash point N: NAME" at each point reached
 *   VFIO_MIGD_CRASH_ARM=FILE count only while FILE exists (the test creates it just before
 *                            the operation it walks, so start-up and set-up do not count)
 *   VFIO_MIGD_CRASH_NAME=NAME count only the points of that name: N is then its N-th
 *                            occurrence (points of different threads interleave, and a
 *                            deferred journal write comes sooner or later: by name, every
 *                            point the count saw is reached, whatever the timing)
 *   VFIO_MIGD_CRASH_FILL_AT=N, VFIO_MIGD_CRASH_FILL_FILE=FILE
 *                            at the N-th point, grow FILE until its file system is full
 *                            (a state directory on a small tmpfs: a full disk at that point)
 *
 * tests/dbus/test_crash_points.py counts an operation's points, then crashes it at each
 * one in turn. Without the option crash_point() is an empty inline: nothing is compiled in.
 * Thread-safe; no errors.
 */

#ifdef VFIO_MIGD_CRASH_POINTS
void crash_point(const char *name);
#else
static inline void crash_point(const char *name)
{
        (void)name;
}
#endif
