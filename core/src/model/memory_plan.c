/* cnnelm memory plan (see memory_plan.h). The sizes follow network.c's buffers, train.c's and
 * experiment.c's models, reduce.c's sums and elm_solve.c's workspaces; a change there belongs here too. */
#include "model/memory_plan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define GIB (1024.0 * 1024.0 * 1024.0)

void cnnelm_memory_plan_make(const cnnelm_config *cfg, const cnnelm_arch *a, cnnelm_memory_plan *p)
{
    memset(p, 0, sizeof *p);
    double F = sizeof(float), D = sizeof(double);
    double N = cfg->train.chunk, L = a->hidden, C = a->classes;
    double in = (double)a->in_c * a->in_h * a->in_w;
    double dev = N * in + 2 * N * (double)a->max_maps + 3 * N * C + L * L + 2 * L * C;
    for (int i = 0; i < a->n_layers; i++) {
        const cnnelm_layer *ly = &a->layer[i];
        dev += N * ly->out_c * ly->out_h * ly->out_w;
        if (ly->kind == CNNELM_LAYER_CONV)
            dev += 2.0 * ((double)ly->out_c * ly->in_c * a->kernel * a->kernel + ly->out_c);
    }
    if (a->elm_activation != CNNELM_ACT_IDENTITY)
        dev += N * L;
    /* train.sums = "double": U and V in double beside the float ones (network_sums.c) */
    if (cfg->train.sums == CNNELM_SUMS_DOUBLE)
        dev += 2 * (L * L + L * C);
    p->device_per_worker = dev * F;
    /* two host slots of a chunk (network_load.c: floats, targets, fetched bytes, labels), the
     * read-back of U and V (cnnelm_net_sums_stage_bytes: two blocks of rows of a transfer, here
     * taken at 1 MiB, the most a device gets unless it asks for more) and a beta */
    double rows = floor(1048576.0 / (L * F));
    rows = rows < 1 ? 1 : 2 * rows > L ? ceil(L / 2) : rows;
    double stage = 2 * rows * L > L * C ? 2 * rows * L : L * C;
    p->host_per_worker = (2 * (N * in + N * C) + stage + L * C) * F + 2 * (N * in + N);
    /* Cholesky: I/lambda + U; "auto" first reduces a copy of U (freed before the Cholesky) */
    p->solve_per_worker = L * L * D;
    p->model = ((double)a->n_params + L * C) * F + (L * L + L * C) * D;
    int k = cfg->train.partitioning == CNNELM_PART_BY_SOURCE && cfg->data.n_sources > 0
                ? cfg->data.n_sources : cfg->train.partitions;
    p->partitions = k;
    p->workers = cfg->n_workers;
    /* whole models: the initial one, one being trained on each worker, the reduced one, the
     * single one; a finished partition is folded into the reduce's sums and freed (reduce.c,
     * experiment.c), which hold the upper triangle of U, V, kernels and, but for refit, beta */
    int training = cfg->n_workers < k ? cfg->n_workers : k;
    /* train.sync_every: every partition's model lives on the host while they fine-tune (sync.c) */
    if (cfg->train.sync_every > 0 && cfg->train.iterations > 0 && k > 1)
        training = k;
    /* train.sync_beta: each partition's U, V increments too, and the shared sums (about a model) */
    if (cfg->train.sync_beta && training == k)
        training = 2 * k + 1;
    p->models = p->model * (1 + training + (k > 1) + (k > 1 && cfg->train.compare_single));
    if (k > 1)
        p->sums = 16.0 * (L * (L + 1) / 2 + L * C + (double)a->n_params +
                          (cfg->train.reduce == CNNELM_REDUCE_REFIT ? 0 : L * C));
    int on_host = 0;
    for (int w = 0; w < cfg->n_workers; w++)
        on_host += strcmp(cfg->workers[w].backend, "cpu") == 0;
    p->host_total = p->workers * (p->host_per_worker + p->solve_per_worker) + on_host * p->device_per_worker +
                    p->models + p->sums;
    p->device_total = (p->workers - on_host) * p->device_per_worker;
}

void cnnelm_memory_plan_add_data(cnnelm_memory_plan *p, double bytes)
{
    p->data_held += bytes;
    p->host_total += bytes;
}

double cnnelm_memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    double kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1)
            break;
    fclose(f);
    return kib * 1024.0;
}

int cnnelm_memory_plan_check(const cnnelm_memory_plan *p, double limit, char *line, size_t size,
                             cnnelm_error *err)
{
    const char *what = "the limit (train.memory_limit)";
    if (!(limit > 0)) {
        limit = cnnelm_memory_available();
        what = "available (MemAvailable)";
    }
    int n_models = (int)(p->models / p->model + 0.5);
    size_t used = (size_t)snprintf(line, size, "memory: %.2f GiB on the host: per worker %.2f GiB "
                                   "of buffers and %.2f GiB for the solve; %d model%s of %.2f GiB",
                                   p->host_total / GIB, (p->device_per_worker + p->host_per_worker) / GIB,
                                   p->solve_per_worker / GIB, n_models, n_models == 1 ? "" : "s",
                                   p->model / GIB);
    if (p->sums > 0 && used < size)
        used += (size_t)snprintf(line + used, size - used, "; the reduce's sums %.2f GiB",
                                 p->sums / GIB);
    if (p->data_held > 0 && used < size)
        used += (size_t)snprintf(line + used, size - used, "; %.2f GiB of images held (data.hold_mb)",
                                 p->data_held / GIB);
    if (p->device_total > 0 && used < size)
        used += (size_t)snprintf(line + used, size - used, "; %.2f GiB on other devices",
                                 p->device_total / GIB);
    if (limit > 0 && used < size)
        snprintf(line + used, size - used, "; %.2f GiB %s", limit / GIB, what);
    if (limit > 0 && p->host_total > limit)
        return cnnelm_fail(err, "this run needs about %.2f GiB of host memory but %.2f GiB is %s "
                           "(%d worker%s x %.2f GiB of buffers and solve workspace, %d model%s of "
                           "%.2f GiB): use fewer workers or partitions, a narrower model, or a "
                           "smaller train.chunk", p->host_total / GIB, limit / GIB, what,
                           p->workers, p->workers == 1 ? "" : "s",
                           (p->host_per_worker + p->solve_per_worker + p->device_per_worker) / GIB,
                           n_models, n_models == 1 ? "" : "s", p->model / GIB);
    return 0;
}
