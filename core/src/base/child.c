/* cnnelm child processes (see child.h): fork, a pipe for the reply, poll with a deadline, kill
 * on timeout, and the exit status turned into words. */
#define _GNU_SOURCE
#include "base/child.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void child_side(int fd, cnnelm_child_fn fn, void *arg, size_t reply_size)
{
    signal(SIGPIPE, SIG_IGN); /* a parent that stopped reading is not a crash of the plugin */
    void *reply = calloc(1, reply_size ? reply_size : 1);
    if (!reply)
        _exit(4); /* exit-ok: the forked child ends here */
    fn(arg, reply, reply_size);
    const char *c = reply;
    size_t n = reply_size;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(3); /* exit-ok: the forked child ends here */
        c += w;
        n -= (size_t)w;
    }
    /* no atexit handlers, no stdio flush: the parent's buffers are not ours */
    _exit(0); /* exit-ok: the forked child ends here */
}

int cnnelm_child_run(cnnelm_child_fn fn, void *arg, void *reply, size_t reply_size, double timeout_s,
                     double *seconds, char *why, size_t why_size)
{
    int fds[2];
    double t0 = now_s();
    if (seconds)
        *seconds = 0;
    if (pipe(fds) != 0) {
        snprintf(why, why_size, "cannot create a pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL); /* or the child's copy of unwritten output comes out twice */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_size, "cannot fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
#ifdef __linux__
        /* a child hanging in a plugin must not outlive a parent killed meanwhile (^C on
         * `cnnelm devices`): the kernel kills it when the parent dies, also if it died already */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(5); /* exit-ok: the forked child ends here */
#else
        (void)parent;
#endif
        close(fds[0]);
        child_side(fds[1], fn, arg, reply_size);
    }
    close(fds[1]);
    size_t got = 0;
    int timed_out = 0;
    double deadline = t0 + timeout_s;
    while (got < reply_size) {
        double left = deadline - now_s();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pf = { .fd = fds[0], .events = POLLIN };
        int r = poll(&pf, 1, left > 3600 ? 3600000 : (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            continue; /* the deadline check above decides */
        ssize_t n = read(fds[0], (char *)reply + got, reply_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the child is gone */
        got += (size_t)n;
    }
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (seconds)
        *seconds = now_s() - t0;
    if (timed_out) {
        snprintf(why, why_size, "timed out after %g s", timeout_s);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        snprintf(why, why_size, "crashed (signal %d, %s)", sig, strsignal(sig));
        return -1;
    }
    if (got < reply_size || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(why, why_size, "crashed (its process exited with status %d before reporting)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    return 0;
}

const cnnelm_backend *cnnelm_child_table_with_init(const char *file)
{
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    void *sym = h ? dlsym(h, CNNELM_BACKEND_ENTRY) : NULL;
    if (!sym)
        return NULL;
    cnnelm_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const cnnelm_backend *t = entry();
    size_t v10 = offsetof(cnnelm_backend, elm_solve) + sizeof t->elm_solve;
    if (!t || t->abi_major != CNNELM_BACKEND_ABI_MAJOR || t->table_size < v10 || !CNNELM_BACKEND_HAS(t, init))
        return NULL;
    return t;
}
