/* safe-dir: directories no other user can write, and files in them that follow no link */
#include "safe-dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* How often a name taken between our unlink and our create is tried again. */
#define TEMP_ATTEMPTS 8

static int safe_error(GError **error, int r, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static int safe_error(GError **error, int r, const char *fmt, ...)
{
        va_list ap;

        if (error) {
                va_start(ap, fmt);
                g_autofree char *msg = g_strdup_vprintf(fmt, ap);
                va_end(ap);
                g_set_error_literal(error, G_FILE_ERROR, g_file_error_from_errno(-r), msg);
        }
        return r;
}

/* "root", or the effective uid as chown takes it. */
static char *owner_name(void)
{
        uid_t uid = geteuid();

        return uid == 0 ? g_strdup("root") : g_strdup_printf("%u", (unsigned)uid);
}

/* The path of an open directory, for a sentence; "a directory above it" without /proc. */
static char *fd_path(int fd)
{
        g_autofree char *proc = g_strdup_printf("/proc/self/fd/%d", fd);
        char *target = g_file_read_link(proc, NULL);

        return target ? target : g_strdup("a directory above it");
}

/*
 * Whoever can write a directory above ours can move ours away and put a link in its place,
 * and every path we open would lead there. Sticky parents (/tmp) are fine: others cannot
 * move what is ours out of them. Walks "..", so links in the path given do not matter.
 */
static int ancestors_check(int dir_fd, const char *path, const SafeDirUse *use, GError **error)
{
        _cleanup_close_ int cur = -1;
        struct stat st, up;

        if (fstat(dir_fd, &st) < 0)
                return safe_error(error, -errno, "Cannot stat the %s %s: %s.", use->what, path,
                                  g_strerror(errno));
        cur = openat(dir_fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        for (;;) {
                g_autofree char *where = NULL;
                int next;

                if (cur < 0 || fstat(cur, &up) < 0)
                        return safe_error(error, -errno,
                                          "Cannot check the directories above the %s %s: %s.",
                                          use->what, path, g_strerror(errno));
                if (up.st_dev == st.st_dev && up.st_ino == st.st_ino)
                        return 0; /* "/": its own parent */
                if (up.st_uid != 0 && up.st_uid != geteuid()) {
                        where = fd_path(cur);
                        return safe_error(error, -EPERM,
                                          "The %s %s is inside %s, which uid %u owns and could "
                                          "replace it with a link; give a directory whose every "
                                          "parent is root's with %s.",
                                          use->what, path, where, (unsigned)up.st_uid, use->option);
                }
                if ((up.st_mode & (S_IWGRP | S_IWOTH)) && !(up.st_mode & S_ISVTX)) {
                        where = fd_path(cur);
                        return safe_error(error, -EPERM,
                                          "The %s %s is inside %s, which others may write (mode "
                                          "%04o) and so replace it with a link; fix it with "
                                          "chmod go-w %s, or give another one with %s.",
                                          use->what, path, where, (unsigned)(up.st_mode & 07777),
                                          where, use->option);
                }
                st = up;
                next = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
                close(cur);
                cur = next;
        }
}

int safe_dir_check(int dir_fd, const char *path, const SafeDirUse *use, GError **error)
{
        g_autofree char *owner = owner_name();
        struct stat st;

        if (fstat(dir_fd, &st) < 0)
                return safe_error(error, -errno, "Cannot stat the %s %s: %s.", use->what, path,
                                  g_strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return safe_error(error, -ENOTDIR,
                                  "The %s %s is not a directory; give one with %s.", use->what,
                                  path, use->option);
        if (st.st_uid != 0 && st.st_uid != geteuid())
                return safe_error(error, -EPERM,
                                  "The %s %s is owned by uid %u, who could plant links under the "
                                  "names vfio-migd writes there; make it %s's and private to it "
                                  "(chown %s: %s && chmod go-w %s), or give another one with %s.",
                                  use->what, path, (unsigned)st.st_uid, owner, owner, path, path,
                                  use->option);
        if ((st.st_mode & S_ISVTX) && (st.st_mode & S_IWOTH))
                return safe_error(error, -EPERM,
                                  "The %s %s is shared (mode %04o): any user could plant links "
                                  "under the names vfio-migd writes there; make a private "
                                  "directory in it (mktemp -d -p %s) and give that with %s.",
                                  use->what, path, (unsigned)(st.st_mode & 07777), path,
                                  use->option);
        if (st.st_mode & (S_IWGRP | S_IWOTH))
                return safe_error(error, -EPERM,
                                  "The %s %s is writable by %s (mode %04o), who could plant links "
                                  "under the names vfio-migd writes there; fix it with chmod go-w "
                                  "%s, or give another one with %s.",
                                  use->what, path, st.st_mode & S_IWOTH ? "others" : "its group",
                                  (unsigned)(st.st_mode & 07777), path, use->option);
        return ancestors_check(dir_fd, path, use, error);
}

/* Creates path with mode (its parents 0755); one that appeared meanwhile is fine. */
static int dir_create(const char *path, mode_t mode, const SafeDirUse *use, GError **error)
{
        g_autofree char *parent = g_path_get_dirname(path);

        if (g_mkdir_with_parents(parent, 0755) < 0 || (mkdir(path, mode) < 0 && errno != EEXIST))
                return safe_error(error, -errno,
                                  "Cannot create the %s %s: %s; create it (owned by root, mode "
                                  "%04o) or give another one with %s.",
                                  use->what, path, g_strerror(errno), (unsigned)mode, use->option);
        return 0;
}

int safe_dir_open(const char *path, mode_t create_mode, const SafeDirUse *use, int *ret_fd,
                  GError **error)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        int err, r;

        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && create_mode != 0) {
                r = dir_create(path, create_mode, use, error);
                if (r < 0)
                        return r;
                fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        err = fd < 0 ? errno : 0;
        /* O_DIRECTORY|O_NOFOLLOW on a link says ENOTDIR; on a dangling one ELOOP. */
        if ((err == ELOOP || err == ENOTDIR) && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
                return safe_error(error, -ELOOP,
                                  "The %s %s is a symbolic link, which another user may be able "
                                  "to point elsewhere; give the directory itself with %s.",
                                  use->what, path, use->option);
        if (err)
                return safe_error(error, -err,
                                  "Cannot open the %s %s: %s; give another one with %s.", use->what,
                                  path, g_strerror(err), use->option);
        r = safe_dir_check(fd, path, use, error);
        if (r < 0)
                return r;
        *ret_fd = steal_fd(&fd);
        return 0;
}

int safe_file_open(int dir_fd, const char *name, int flags, mode_t mode)
{
        int fd = openat(dir_fd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);

        return fd < 0 ? -errno : fd;
}

/* A regular file of ours with no other name: rewriting it touches nothing else. */
static bool temp_reusable(int fd)
{
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
               st.st_nlink == 1;
}

static int temp_reuse(int dir_fd, const char *tmp_name, mode_t mode)
{
        int fd = safe_file_open(dir_fd, tmp_name, O_RDWR | O_NONBLOCK, 0);

        if (fd < 0)
                return fd;
        if (!temp_reusable(fd) || fchmod(fd, mode) < 0) {
                close(fd);
                return -EEXIST;
        }
        return fd;
}

int safe_file_open_temp(int dir_fd, const char *dir_path, const char *tmp_name, mode_t mode,
                        bool reuse, GError **error)
{
        int fd;

        if (reuse) {
                fd = temp_reuse(dir_fd, tmp_name, mode);
                if (fd >= 0)
                        return fd;
        }
        for (int i = 0; i < TEMP_ATTEMPTS; i++) {
                fd = safe_file_open(dir_fd, tmp_name, O_RDWR | O_CREAT | O_EXCL, mode);
                if (fd >= 0 || fd != -EEXIST)
                        break;
                /* Whatever stands there (a link, a file of someone else's) goes, unopened. */
                if (unlinkat(dir_fd, tmp_name, 0) < 0 && errno != ENOENT) {
                        fd = -errno;
                        break;
                }
        }
        if (fd < 0)
                return safe_error(error, fd,
                                  "Cannot create the temporary file %s/%s: %s; remove what stands "
                                  "there, check the directory's permissions and free space.",
                                  dir_path, tmp_name, g_strerror(-fd));
        return fd;
}

static int write_all(int fd, const void *data, size_t len)
{
        const char *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Gives an O_TMPFILE file the name tmp_name, taking the name from whatever had it. */
static int temp_link(int fd, int dir_fd, const char *tmp_name)
{
        char proc[64];

        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        for (int i = 0; i < TEMP_ATTEMPTS; i++) {
                /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc does it for everyone else. */
                if (linkat(fd, "", dir_fd, tmp_name, AT_EMPTY_PATH) == 0 ||
                    (errno != EEXIST &&
                     linkat(AT_FDCWD, proc, dir_fd, tmp_name, AT_SYMLINK_FOLLOW) == 0))
                        return 0;
                if (errno != EEXIST)
                        return -errno;
                if (unlinkat(dir_fd, tmp_name, 0) < 0 && errno != ENOENT)
                        return -errno;
        }
        return -EEXIST;
}

/* A nameless file in the directory, or -errno: -EOPNOTSUPP when O_TMPFILE is not there. */
static int temp_anonymous(int dir_fd, mode_t mode, unsigned flags)
{
        int fd;

        if (flags & SAFE_FILE_NO_TMPFILE)
                return -EOPNOTSUPP;
        fd = openat(dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
        if (fd >= 0)
                return fd;
        /* Kernels and file systems without O_TMPFILE say so in several ways. */
        return errno == EISDIR || errno == EINVAL ? -EOPNOTSUPP : -errno;
}

int safe_file_replace(int dir_fd, const char *dir_path, const char *name, const char *tmp_name,
                      const void *data, size_t len, mode_t mode, unsigned flags, GError **error)
{
        _cleanup_close_ int fd = -1;
        bool named = false;
        const char *step = "create";
        int r;

        fd = temp_anonymous(dir_fd, mode, flags);
        if (fd == -EOPNOTSUPP) {
                fd = safe_file_open_temp(dir_fd, dir_path, tmp_name, mode, false, error);
                if (fd < 0)
                        return fd;
                named = true;
        }
        r = fd < 0 ? fd : 0;
        if (r >= 0) {
                step = "write";
                r = write_all(fd, data, len);
        }
        if (r >= 0 && (flags & SAFE_FILE_SYNC)) {
                step = "fsync";
                r = fsync(fd) < 0 ? -errno : 0;
        }
        if (r >= 0 && !named) {
                step = "link";
                r = temp_link(fd, dir_fd, tmp_name);
                /* Neither the capability nor /proc: the way without O_TMPFILE, then. */
                if (r == -ENOENT || r == -EPERM)
                        return safe_file_replace(dir_fd, dir_path, name, tmp_name, data, len, mode,
                                                 flags | SAFE_FILE_NO_TMPFILE, error);
                named = r >= 0;
        }
        if (r >= 0) {
                step = "close";
                r = close(steal_fd(&fd)) < 0 ? -errno : 0;
        }
        if (r >= 0) {
                step = "rename";
                r = renameat(dir_fd, tmp_name, dir_fd, name) < 0 ? -errno : 0;
        }
        if (r < 0) {
                if (named)
                        (void)unlinkat(dir_fd, tmp_name, 0);
                return safe_error(error, r,
                                  "Cannot write %s/%s (%s of %s failed: %s): free space or fix "
                                  "the directory's permissions",
                                  dir_path, name, step, tmp_name, g_strerror(-r));
        }
        /* The rename is durable only once the directory is. */
        if ((flags & SAFE_FILE_SYNC) && fsync(dir_fd) < 0)
                return safe_error(error, -errno, "Cannot sync the directory %s: %s.", dir_path,
                                  g_strerror(errno));
        return 0;
}

int safe_file_read(int dir_fd, const char *name, char **ret_text, size_t *ret_len)
{
        _cleanup_close_ int fd = safe_file_open(dir_fd, name, O_RDONLY, 0);
        g_autoptr(GByteArray) buf = g_byte_array_new();
        uint8_t chunk[65536];
        ssize_t n;

        if (fd < 0)
                return fd;
        for (;;) {
                n = read(fd, chunk, sizeof(chunk));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                g_byte_array_append(buf, chunk, (guint)n);
        }
        *ret_len = buf->len;
        g_byte_array_append(buf, (const uint8_t *)"", 1);
        *ret_text = (char *)g_byte_array_free(g_steal_pointer(&buf), FALSE);
        return 0;
}
