/* scan: what the parts of host_scan() share: the scan's state, its warnings and its reads */
#pragma once

/*
 * Private to daemon/host. Every helper that finds something odd adds a warning
 * "SYSFS/path: what" to the snapshot and returns a negative errno, so its caller only has to
 * leave the device or group out; a missing optional file or link is 0 and no warning.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "host/host.h"

#define GROUPS_DIR "kernel/iommu_groups"

typedef struct Scan {
        int sys_fd, dev_fd;
        const char *sysfs_root, *dev_root;
        HostSnapshot *snap;
        GHashTable *dropped_groups; /* ids left out, to say why their devices are */
} Scan;

/* The text with odd bytes escaped: paths and values go into log lines and onto the bus. */
char *scan_printable(const char *text);
/* "\"0xzz\"": a value quoted, escaped and cut short. */
char *scan_quote(const char *text, size_t len);
/* Adds "SYSFS/rel: what", or "SYSFS/rel:LINE: what" when line is not 0. */
G_GNUC_PRINTF(4, 5)
void scan_warn_line(Scan *s, const char *rel, unsigned line, const char *fmt, ...);
#define scan_warn(s, rel, ...) scan_warn_line((s), (rel), 0, __VA_ARGS__)
/* What an errno from sysfs-read means, as the end of a warning. */
const char *scan_odd_text(int r);

/* A file's contents; -ENOENT without a warning when optional. */
int scan_read(Scan *s, const char *rel, bool optional, char **ret, size_t *ret_len);
/* dir/file as a number file ("0x1af4") no larger than max. */
int scan_hex(Scan *s, const char *dir, const char *file, uint64_t max, uint64_t *ret);
/* Where the link at rel leads, as a path without links; 0 and NULL when there is none. */
int scan_link(Scan *s, const char *rel, char **ret);
/* dev_root/rel when it exists, else NULL: nodes are only looked at, never opened. */
char *scan_dev_node(Scan *s, const char *rel);

/* scan-groups.c: every group under kernel/iommu_groups, into s->snap->groups. */
void scan_groups(Scan *s);
/* scan-devices.c: every PCI device and mdev, into s->snap->devices. */
void scan_devices(Scan *s);
