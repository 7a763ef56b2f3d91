/* bus-errors: the org.vfiomig.Coordinator1.Error.* names and their errnos */
#pragma once

/*
 * One table (docs/dbus-api.md, "Errors") serves both directions: bus_errors_register() adds
 * it to sd-bus so sd_bus_error_get_errno() of a reply gives the errno back (the daemon and
 * vfio-migctl), and the bus_error_set_*() helpers turn a model errno and its sentence into
 * the named error. sd-bus itself only maps errnos to its generic names
 * (EEXIST -> FileExists...), so the daemon always names its errors through these helpers.
 */

#include <systemd/sd-bus.h>

#define BUS_ERROR_PREFIX          "org.vfiomig.Coordinator1.Error."
#define BUS_ERROR_NO_SUCH_VM      BUS_ERROR_PREFIX "NoSuchVM"
#define BUS_ERROR_NO_SUCH_DEVICE  BUS_ERROR_PREFIX "NoSuchDevice"
#define BUS_ERROR_VM_EXISTS       BUS_ERROR_PREFIX "VMExists"
#define BUS_ERROR_DEVICE_BUSY     BUS_ERROR_PREFIX "DeviceBusy"
#define BUS_ERROR_BUSY            BUS_ERROR_PREFIX "Busy"
#define BUS_ERROR_INVALID_STATE   BUS_ERROR_PREFIX "InvalidState"
#define BUS_ERROR_NOT_MIGRATABLE  BUS_ERROR_PREFIX "NotMigratable"
#define BUS_ERROR_SEQUENCE_FAILED BUS_ERROR_PREFIX "SequenceFailed"
#define BUS_ERROR_TIMEOUT         BUS_ERROR_PREFIX "Timeout"
#define BUS_ERROR_STREAM_INVALID  BUS_ERROR_PREFIX "StreamInvalid"
#define BUS_ERROR_POLICY_INVALID  BUS_ERROR_PREFIX "PolicyInvalid"

extern const sd_bus_error_map bus_vfiomig_error_map[];

/* Makes sd_bus_error_get_errno() know the names above. Idempotent. */
int bus_errors_register(void);

/*
 * A model error (registry_*, vm_*): ENOENT NoSuchVM, ENODEV NoSuchDevice, EEXIST VMExists,
 * EBUSY DeviceBusy, EAGAIN Busy, EBADFD InvalidState, EPERM NotMigratable, EINVAL InvalidArgs,
 * EACCES AccessDenied; any other errno gets sd-bus's generic name. Returns r (negative).
 */
int bus_error_set_model(sd_bus_error *error, int r, const char *message);

/* The outcome of a sequence: ETIMEDOUT Timeout, EBADMSG StreamInvalid, else SequenceFailed. */
int bus_error_set_sequence(sd_bus_error *error, int r, const char *message);
