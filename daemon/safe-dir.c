/* safe-dir: directories no other user can plant links in, and the files kept inside them */
#include "safe-dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

struct SafeDir {
        gint ref;
        int fd;
        char *path;
};

static int safe_error(GError **error, int r, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static int safe_error(GError **error, int r, const char *fmt, ...)
{
        va_list ap;

        if (error && !*error) {
                va_start(ap, fmt);
                *error = g_error_new_valist(G_FILE_ERROR, g_file_error_from_errno(-r), fmt, ap);
                va_end(ap);
        }
        return r;
}

/* "name" for a uid or gid, or its number when the databases do not know it. */
static char *user_name(uid_t uid)
{
        char buf[1024];
        struct passwd pw, *res = NULL;

        if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res)
                return g_strdup(res->pw_name);
        return g_strdup_printf("%u", (unsigned)uid);
}

static char *group_name(gid_t gid)
{
        char buf[1024];
        struct group gr, *res = NULL;

        if (getgrgid_r(gid, &gr, buf, sizeof(buf), &res) == 0 && res)
                return g_strdup(res->gr_name);
        return g_strdup_printf("%u", (unsigned)gid);
}

/* Who may write to the directory besides us: 0 nobody, else which rule it breaks. */
enum intruder { INTRUDER_NONE, INTRUDER_OWNER, INTRUDER_OTHERS, INTRUDER_GROUP };

static enum intruder directory_intruder(const struct stat *st)
{
        if (st->st_uid != 0 && st->st_uid != geteuid())
                return INTRUDER_OWNER;
        if (st->st_mode & S_IWOTH)
                return INTRUDER_OTHERS;
        if ((st->st_mode & S_IWGRP) && st->st_gid != 0 && st->st_gid != getegid())
                return INTRUDER_GROUP;
        return INTRUDER_NONE;
}

int safe_dir_check_fd(int fd, const char *path, GError **error)
{
        g_autofree char *owner = NULL, *me = NULL, *group = NULL;
        enum intruder who;
        struct stat st;
        unsigned mode;

        if (fstat(fd, &st) < 0)
                return safe_error(error, -errno, "Cannot inspect the directory %s: %s", path,
                                  g_strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return safe_error(error, -ENOTDIR, "%s is not a directory; give a directory", path);
        who = directory_intruder(&st);
        if (who == INTRUDER_NONE)
                return 0;
        /* Names only for the message: a user database lookup is not free. */
        mode = st.st_mode & 07777;
        owner = user_name(st.st_uid);
        me = user_name(geteuid());
        if (who == INTRUDER_OWNER)
                return safe_error(error, -EPERM,
                                  "Refusing the directory %s: it is owned by %s (uid %u, mode "
                                  "%04o), who could plant links in it that make %s overwrite "
                                  "other files. Fix: 'chown %s: %s && chmod go-w %s', or use a "
                                  "directory %s owns",
                                  path, owner, (unsigned)st.st_uid, mode, me, me, path, path, me);
        if (who == INTRUDER_OTHERS)
                return safe_error(error, -EPERM,
                                  "Refusing the directory %s: its mode %04o (owner %s) lets "
                                  "every user write to it and plant links that make %s "
                                  "overwrite other files. Fix: 'chmod o-w %s', or use a "
                                  "directory only %s can write to (not /tmp itself)",
                                  path, mode, owner, me, path, me);
        group = group_name(st.st_gid);
        return safe_error(error, -EPERM,
                          "Refusing the directory %s: its mode %04o (owner %s, group %s) lets "
                          "the members of group %s write to it and plant links that make %s "
                          "overwrite other files. Fix: 'chmod g-w %s'",
                          path, mode, owner, group, group, me, path);
}

/* O_DIRECTORY|O_NOFOLLOW on a symbolic link fails with ENOTDIR: tell the two apart. */
static int open_errno(int dir_fd, const char *name)
{
        int r = -errno;
        struct stat st;

        if (r == -ENOTDIR && fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode))
                return -ELOOP;
        return r;
}

/*
 * The directories above fd, up to '/', found through ".." so that they are the real ones
 * whatever links the path went through: each could otherwise let its owner or writers move
 * the directory away and put another in its place. An ancestor must be owned by root or the
 * effective user; one that others may write to must be sticky (as /tmp is), since then only
 * the owner of its entry, already checked, can rename that entry.
 */
static int check_ancestors(int fd, const char *path, GError **error)
{
        g_autofree char *real = realpath(path, NULL);
        g_autofree char *below = g_strdup(real ? real : path);
        _cleanup_close_ int cur = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        struct stat st, parent;

        if (cur < 0 || fstat(cur, &st) < 0)
                return safe_error(error, -errno, "Cannot inspect the directory %s: %s", path,
                                  g_strerror(errno));
        /* PATH_MAX bounds the depth of any directory a path can name. */
        for (unsigned depth = 0; depth < PATH_MAX / 2; depth++) {
                g_autofree char *above = g_path_get_dirname(below);
                int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
                enum intruder who;

                if (up < 0 || fstat(up, &parent) < 0) {
                        int r = -errno;
                        if (up >= 0)
                                close(up);
                        return safe_error(error, r, "Cannot inspect the directory above %s: %s",
                                          below, g_strerror(-r));
                }
                close(cur);
                cur = up;
                if (parent.st_dev == st.st_dev && parent.st_ino == st.st_ino)
                        return 0; /* '/' is its own parent */
                who = directory_intruder(&parent);
                if (who == INTRUDER_OWNER ||
                    (who != INTRUDER_NONE && !(parent.st_mode & S_ISVTX))) {
                        g_autofree char *owner = user_name(parent.st_uid);
                        g_autofree char *me = user_name(geteuid());

                        return safe_error(error, -EPERM,
                                          "Refusing the directory %s: the directory above it, "
                                          "%s (owner %s, mode %04o), lets a user other than %s "
                                          "move it away and put another in its place. Fix: "
                                          "'chown %s: %s && chmod go-w %s', or use a directory "
                                          "below directories only %s can write to, such as "
                                          "/var/lib",
                                          path, above, owner, (unsigned)(parent.st_mode & 07777),
                                          me, me, above, above, me);
                }
                st = parent;
                g_free(below);
                below = g_steal_pointer(&above);
        }
        return safe_error(error, -ELOOP, "The directory %s is nested too deep", path);
}

static int open_error(GError **error, int r, const char *path)
{
        if (r == -ELOOP)
                return safe_error(error, r,
                                  "Refusing the directory %s: it is a symbolic link, and whoever "
                                  "can replace it chooses where files go. Fix: give the real "
                                  "directory (realpath %s)",
                                  path, path);
        if (r == -ENOTDIR)
                return safe_error(error, r, "%s is not a directory; give a directory", path);
        if (r == -ENOENT)
                return safe_error(error, r, "No directory %s; create it (mode 0700) first", path);
        return safe_error(error, r, "Cannot open the directory %s: %s", path, g_strerror(-r));
}

static SafeDir *safe_dir_new(int fd, const char *path)
{
        SafeDir *d = g_new0(SafeDir, 1);

        d->ref = 1;
        d->fd = fd;
        d->path = g_strdup(path);
        return d;
}

int safe_dir_open(const char *given, unsigned flags, mode_t mode, SafeDir **ret, GError **error)
{
        g_autofree char *path = NULL;
        size_t n;
        int fd, r;

        if (!given || !*given)
                return safe_error(error, -EINVAL, "No directory given");
        /* "DIR/" would follow a link at DIR in spite of O_NOFOLLOW: the slashes go. */
        path = g_strdup(given);
        for (n = strlen(path); n > 1 && path[n - 1] == '/'; n--)
                path[n - 1] = '\0';
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && (flags & SAFE_DIR_CREATE)) {
                if (g_mkdir_with_parents(path, (int)mode) < 0)
                        return safe_error(error, -errno, "Cannot create the directory %s: %s", path,
                                          g_strerror(errno));
                fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0)
                return open_error(error, open_errno(AT_FDCWD, path), path);
        r = safe_dir_check_fd(fd, path, error);
        if (r >= 0)
                r = check_ancestors(fd, path, error);
        if (r < 0) {
                close(fd);
                return r;
        }
        *ret = safe_dir_new(fd, path);
        return 0;
}

static int check_name(const SafeDir *d, const char *name, GError **error)
{
        if (name && *name && !strchr(name, '/') && strcmp(name, ".") != 0 &&
            strcmp(name, "..") != 0)
                return 0;
        return safe_error(error, -EINVAL, "Invalid file name '%s' in %s: give one path component",
                          name ? name : "", d->path);
}

int safe_dir_open_sub(SafeDir *d, const char *name, unsigned flags, mode_t mode, SafeDir **ret,
                      GError **error)
{
        g_autofree char *path = NULL;
        int fd, r;

        r = check_name(d, name, error);
        if (r < 0)
                return r;
        path = g_strdup_printf("%s/%s", d->path, name);
        fd = openat(d->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && (flags & SAFE_DIR_CREATE)) {
                if (mkdirat(d->fd, name, mode) < 0 && errno != EEXIST)
                        return safe_error(error, -errno, "Cannot create the directory %s: %s", path,
                                          g_strerror(errno));
                fd = openat(d->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0)
                return open_error(error, open_errno(d->fd, name), path);
        r = safe_dir_check_fd(fd, path, error);
        if (r < 0) {
                close(fd);
                return r;
        }
        *ret = safe_dir_new(fd, path);
        return 0;
}

SafeDir *safe_dir_ref(SafeDir *d)
{
        if (d)
                g_atomic_int_inc(&d->ref);
        return d;
}

void safe_dir_unref(SafeDir *d)
{
        if (!d || !g_atomic_int_dec_and_test(&d->ref))
                return;
        closep(&d->fd);
        g_free(d->path);
        g_free(d);
}

int safe_dir_fd(const SafeDir *d)
{
        return d->fd;
}

const char *safe_dir_path(const SafeDir *d)
{
        return d->path;
}

static const char *file_kind(mode_t mode)
{
        return S_ISDIR(mode)    ? "directory"
               : S_ISFIFO(mode) ? "FIFO"
               : S_ISSOCK(mode) ? "socket"
               : S_ISCHR(mode)  ? "character device"
               : S_ISBLK(mode)  ? "block device"
                                : "file";
}

static int planted_error(SafeDir *d, const char *name, int r, const char *what, GError **error)
{
        return safe_error(error, r,
                          "Refusing %s/%s: it is %s, which vfio-migd never makes; someone "
                          "put it there. Fix: remove it (rm %s/%s) and check who can write to %s",
                          d->path, name, what, d->path, name, d->path);
}

/* A regular file with one link, or the fd is closed and the planted thing named. */
static int check_file(SafeDir *d, const char *name, int fd, GError **error)
{
        g_autofree char *what = NULL;
        struct stat st;

        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return safe_error(error, r, "Cannot inspect %s/%s: %s", d->path, name,
                                  g_strerror(-r));
        }
        if (S_ISREG(st.st_mode) && st.st_nlink == 1)
                return fd;
        close(fd);
        what = S_ISREG(st.st_mode) ? g_strdup_printf("a hard link (%ju links) to another file",
                                                     (uintmax_t)st.st_nlink)
                                   : g_strdup_printf("a %s", file_kind(st.st_mode));
        return planted_error(d, name, -EUCLEAN, what, error);
}

static int file_open_error(SafeDir *d, const char *name, int r, GError **error)
{
        if (r == -ELOOP)
                return planted_error(d, name, r, "a symbolic link", error);
        if (r == -EISDIR) /* a directory opened for writing: refused before check_file */
                return planted_error(d, name, r, "a directory", error);
        if (r == -ENOENT)
                return safe_error(error, r, "No file %s/%s", d->path, name);
        return safe_error(error, r, "Cannot open %s/%s: %s", d->path, name, g_strerror(-r));
}

#define SAFE_OPEN_FLAGS (O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)

int safe_dir_open_file(SafeDir *d, const char *name, int flags, GError **error)
{
        int fd, r = check_name(d, name, error);

        if (r < 0)
                return r;
        fd = openat(d->fd, name, (flags & ~(O_CREAT | O_EXCL)) | SAFE_OPEN_FLAGS);
        if (fd < 0)
                return file_open_error(d, name, -errno, error);
        return check_file(d, name, fd, error);
}

int safe_dir_create_file(SafeDir *d, const char *name, int flags, mode_t mode, GError **error)
{
        int fd, r = check_name(d, name, error);

        if (r < 0)
                return r;
        fd = openat(d->fd, name, flags | O_CREAT | O_EXCL | SAFE_OPEN_FLAGS, mode);
        if (fd < 0 && errno == EEXIST)
                return safe_error(error, -EEXIST, "%s/%s exists already", d->path, name);
        if (fd < 0)
                return file_open_error(d, name, -errno, error);
        return check_file(d, name, fd, error);
}

int safe_dir_open_or_create_file(SafeDir *d, const char *name, int flags, mode_t mode,
                                 GError **error)
{
        int fd, r = check_name(d, name, error);

        if (r < 0)
                return r;
        /* O_CREAT with O_NOFOLLOW fails on a link, dangling or not, instead of creating its
         * target: only a missing name is created. */
        fd = openat(d->fd, name, (flags & ~O_EXCL) | O_CREAT | SAFE_OPEN_FLAGS, mode);
        if (fd < 0)
                return file_open_error(d, name, -errno, error);
        return check_file(d, name, fd, error);
}

int safe_dir_create_temp(SafeDir *d, const char *name, int flags, mode_t mode, GError **error)
{
        int r = check_name(d, name, error);

        if (r < 0)
                return r;
        /* unlinkat removes a link itself, never its target. */
        if (unlinkat(d->fd, name, 0) < 0 && errno != ENOENT)
                return safe_error(error, -errno,
                                  "Cannot remove the old temporary file %s/%s: %s; remove it "
                                  "by hand",
                                  d->path, name, g_strerror(errno));
        return safe_dir_create_file(d, name, flags, mode, error);
}

int safe_dir_read_file(SafeDir *d, const char *name, size_t max, char **ret_text, size_t *ret_len,
                       GError **error)
{
        _cleanup_close_ int fd = safe_dir_open_file(d, name, O_RDONLY, error);
        g_autofree char *buf = NULL;
        struct stat st;
        size_t done = 0;

        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return safe_error(error, -errno, "Cannot inspect %s/%s: %s", d->path, name,
                                  g_strerror(errno));
        if ((uint64_t)st.st_size > max)
                return safe_error(error, -EFBIG,
                                  "%s/%s is %jd bytes, more than the %zu this file can be; "
                                  "move it aside",
                                  d->path, name, (intmax_t)st.st_size, max);
        buf = g_malloc((size_t)st.st_size + 1);
        while (done < (size_t)st.st_size) {
                ssize_t n = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return safe_error(error, -errno, "Cannot read %s/%s: %s", d->path, name,
                                          g_strerror(errno));
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        buf[done] = '\0';
        *ret_text = g_steal_pointer(&buf);
        if (ret_len)
                *ret_len = done;
        return 0;
}

int safe_dir_list(SafeDir *d, GPtrArray **ret_names, GError **error)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        /* A fresh open description: fdopendir owns it and its offset, d's fd stays as it is. */
        int fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent *e;
        DIR *dir;

        if (fd < 0 || !(dir = fdopendir(fd))) {
                int r = -errno;
                if (fd >= 0)
                        close(fd);
                return safe_error(error, r, "Cannot list the directory %s: %s", d->path,
                                  g_strerror(-r));
        }
        while ((errno = 0, e = readdir(dir)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                        g_ptr_array_add(names, g_strdup(e->d_name));
        if (errno != 0) {
                int r = -errno;
                closedir(dir);
                return safe_error(error, r, "Cannot list the directory %s: %s", d->path,
                                  g_strerror(-r));
        }
        closedir(dir);
        *ret_names = g_steal_pointer(&names);
        return 0;
}
