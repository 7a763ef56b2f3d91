/* seq-abort: a request to abort a running sequence, pollable by its stream I/O */
#pragma once

/*
 * A SeqAbort is an eventfd that becomes readable once seq_abort_signal() is called and stays
 * readable: a sequence's blocking points (phase barriers, stream reads and writes) poll it
 * beside what they wait for, so an Abort preempts them instead of waiting out a deadline.
 * Thread-safe: signal from the event loop, test and poll from workers.
 *
 * Errors: seq_abort_new() returns NULL with errno set when no eventfd can be had.
 */

#include <stdbool.h>

typedef struct SeqAbort SeqAbort;

SeqAbort *seq_abort_new(void);
void seq_abort_free(SeqAbort *a);
void seq_abort_signal(SeqAbort *a);
bool seq_abort_requested(const SeqAbort *a); /* false for NULL */
int seq_abort_fd(const SeqAbort *a);         /* -1 for NULL: poll ignores a negative fd */
