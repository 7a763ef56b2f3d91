/* sysfs-read: files, links and directories beneath a root directory, never out of it */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "host/sysfs-read.h"
#include "util.h"

/* Deeper than any sysfs path; keeps a hostile tree from costing an fd per component. */
#define WALK_MAX_DEPTH 256

/*
 * The directories from the root down to where the walk stands, as open O_PATH fds, so ".."
 * is one step back on this stack: physically right (every entry was reached through real
 * directories) and unable to climb above the root, which is the stack's bottom.
 */
typedef struct Walk {
        GArray *fds;      /* int; [0] is the caller's root fd, not ours to close */
        GPtrArray *names; /* char*: the name of each fd below the root */
        unsigned links;
} Walk;

static void walk_init(Walk *w, int root_fd)
{
        w->fds = g_array_new(FALSE, FALSE, sizeof(int));
        g_array_append_val(w->fds, root_fd);
        w->names = g_ptr_array_new_with_free_func(g_free);
        w->links = 0;
}

static void walk_done(Walk *w)
{
        for (guint i = 1; i < w->fds->len; i++)
                close(g_array_index(w->fds, int, i));
        g_array_unref(w->fds);
        g_ptr_array_unref(w->names);
}

static int walk_top(const Walk *w)
{
        return g_array_index(w->fds, int, w->fds->len - 1);
}

static int walk_down(Walk *w, const char *name)
{
        int fd;

        if (w->fds->len > WALK_MAX_DEPTH)
                return -ENAMETOOLONG;
        fd = openat(walk_top(w), name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        g_array_append_val(w->fds, fd);
        g_ptr_array_add(w->names, g_strdup(name));
        return 0;
}

static int walk_up(Walk *w)
{
        if (w->fds->len == 1)
                return -EXDEV;
        close(walk_top(w));
        g_array_set_size(w->fds, w->fds->len - 1);
        g_ptr_array_set_size(w->names, (gint)w->names->len - 1);
        return 0;
}

/* 1 and the link's text when name is a link (refusing one that leaves the root), 0 when it is
 * anything else. */
static int walk_read_link(Walk *w, const char *name, char **ret)
{
        char buf[PATH_MAX];
        ssize_t n = readlinkat(walk_top(w), name, buf, sizeof(buf));

        if (n < 0)
                return errno == EINVAL ? 0 : -errno;
        if ((size_t)n == sizeof(buf))
                return -ENAMETOOLONG;
        if (++w->links > SYSFS_MAX_LINKS)
                return -ELOOP;
        if (n == 0 || buf[0] == '/')
                return -EXDEV;
        *ret = g_strndup(buf, (gsize)n);
        return 1;
}

/* Copies the next component of *p (slashes skipped) into comp; its length, 0 at the end. */
static int next_component(const char **p, char comp[static NAME_MAX + 1])
{
        size_t len;

        *p += strspn(*p, "/");
        len = strcspn(*p, "/");
        if (len > NAME_MAX)
                return -ENAMETOOLONG;
        memcpy(comp, *p, len);
        comp[len] = '\0';
        *p += len;
        return (int)len;
}

/*
 * Walks path, leaving w at the directory that holds its last component, which goes to
 * *ret_last ("." when the path ends at a directory, as in "a/.."). With follow_last, a link
 * there is followed too, so the last component is no link (when it was looked at).
 */
static int walk_path(Walk *w, const char *path, bool follow_last, char **ret_last)
{
        g_autofree char *todo = g_strdup(path);
        const char *p = todo;
        char comp[NAME_MAX + 1];

        for (;;) {
                char *target = NULL;
                bool last;
                int r = next_component(&p, comp);

                if (r < 0)
                        return r;
                if (r == 0) {
                        *ret_last = g_strdup(".");
                        return 0;
                }
                if (strcmp(comp, ".") == 0)
                        continue;
                if (strcmp(comp, "..") == 0) {
                        r = walk_up(w);
                        if (r < 0)
                                return r;
                        continue;
                }
                last = p[strspn(p, "/")] == '\0';
                if (last && !follow_last) {
                        *ret_last = g_strdup(comp);
                        return 0;
                }
                r = walk_read_link(w, comp, &target);
                if (r < 0)
                        return r;
                if (r > 0) { /* go on along the link, then along the rest */
                        char *rest = g_strconcat(target, "/", p, NULL);
                        g_free(target);
                        g_free(todo);
                        p = todo = rest;
                        continue;
                }
                if (last) {
                        *ret_last = g_strdup(comp);
                        return 0;
                }
                r = walk_down(w, comp);
                if (r < 0)
                        return r;
        }
}

static int read_capped(int fd, char **ret, size_t *ret_len)
{
        g_autoptr(GString) s = g_string_new(NULL);
        char buf[4096];

        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                if (s->len + (size_t)n > SYSFS_MAX_FILE)
                        return -EFBIG;
                g_string_append_len(s, buf, n);
        }
        *ret_len = s->len;
        *ret = g_string_free(g_steal_pointer(&s), FALSE);
        return 0;
}

int sysfs_read_file(int root_fd, const char *path, char **ret, size_t *ret_len)
{
        _cleanup_(walk_done) Walk w;
        g_autofree char *last = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        walk_init(&w, root_fd);
        r = walk_path(&w, path, true, &last);
        if (r < 0)
                return r;
        /* O_NONBLOCK: a FIFO where an attribute should be must not hang the scan. */
        fd = openat(walk_top(&w), last, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        return read_capped(fd, ret, ret_len);
}

int sysfs_read_link(int root_fd, const char *path, char **ret)
{
        _cleanup_(walk_done) Walk w;
        g_autofree char *last = NULL;
        char buf[PATH_MAX];
        ssize_t n;
        int r;

        walk_init(&w, root_fd);
        r = walk_path(&w, path, false, &last);
        if (r < 0)
                return r;
        n = readlinkat(walk_top(&w), last, buf, sizeof(buf));
        if (n < 0)
                return -errno;
        if ((size_t)n == sizeof(buf))
                return -ENAMETOOLONG;
        *ret = g_strndup(buf, (gsize)n);
        return 0;
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int read_names(DIR *d, GPtrArray *names)
{
        struct dirent *e;

        for (errno = 0; (e = readdir(d)); errno = 0)
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                        g_ptr_array_add(names, g_strdup(e->d_name));
        return -errno;
}

int sysfs_list_dir(int root_fd, const char *path, GPtrArray **ret)
{
        _cleanup_(walk_done) Walk w;
        g_autofree char *last = NULL;
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        DIR *d;
        int fd, r;

        walk_init(&w, root_fd);
        r = walk_path(&w, path, true, &last);
        if (r < 0)
                return r;
        fd = openat(walk_top(&w), last, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                close(fd);
                return r;
        }
        r = read_names(d, names);
        closedir(d);
        if (r < 0)
                return r;
        g_ptr_array_sort(names, compare_names);
        *ret = g_steal_pointer(&names);
        return 0;
}

int sysfs_resolve(int root_fd, const char *path, char **ret)
{
        _cleanup_(walk_done) Walk w;
        g_autofree char *last = NULL;
        struct stat st;
        GString *s;
        int r;

        walk_init(&w, root_fd);
        r = walk_path(&w, path, true, &last);
        if (r < 0)
                return r;
        if (fstatat(walk_top(&w), last, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        s = g_string_new(NULL);
        for (guint i = 0; i < w.names->len; i++)
                g_string_append_printf(s, "%s%s", i ? "/" : "", (char *)w.names->pdata[i]);
        if (strcmp(last, ".") != 0)
                g_string_append_printf(s, "%s%s", s->len ? "/" : "", last);
        *ret = g_string_free(s, s->len == 0) ?: g_strdup(".");
        return 0;
}
