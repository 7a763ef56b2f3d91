/* bus-errors: the org.vfiomig.Coordinator1.Error.* names and their errnos */
#include "bus/bus-errors.h"

#include <errno.h>
#include <string.h>

const sd_bus_error_map bus_vfiomig_error_map[] = {
    SD_BUS_ERROR_MAP(BUS_ERROR_NO_SUCH_VM, ENOENT),
    SD_BUS_ERROR_MAP(BUS_ERROR_NO_SUCH_DEVICE, ENODEV),
    SD_BUS_ERROR_MAP(BUS_ERROR_VM_EXISTS, EEXIST),
    SD_BUS_ERROR_MAP(BUS_ERROR_DEVICE_BUSY, EBUSY),
    SD_BUS_ERROR_MAP(BUS_ERROR_BUSY, EAGAIN),
    SD_BUS_ERROR_MAP(BUS_ERROR_INVALID_STATE, EBADFD),
    SD_BUS_ERROR_MAP(BUS_ERROR_NOT_MIGRATABLE, EPERM),
    SD_BUS_ERROR_MAP(BUS_ERROR_SEQUENCE_FAILED, EIO),
    SD_BUS_ERROR_MAP(BUS_ERROR_TIMEOUT, ETIMEDOUT),
    SD_BUS_ERROR_MAP(BUS_ERROR_STREAM_INVALID, EBADMSG),
    SD_BUS_ERROR_MAP_END,
};

int bus_errors_register(void)
{
        /* sd_bus_error_add_map() returns 0 when the table is already registered. */
        return sd_bus_error_add_map(bus_vfiomig_error_map);
}

static const char *error_name_for_errno(int error)
{
        /* The three sequence outcomes are named by bus_error_set_sequence() only: EIO or
         * ETIMEDOUT from a registry or backend call is not a failed sequence. */
        if (error == EIO || error == ETIMEDOUT || error == EBADMSG)
                return NULL;
        for (const sd_bus_error_map *m = bus_vfiomig_error_map; m->name; m++)
                if (m->code == error)
                        return m->name;
        return NULL;
}

int bus_error_set_model(sd_bus_error *error, int r, const char *message)
{
        const char *name = error_name_for_errno(-r);

        if (r >= 0)
                r = -EIO;
        if (!message || !*message)
                message = strerror(-r);
        if (name)
                return sd_bus_error_set(error, name, message);
        /* EINVAL -> InvalidArgs, EACCES -> AccessDenied, others System.Error.<ERRNO>. */
        return sd_bus_error_set_errnof(error, -r, "%s", message);
}

int bus_error_set_sequence(sd_bus_error *error, int r, const char *message)
{
        const char *name;

        if (!message || !*message)
                message = "The sequence failed.";
        if (r == -ETIMEDOUT)
                name = BUS_ERROR_TIMEOUT;
        else if (r == -EBADMSG)
                name = BUS_ERROR_STREAM_INVALID;
        else
                name = BUS_ERROR_SEQUENCE_FAILED;
        return sd_bus_error_set(error, name, message);
}
