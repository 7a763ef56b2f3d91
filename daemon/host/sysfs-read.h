/* sysfs-read: files, links and directories beneath a root directory, never out of it */
#pragma once

/*
 * Paths are relative to root_fd, '/'-separated. Symbolic links on the way are resolved here,
 * one component at a time and only while they stay beneath the root (sysfs is made of
 * relative links such as bus/pci/devices/X -> ../../../devices/...), the way the kernel
 * would resolve them if root_fd were "/". The last component is then opened with
 * O_NOFOLLOW, so a link swapped in after it was looked at is refused, never followed.
 *
 * Errors: 0 or negative errno; besides the kernel's, -EXDEV for a link that leads out of the
 * root (absolute, or climbing above it), -ELOOP after SYSFS_MAX_LINKS links, -EFBIG for a file
 * longer than SYSFS_MAX_FILE, -EINVAL for a file that is not a regular one.
 */

#include <glib.h>
#include <stddef.h>

#define SYSFS_MAX_FILE  (64 * 1024)
#define SYSFS_MAX_LINKS 32

/* The whole of a regular file (at most SYSFS_MAX_FILE bytes), NUL-terminated as well. */
int sysfs_read_file(int root_fd, const char *path, char **ret, size_t *ret_len);
/* The text of the link at path itself (the links before it are followed). */
int sysfs_read_link(int root_fd, const char *path, char **ret);
/* The names in a directory, sorted, without "." and "..". */
int sysfs_list_dir(int root_fd, const char *path, GPtrArray **ret /* char* */);
/* Where path leads with every link followed, as a path beneath the root without links, "."
 * or ".." ("devices/pci0000:00/0000:00:03.0"); what it names must exist. */
int sysfs_resolve(int root_fd, const char *path, char **ret);
