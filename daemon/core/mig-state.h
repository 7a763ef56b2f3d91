/* mig-state: the kernel's VFIO migration states, flags and the path function */
#pragma once

/*
 * Mirrors enum vfio_device_mig_state and VFIO_MIGRATION_* of the kernel's uAPI
 * (include/uapi/linux/vfio.h, 6.2+). Pure logic: no I/O, no globals.
 *
 * Errors: functions returning int return 0 on success or a negative errno.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mig_state {
        MIG_STATE_ERROR = 0,
        MIG_STATE_STOP = 1,
        MIG_STATE_RUNNING = 2,
        MIG_STATE_STOP_COPY = 3,
        MIG_STATE_RESUMING = 4,
        MIG_STATE_RUNNING_P2P = 5,
        MIG_STATE_PRE_COPY = 6,
        MIG_STATE_PRE_COPY_P2P = 7,
        MIG_STATE_COUNT = 8,
};

#define MIG_FLAG_STOP_COPY (UINT32_C(1) << 0)
#define MIG_FLAG_P2P       (UINT32_C(1) << 1)
#define MIG_FLAG_PRE_COPY  (UINT32_C(1) << 2)
#define MIG_FLAGS_KNOWN    (MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY)

/* The longest path the kernel walks has 5 states (e.g. PRE_COPY RUNNING RUNNING_P2P STOP RESUMING). */
#define MIG_PATH_MAX 8

const char *mig_state_to_string(enum mig_state state);
/* Accepts the kernel's names ("RUNNING_P2P") case-insensitively; -EINVAL otherwise. */
int mig_state_from_string(const char *s, enum mig_state *ret);

/* "STOP_COPY|P2P|PRE_COPY"; "none" for 0. Returns a static string. */
const char *mig_flags_to_string(uint32_t flags);
/* Parses "STOP_COPY|P2P", "SC|P2P|PC", "none" or a number; -EINVAL on unknown names. */
int mig_flags_from_string(const char *s, uint32_t *ret);

/* A device with these flags can be put into this state (ERROR never can). */
bool mig_state_supported(uint32_t flags, enum mig_state state);
/* RUNNING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P: the device executes. */
bool mig_state_is_running(enum mig_state state);
/* RUNNING and PRE_COPY: the device may initiate peer-to-peer DMA. */
bool mig_state_initiates_p2p(enum mig_state state);
/* PRE_COPY, PRE_COPY_P2P, STOP_COPY: a save session with a data fd is open. */
bool mig_state_is_saving(enum mig_state state);
/* The arc from -> to hands out a new data fd (RUNNING->PRE_COPY, RUNNING_P2P->PRE_COPY_P2P,
 * STOP->STOP_COPY, STOP->RESUMING). */
bool mig_arc_opens_data_fd(enum mig_state from, enum mig_state to);

/* The kernel's vfio_mig_get_next_state(): the next direct arc from cur towards target. */
int mig_next_state(uint32_t flags, enum mig_state cur, enum mig_state target, enum mig_state *ret);

/*
 * Every state the kernel walks for a (from -> to) request, from first to last, into
 * path[MIG_PATH_MAX]; *ret_len is the number of states (1 when from == to).
 * -EINVAL where the kernel refuses the request, including STOP_COPY -> PRE_COPY(_P2P),
 * which some kernels never return from and so must never reach a device.
 */
int mig_path(uint32_t flags, enum mig_state from, enum mig_state to,
             enum mig_state path[MIG_PATH_MAX], size_t *ret_len);

/* "RUNNING>RUNNING_P2P>STOP" into buf; returns buf. */
char *mig_path_format(const enum mig_state *path, size_t len, char *buf, size_t size);
