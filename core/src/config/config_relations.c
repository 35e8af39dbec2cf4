/* cnnelm configuration checks across keys: settings each valid alone that make no sense
 * together (data.sources beside the four paths, by-source without sources, validation with a
 * fixed lambda, averaging while fine-tuning without fine-tuning or partitions, one fold). */
#include "config/config_schema.h"

#include <stdio.h>

int cnnelm_config_check_relations(const config_ctx *c, const config_t *conf, const cnnelm_config *cfg)
{
    if (cfg->data.n_sources > 0 && (cfg->data.train_images[0] || cfg->data.train_labels[0] ||
                                    cfg->data.test_images[0] || cfg->data.test_labels[0])) {
        const char *names[] = {"train_images", "train_labels", "test_images", "test_labels"};
        const char *vals[] = {cfg->data.train_images, cfg->data.train_labels, cfg->data.test_images,
                              cfg->data.test_labels};
        int i = 0;
        while (!vals[i][0]) i++;
        char key[32];
        snprintf(key, sizeof key, "data.%s", names[i]);
        return cnnelm_config_fail_at(c, config_lookup(conf, key), "data.%s is set, but data.sources "
                                     "replaces data.train_images, data.train_labels, data.test_images "
                                     "and data.test_labels: set them to \"\"", names[i]);
    }
    if (cfg->train.partitioning == CNNELM_PART_BY_SOURCE && cfg->data.n_sources == 0 && !cfg->data.shards[0])
        return cnnelm_config_fail_at(c, config_lookup(conf, "train.partitioning"),
                                     "train.partitioning = \"by-source\" needs data.sources (one "
                                     "partition per source)");
    if (cfg->model.whiten > 0 && cfg->model.init != CNNELM_INIT_PATCHES)
        return cnnelm_config_fail_at(c, config_lookup(conf, "model.whiten"), "model.whiten = %g "
                                     "whitens kernels drawn from patches, and model.init is not "
                                     "\"patches\": set model.init = \"patches\" or model.whiten = 0",
                                     cfg->model.whiten);
    if (cfg->train.validation > 0 && cfg->model.lambda > 0)
        return cnnelm_config_fail_at(c, config_lookup(conf, "train.validation"), "train.validation "
                                     "chooses model.lambda, which is fixed (%g): set model.lambda = "
                                     "\"auto\" or train.validation = 0", cfg->model.lambda);
    if (cfg->train.sync_every > 0 && cfg->train.iterations == 0)
        return cnnelm_config_fail_at(c, config_lookup(conf, "train.sync_every"),
                                     "train.sync_every = %d averages fine-tuning's kernels, and "
                                     "train.iterations = 0 fine-tunes nothing: set train.iterations "
                                     "> 0 or train.sync_every = 0", cfg->train.sync_every);
    if (cfg->train.sync_every > 0 && cfg->train.partitions == 1 &&
        cfg->train.partitioning != CNNELM_PART_BY_SOURCE)
        return cnnelm_config_fail_at(c, config_lookup(conf, "train.sync_every"),
                                     "train.sync_every = %d averages the partitions' kernels, and "
                                     "train.partitions = 1: set train.partitions > 1 or "
                                     "train.sync_every = 0", cfg->train.sync_every);
    if (cfg->train.sync_beta && cfg->train.sync_every == 0)
        return cnnelm_config_fail_at(c, config_lookup(conf, "train.sync_beta"),
                                     "train.sync_beta = true shares beta between the averages of "
                                     "train.sync_every, and train.sync_every = 0 averages nothing "
                                     "while fine-tuning: set train.sync_every > 0 or "
                                     "train.sync_beta = false");
    if (cfg->train.folds == 1)
        return cnnelm_config_fail_at(c, config_lookup(conf, "train.folds"),
                                     "train.folds = 1: cross-validation needs at least 2 folds (0: off)");
    return 0;
}
