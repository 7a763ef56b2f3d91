/* util: cleanup attributes and small helpers shared by every layer */
#pragma once

#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}
#define _cleanup_close_ _cleanup_(closep)

static inline uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Returns the fd and leaves -1 behind, to hand ownership on visibly. */
static inline int steal_fd(int *fd)
{
        int r = *fd;
        *fd = -1;
        return r;
}
