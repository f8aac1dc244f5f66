/*
 * The last step of starting a container in the pod runner, run inside the container's root
 * filesystem (passed in as an open file descriptor, so the image never contains it): take the
 * user, groups and privilege settings of the pod spec, then exec the container's command,
 * looking it up in the container's PATH, as a container runtime does.
 *
 *   podrunner-exec UID GID GROUPS NO_NEW_PRIVS -- COMMAND [ARG...]
 *
 * GROUPS is a comma-separated list of supplementary group ids or "-" for none. A command that
 * cannot be run exits 128 with the runtime's message (the kubelet reports StartError).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_GROUPS 64

static int fail(const char *what, const char *detail) {
    fprintf(stderr, "podrunner-exec: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 128;
}

int main(int argc, char **argv) {
    if (argc < 7 || strcmp(argv[5], "--") != 0)
        return fail("usage: podrunner-exec UID GID GROUPS NO_NEW_PRIVS -- COMMAND [ARG...]", NULL);
    uid_t uid = (uid_t)strtoul(argv[1], NULL, 10);
    gid_t gid = (gid_t)strtoul(argv[2], NULL, 10);
    gid_t groups[MAX_GROUPS];
    size_t n = 0;
    if (strcmp(argv[3], "-") != 0) {
        char *list = argv[3], *item;
        while ((item = strsep(&list, ",")) != NULL && n < MAX_GROUPS)
            groups[n++] = (gid_t)strtoul(item, NULL, 10);
    }
    for (int fd = 3; fd < 1024; fd++)  /* this program's own descriptor, and nothing else */
        close(fd);
    if (setgroups(n, groups) != 0) return fail("setgroups", strerror(errno));
    if (setgid(gid) != 0) return fail("setgid", strerror(errno));
    if (setuid(uid) != 0) return fail("setuid", strerror(errno));
    if (strcmp(argv[4], "1") == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return fail("no_new_privs", strerror(errno));
    char **command = argv + 6;
    execvp(command[0], command);
    int err = errno;
    if (err == ENOENT && strchr(command[0], '/') == NULL) {
        fprintf(stderr, "exec: \"%s\": executable file not found in $PATH\n", command[0]);
    } else {
        fprintf(stderr, "exec: \"%s\": %s\n", command[0], strerror(err));
    }
    return 128;
}
