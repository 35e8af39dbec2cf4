/* cnnelm atomic file writes (see atomic_file.h). */
#define _GNU_SOURCE
#include "atomic_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cnnelm_atomic_open(cnnelm_atomic_file *af, const char *path, cnnelm_error *err)
{
    memset(af, 0, sizeof *af);
    if (!path || !*path)
        return cnnelm_fail(err, "empty output file name");
    if (strlen(path) >= sizeof af->path)
        return cnnelm_fail(err, "%s: file name too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0)
        return cnnelm_fail(err, "%s: cannot create: %s", path, strerror(errno));
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
    if (bad || rename(af->tmp, af->path) != 0) {
        if (!bad)
            e = errno;
        unlink(af->tmp);
        return cnnelm_fail(err, "%s: cannot write: %s", af->path, strerror(e));
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
