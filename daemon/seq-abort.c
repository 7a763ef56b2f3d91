/* seq-abort: a request to abort a running sequence, pollable by its stream I/O */
#include "seq-abort.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct SeqAbort {
        int fd;
};

SeqAbort *seq_abort_new(void)
{
        SeqAbort *a = calloc(1, sizeof(*a));
        if (!a)
                return NULL;
        a->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (a->fd < 0) {
                int e = errno;
                free(a);
                errno = e;
                return NULL;
        }
        return a;
}

void seq_abort_free(SeqAbort *a)
{
        if (!a)
                return;
        close(a->fd);
        free(a);
}

void seq_abort_signal(SeqAbort *a)
{
        uint64_t one = 1;
        /* The counter never overflows in practice; a failed write means it is already set. */
        if (a && write(a->fd, &one, sizeof(one)) < 0)
                return;
}

bool seq_abort_requested(const SeqAbort *a)
{
        if (!a)
                return false;
        struct pollfd p = {.fd = a->fd, .events = POLLIN};
        return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

int seq_abort_fd(const SeqAbort *a)
{
        return a ? a->fd : -1;
}
