/* test-safe-dir: directories another user could write are refused, and no planted link is
 * followed
 *
 * Real directories, real links, run as root: the "other user" is uid 65534 (chown), the
 * victim a root 0600 file outside the directory that must keep its content and mode. Every
 * write test runs twice, with O_TMPFILE and with the O_EXCL temporary that replaces it on
 * file systems without it (SAFE_FILE_NO_TMPFILE). */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safe-dir.h"
#include "victim.h"

#define NOBODY      65534

static const SafeDirUse use = {"test directory", "--test-dir"};

typedef struct Fixture {
        char *top;    /* the temporary tree */
        char *dir;    /* top/dir: the directory under test, root's, 0700 */
        char *victim; /* top/victim: a root 0600 file a planted link points to */
        char *absent; /* top/absent: where a dangling link points; must stay absent */
        int dir_fd;
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        f->top = g_dir_make_tmp("test-safe-dir-XXXXXX", &error);
        g_assert_no_error(error);
        f->dir = g_build_filename(f->top, "dir", NULL);
        f->victim = g_build_filename(f->top, "victim", NULL);
        f->absent = g_build_filename(f->top, "absent", NULL);
        g_assert_cmpint(g_mkdir(f->dir, 0700), ==, 0);
        victim_create(f->victim);
        g_assert_cmpint(safe_dir_open(f->dir, 0, &use, &f->dir_fd, &error), ==, 0);
        g_assert_no_error(error);
}

static void teardown(Fixture *f, gconstpointer data)
{
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->top);

        close(f->dir_fd);
        g_assert_cmpint(system(cmd), ==, 0);
        g_free(f->top);
        g_free(f->dir);
        g_free(f->victim);
        g_free(f->absent);
}

static char *in_dir(const Fixture *f, const char *name)
{
        return g_build_filename(f->dir, name, NULL);
}

static void plant(const Fixture *f, const char *name, const char *target)
{
        g_autofree char *link = in_dir(f, name);

        g_assert_cmpint(symlink(target, link), ==, 0);
}

static void assert_victim_untouched(const Fixture *f)
{
        victim_assert_untouched(f->victim);
        g_assert_false(g_file_test(f->absent, G_FILE_TEST_EXISTS | G_FILE_TEST_IS_SYMLINK));
}

static void assert_file(const Fixture *f, const char *name, const char *text, mode_t mode)
{
        g_autofree char *path = in_dir(f, name);
        g_autofree char *got = NULL;
        struct stat st;

        g_assert_cmpint(lstat(path, &st), ==, 0);
        g_assert_true(S_ISREG(st.st_mode));
        g_assert_cmpint(st.st_mode & 07777, ==, mode);
        g_assert_true(g_file_get_contents(path, &got, NULL, NULL));
        g_assert_cmpstr(got, ==, text);
}

static void assert_absent(const Fixture *f, const char *name)
{
        g_autofree char *path = in_dir(f, name);
        struct stat st;

        g_assert_cmpint(lstat(path, &st), ==, -1);
        g_assert_cmpint(errno, ==, ENOENT);
}

static void assert_refused(const char *path, mode_t create_mode, int err, const char *words)
{
        g_autoptr(GError) error = NULL;
        int fd = -1;

        g_assert_cmpint(safe_dir_open(path, create_mode, &use, &fd, &error), ==, err);
        g_assert_cmpint(fd, ==, -1);
        g_assert_nonnull(error);
        g_assert_nonnull(strstr(error->message, path));
        g_assert_nonnull(strstr(error->message, "test directory"));
        g_assert_nonnull(strstr(error->message, words));
}

/* ---- the directory ---- */

static void test_private_dir_is_accepted(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        int fd = -1;

        /* The daemon's own directory, 0755 as /var/lib/vfio-migd/sim is. */
        g_assert_cmpint(chmod(f->dir, 0755), ==, 0);
        g_assert_cmpint(safe_dir_open(f->dir, 0, &use, &fd, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpint(fd, >=, 0);
        close(fd);
}

static void test_missing_dir_is_created_with_its_mode(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *path = g_build_filename(f->dir, "a", "b", NULL);
        struct stat st;
        int fd = -1;

        g_assert_cmpint(safe_dir_open(path, 0700, &use, &fd, &error), ==, 0);
        g_assert_no_error(error);
        close(fd);
        g_assert_cmpint(stat(path, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0700);
}

static void test_missing_dir_without_create_is_enoent(Fixture *f, gconstpointer data)
{
        g_autofree char *path = in_dir(f, "missing");

        assert_refused(path, 0, -ENOENT, "give another one with --test-dir");
        assert_absent(f, "missing");
}

/* A parent that is a dangling link: mkdir fails, and nothing appears where it points. */
static void test_uncreatable_dir_is_refused_by_name(Fixture *f, gconstpointer data)
{
        g_autofree char *path = g_build_filename(f->dir, "dangling", "a", "b", NULL);

        plant(f, "dangling", f->absent);
        assert_refused(path, 0700, -ENOENT, "Cannot create");
        assert_victim_untouched(f);
}

static void test_other_users_dir_is_refused(Fixture *f, gconstpointer data)
{
        g_assert_cmpint(chown(f->dir, NOBODY, NOBODY), ==, 0);
        assert_refused(f->dir, 0, -EPERM, "chown root:");
}

static void test_group_writable_dir_is_refused(Fixture *f, gconstpointer data)
{
        g_assert_cmpint(chmod(f->dir, 0770), ==, 0);
        assert_refused(f->dir, 0, -EPERM, "chmod go-w");
}

static void test_world_writable_dir_is_refused(Fixture *f, gconstpointer data)
{
        g_assert_cmpint(chmod(f->dir, 0777), ==, 0);
        assert_refused(f->dir, 0, -EPERM, "writable by others");
}

/* /tmp itself: sticky keeps others from renaming our files, not from planting links. */
static void test_shared_sticky_dir_is_refused(Fixture *f, gconstpointer data)
{
        g_assert_cmpint(chmod(f->dir, 01777), ==, 0);
        assert_refused(f->dir, 0, -EPERM, "mktemp -d");
}

/* Whoever may write a parent can move the directory away and put a link in its place. */
static void test_parent_of_another_user_is_refused(Fixture *f, gconstpointer data)
{
        g_assert_cmpint(chown(f->top, NOBODY, NOBODY), ==, 0);
        assert_refused(f->dir, 0, -EPERM, "which uid 65534 owns");
}

static void test_writable_parent_is_refused(Fixture *f, gconstpointer data)
{
        g_autofree char *words = NULL;

        g_assert_cmpint(chmod(f->top, 0777), ==, 0);
        words = g_strdup_printf("inside %s, which others may write (mode 0777)", f->top);
        assert_refused(f->dir, 0, -EPERM, words);
}

/* As under /tmp: others cannot move what is ours out of a sticky directory. */
static void test_sticky_parent_is_accepted(Fixture *f, gconstpointer data)
{
        int fd = -1;

        g_assert_cmpint(chmod(f->top, 01777), ==, 0);
        g_assert_cmpint(safe_dir_open(f->dir, 0, &use, &fd, NULL), ==, 0);
        close(fd);
}

static void test_dir_link_is_refused(Fixture *f, gconstpointer data)
{
        g_autofree char *link = g_build_filename(f->top, "link", NULL);

        g_assert_cmpint(symlink(f->dir, link), ==, 0);
        assert_refused(link, 0700, -ELOOP, "symbolic link");
}

/* Creating the directory would create it wherever the link points. */
static void test_dangling_dir_link_creates_nothing(Fixture *f, gconstpointer data)
{
        g_autofree char *link = g_build_filename(f->top, "link", NULL);

        g_assert_cmpint(symlink(f->absent, link), ==, 0);
        assert_refused(link, 0700, -ELOOP, "symbolic link");
        assert_victim_untouched(f);
}

static void test_file_is_not_a_directory(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        int fd = open(f->victim, O_RDONLY | O_CLOEXEC);

        assert_refused(f->victim, 0700, -ENOTDIR, "Cannot open");
        g_assert_cmpint(safe_dir_check(fd, f->victim, &use, &error), ==, -ENOTDIR);
        g_assert_nonnull(strstr(error->message, "not a directory"));
        close(fd);
}

/* ---- writing a file ---- */

static unsigned write_flags(gconstpointer data)
{
        return GPOINTER_TO_UINT(data);
}

static int replace(const Fixture *f, const char *text, unsigned flags, GError **error)
{
        return safe_file_replace(f->dir_fd, f->dir, "data", ".data.tmp", text, strlen(text), 0600,
                                 flags, error);
}

static void test_replace_writes_0600_and_leaves_no_temporary(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(replace(f, "one\n", write_flags(data), &error), ==, 0);
        g_assert_no_error(error);
        assert_file(f, "data", "one\n", 0600);
        g_assert_cmpint(replace(f, "two\n", write_flags(data) | SAFE_FILE_SYNC, &error), ==, 0);
        assert_file(f, "data", "two\n", 0600);
        assert_absent(f, ".data.tmp");
}

static void test_replace_follows_no_temporary_link(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        plant(f, ".data.tmp", f->victim);
        g_assert_cmpint(replace(f, "mine\n", write_flags(data), &error), ==, 0);
        g_assert_no_error(error);
        assert_victim_untouched(f);
        assert_file(f, "data", "mine\n", 0600);
        assert_absent(f, ".data.tmp");
}

static void test_replace_creates_nothing_through_a_dangling_link(Fixture *f, gconstpointer data)
{
        plant(f, ".data.tmp", f->absent);
        g_assert_cmpint(replace(f, "mine\n", write_flags(data), NULL), ==, 0);
        assert_victim_untouched(f);
        assert_file(f, "data", "mine\n", 0600);
}

/* The rename replaces a link at the name itself; it never writes where it points. */
static void test_replace_replaces_a_link_at_the_name(Fixture *f, gconstpointer data)
{
        plant(f, "data", f->victim);
        g_assert_cmpint(replace(f, "mine\n", write_flags(data), NULL), ==, 0);
        assert_victim_untouched(f);
        assert_file(f, "data", "mine\n", 0600);
}

static void test_failed_write_leaves_the_old_file(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *big = g_strnfill(8192, 'x');
        struct rlimit rl;

        g_assert_cmpint(replace(f, "old\n", write_flags(data), NULL), ==, 0);
        signal(SIGXFSZ, SIG_IGN);
        g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &rl), ==, 0);
        rl.rlim_cur = 4096;
        g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &rl), ==, 0);
        g_assert_cmpint(replace(f, big, write_flags(data), &error), ==, -EFBIG);
        rl.rlim_cur = RLIM_INFINITY;
        g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &rl), ==, 0);
        g_assert_nonnull(strstr(error->message, "write of .data.tmp failed"));
        assert_file(f, "data", "old\n", 0600);
        assert_absent(f, ".data.tmp");
}

static void test_failed_rename_leaves_no_temporary(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *sub = in_dir(f, "data");

        g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);
        g_assert_cmpint(replace(f, "mine\n", write_flags(data), &error), ==, -EISDIR);
        g_assert_nonnull(strstr(error->message, "rename of .data.tmp failed"));
        assert_absent(f, ".data.tmp");
}

/* ---- the temporary of callers that fill it themselves ---- */

static ino_t inode_of(const Fixture *f, const char *name)
{
        g_autofree char *path = in_dir(f, name);
        struct stat st;

        g_assert_cmpint(lstat(path, &st), ==, 0);
        return st.st_ino;
}

/* Held open so its inode number cannot be handed to the new file. */
static int hold(const Fixture *f, const char *name)
{
        g_autofree char *path = in_dir(f, name);
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        g_assert_cmpint(fd, >=, 0);
        return fd;
}

/* The file held is no longer under any name: it was replaced, not written. */
static void assert_replaced(int held)
{
        struct stat st;

        g_assert_cmpint(fstat(held, &st), ==, 0);
        g_assert_cmpuint(st.st_nlink, ==, 0);
        close(held);
}

static void write_file(const Fixture *f, const char *name, const char *text, mode_t mode)
{
        g_autofree char *path = in_dir(f, name);

        g_assert_true(g_file_set_contents(path, text, -1, NULL));
        g_assert_cmpint(chmod(path, mode), ==, 0);
}

static void test_temp_reuses_its_own_spare_as_0600(Fixture *f, gconstpointer data)
{
        ino_t before;
        int fd;

        write_file(f, ".spare", "old version\n", 0644);
        before = inode_of(f, ".spare");
        fd = safe_file_open_temp(f->dir_fd, f->dir, ".spare", 0600, true, NULL);
        g_assert_cmpint(fd, >=, 0);
        close(fd);
        g_assert_cmpuint(inode_of(f, ".spare"), ==, before);
        assert_file(f, ".spare", "old version\n", 0600);
}

static void test_temp_without_reuse_is_a_new_empty_file(Fixture *f, gconstpointer data)
{
        int held, fd;

        write_file(f, ".spare", "old version\n", 0600);
        held = hold(f, ".spare");
        fd = safe_file_open_temp(f->dir_fd, f->dir, ".spare", 0600, false, NULL);
        g_assert_cmpint(fd, >=, 0);
        close(fd);
        assert_replaced(held);
        assert_file(f, ".spare", "", 0600);
}

/* A hard link to the victim (where protected_hardlinks is off) is not ours to rewrite. */
static void test_temp_does_not_reuse_a_hard_link(Fixture *f, gconstpointer data)
{
        g_autofree char *spare = in_dir(f, ".spare");
        int fd;

        g_assert_cmpint(link(f->victim, spare), ==, 0);
        fd = safe_file_open_temp(f->dir_fd, f->dir, ".spare", 0600, true, NULL);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, "mine", 4), ==, 4);
        close(fd);
        assert_victim_untouched(f);
        assert_file(f, ".spare", "mine", 0600);
}

static void test_temp_does_not_reuse_another_users_file(Fixture *f, gconstpointer data)
{
        g_autofree char *spare = in_dir(f, ".spare");
        int held, fd;

        write_file(f, ".spare", "theirs\n", 0600);
        g_assert_cmpint(chown(spare, NOBODY, NOBODY), ==, 0);
        held = hold(f, ".spare");
        fd = safe_file_open_temp(f->dir_fd, f->dir, ".spare", 0600, true, NULL);
        g_assert_cmpint(fd, >=, 0);
        close(fd);
        assert_replaced(held);
        assert_file(f, ".spare", "", 0600);
}

static void test_temp_follows_no_link(Fixture *f, gconstpointer data)
{
        gboolean reuse = GPOINTER_TO_INT(data);
        int fd;

        plant(f, ".spare", f->victim);
        plant(f, ".dangling", f->absent);
        fd = safe_file_open_temp(f->dir_fd, f->dir, ".spare", 0600, reuse, NULL);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(write(fd, "mine", 4), ==, 4);
        close(fd);
        fd = safe_file_open_temp(f->dir_fd, f->dir, ".dangling", 0600, reuse, NULL);
        g_assert_cmpint(fd, >=, 0);
        close(fd);
        assert_victim_untouched(f);
        assert_file(f, ".spare", "mine", 0600);
        assert_file(f, ".dangling", "", 0600);
}

/* What cannot be unlinked is an error naming it; nothing is written anywhere. */
static void test_temp_directory_at_the_name_is_an_error(Fixture *f, gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *sub = in_dir(f, ".spare");

        g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);
        g_assert_cmpint(safe_file_open_temp(f->dir_fd, f->dir, ".spare", 0600, true, &error), ==,
                        -EISDIR);
        g_assert_nonnull(strstr(error->message, sub));
        g_assert_nonnull(strstr(error->message, "remove what stands there"));
}

/* ---- opening and reading ---- */

static void test_open_refuses_a_link(Fixture *f, gconstpointer data)
{
        plant(f, "lock", f->victim);
        plant(f, "dangling.lock", f->absent);
        g_assert_cmpint(safe_file_open(f->dir_fd, "lock", O_RDWR | O_CREAT, 0600), ==, -ELOOP);
        g_assert_cmpint(safe_file_open(f->dir_fd, "dangling.lock", O_RDWR | O_CREAT, 0600), ==,
                        -ELOOP);
        assert_victim_untouched(f);
}

static void test_read_reads_the_whole_file_and_no_link(Fixture *f, gconstpointer data)
{
        g_autofree char *big = g_strnfill(200000, 'y');
        g_autofree char *text = NULL;
        size_t len = 0;

        write_file(f, "big", big, 0600);
        g_assert_cmpint(safe_file_read(f->dir_fd, "big", &text, &len), ==, 0);
        g_assert_cmpuint(len, ==, 200000);
        g_assert_cmpstr(text, ==, big);
        plant(f, "link", f->victim);
        g_assert_cmpint(safe_file_read(f->dir_fd, "link", &text, &len), ==, -ELOOP);
        g_assert_cmpint(safe_file_read(f->dir_fd, "missing", &text, &len), ==, -ENOENT);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        /* Other users and chown are what the tests are about. */
        if (geteuid() != 0) {
                g_test_skip("needs root (chown to another user)");
                return g_test_run();
        }
#define ADD(path, fn)         g_test_add(path, Fixture, NULL, setup, fn, teardown)
#define ADD_DATA(path, d, fn) g_test_add(path, Fixture, d, setup, fn, teardown)
#define ADD_BOTH(path, fn)                                                                         \
        do {                                                                                       \
                ADD_DATA("/safe-dir/replace/o-tmpfile/" path, GUINT_TO_POINTER(0), fn);            \
                ADD_DATA("/safe-dir/replace/o-excl/" path, GUINT_TO_POINTER(SAFE_FILE_NO_TMPFILE), \
                         fn);                                                                      \
        } while (0)
        ADD("/safe-dir/open/private-dir-is-accepted", test_private_dir_is_accepted);
        ADD("/safe-dir/open/missing-dir-is-created-with-its-mode",
            test_missing_dir_is_created_with_its_mode);
        ADD("/safe-dir/open/missing-dir-without-create-is-enoent",
            test_missing_dir_without_create_is_enoent);
        ADD("/safe-dir/open/uncreatable-dir-is-refused-by-name",
            test_uncreatable_dir_is_refused_by_name);
        ADD("/safe-dir/open/other-users-dir-is-refused", test_other_users_dir_is_refused);
        ADD("/safe-dir/open/group-writable-dir-is-refused", test_group_writable_dir_is_refused);
        ADD("/safe-dir/open/world-writable-dir-is-refused", test_world_writable_dir_is_refused);
        ADD("/safe-dir/open/shared-sticky-dir-is-refused", test_shared_sticky_dir_is_refused);
        ADD("/safe-dir/open/parent-of-another-user-is-refused",
            test_parent_of_another_user_is_refused);
        ADD("/safe-dir/open/writable-parent-is-refused", test_writable_parent_is_refused);
        ADD("/safe-dir/open/sticky-parent-is-accepted", test_sticky_parent_is_accepted);
        ADD("/safe-dir/open/dir-link-is-refused", test_dir_link_is_refused);
        ADD("/safe-dir/open/dangling-dir-link-creates-nothing",
            test_dangling_dir_link_creates_nothing);
        ADD("/safe-dir/open/file-is-not-a-directory", test_file_is_not_a_directory);
        ADD_BOTH("writes-0600-and-leaves-no-temporary",
                 test_replace_writes_0600_and_leaves_no_temporary);
        ADD_BOTH("follows-no-temporary-link", test_replace_follows_no_temporary_link);
        ADD_BOTH("creates-nothing-through-a-dangling-link",
                 test_replace_creates_nothing_through_a_dangling_link);
        ADD_BOTH("replaces-a-link-at-the-name", test_replace_replaces_a_link_at_the_name);
        ADD_BOTH("failed-write-leaves-the-old-file", test_failed_write_leaves_the_old_file);
        ADD_BOTH("failed-rename-leaves-no-temporary", test_failed_rename_leaves_no_temporary);
        ADD("/safe-dir/temp/reuses-its-own-spare-as-0600", test_temp_reuses_its_own_spare_as_0600);
        ADD("/safe-dir/temp/without-reuse-is-a-new-empty-file",
            test_temp_without_reuse_is_a_new_empty_file);
        ADD("/safe-dir/temp/does-not-reuse-a-hard-link", test_temp_does_not_reuse_a_hard_link);
        ADD("/safe-dir/temp/does-not-reuse-another-users-file",
            test_temp_does_not_reuse_another_users_file);
        ADD_DATA("/safe-dir/temp/follows-no-link", GINT_TO_POINTER(FALSE),
                 test_temp_follows_no_link);
        ADD_DATA("/safe-dir/temp/reuse-follows-no-link", GINT_TO_POINTER(TRUE),
                 test_temp_follows_no_link);
        ADD("/safe-dir/temp/directory-at-the-name-is-an-error",
            test_temp_directory_at_the_name_is_an_error);
        ADD("/safe-dir/open-file/refuses-a-link", test_open_refuses_a_link);
        ADD("/safe-dir/read/reads-the-whole-file-and-no-link",
            test_read_reads_the_whole_file_and_no_link);
        return g_test_run();
}
