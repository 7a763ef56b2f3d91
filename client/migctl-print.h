/* migctl-print: human output of vfio-migctl: sequence timelines, property lists, tables */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "12.3 ms" into buf. */
const char *fmt_ms(uint64_t usec, char *buf, size_t size);
/* "64.0 KiB" into buf. */
const char *fmt_bytes(uint64_t bytes, char *buf, size_t size);
/* A JSON value as one line of text: strings bare, arrays comma-separated, "-" when empty. */
char *fmt_value(const json_t *v);

/*
 * A sequence report (the VM methods' a{sv}, or LastSequence) as a timeline: every phase with
 * its start and duration, under it every device step (device, from -> reached, the kernel's
 * path, duration, bytes, error), each with a bar on a common time axis so phases that overlap
 * and devices that move together are visible; then the result, lost-state and hung devices.
 */
void print_report(FILE *f, const char *vm, const json_t *report);
/* One line: "quiesce (parallel): ok in 12.3 ms" or with the error. */
void print_report_summary(FILE *f, const json_t *report);

/* A table: n_cols headers, then rows of n_cols strings (NULL prints "-"). */
typedef struct Table Table;
Table *table_new(size_t n_cols, const char *const *headers);
void table_add(Table *t, const char *const *cells);
void table_print(Table *t, FILE *f, const char *indent);
void table_free(Table *t);
