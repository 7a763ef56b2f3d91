/* sim: simulated migration devices, one file each in a state directory */
#pragma once

/*
 * A product feature (demo, dry runs, CI), not a test hack. Each device is DIR/<name>.json
 * (identity, flags, state, generation, latency, faults, corruption events) plus
 * DIR/<name>.state (the internal state blob). Files outlive the process, as a real device
 * outlives its user; every change is a locked read-modify-write with an atomic rename, so
 * several processes (the daemon, vfio-migsim, tests) may use one directory at once.
 *
 * Behaviour, modelled on the kernel's uAPI (../shared/reference/vfio-uapi.md):
 * - set_state walks mig_path() arc by arc, sleeping the arc's latency, writing the state
 *   after each arc; faults are matched per arc.
 * - The internal state changes (generation++, blob mutated) on every arc that leaves a
 *   running state, so a late stop is visible.
 * - Data fds are real fds, unlinked files in the device directory (the device's storage, not
 *   the daemon's memory): save streams carry records of header, blob and SHA-256, written
 *   and read a chunk at a time; RESUMING->STOP validates what was written and fails with
 *   -EINVAL on a truncated, corrupted or foreign (other vendor:device or driver) stream,
 *   leaving the device RESUMING.
 * - Devices with the same non-empty p2p_group are peers with P2P mappings: a device that is
 *   stopped (STOP, STOP_COPY, RESUMING) while a peer is RUNNING or PRE_COPY (able to initiate
 *   P2P DMA) records a corruption event on the stopped device.
 * - Peers are found through an index, DIR/.p2p/@GROUP/NAME (an empty file per device of a
 *   group) plus DIR/.p2p/complete, kept by create, remove and set_p2p_group under the
 *   device's lock, so an arc reads its peers' files, not every file of the directory. A
 *   directory without the marker (made by an older version) is scanned in full once and the
 *   index rebuilt. A device file whose p2p_group was edited by hand gets its entry on its
 *   next write; to be sure, remove DIR/.p2p while nothing runs. Directory watchers should
 *   ignore dot files: .p2p, .NAME.lock and the .NAME.json.tmp / .NAME.state.tmp spares.
 * - Files are 0600 and never opened through a link: a spare that is not a regular file of
 *   ours with one link is unlinked and created again (O_EXCL|O_NOFOLLOW), a lock or device
 *   file that is a link is refused (-ELOOP), and the directory itself must pass
 *   sim_dir_check().
 *
 * Errors: 0 or negative errno; functions taking GError** also fill it with a sentence
 * naming the file or input and what would fix it.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/mig-state.h"
#include "devices/device.h"

enum sim_fault_action {
        SIM_FAULT_FAIL,  /* the arc fails with errno; device left per 'leave' */
        SIM_FAULT_ERROR, /* the arc fails with errno and the device falls into ERROR */
        SIM_FAULT_HANG,  /* the arc blocks until the fault is removed or cancel is called */
};

enum sim_fault_leave {
        SIM_LEAVE_ORIGINAL,     /* back to the state the request started from */
        SIM_LEAVE_INTERMEDIATE, /* stays at the failing arc's start state */
};

typedef struct SimFault {
        enum mig_state from; /* the arc; MIG_STATE_COUNT in from/to means any */
        enum mig_state to;
        enum sim_fault_action action;
        enum sim_fault_leave leave;
        int error;           /* positive errno reported, default EIO */
        unsigned remaining;  /* times left to fire; 0 = every time */
} SimFault;

typedef struct SimSpec {
        const char *name;        /* [A-Za-z0-9_.:-]{1,64} */
        const char *driver;      /* default "sim_vfio_pci" */
        uint16_t vendor_id;
        uint16_t device_id;
        uint32_t flags;          /* MIG_FLAG_*, any of the four real sets (or 0: not migratable) */
        const char *iommu_group; /* default: the name */
        const char *p2p_group;   /* NULL/"": no peers */
        uint32_t blob_size;      /* internal state size, default 65536 */
        uint32_t latency_ms;     /* default per-arc latency */
        uint64_t seed;           /* initial state seed; 0: derived from the name */
} SimSpec;

typedef struct SimEvent {
        char *time;              /* ISO 8601 */
        enum mig_state state;    /* this device's state when corrupted */
        char *peer;
        enum mig_state peer_state;
} SimEvent;

/* A snapshot of one device file. */
typedef struct SimDevice {
        char *name, *driver, *iommu_group, *p2p_group;
        uint16_t vendor_id, device_id;
        uint32_t flags;
        enum mig_state state;
        uint64_t generation;
        uint32_t blob_size;
        char *blob_sha256;       /* hex digest of the current internal state blob */
        uint32_t latency_ms;
        GHashTable *arc_latency_ms; /* "FROM>TO" -> GUINT_TO_POINTER(ms) */
        GArray *faults;          /* SimFault */
        GPtrArray *events;       /* SimEvent*: corruption events */
        uint64_t loads, saves, resets;
        /* Digest of the state the last save sent and the last load took in (NULL: none yet):
         * the proof that a state arrived intact, since a running device's state moves on. */
        char *saved_sha256, *loaded_sha256;
        uint64_t seed;           /* what the blob's pages are generated from */
        uint64_t events_dropped; /* older events dropped to keep the newest SIM_EVENTS_MAX */
        /* Reset since its last arc: a function-level reset clears the PCI command register's
         * Bus Master Enable, so the device initiates no DMA, P2P included, until it moves
         * again (on real hardware: until its driver sets the bit). */
        bool dma_off;
} SimDevice;

/* A naive sequence over many peers records events on every arc; the file is read on every
 * arc, so it keeps only the newest ones. */
#define SIM_EVENTS_MAX 64

void sim_device_free(SimDevice *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SimDevice, sim_device_free)

/*
 * Checks dir as safe-dir.h does (owned by root or the caller's user, writable by no one
 * else, not a link), creating it 0755 when create and it is missing: in a directory
 * another user can write, that user could plant a link under a name written next.
 * sim_device_create() and sim_backend_new() check; so do front ends before other calls.
 *   -EPERM, -ELOOP, -ENOTDIR, -ENOENT (without create)  with a sentence naming the fix
 */
int sim_dir_check(const char *dir, bool create, GError **error);

/* Management API (vfio-migsim, tests). dir is created when missing. */
int sim_device_create(const char *dir, const SimSpec *spec, GError **error);
int sim_device_remove(const char *dir, const char *name, GError **error);
int sim_device_read(const char *dir, const char *name, SimDevice **ret, GError **error);
int sim_device_list(const char *dir, GPtrArray **ret_devices /* SimDevice* */, GError **error);
int sim_device_add_fault(const char *dir, const char *name, const SimFault *f, GError **error);
int sim_device_clear_faults(const char *dir, const char *name, GError **error);
/* arc NULL: the default latency; else "FROM>TO". */
int sim_device_set_latency(const char *dir, const char *name, const char *arc, uint32_t ms,
                           GError **error);
int sim_device_clear_events(const char *dir, const char *name, GError **error);
/* Administrative: force a state without walking arcs (test set-up, demo reset). */
int sim_device_force_state(const char *dir, const char *name, enum mig_state s, GError **error);
/* Administrative: moves the device to another P2P group (NULL/"": none), index included. No
 * corruption event is recorded for the move itself; the next arc of either side checks. */
int sim_device_set_p2p_group(const char *dir, const char *name, const char *group, GError **error);

/* "FROM>TO", "*>TO", "FROM>*" or "*"; -EINVAL with a message otherwise. */
int sim_fault_parse_arc(const char *s, SimFault *f, GError **error);
const char *sim_fault_action_to_string(enum sim_fault_action a);
int sim_fault_action_from_string(const char *s, enum sim_fault_action *ret);
/* "original" | "intermediate". */
const char *sim_fault_leave_to_string(enum sim_fault_leave l);
int sim_fault_leave_from_string(const char *s, enum sim_fault_leave *ret);
/* "FROM>TO" with "*" for MIG_STATE_COUNT; "*" when both are. Returns buf. */
char *sim_fault_format_arc(const SimFault *f, char *buf, size_t size);
/* "EIO", "eio" or "5" into a positive errno; -EINVAL otherwise. */
int sim_errno_from_string(const char *s, int *ret);

/* JSON of one device, for --json output: a jansson json_t* owned by the caller. */
struct json_t;
struct json_t *sim_device_to_json(const SimDevice *d);

/* The backend: devices of dir, opened through the ops table. */
int sim_backend_new(const char *dir, Backend **ret, GError **error);
