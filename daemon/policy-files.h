/* policy-files: the operator's policy read from disk, in its documented order */
#pragma once

/*
 * The policy in force is MAIN (default /etc/vfio-migd/policy.json) followed by every *.json
 * file of DIR (default /etc/vfio-migd/policy.d) in name order; later entries win. A missing MAIN or DIR
 * is not an error (built-in defaults apply). Any unreadable or invalid file rejects the
 * whole set: -EINVAL/-errno with *ret_error "FILE:LINE:COL: sentence" or "FILE: reason".
 */

#include "core/policy.h"

#ifndef VFIO_MIGD_SYSCONFDIR
#define VFIO_MIGD_SYSCONFDIR "/etc"
#endif
/* /etc/vfio-migd/... when built with --prefix=/usr, as the packaged daemon is. */
#define POLICY_MAIN_DEFAULT    VFIO_MIGD_SYSCONFDIR "/vfio-migd/policy.json"
#define POLICY_DROPIN_DEFAULT  VFIO_MIGD_SYSCONFDIR "/vfio-migd/policy.d"

int policy_files_load(const char *main_file, const char *dropin_dir, Policy **ret,
                      char ***ret_files, char **ret_error);
/* Exactly these files, in this order (vfio-migctl policy validate). */
int policy_files_load_list(const char *const *paths, size_t n, Policy **ret, char **ret_error);
