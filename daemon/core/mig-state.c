/* mig-state: the kernel's VFIO migration states, flags and the path function */
#include "mig-state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S(x) MIG_STATE_##x

static const char *const state_names[MIG_STATE_COUNT] = {
        [S(ERROR)] = "ERROR",     [S(STOP)] = "STOP",
        [S(RUNNING)] = "RUNNING", [S(STOP_COPY)] = "STOP_COPY",
        [S(RESUMING)] = "RESUMING", [S(RUNNING_P2P)] = "RUNNING_P2P",
        [S(PRE_COPY)] = "PRE_COPY", [S(PRE_COPY_P2P)] = "PRE_COPY_P2P",
};

/* vfio_from_fsm_table of drivers/vfio/vfio_main.c: the next arc from [cur] towards [target]. */
static const enum mig_state fsm_table[MIG_STATE_COUNT][MIG_STATE_COUNT] = {
        [S(STOP)] = {
                [S(STOP)] = S(STOP),
                [S(RUNNING)] = S(RUNNING_P2P),
                [S(PRE_COPY)] = S(RUNNING_P2P),
                [S(PRE_COPY_P2P)] = S(RUNNING_P2P),
                [S(STOP_COPY)] = S(STOP_COPY),
                [S(RESUMING)] = S(RESUMING),
                [S(RUNNING_P2P)] = S(RUNNING_P2P),
                [S(ERROR)] = S(ERROR),
        },
        [S(RUNNING)] = {
                [S(STOP)] = S(RUNNING_P2P),
                [S(RUNNING)] = S(RUNNING),
                [S(PRE_COPY)] = S(PRE_COPY),
                [S(PRE_COPY_P2P)] = S(RUNNING_P2P),
                [S(STOP_COPY)] = S(RUNNING_P2P),
                [S(RESUMING)] = S(RUNNING_P2P),
                [S(RUNNING_P2P)] = S(RUNNING_P2P),
                [S(ERROR)] = S(ERROR),
        },
        [S(PRE_COPY)] = {
                [S(STOP)] = S(RUNNING),
                [S(RUNNING)] = S(RUNNING),
                [S(PRE_COPY)] = S(PRE_COPY),
                [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P),
                [S(STOP_COPY)] = S(PRE_COPY_P2P),
                [S(RESUMING)] = S(RUNNING),
                [S(RUNNING_P2P)] = S(RUNNING),
                [S(ERROR)] = S(ERROR),
        },
        [S(PRE_COPY_P2P)] = {
                [S(STOP)] = S(RUNNING_P2P),
                [S(RUNNING)] = S(RUNNING_P2P),
                [S(PRE_COPY)] = S(PRE_COPY),
                [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P),
                [S(STOP_COPY)] = S(STOP_COPY),
                [S(RESUMING)] = S(RUNNING_P2P),
                [S(RUNNING_P2P)] = S(RUNNING_P2P),
                [S(ERROR)] = S(ERROR),
        },
        [S(STOP_COPY)] = {
                [S(STOP)] = S(STOP),
                [S(RUNNING)] = S(STOP),
                [S(PRE_COPY)] = S(ERROR),
                [S(PRE_COPY_P2P)] = S(ERROR),
                [S(STOP_COPY)] = S(STOP_COPY),
                [S(RESUMING)] = S(STOP),
                [S(RUNNING_P2P)] = S(STOP),
                [S(ERROR)] = S(ERROR),
        },
        [S(RESUMING)] = {
                [S(STOP)] = S(STOP),
                [S(RUNNING)] = S(STOP),
                [S(PRE_COPY)] = S(STOP),
                [S(PRE_COPY_P2P)] = S(STOP),
                [S(STOP_COPY)] = S(STOP),
                [S(RESUMING)] = S(RESUMING),
                [S(RUNNING_P2P)] = S(STOP),
                [S(ERROR)] = S(ERROR),
        },
        [S(RUNNING_P2P)] = {
                [S(STOP)] = S(STOP),
                [S(RUNNING)] = S(RUNNING),
                [S(PRE_COPY)] = S(RUNNING),
                [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P),
                [S(STOP_COPY)] = S(STOP),
                [S(RESUMING)] = S(STOP),
                [S(RUNNING_P2P)] = S(RUNNING_P2P),
                [S(ERROR)] = S(ERROR),
        },
        [S(ERROR)] = {
                [S(STOP)] = S(ERROR),
                [S(RUNNING)] = S(ERROR),
                [S(PRE_COPY)] = S(ERROR),
                [S(PRE_COPY_P2P)] = S(ERROR),
                [S(STOP_COPY)] = S(ERROR),
                [S(RESUMING)] = S(ERROR),
                [S(RUNNING_P2P)] = S(ERROR),
                [S(ERROR)] = S(ERROR),
        },
};

/* state_flags_table: the flags a device needs for each state; ERROR needs them all, and more. */
static const uint32_t state_needs[MIG_STATE_COUNT] = {
        [S(STOP)] = MIG_FLAG_STOP_COPY,
        [S(RUNNING)] = MIG_FLAG_STOP_COPY,
        [S(PRE_COPY)] = MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY,
        [S(PRE_COPY_P2P)] = MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY,
        [S(STOP_COPY)] = MIG_FLAG_STOP_COPY,
        [S(RESUMING)] = MIG_FLAG_STOP_COPY,
        [S(RUNNING_P2P)] = MIG_FLAG_STOP_COPY | MIG_FLAG_P2P,
        [S(ERROR)] = ~UINT32_C(0),
};

static bool state_valid(enum mig_state s)
{
        return (unsigned)s < MIG_STATE_COUNT;
}

const char *mig_state_to_string(enum mig_state state)
{
        return state_valid(state) ? state_names[state] : "INVALID";
}

int mig_state_from_string(const char *s, enum mig_state *ret)
{
        if (!s)
                return -EINVAL;
        for (unsigned i = 0; i < MIG_STATE_COUNT; i++)
                if (strcasecmp(s, state_names[i]) == 0) {
                        *ret = (enum mig_state)i;
                        return 0;
                }
        return -EINVAL;
}

const char *mig_flags_to_string(uint32_t flags)
{
        static const char *const names[8] = {
                "none",
                "STOP_COPY",
                "P2P",
                "STOP_COPY|P2P",
                "PRE_COPY",
                "STOP_COPY|PRE_COPY",
                "P2P|PRE_COPY",
                "STOP_COPY|P2P|PRE_COPY",
        };
        if (flags & ~MIG_FLAGS_KNOWN)
                return "UNKNOWN";
        return names[flags];
}

int mig_flags_from_string(const char *s, uint32_t *ret)
{
        uint32_t flags = 0;
        char buf[128];
        char *save = NULL;

        if (!s || !*s || strlen(s) >= sizeof(buf))
                return -EINVAL;
        if (strcasecmp(s, "none") == 0) {
                *ret = 0;
                return 0;
        }
        if (s[0] >= '0' && s[0] <= '9') {
                char *end;
                unsigned long v = strtoul(s, &end, 0);
                if (*end || v & ~(unsigned long)MIG_FLAGS_KNOWN)
                        return -EINVAL;
                *ret = (uint32_t)v;
                return 0;
        }
        strcpy(buf, s);
        for (char *tok = strtok_r(buf, "|,+", &save); tok; tok = strtok_r(NULL, "|,+", &save)) {
                if (strcasecmp(tok, "STOP_COPY") == 0 || strcasecmp(tok, "SC") == 0)
                        flags |= MIG_FLAG_STOP_COPY;
                else if (strcasecmp(tok, "P2P") == 0)
                        flags |= MIG_FLAG_P2P;
                else if (strcasecmp(tok, "PRE_COPY") == 0 || strcasecmp(tok, "PC") == 0)
                        flags |= MIG_FLAG_PRE_COPY;
                else
                        return -EINVAL;
        }
        *ret = flags;
        return 0;
}

bool mig_state_supported(uint32_t flags, enum mig_state state)
{
        return state_valid(state) && (state_needs[state] & flags) == state_needs[state];
}

bool mig_state_is_running(enum mig_state s)
{
        return s == S(RUNNING) || s == S(RUNNING_P2P) || s == S(PRE_COPY) || s == S(PRE_COPY_P2P);
}

bool mig_state_initiates_p2p(enum mig_state s)
{
        return s == S(RUNNING) || s == S(PRE_COPY);
}

bool mig_state_is_saving(enum mig_state s)
{
        return s == S(PRE_COPY) || s == S(PRE_COPY_P2P) || s == S(STOP_COPY);
}

bool mig_arc_opens_data_fd(enum mig_state from, enum mig_state to)
{
        return (from == S(RUNNING) && to == S(PRE_COPY)) ||
               (from == S(RUNNING_P2P) && to == S(PRE_COPY_P2P)) ||
               (from == S(STOP) && to == S(STOP_COPY)) || (from == S(STOP) && to == S(RESUMING));
}

int mig_next_state(uint32_t flags, enum mig_state cur, enum mig_state target, enum mig_state *ret)
{
        enum mig_state next;

        if (!mig_state_supported(flags, cur) || !mig_state_supported(flags, target))
                return -EINVAL;
        /* Arcs into unsupported optional states are skipped, as the kernel does. */
        next = fsm_table[cur][target];
        while (!mig_state_supported(flags, next) && next != S(ERROR))
                next = fsm_table[next][target];
        if (next == S(ERROR))
                return -EINVAL;
        *ret = next;
        return 0;
}

int mig_path(uint32_t flags, enum mig_state from, enum mig_state to,
             enum mig_state path[MIG_PATH_MAX], size_t *ret_len)
{
        size_t n = 0;
        enum mig_state cur = from;

        if (!mig_state_supported(flags, from) || !mig_state_supported(flags, to))
                return -EINVAL;
        /* Refused here so the request never reaches a kernel that would spin on it. */
        if (from == S(STOP_COPY) && (to == S(PRE_COPY) || to == S(PRE_COPY_P2P)))
                return -EINVAL;
        path[n++] = cur;
        while (cur != to) {
                int r = mig_next_state(flags, cur, to, &cur);
                if (r < 0)
                        return r;
                if (n == MIG_PATH_MAX)
                        return -ELOOP;
                path[n++] = cur;
        }
        *ret_len = n;
        return 0;
}

char *mig_path_format(const enum mig_state *path, size_t len, char *buf, size_t size)
{
        size_t off = 0;

        if (size == 0)
                return buf;
        buf[0] = '\0';
        for (size_t i = 0; i < len && off < size; i++) {
                int w = snprintf(buf + off, size - off, "%s%s", i ? ">" : "",
                                 mig_state_to_string(path[i]));
                if (w < 0)
                        break;
                off += (size_t)w;
        }
        return buf;
}
