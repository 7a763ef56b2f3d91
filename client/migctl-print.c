/* migctl-print: human output of vfio-migctl: sequence timelines, property lists, tables */
#include "migctl-print.h"

#include <glib.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "migctl-json.h"

#define BAR_WIDTH 40
/* three 10-wide columns and the bar with its borders, then "   " before a step's device */
#define STEP_TEXT_COLUMN (33 + BAR_WIDTH + 2 + 3)

const char *fmt_ms(uint64_t usec, char *buf, size_t size)
{
        snprintf(buf, size, "%.1f ms", (double)usec / 1000.0);
        return buf;
}

const char *fmt_bytes(uint64_t bytes, char *buf, size_t size)
{
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = (double)bytes;
        size_t u = 0;

        if (bytes < 1024) {
                snprintf(buf, size, "%" PRIu64 " B", bytes);
                return buf;
        }
        while (v >= 1024.0 && u + 1 < G_N_ELEMENTS(units)) {
                v /= 1024.0;
                u++;
        }
        snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}

char *fmt_value(const json_t *v)
{
        if (json_is_string(v))
                return g_strdup(json_string_value(v)[0] ? json_string_value(v) : "-");
        if (json_is_boolean(v))
                return g_strdup(json_is_true(v) ? "yes" : "no");
        if (json_is_array(v)) {
                GString *s = g_string_new(NULL);
                size_t i;
                json_t *e;
                for (i = 0; (e = json_array_get(v, i)); i++) {
                        g_autofree char *t = fmt_value(e);
                        g_string_append_printf(s, "%s%s", i ? ", " : "", t);
                }
                if (s->len == 0)
                        g_string_append(s, "-");
                return g_string_free(s, FALSE);
        }
        char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        char *r = g_strdup(d ? d : "-");
        free(d);
        return r;
}

typedef struct Axis {
        uint64_t span_us; /* the time the bar's full width stands for */
} Axis;

static void bar(FILE *f, const Axis *a, uint64_t start, uint64_t duration, char fill)
{
        size_t from = (size_t)((double)start * BAR_WIDTH / (double)a->span_us);
        size_t to = (size_t)(((double)(start + duration) * BAR_WIDTH + (double)a->span_us - 1) /
                             (double)a->span_us);
        char line[BAR_WIDTH + 1];

        if (from >= BAR_WIDTH)
                from = BAR_WIDTH - 1;
        if (to <= from)
                to = from + 1;
        if (to > BAR_WIDTH)
                to = BAR_WIDTH;
        memset(line, '.', BAR_WIDTH);
        memset(line + from, fill, to - from);
        line[BAR_WIDTH] = '\0';
        fprintf(f, "|%s|", line);
}

/* "EIO" for 5 or -5; the number when the name is unknown. */
static const char *errno_name(int64_t e, char *buf, size_t size)
{
        int err = (int)(e < 0 ? -e : e);
        const char *name = strerrorname_np(err);

        if (name)
                return name;
        snprintf(buf, size, "errno %d", err);
        return buf;
}

static uint64_t report_span(const json_t *report)
{
        uint64_t span = json_u64(report, "total-us");
        const char *const lists[] = {"phases", "steps"};
        size_t i;
        json_t *e;

        for (size_t l = 0; l < G_N_ELEMENTS(lists); l++)
                for (i = 0; (e = json_array_get(json_arr(report, lists[l]), i)); i++) {
                        uint64_t end = json_u64(e, "start-us") + json_u64(e, "duration-us");
                        if (end > span)
                                span = end;
                }
        return span ? span : 1;
}

static void print_times(FILE *f, const json_t *e, bool with_bytes)
{
        char start[32], dur[32], bytes[32] = "";

        if (with_bytes)
                fmt_bytes(json_u64(e, "bytes"), bytes, sizeof(bytes));
        fprintf(f, "%10s %10s %10s ", fmt_ms(json_u64(e, "start-us"), start, sizeof(start)),
                fmt_ms(json_u64(e, "duration-us"), dur, sizeof(dur)), bytes);
}

static size_t device_width(const json_t *steps)
{
        size_t w = 6, i;
        json_t *s;
        for (i = 0; (s = json_array_get(steps, i)); i++) {
                size_t l = strlen(json_str(s, "device", ""));
                if (l > w)
                        w = l;
        }
        return w;
}

static void print_step(FILE *f, const Axis *a, const json_t *s, size_t dev_w)
{
        const char *from = json_str(s, "from", "?");
        const char *target = json_str(s, "target", "?");
        const char *reached = json_str(s, "reached", "?");
        const char *path = json_str(s, "path", "");
        const char *message = json_str(s, "message", "");
        int64_t err = json_i64(s, "errno");
        char buf[128];

        print_times(f, s, json_u64(s, "bytes") > 0);
        bar(f, a, json_u64(s, "start-us"), json_u64(s, "duration-us"), err ? 'X' : '=');
        fprintf(f, "   %-*s ", (int)dev_w, json_str(s, "device", "?"));
        if (!strchr(path, '>') && strcmp(from, reached) == 0 && strcmp(from, target) == 0) {
                /* a SAVE or LOAD step: the device stays put while its data streams */
                fprintf(f, "%s, streaming data\n", from);
        } else {
                fprintf(f, "%s -> %s", from, reached);
                if (strcmp(target, reached) != 0)
                        fprintf(f, " (target %s)", target);
                if (path[0])
                        fprintf(f, "  [%s]", path);
                fputc('\n', f);
        }
        if (err)
                fprintf(f, "%*serror: %s (%s)\n", STEP_TEXT_COLUMN, "",
                        message[0] ? message : strerror((int)(err < 0 ? -err : err)),
                        errno_name(err, buf, sizeof(buf)));
        else if (message[0])
                fprintf(f, "%*snote: %s\n", STEP_TEXT_COLUMN, "", message);
}

static int compare_start(gconstpointer pa, gconstpointer pb)
{
        uint64_t a = json_u64(*(json_t *const *)pa, "start-us");
        uint64_t b = json_u64(*(json_t *const *)pb, "start-us");
        return a < b ? -1 : a > b;
}

/* The steps of one phase (phase NULL: the steps of no listed phase), by start time. */
static GPtrArray *steps_of(const json_t *report, const char *phase)
{
        GPtrArray *out = g_ptr_array_new();
        const json_t *phases = json_arr(report, "phases");
        size_t i, k;
        json_t *s, *p;

        for (i = 0; (s = json_array_get(json_arr(report, "steps"), i)); i++) {
                const char *sp = json_str(s, "phase", "");
                bool listed = false;
                if (phase) {
                        if (strcmp(sp, phase) == 0)
                                g_ptr_array_add(out, s);
                        continue;
                }
                for (k = 0; (p = json_array_get(phases, k)); k++)
                        listed = listed || strcmp(json_str(p, "name", ""), sp) == 0;
                if (!listed)
                        g_ptr_array_add(out, s);
        }
        g_ptr_array_sort(out, compare_start);
        return out;
}

void print_report_summary(FILE *f, const json_t *report)
{
        char total[32];
        const char *error = json_str(report, "error", "");

        fprintf(f, "%s (%s): %s in %s%s%s\n", json_str(report, "operation", "?"),
                json_str(report, "strategy", "?"), json_str(report, "result", "?"),
                fmt_ms(json_u64(report, "total-us"), total, sizeof(total)), error[0] ? ": " : "",
                error);
}

static void print_names(FILE *f, const char *label, const json_t *names)
{
        g_autofree char *list = fmt_value(names);
        if (json_array_size(names) > 0)
                fprintf(f, "%s: %s\n", label, list);
}

void print_report(FILE *f, const char *vm, const json_t *report)
{
        const json_t *phases = json_arr(report, "phases");
        size_t dev_w = device_width(json_arr(report, "steps"));
        Axis a = {.span_us = report_span(report)};
        char span[32];
        size_t i;
        json_t *p;

        if (json_object_size(report) == 0) {
                fprintf(f, "no sequence has run on VM '%s' yet\n", vm);
                return;
        }
        fprintf(f, "VM %s: ", vm);
        print_report_summary(f, report);
        fprintf(f, "%10s %10s %10s  %-*s%*s\n", "START", "TIME", "BYTES", BAR_WIDTH / 2, "0 ms",
                BAR_WIDTH / 2, fmt_ms(a.span_us, span, sizeof(span)));
        for (i = 0; (p = json_array_get(phases, i)); i++) {
                g_autoptr(GPtrArray) steps = steps_of(report, json_str(p, "name", ""));
                int64_t err = json_i64(p, "errno");
                char buf[128];

                print_times(f, p, false);
                bar(f, &a, json_u64(p, "start-us"), json_u64(p, "duration-us"), err ? 'X' : '#');
                fprintf(f, " phase %s", json_str(p, "name", "?"));
                if (err)
                        fprintf(f, ": failed (%s: %s)", errno_name(err, buf, sizeof(buf)),
                                strerror((int)(err < 0 ? -err : err)));
                fputc('\n', f);
                for (size_t k = 0; k < steps->len; k++)
                        print_step(f, &a, steps->pdata[k], dev_w);
        }
        g_autoptr(GPtrArray) others = steps_of(report, NULL);
        if (others->len > 0)
                fprintf(f, "%*ssteps outside the phases above:\n", STEP_TEXT_COLUMN, "");
        for (size_t k = 0; k < others->len; k++)
                print_step(f, &a, others->pdata[k], dev_w);

        fprintf(f, "result: %s", json_str(report, "result", "?"));
        if (json_str(report, "error", "")[0])
                fprintf(f, ": %s", json_str(report, "error", ""));
        fputc('\n', f);
        print_names(f, "lost state (fell into ERROR, reset)",
                    json_object_get(report, "lost-state"));
        print_names(f, "hung (never returned, even after cancel)", json_object_get(report, "hung"));
        if (json_str(report, "migration-id", "")[0])
                fprintf(f, "migration id: %s%s%s\n", json_str(report, "migration-id", ""),
                        json_str(report, "stream-vm", "")[0] ? ", saved by VM " : "",
                        json_str(report, "stream-vm", ""));
}

struct Table {
        size_t n_cols;
        GPtrArray *rows; /* char** of n_cols */
};

Table *table_new(size_t n_cols, const char *const *headers)
{
        Table *t = g_new0(Table, 1);
        t->n_cols = n_cols;
        t->rows = g_ptr_array_new();
        table_add(t, headers);
        return t;
}

void table_add(Table *t, const char *const *cells)
{
        char **row = g_new0(char *, t->n_cols + 1);
        for (size_t i = 0; i < t->n_cols; i++)
                row[i] = g_strdup(cells[i] && cells[i][0] ? cells[i] : "-");
        g_ptr_array_add(t->rows, row);
}

void table_print(Table *t, FILE *f, const char *indent)
{
        g_autofree size_t *w = g_new0(size_t, t->n_cols);

        for (size_t r = 0; r < t->rows->len; r++)
                for (size_t i = 0; i < t->n_cols; i++) {
                        size_t l = strlen(((char **)t->rows->pdata[r])[i]);
                        if (l > w[i])
                                w[i] = l;
                }
        for (size_t r = 0; r < t->rows->len; r++) {
                char **row = t->rows->pdata[r];
                fputs(indent, f);
                for (size_t i = 0; i < t->n_cols; i++) {
                        if (i + 1 == t->n_cols)
                                fprintf(f, "%s\n", row[i]);
                        else
                                fprintf(f, "%-*s  ", (int)w[i], row[i]);
                }
        }
}

void table_free(Table *t)
{
        if (!t)
                return;
        for (size_t r = 0; r < t->rows->len; r++)
                g_strfreev(t->rows->pdata[r]);
        g_ptr_array_unref(t->rows);
        g_free(t);
}
