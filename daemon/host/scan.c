/* scan: the warnings and reads every part of host_scan() shares */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "host/scan.h"
#include "host/sysfs-parse.h"
#include "host/sysfs-read.h"

#define QUOTE_MAX 48

/* Paths and values from a tree go into log lines and onto the bus: odd bytes are escaped. */
char *scan_printable(const char *text)
{
        if (g_utf8_validate(text, -1, NULL)) {
                const char *p = text;
                while (*p && !g_unichar_iscntrl(g_utf8_get_char(p)))
                        p = g_utf8_next_char(p);
                if (!*p)
                        return g_strdup(text);
        }
        return g_strescape(text, NULL);
}

/* "\"0xzz\"", escaped and cut short: enough of a value to recognise it. */
char *scan_quote(const char *text, size_t len)
{
        g_autofree char *head = g_strndup(text, MIN(len, QUOTE_MAX));
        g_autofree char *shown = g_strescape(head, NULL);

        return g_strdup_printf("\"%s%s\"", shown, len > QUOTE_MAX ? "..." : "");
}

/* "SYSFS/rel: what", or "SYSFS/rel:LINE: what" when line is not 0. */
void scan_warn_line(Scan *s, const char *rel, unsigned line, const char *fmt, ...)
{
        g_autofree char *path = g_build_filename(s->sysfs_root, rel, NULL);
        g_autofree char *shown = scan_printable(path);
        g_autofree char *what = NULL;
        g_autofree char *at = line ? g_strdup_printf(":%u", line) : g_strdup("");
        va_list ap;

        va_start(ap, fmt);
        what = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_ptr_array_add(s->snap->warnings, g_strdup_printf("%s%s: %s", shown, at, what));
}

const char *scan_odd_text(int r)
{
        switch (r) {
        case -ENOENT:
                return "does not exist (removed during the scan?)";
        case -ELOOP:
                return "too many levels of symbolic links";
        case -EXDEV:
                return "leads out of the root";
        case -EFBIG:
                return "longer than 65536 bytes";
        case -EINVAL:
                return "not a regular file";
        case -EISDIR:
                return "a directory, not a file";
        case -ENOTDIR:
                return "not a directory";
        default:
                return g_strerror(-r);
        }
}

/* ---- reading ---- */

/* The contents of a file; a warning unless it is missing and optional. */
int scan_read(Scan *s, const char *rel, bool optional, char **ret, size_t *ret_len)
{
        int r = sysfs_read_file(s->sys_fd, rel, ret, ret_len);

        if (r < 0 && !(optional && r == -ENOENT))
                scan_warn(s, rel, "%s", scan_odd_text(r));
        return r;
}

int scan_hex(Scan *s, const char *dir, const char *file, uint64_t max, uint64_t *ret)
{
        g_autofree char *rel = g_build_filename(dir, file, NULL);
        g_autofree char *text = NULL;
        g_autofree char *shown = NULL;
        size_t len;
        int r;

        r = scan_read(s, rel, false, &text, &len);
        if (r < 0)
                return r;
        r = sysfs_parse_hex(text, len, max, ret);
        if (r < 0) {
                shown = scan_quote(text, len);
                if (r == -ERANGE)
                        scan_warn(s, rel, "above 0x%" PRIx64 ": %s", max, shown);
                else
                        scan_warn(s, rel, "not a 0x-prefixed hex number: %s", shown);
        }
        return r;
}

/* Where the link at rel leads, as a path without links; 0 and NULL when there is no link
 * (an optional link such as driver), a warning when it is there but odd. */
int scan_link(Scan *s, const char *rel, char **ret)
{
        g_autofree char *text = NULL;
        g_autofree char *shown = NULL;
        int r;

        *ret = NULL;
        r = sysfs_read_link(s->sys_fd, rel, &text);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                scan_warn(s, rel, "%s", r == -EINVAL ? "not a symbolic link" : scan_odd_text(r));
                return r;
        }
        r = sysfs_resolve(s->sys_fd, rel, ret);
        if (r < 0) {
                shown = scan_quote(text, strlen(text));
                if (r == -ENOENT)
                        scan_warn(s, rel, "dangling link to %s (removed during the scan?)", shown);
                else
                        scan_warn(s, rel, "link to %s: %s", shown, scan_odd_text(r));
        }
        return r;
}

/* dev_root/rel when it exists: nodes are only looked at, never opened. */
char *scan_dev_node(Scan *s, const char *rel)
{
        g_autofree char *where = NULL;

        if (sysfs_resolve(s->dev_fd, rel, &where) < 0)
                return NULL;
        return g_build_filename(s->dev_root, rel, NULL);
}
