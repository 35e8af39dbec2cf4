/* cnnelm atomic file writes (see atomic_file.h). */
#define _GNU_SOURCE
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
        int n = snprintf(tmp, size, "%.*s.%s.tmp%06lx", dirlen, path, base, (salt >> 20) & 0xffffff);
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

int cnnelm_atomic_open(cnnelm_atomic_file *af, const char *path, cnnelm_error *err)
{
    memset(af, 0, sizeof *af);
    if (!path || !*path)
        return cnnelm_fail(err, "empty output file name");
    if (strlen(path) >= sizeof af->path)
        return cnnelm_fail(err, "%s: file name too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    int fd = create_temp(path, af->tmp, sizeof af->tmp, err);
    if (fd < 0) {
        af->tmp[0] = '\0';
        return -1;
    }
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        unlink(af->tmp);
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
        return cnnelm_fail(err, "%s: cannot write: %s", af->path, strerror(e));
    }
    if (rename(af->tmp, af->path) != 0) {
        e = errno;
        unlink(af->tmp);
        return cnnelm_fail(err, "%s: cannot rename the temporary file into place: %s", af->path,
                           strerror(e));
    }
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
    if (af->tmp[0])
        unlink(af->tmp);
}
