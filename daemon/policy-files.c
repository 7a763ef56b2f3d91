/* policy-files: the operator's policy read from disk, in its documented order */
#include "policy-files.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

static int read_file(const char *path, char **ret, char **ret_error)
{
        g_autoptr(GError) error = NULL;
        size_t len;

        if (!g_file_get_contents(path, ret, &len, &error)) {
                int r = error->domain == G_FILE_ERROR && error->code == G_FILE_ERROR_NOENT ? -ENOENT
                                                                                          : -EIO;
                *ret_error = g_strdup_printf("%s: cannot read: %s", path, error->message);
                return r;
        }
        if (strlen(*ret) != len) {
                g_clear_pointer(ret, g_free);
                *ret_error = g_strdup_printf("%s: contains a NUL byte; a policy file is JSON text",
                                             path);
                return -EINVAL;
        }
        return 0;
}

int policy_files_load_list(const char *const *paths, size_t n, Policy **ret, char **ret_error)
{
        g_autoptr(GPtrArray) texts = g_ptr_array_new_with_free_func(g_free);

        for (size_t i = 0; i < n; i++) {
                char *text = NULL;
                int r = read_file(paths[i], &text, ret_error);
                if (r < 0)
                        return r;
                g_ptr_array_add(texts, text);
        }
        return policy_parse(paths, (const char *const *)texts->pdata, n, ret, ret_error);
}

static gint compare_names(gconstpointer a, gconstpointer b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int policy_files_load(const char *main_file, const char *dropin_dir, Policy **ret,
                      char ***ret_files, char **ret_error)
{
        g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;
        g_autoptr(GDir) dir = NULL;
        int r;

        if (main_file && g_file_test(main_file, G_FILE_TEST_EXISTS))
                g_ptr_array_add(paths, g_strdup(main_file));
        if (dropin_dir)
                dir = g_dir_open(dropin_dir, 0, &error);
        if (!dir && error && !g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
                *ret_error = g_strdup_printf("%s: cannot read the directory: %s", dropin_dir,
                                             error->message);
                return -EIO;
        }
        if (dir) {
                g_autoptr(GPtrArray) dropins = g_ptr_array_new_with_free_func(g_free);
                const char *name;
                while ((name = g_dir_read_name(dir)))
                        if (g_str_has_suffix(name, ".json") && name[0] != '.')
                                g_ptr_array_add(dropins, g_build_filename(dropin_dir, name, NULL));
                g_ptr_array_sort(dropins, compare_names);
                for (unsigned i = 0; i < dropins->len; i++)
                        g_ptr_array_add(paths, g_strdup(g_ptr_array_index(dropins, i)));
        }
        r = policy_files_load_list((const char *const *)paths->pdata, paths->len, ret, ret_error);
        if (r >= 0 && ret_files) {
                g_ptr_array_add(paths, NULL);
                *ret_files = (char **)g_ptr_array_steal(paths, NULL);
        }
        return r;
}
