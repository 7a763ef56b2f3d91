/* safe-dir: directories no other user can write, and files in them that follow no link */
#pragma once

/*
 * vfio-migd runs as root and writes device state and its crash journal into directories an
 * operator names (--state-dir, --sim-dir, vfio-migsim --dir). In a directory another user
 * can write, that user can plant a symbolic link under a name the daemon is about to
 * create, and the daemon would write through it into any file of the system. So:
 *
 *   - safe_dir_open() refuses a directory that is not owned by root or the effective uid,
 *     or that group or others may write (sticky or not: /tmp itself is refused), or whose
 *     path ends in a symbolic link; and one inside a directory another user owns or may
 *     write without the sticky bit (who could move it away and put a link in its place).
 *     It returns an fd every later open is relative to.
 *   - safe_file_replace() writes a whole file atomically under a name, through a temporary
 *     that is never an existing file: O_TMPFILE linked under the temporary name, or a file
 *     created O_CREAT|O_EXCL|O_NOFOLLOW; whatever stood at the temporary name is unlinked,
 *     never opened, and the rename replaces a planted link instead of following it.
 *   - safe_file_open_temp() gives the temporary for callers that fill it themselves.
 *   - safe_file_open() opens a file of the directory with O_NOFOLLOW (reads, locks).
 *
 * Files are created with the mode the caller gives (0600 for state and locks).
 *
 * Errors: negative errno, passed up unchanged, with a GError sentence (G_FILE_ERROR) that
 * names the path and what would fix it:
 *   -EPERM    the directory, or one above it, is owned by another user or writable by
 *             group or others (above it: unless sticky)
 *   -ELOOP    the path (or a file's name) is a symbolic link
 *   -ENOTDIR  the path is not a directory
 * plus the errnos of mkdir, open, write, fsync, link and rename.
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct SafeDirUse {
        const char *what;   /* "state directory", "sim directory": for the sentences */
        const char *option; /* the option that names another one: "--state-dir" */
} SafeDirUse;

/*
 * Opens path (O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC) and checks its owner and mode. When
 * create_mode is not 0, a missing directory is created with that mode (parents too,
 * 0755); 0 leaves a missing directory -ENOENT. *ret_fd is the directory's fd.
 */
int safe_dir_open(const char *path, mode_t create_mode, const SafeDirUse *use, int *ret_fd,
                  GError **error);

/* Checks an open directory as safe_dir_open() does; path is for the sentence only. */
int safe_dir_check(int dir_fd, const char *path, const SafeDirUse *use, GError **error);

enum {
        SAFE_FILE_SYNC = 1 << 0,       /* fsync the file before the rename, the dir after */
        SAFE_FILE_NO_TMPFILE = 1 << 1, /* skip O_TMPFILE, as on a file system without it */
};

/*
 * Replaces dir_fd/name with data (mode), atomically: written to a temporary that is linked
 * as tmp_name, then renamed over name. dir_path is for the sentences.
 */
int safe_file_replace(int dir_fd, const char *dir_path, const char *name, const char *tmp_name,
                      const void *data, size_t len, mode_t mode, unsigned flags, GError **error);

/*
 * An empty file at dir_fd/tmp_name, open O_RDWR, created O_EXCL|O_NOFOLLOW with mode after
 * unlinking whatever stood there. With reuse, a regular file already there that is the
 * caller's own (owner the effective uid, one link) is opened instead, not emptied, and its
 * mode set to mode: callers that rewrite a spare file in place keep their inode.
 * Returns the fd.
 */
int safe_file_open_temp(int dir_fd, const char *dir_path, const char *tmp_name, mode_t mode,
                        bool reuse, GError **error);

/*
 * openat(dir_fd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode); with O_CREAT also O_EXCL is
 * left to the caller. -ELOOP when name is a symbolic link. No GError: callers name the file
 * in their own words. Returns the fd.
 */
int safe_file_open(int dir_fd, const char *name, int flags, mode_t mode);

/* Reads the whole file dir_fd/name (O_NOFOLLOW), NUL-terminated. -errno, no GError. */
int safe_file_read(int dir_fd, const char *name, char **ret_text, size_t *ret_len);
