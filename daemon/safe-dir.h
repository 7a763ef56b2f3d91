/* safe-dir: directories no other user can plant links in, and the files kept inside them */
#pragma once

/*
 * vfio-migd runs as root and writes files (sim devices, the crash journal) into directories
 * an operator names. Whoever else can write to such a directory can plant a symbolic or hard
 * link at a name the daemon is about to write and so make root overwrite any file. Hence:
 *
 * - safe_dir_open() opens the directory with O_DIRECTORY|O_NOFOLLOW and checks, on the fd it
 *   keeps, that it is owned by root or the effective user and writable by no one else: not
 *   by others, and by its group only when that is root's group or the effective group. A
 *   refusal says which directory, its owner and mode, and the chown/chmod that fixes it.
 *   The directories above it (the real ones, found through "..") must be owned by root or
 *   the effective user and, where others may write to them, sticky (as /tmp is): otherwise
 *   someone could move the directory away and put another in its place.
 * - Files are then reached only relative to that fd, one path component at a time, with
 *   O_NOFOLLOW, and must be regular files with a single link: a planted symbolic link, hard
 *   link, FIFO or device node is refused, never followed, and its target left alone.
 * - New files are created with O_CREAT|O_EXCL|O_NOFOLLOW (mode 0600 unless a caller needs
 *   otherwise); temporaries are created fresh, whatever was at their name removed first
 *   (unlinking a link does not touch its target), and the caller renameat()s them over the
 *   real name through safe_dir_fd(), which replaces a link there instead of following it.
 *
 * Names given to the file functions are single components: no '/', not "." or "..".
 * Opens add O_NONBLOCK, so a planted FIFO cannot block the caller; on a regular file it does
 * nothing. A SafeDir is reference counted and its functions are thread-safe (they share only
 * the fd, which no call changes).
 *
 * Errors: negative errno, with a GError sentence naming the directory or file and the fix:
 *   -EPERM    the directory's owner or mode, or a parent's, lets another user in
 *   -ENOENT   no such directory (without SAFE_DIR_CREATE) or file
 *   -ENOTDIR  the directory's path names something else
 *   -ELOOP    the directory or file is a symbolic link
 *   -EUCLEAN  the file is not a regular file of its own (FIFO, device, directory, hard link)
 * plus the errnos of the file system calls, passed up unchanged.
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct SafeDir SafeDir;

enum {
        SAFE_DIR_CREATE = 1 << 0, /* create the directory (parents too) with mode when missing */
};

/* Opens and checks path (trailing slashes dropped); with SAFE_DIR_CREATE a missing directory
 * is made with mode. */
int safe_dir_open(const char *path, unsigned flags, mode_t mode, SafeDir **ret, GError **error);
/* The subdirectory name of d, held to the same rules (SAFE_DIR_CREATE: mkdirat with mode). */
int safe_dir_open_sub(SafeDir *d, const char *name, unsigned flags, mode_t mode, SafeDir **ret,
                      GError **error);
SafeDir *safe_dir_ref(SafeDir *d);
void safe_dir_unref(SafeDir *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SafeDir, safe_dir_unref)

int safe_dir_fd(const SafeDir *d);
const char *safe_dir_path(const SafeDir *d);

/* The ownership and mode rule on an open directory fd; path only names it in the error. */
int safe_dir_check_fd(int fd, const char *path, GError **error);

/* An existing file of d: flags is O_RDONLY, O_WRONLY or O_RDWR (plus O_TRUNC or O_APPEND). */
int safe_dir_open_file(SafeDir *d, const char *name, int flags, GError **error);
/* A new file: O_CREAT|O_EXCL|O_NOFOLLOW; -EEXIST when name exists, link or not. */
int safe_dir_create_file(SafeDir *d, const char *name, int flags, mode_t mode, GError **error);
/* Opens name, creating it when missing (lock files several processes create): a link at name
 * fails with -ELOOP instead of being followed, and nothing but a missing name is created. */
int safe_dir_open_or_create_file(SafeDir *d, const char *name, int flags, mode_t mode,
                                 GError **error);
/* A fresh temporary: whatever is at name is removed (without following it), then created. */
int safe_dir_create_temp(SafeDir *d, const char *name, int flags, mode_t mode, GError **error);

/* The whole file, NUL-terminated; at most max bytes (-EFBIG beyond). */
int safe_dir_read_file(SafeDir *d, const char *name, size_t max, char **ret_text, size_t *ret_len,
                       GError **error);
/* Every entry's name but "." and "..", unsorted. */
int safe_dir_list(SafeDir *d, GPtrArray **ret_names /* char* */, GError **error);
