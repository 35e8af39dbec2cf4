/* cnnelm data sets as a config builds them: internal pieces shared by the in-memory builder
 * (dataset_build.c) and the streamed one (dataset_streamed.c). */
#ifndef CNNELM_DATA_DATASET_BUILD_H
#define CNNELM_DATA_DATASET_BUILD_H

#include <stdint.h>

#include "cnnelm/config.h"
#include "cnnelm/dataset.h"

/* data.resize ("WxH"), data.grayscale, data.max_bad as the loaders take them. */
int cnnelm_build_input_options(const cnnelm_config *cfg, cnnelm_input_options *io, cnnelm_error *err);

/* A source's class count: CNNELM_LABELS_TRAIN for the training set (its labels give it); for the
 * test set, the class count of the source's whole training label file. */
int cnnelm_build_source_classes(const char *train_labels, int test, int *classes, cnnelm_error *err);

/* Fails, naming img, when its images (rows x cols, channels) are not those of the entries before
 * it (rows0 x cols0, channels0). */
int cnnelm_build_same_shape(const char *img, int rows, int cols, int channels, int rows0, int cols0,
                            int channels0, cnnelm_error *err);

/* A streamed set (data.stream, or data.shards for training): labels in memory, images read by
 * row; max_classes as cnnelm_dataset_load takes it. */
int cnnelm_build_streamed(cnnelm_dataset *ds, const cnnelm_config *cfg, int test, int max_classes,
                          cnnelm_error *err);

/* data.extend on a streamed set: the noisy copies made by the stream when fetched. */
int cnnelm_build_stream_noise(cnnelm_dataset *ds, unsigned mask, uint64_t seed, cnnelm_error *err);

#endif
