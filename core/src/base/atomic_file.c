/* cnnelm atomic file writes (see atomic_file.h). */
#define _GNU_SOURCE
#include "base/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- temporary files a signal must not leave behind ----
 * The one process-wide table (like the plugin registry): the temporary files being written
 * now. SIGINT/SIGTERM/SIGHUP, when the program has not set its own handler, remove them
 * (unlink is async-signal-safe) and then end the process as the signal would have. */
#define LIVE_MAX 64
static char live_path[LIVE_MAX][4200];
static int live_used[LIVE_MAX];
static const int cleanup_signals[] = { SIGINT, SIGTERM, SIGHUP };

/* cnnelm_interrupt_catch(): the first signal only sets `interrupted` (the run stops between
 * chunks and saves what it can); a second one, or any without catching, cleans up and dies. */
static volatile sig_atomic_t catching, interrupted;

static void remove_live_and_die(int sig)
{
    if (catching && !interrupted) {
        interrupted = sig;
        static const char msg[] = "\ncnnelm: interrupted: stopping after the current step "
                                  "(signal again to quit at once, saving nothing)\n";
        ssize_t n = write(2, msg, sizeof msg - 1);
        (void)n;
        return;
    }
    for (int i = 0; i < LIVE_MAX; i++)
        if (__atomic_load_n(&live_used[i], __ATOMIC_ACQUIRE))
            unlink(live_path[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void)
{
    for (size_t i = 0; i < sizeof cleanup_signals / sizeof cleanup_signals[0]; i++) {
        struct sigaction old;
        if (sigaction(cleanup_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
            !(old.sa_flags & SA_SIGINFO)) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = remove_live_and_die;
            sa.sa_flags = SA_RESTART; /* a caught first signal must not fail a read with EINTR */
            sigemptyset(&sa.sa_mask);
            sigaction(cleanup_signals[i], &sa, NULL);
        }
    }
}

static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

void cnnelm_interrupt_catch(void)
{
    pthread_once(&handlers_once, install_handlers);
    interrupted = 0;
    catching = 1;
}

void cnnelm_interrupt_release(void)
{
    catching = 0;
}

int cnnelm_interrupted(void)
{
    return interrupted;
}

static int live_add(const char *tmp)
{
    pthread_once(&handlers_once, install_handlers);
    for (int i = 0; i < LIVE_MAX; i++) {
        int expect = 0;
        /* 2 = claimed, being filled: the handler skips it until the path is complete */
        if (__atomic_compare_exchange_n(&live_used[i], &expect, 2, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            snprintf(live_path[i], sizeof live_path[i], "%s", tmp);
            __atomic_store_n(&live_used[i], 1, __ATOMIC_RELEASE);
            return i;
        }
    }
    return -1; /* more than LIVE_MAX saves at once: this one is not covered */
}

static void live_remove(int slot)
{
    if (slot >= 0)
        __atomic_store_n(&live_used[slot], 0, __ATOMIC_RELEASE);
}

/* Temporary files of `path` left by a process that no longer exists (killed during a save):
 * removed, and named on stderr. Names are .BASE.tmpPID-XXXXXX. */
static void sweep_stale(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4200];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path + 1) : 1, slash ? path : ".");
    const char *base = slash ? slash + 1 : path;
    char prefix[4200];
    int plen = snprintf(prefix, sizeof prefix, ".%s.tmp", base);
    if (plen < 0 || (size_t)plen >= sizeof prefix)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)plen) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + plen, &end, 10);
        if (pid <= 0 || *end != '-' || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* its writer may still be running */
        char stale[8400];
        snprintf(stale, sizeof stale, "%s%s", slash ? dir : "", e->d_name);
        if (unlink(stale) == 0)
            fprintf(stderr, "cnnelm: note: removed %s, left by an interrupted save (process %ld)\n",
                    stale, pid);
    }
    closedir(d);
}

/* A new file next to `path` (same directory, so the rename is atomic), created with O_EXCL and
 * mode 0666 & ~umask: the final file gets the permissions any other new file would. */
static int create_temp(const char *path, char *tmp, size_t size, cnnelm_error *err)
{
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    const char *base = slash ? slash + 1 : path;
    unsigned long salt = (unsigned long)getpid() * 2654435761u ^ (unsigned long)time(NULL) ^
                         (unsigned long)(uintptr_t)&salt;
    for (int attempt = 0; attempt < 100; attempt++) {
        salt = salt * 6364136223846793005u + 1442695040888963407u;
        int n = snprintf(tmp, size, "%.*s.%s.tmp%ld-%06lx", dirlen, path, base, (long)getpid(),
                         (salt >> 20) & 0xffffff);
        if (n < 0 || (size_t)n >= size)
            return cnnelm_fail(err, "%s: path too long", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return cnnelm_fail(err, "%s: cannot create: %s", path, strerror(errno));
    }
    return cnnelm_fail(err, "%s: cannot create a temporary file next to it", path);
}

static const char *file_kind(mode_t mode)
{
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

int cnnelm_output_resolve(const char *path, char *out, size_t size, cnnelm_error *err)
{
    if (!path || !*path)
        return cnnelm_fail(err, "empty output file name");
    if (strlen(path) >= size)
        return cnnelm_fail(err, "%s: file name too long", path);
    char cur[4096];
    snprintf(cur, sizeof cur, "%s", path);
    struct stat st;
    for (int hops = 0;; hops++) {
        if (lstat(cur, &st) != 0) {
            if (errno == ENOENT) /* a new file (its directory is checked when it is created) */
                break;
            return cnnelm_fail(err, "%s: cannot write: %s", path, strerror(errno));
        }
        if (!S_ISLNK(st.st_mode)) {
            if (S_ISDIR(st.st_mode))
                return cnnelm_fail(err, "%s: is a directory, expected a file name", path);
            if (!S_ISREG(st.st_mode))
                return cnnelm_fail(err, "%s: is %s, not a regular file: refusing to replace it",
                                   path, file_kind(st.st_mode));
            break;
        }
        if (hops == 40)
            return cnnelm_fail(err, "%s: too many levels of symbolic links", path);
        /* write through the link: its target is replaced, the link stays */
        char target[4096];
        ssize_t n = readlink(cur, target, sizeof target - 1);
        if (n < 0)
            return cnnelm_fail(err, "%s: cannot read the symbolic link: %s", path, strerror(errno));
        target[n] = '\0';
        char next[4096];
        const char *slash = strrchr(cur, '/');
        int len = target[0] == '/' || !slash
                      ? snprintf(next, sizeof next, "%s", target)
                      : snprintf(next, sizeof next, "%.*s%s", (int)(slash - cur + 1), cur, target);
        if (len < 0 || (size_t)len >= sizeof next)
            return cnnelm_fail(err, "%s: file name too long after following symbolic links", path);
        memcpy(cur, next, (size_t)len + 1);
    }
    if (strlen(cur) >= size)
        return cnnelm_fail(err, "%s: file name too long after following symbolic links", path);
    snprintf(out, size, "%s", cur);
    return 0;
}

int cnnelm_output_probe(const char *path, cnnelm_error *err)
{
    char target[4096], tmp[4200];
    if (cnnelm_output_resolve(path, target, sizeof target, err))
        return -1;
    int fd = create_temp(target, tmp, sizeof tmp, err);
    if (fd < 0)
        return -1;
    close(fd);
    unlink(tmp);
    return 0;
}

int cnnelm_output_not_input(const char *path, const char *const *inputs, int n, cnnelm_error *err)
{
    struct stat out;
    if (stat(path, &out) != 0)
        return 0; /* a new file is no input */
    for (int i = 0; i < n; i++) {
        struct stat in;
        if (inputs[i] && *inputs[i] && stat(inputs[i], &in) == 0 && in.st_dev == out.st_dev &&
            in.st_ino == out.st_ino)
            return cnnelm_fail(err, "%s: is the input %s: refusing to overwrite it", path, inputs[i]);
    }
    return 0;
}

int cnnelm_atomic_open(cnnelm_atomic_file *af, const char *path, cnnelm_error *err)
{
    memset(af, 0, sizeof *af);
    af->live = -1;
    if (cnnelm_output_resolve(path, af->path, sizeof af->path, err))
        return -1;
    path = af->path;
    sweep_stale(path);
    int fd = create_temp(path, af->tmp, sizeof af->tmp, err);
    if (fd < 0) {
        af->tmp[0] = '\0';
        return -1;
    }
    af->live = live_add(af->tmp);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        unlink(af->tmp);
        live_remove(af->live);
        af->live = -1;
        return cnnelm_fail(err, "%s: cannot create: %s", path, strerror(e));
    }
    return 0;
}

int cnnelm_atomic_commit(cnnelm_atomic_file *af, cnnelm_error *err)
{
    int bad = ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    int e = errno;
    if (fclose(af->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    af->f = NULL;
    if (bad) {
        unlink(af->tmp);
        live_remove(af->live);
        return cnnelm_fail(err, "%s: cannot write: %s", af->path, strerror(e));
    }
    if (rename(af->tmp, af->path) != 0) {
        e = errno;
        unlink(af->tmp);
        live_remove(af->live);
        return cnnelm_fail(err, "%s: cannot rename the temporary file into place: %s", af->path,
                           strerror(e));
    }
    live_remove(af->live);
    /* make the rename itself durable; a failure here loses nothing already written */
    char dir[4200];
    const char *slash = strrchr(af->path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - af->path) + 1, af->path);
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

void cnnelm_atomic_abort(cnnelm_atomic_file *af)
{
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
    }
    if (af->tmp[0]) {
        unlink(af->tmp);
        live_remove(af->live);
        af->live = -1;
    }
}

/* mkdir -p (atomic_file.h) */
int cnnelm_make_dirs(const char *dir, cnnelm_error *err)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path)
        return cnnelm_fail(err, "%s: bad output directory name", dir);
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char c = path[i];
        path[i] = 0;
        struct stat st;
        if (mkdir(path, 0777) != 0 && (errno != EEXIST || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)))
            return cnnelm_fail(err, "%s: cannot create directory %s: %s", dir, path,
                               errno == EEXIST ? "not a directory" : strerror(errno));
        path[i] = c;
    }
    return 0;
}
