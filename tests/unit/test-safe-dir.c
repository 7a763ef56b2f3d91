/* test-safe-dir: directories another user could tamper with are refused, planted links never
 * followed
 *
 * Real directories and files under a temporary directory; a "victim" file outside the
 * directory under test stands for a file of root's that a planted link points to, and every
 * test that plants a link checks it afterwards byte for byte. Ownership tests chown to
 * nobody and so need root; they skip otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safe-dir.h"
#include "util.h"

#define VICTIM_TEXT "root's secret, mode 0600\n"

typedef struct Fixture {
        char *top;    /* the temporary directory */
        char *dir;    /* top/dir: the directory under test, 0700 */
        char *victim; /* top/victim: what planted links point to */
        char *gone;   /* top/gone: a dangling link's target */
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        f->top = g_dir_make_tmp("test-safe-dir-XXXXXX", &error);
        g_assert_no_error(error);
        f->dir = g_build_filename(f->top, "dir", NULL);
        f->victim = g_build_filename(f->top, "victim", NULL);
        f->gone = g_build_filename(f->top, "gone", NULL);
        g_assert_cmpint(mkdir(f->dir, 0700), ==, 0);
        g_assert_true(g_file_set_contents(f->victim, VICTIM_TEXT, -1, NULL));
        g_assert_cmpint(chmod(f->victim, 0600), ==, 0);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        return remove(path) < 0 ? -errno : 0;
}

static void teardown(Fixture *f, gconstpointer data)
{
        g_assert_cmpint(nftw(f->top, remove_entry, 16, FTW_DEPTH | FTW_PHYS), ==, 0);
        g_free(f->top);
        g_free(f->dir);
        g_free(f->victim);
        g_free(f->gone);
}

/* ---- helpers ---- */

static char *in_dir(Fixture *f, const char *name)
{
        return g_build_filename(f->dir, name, NULL);
}

static void plant_link(Fixture *f, const char *name, const char *target)
{
        g_autofree char *path = in_dir(f, name);

        g_assert_cmpint(symlink(target, path), ==, 0);
}

static void assert_victim_untouched(Fixture *f)
{
        g_autofree char *text = NULL;
        struct stat st;

        g_assert_true(g_file_get_contents(f->victim, &text, NULL, NULL));
        g_assert_cmpstr(text, ==, VICTIM_TEXT);
        g_assert_cmpint(stat(f->victim, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0600);
        g_assert_cmpint(st.st_nlink, ==, 1);
        g_assert_false(g_file_test(f->gone, G_FILE_TEST_EXISTS));
}

static bool is_link(Fixture *f, const char *name)
{
        g_autofree char *path = in_dir(f, name);

        return g_file_test(path, G_FILE_TEST_IS_SYMLINK);
}

static SafeDir *open_dir(Fixture *f)
{
        g_autoptr(GError) error = NULL;
        SafeDir *d = NULL;

        g_assert_cmpint(safe_dir_open(f->dir, 0, 0, &d, &error), ==, 0);
        g_assert_no_error(error);
        return d;
}

static void assert_message(const GError *error, const char *const *words)
{
        g_assert_nonnull(error);
        for (; *words; words++)
                if (!strstr(error->message, *words))
                        g_error("'%s' not in: %s", *words, error->message);
}

static bool need_root(void)
{
        if (geteuid() == 0)
                return true;
        g_test_skip("needs root to chown a directory to another user");
        return false;
}

/* ---- the directory ---- */

static void test_open_accepts_own_0700(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);

        g_assert_cmpstr(safe_dir_path(d), ==, f->dir);
        g_assert_cmpint(safe_dir_fd(d), >=, 0);
}

static void test_open_creates_missing_with_mode(Fixture *f, gconstpointer data)
{
        g_autofree char *path = g_build_filename(f->dir, "a", "b", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(SafeDir) d = NULL;
        struct stat st;

        g_assert_cmpint(safe_dir_open(path, 0, 0700, &d, &error), ==, -ENOENT);
        assert_message(error, (const char *const[]){path, "create it", NULL});
        g_clear_error(&error);
        g_assert_cmpint(safe_dir_open(path, SAFE_DIR_CREATE, 0700, &d, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(stat(path, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0700);
}

static void test_open_refuses_world_writable(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        SafeDir *d = NULL;

        /* /tmp's own mode: sticky does not help, a user can still plant a name. */
        g_assert_cmpint(chmod(f->dir, 01777), ==, 0);
        g_assert_cmpint(safe_dir_open(f->dir, 0, 0, &d, &error), ==, -EPERM);
        g_assert_null(d);
        assert_message(error,
                       (const char *const[]){f->dir, "1777", "every user", "chmod o-w", NULL});
}

static void test_open_refuses_other_owner(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        struct passwd *nobody = getpwnam("nobody");
        SafeDir *d = NULL;

        if (!need_root())
                return;
        g_assert_nonnull(nobody);
        /* The reproduction: a state directory pre-created by nobody, mode 0755. */
        g_assert_cmpint(chmod(f->dir, 0755), ==, 0);
        g_assert_cmpint(chown(f->dir, nobody->pw_uid, (gid_t)-1), ==, 0);
        g_assert_cmpint(safe_dir_open(f->dir, SAFE_DIR_CREATE, 0700, &d, &error), ==, -EPERM);
        g_assert_null(d);
        assert_message(error,
                       (const char *const[]){f->dir, "owned by nobody", "0755", "chown", NULL});
}

static void test_open_refuses_foreign_group_writable(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        struct passwd *nobody = getpwnam("nobody");
        SafeDir *d = NULL;

        if (!need_root())
                return;
        g_assert_cmpint(chmod(f->dir, 0770), ==, 0);
        g_assert_cmpint(chown(f->dir, (uid_t)-1, nobody->pw_gid), ==, 0);
        g_assert_cmpint(safe_dir_open(f->dir, 0, 0, &d, &error), ==, -EPERM);
        assert_message(error, (const char *const[]){f->dir, "0770", "chmod g-w", NULL});
}

static void test_open_accepts_own_group_writable(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = NULL;

        /* The group is the effective one (root's in the tests): its members are trusted. */
        g_assert_cmpint(chmod(f->dir, 0770), ==, 0);
        g_assert_cmpint(chown(f->dir, (uid_t)-1, getegid()), ==, 0);
        d = open_dir(f);
}

/* nested below top/mid, whose owner and mode the test sets */
static char *nested_dir(Fixture *f, mode_t mid_mode)
{
        g_autofree char *mid = g_build_filename(f->top, "mid", NULL);
        char *dir = g_build_filename(mid, "dir", NULL);

        g_assert_cmpint(mkdir(mid, 0755), ==, 0);
        g_assert_cmpint(chmod(mid, mid_mode), ==, 0);
        g_assert_cmpint(mkdir(dir, 0700), ==, 0);
        return dir;
}

static void test_open_refuses_a_parent_owned_by_nobody(Fixture *f, gconstpointer data)
{
        g_autofree char *dir = nested_dir(f, 0755);
        g_autofree char *mid = g_path_get_dirname(dir);
        g_autofree char *link = g_build_filename(f->top, "link", NULL);
        g_autofree char *via = g_build_filename(link, "dir", NULL);
        g_autoptr(GError) error = NULL;
        struct passwd *nobody = getpwnam("nobody");
        SafeDir *d = NULL;

        if (!need_root())
                return;
        /* nobody could rename dir away and put a directory of root's, or a link, there */
        g_assert_cmpint(chown(mid, nobody->pw_uid, nobody->pw_gid), ==, 0);
        g_assert_cmpint(safe_dir_open(dir, 0, 0, &d, &error), ==, -EPERM);
        assert_message(error, (const char *const[]){dir, mid, "owner nobody", "chown", NULL});
        g_clear_error(&error);
        /* reached through a link elsewhere, the real parent is what counts */
        g_assert_cmpint(symlink(mid, link), ==, 0);
        g_assert_cmpint(safe_dir_open(via, 0, 0, &d, &error), ==, -EPERM);
        assert_message(error, (const char *const[]){mid, NULL});
}

static void test_open_refuses_a_world_writable_parent(Fixture *f, gconstpointer data)
{
        g_autofree char *dir = nested_dir(f, 0777);
        g_autoptr(GError) error = NULL;
        SafeDir *d = NULL;

        g_assert_cmpint(safe_dir_open(dir, 0, 0, &d, &error), ==, -EPERM);
        assert_message(error, (const char *const[]){dir, "0777", "chmod go-w", NULL});
}

static void test_open_accepts_a_sticky_parent(Fixture *f, gconstpointer data)
{
        g_autofree char *dir = nested_dir(f, 01777);
        g_autoptr(GError) error = NULL;
        g_autoptr(SafeDir) d = NULL;

        /* as /tmp/XXXXXX is: only root, who owns dir, can rename it */
        g_assert_cmpint(safe_dir_open(dir, 0, 0, &d, &error), ==, 0);
        g_assert_no_error(error);
}

static void test_open_refuses_symlink(Fixture *f, gconstpointer data)
{
        g_autofree char *link = g_build_filename(f->top, "link", NULL);
        g_autofree char *slashed = g_strconcat(link, "//", NULL);
        g_autoptr(GError) error = NULL;
        SafeDir *d = NULL;

        g_assert_cmpint(symlink(f->dir, link), ==, 0);
        g_assert_cmpint(safe_dir_open(link, SAFE_DIR_CREATE, 0700, &d, &error), ==, -ELOOP);
        assert_message(error, (const char *const[]){link, "symbolic link", "realpath", NULL});
        g_clear_error(&error);
        /* A trailing slash makes the kernel follow the link whatever O_NOFOLLOW says. */
        g_assert_cmpint(safe_dir_open(slashed, 0, 0, &d, &error), ==, -ELOOP);
        g_assert_null(d);
}

static void test_open_refuses_a_file(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        SafeDir *d = NULL;

        g_assert_cmpint(safe_dir_open(f->victim, 0, 0, &d, &error), ==, -ENOTDIR);
        assert_message(error, (const char *const[]){f->victim, "not a directory", NULL});
}

static void test_sub_refuses_symlink(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(SafeDir) sub = NULL;
        g_autoptr(GError) error = NULL;

        plant_link(f, ".p2p", f->top);
        g_assert_cmpint(safe_dir_open_sub(d, ".p2p", SAFE_DIR_CREATE, 0700, &sub, &error), ==,
                        -ELOOP);
        g_assert_null(sub);
        g_clear_error(&error);
        g_assert_cmpint(safe_dir_open_sub(d, "new", SAFE_DIR_CREATE, 0700, &sub, &error), ==, 0);
        g_assert_true(g_str_has_suffix(safe_dir_path(sub), "/dir/new"));
}

/* ---- files ---- */

static void test_open_file_refuses_symlink(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;

        plant_link(f, "dev.json", f->victim);
        g_assert_cmpint(safe_dir_open_file(d, "dev.json", O_RDWR, &error), ==, -ELOOP);
        assert_message(error, (const char *const[]){"dev.json", "symbolic link", "rm ", NULL});
        assert_victim_untouched(f);
}

static void test_open_file_refuses_hard_link(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;
        g_autofree char *path = in_dir(f, "dev.json");

        g_assert_cmpint(link(f->victim, path), ==, 0);
        g_assert_cmpint(safe_dir_open_file(d, "dev.json", O_RDWR, &error), ==, -EUCLEAN);
        assert_message(error, (const char *const[]){"hard link", "rm ", NULL});
        g_assert_cmpint(unlink(path), ==, 0);
        assert_victim_untouched(f);
}

static void test_open_file_refuses_fifo_without_blocking(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;
        g_autofree char *path = in_dir(f, "dev.json");

        /* Without O_NONBLOCK this open would wait for a writer forever. */
        g_assert_cmpint(mkfifo(path, 0600), ==, 0);
        g_assert_cmpint(safe_dir_open_file(d, "dev.json", O_RDONLY, &error), ==, -EUCLEAN);
        assert_message(error, (const char *const[]){"FIFO", NULL});
}

static void test_open_file_refuses_a_directory(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;
        g_autofree char *path = in_dir(f, "dev.json");

        g_assert_cmpint(mkdir(path, 0700), ==, 0);
        g_assert_cmpint(safe_dir_open_file(d, "dev.json", O_WRONLY, &error), ==, -EISDIR);
        assert_message(error, (const char *const[]){"dev.json", "a directory", NULL});
        g_clear_error(&error);
        g_assert_cmpint(safe_dir_open_file(d, "dev.json", O_RDONLY, &error), ==, -EUCLEAN);
        assert_message(error, (const char *const[]){"dev.json", "a directory", NULL});
}

static void test_open_file_refuses_a_path(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(safe_dir_open_file(d, "../victim", O_RDONLY, &error), ==, -EINVAL);
        assert_message(error, (const char *const[]){"../victim", "one path component", NULL});
        assert_victim_untouched(f);
}

static void test_create_refuses_dangling_link(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;

        plant_link(f, "new.json", f->gone);
        g_assert_cmpint(safe_dir_create_file(d, "new.json", O_WRONLY, 0600, &error), ==, -EEXIST);
        assert_victim_untouched(f);
}

static void test_open_or_create_refuses_links(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;

        /* The reproduction's lock file, and a dangling one that would have created a file. */
        plant_link(f, ".nic9.lock", f->victim);
        plant_link(f, ".nic8.lock", f->gone);
        g_assert_cmpint(safe_dir_open_or_create_file(d, ".nic9.lock", O_RDWR, 0600, &error), ==,
                        -ELOOP);
        assert_message(error, (const char *const[]){".nic9.lock", "symbolic link", NULL});
        g_clear_error(&error);
        g_assert_cmpint(safe_dir_open_or_create_file(d, ".nic8.lock", O_RDWR, 0600, &error), ==,
                        -ELOOP);
        assert_victim_untouched(f);
        /* A missing name is created, mode 0600. */
        fd = safe_dir_open_or_create_file(d, ".nic7.lock", O_RDWR, 0600, NULL);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(fstat(fd, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0600);
}

static void test_temp_replaces_planted_link(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        _cleanup_close_ int fd = -1;

        plant_link(f, ".nic9.json.tmp", f->victim);
        fd = safe_dir_create_temp(d, ".nic9.json.tmp", O_WRONLY, 0600, NULL);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, "x", 1), ==, 1);
        g_assert_false(is_link(f, ".nic9.json.tmp"));
        assert_victim_untouched(f);
}

static void test_temp_fails_on_a_directory(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;
        g_autofree char *tmp = in_dir(f, "j.tmp");

        g_assert_cmpint(mkdir(tmp, 0700), ==, 0);
        g_assert_cmpint(safe_dir_create_temp(d, "j.tmp", O_WRONLY, 0600, &error), ==, -EISDIR);
        assert_message(error, (const char *const[]){"j.tmp", "remove it", NULL});
        g_assert_true(g_file_test(tmp, G_FILE_TEST_IS_DIR));
}

static void test_read_refuses_symlink(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;
        g_autofree char *text = NULL;

        plant_link(f, "journal.json", f->victim);
        g_assert_cmpint(safe_dir_read_file(d, "journal.json", 1 << 20, &text, NULL, &error), ==,
                        -ELOOP);
        g_assert_null(text);
        assert_message(error, (const char *const[]){"journal.json", "symbolic link", NULL});
}

static void test_read_bounds_the_size(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GError) error = NULL;
        g_autofree char *path = in_dir(f, "big");
        g_autofree char *text = NULL;
        size_t len = 0;

        g_assert_true(g_file_set_contents(path, "0123456789", -1, NULL));
        g_assert_cmpint(safe_dir_read_file(d, "big", 9, &text, &len, &error), ==, -EFBIG);
        assert_message(error, (const char *const[]){"big", "10 bytes", NULL});
        g_clear_error(&error);
        g_assert_cmpint(safe_dir_read_file(d, "big", 10, &text, &len, &error), ==, 0);
        g_assert_cmpstr(text, ==, "0123456789");
        g_assert_cmpuint(len, ==, 10);
}

static void test_list_names_every_entry(Fixture *f, gconstpointer data)
{
        g_autoptr(SafeDir) d = open_dir(f);
        g_autoptr(GPtrArray) names = NULL;
        g_autofree char *a = in_dir(f, "a");

        plant_link(f, "b", f->victim);
        g_assert_true(g_file_set_contents(a, "", 0, NULL));
        g_assert_cmpint(safe_dir_list(d, &names, NULL), ==, 0);
        g_assert_cmpuint(names->len, ==, 2);
        /* twice: the listing has its own offset */
        g_clear_pointer(&names, g_ptr_array_unref);
        g_assert_cmpint(safe_dir_list(d, &names, NULL), ==, 0);
        g_assert_cmpuint(names->len, ==, 2);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
#define T(path, fn) g_test_add("/safe-dir/" path, Fixture, NULL, setup, fn, teardown)
        T("open/accepts-its-own-0700-directory", test_open_accepts_own_0700);
        T("open/creates-a-missing-directory-with-its-mode", test_open_creates_missing_with_mode);
        T("open/refuses-a-world-writable-directory", test_open_refuses_world_writable);
        T("open/refuses-a-directory-owned-by-nobody", test_open_refuses_other_owner);
        T("open/refuses-a-directory-another-group-can-write",
          test_open_refuses_foreign_group_writable);
        T("open/accepts-a-directory-its-own-group-can-write", test_open_accepts_own_group_writable);
        T("open/refuses-a-symbolic-link", test_open_refuses_symlink);
        T("open/refuses-a-parent-owned-by-nobody", test_open_refuses_a_parent_owned_by_nobody);
        T("open/refuses-a-world-writable-parent", test_open_refuses_a_world_writable_parent);
        T("open/accepts-a-sticky-world-writable-parent", test_open_accepts_a_sticky_parent);
        T("open/refuses-a-file", test_open_refuses_a_file);
        T("sub/refuses-a-symbolic-link", test_sub_refuses_symlink);
        T("file/open-refuses-a-symbolic-link", test_open_file_refuses_symlink);
        T("file/open-refuses-a-hard-link", test_open_file_refuses_hard_link);
        T("file/open-refuses-a-fifo-without-blocking",
          test_open_file_refuses_fifo_without_blocking);
        T("file/open-refuses-a-path", test_open_file_refuses_a_path);
        T("file/open-refuses-a-directory", test_open_file_refuses_a_directory);
        T("file/create-refuses-a-dangling-link", test_create_refuses_dangling_link);
        T("file/open-or-create-refuses-planted-lock-links", test_open_or_create_refuses_links);
        T("file/temp-replaces-a-planted-link", test_temp_replaces_planted_link);
        T("file/temp-fails-on-a-directory", test_temp_fails_on_a_directory);
        T("read/refuses-a-symbolic-link", test_read_refuses_symlink);
        T("read/bounds-the-size", test_read_bounds_the_size);
        T("list/names-every-entry", test_list_names_every_entry);
#undef T
        return g_test_run();
}
