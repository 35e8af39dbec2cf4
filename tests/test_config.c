/* Tests of the configuration loader: defaults, every key, overrides of each kind, every error
 * with its location, the shipped conf files, and docs/config.md against the schema. */
#define _XOPEN_SOURCE 700

#include <check.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnnelm/config.h"

static char dir[256];
static char cfg_path[512];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cnnelm_test_config.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(cfg_path, sizeof cfg_path, "%s/run.cfg", dir);
}

static void teardown(void)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Writes `text` to the test's config file and loads it with the overrides. */
static int load(cnnelm_config *cfg, const char *text, const char *const *ov, int n, cnnelm_error *err)
{
    write_text(cfg_path, text);
    memset(err->msg, 0, sizeof err->msg);
    return cnnelm_config_load(cfg, cfg_path, ov, n, err);
}

/* Expects loading to fail with exactly "CFG_PATH<suffix>" (suffix starts with ':'). */
static void expect_file_error(const char *text, const char *suffix)
{
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_int_ne(load(&cfg, text, NULL, 0, &err), 0);
    char want[2048];
    snprintf(want, sizeof want, "%s%s", cfg_path, suffix);
    ck_assert_str_eq(err.msg, want);
    ck_assert_ptr_null(cfg.text);
}

/* Expects the single override `ov` (no file) to fail with exactly `want`. */
static void expect_override_error(const char *ov, const char *want)
{
    cnnelm_config cfg;
    cnnelm_error err = {""};
    ck_assert_int_ne(cnnelm_config_load(&cfg, NULL, &ov, 1, &err), 0);
    ck_assert_str_eq(err.msg, want);
}

START_TEST(defaults)
{
    cnnelm_config cfg;
    cnnelm_error err = {""};
    ck_assert_msg(cnnelm_config_load(&cfg, NULL, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(cfg.plugin_path, "");
    ck_assert_str_eq(cfg.data.train_images, "");
    ck_assert_str_eq(cfg.data.test_labels, "");
    ck_assert_int_eq(cfg.data.train_limit, 0);
    ck_assert_int_eq(cfg.data.test_limit, 0);
    ck_assert_str_eq(cfg.model.layers, "6c-2s-12c-2s");
    ck_assert_int_eq(cfg.model.kernel, 5);
    ck_assert_int_eq(cfg.model.activation, CNNELM_ACT_RELU);
    ck_assert_int_eq(cfg.model.pooling, CNNELM_POOL_MEAN);
    ck_assert_int_eq(cfg.model.elm_activation, CNNELM_ACT_IDENTITY);
    ck_assert_double_eq(cfg.model.lambda, 100.0);
    ck_assert_int_eq(cfg.model.init, CNNELM_INIT_ZERO_MEAN);
    ck_assert_int_eq(cfg.train.trials, 1);
    ck_assert_int_eq(cfg.train.folds, 0);
    ck_assert_int_eq(cfg.train.compare_single, 0);
    ck_assert_str_eq(cfg.train.checkpoint_dir, "");
    ck_assert_int_eq(cfg.data.n_sources, 0);
    ck_assert_uint_eq(cfg.data.extend, 0);
    ck_assert_uint_eq(cfg.train.seed, 1);
    ck_assert_int_eq(cfg.train.iterations, 0);
    ck_assert_int_eq(cfg.train.batch, 0);
    ck_assert_int_eq(cfg.train.chunk, 1000);
    ck_assert_double_eq(cfg.train.learning_rate, 0.01);
    ck_assert_int_eq(cfg.train.lr_schedule, CNNELM_LR_CONSTANT);
    ck_assert_double_eq(cfg.train.momentum, 0.0);
    ck_assert_int_eq(cfg.train.partitions, 1);
    ck_assert_int_eq(cfg.train.partitioning, CNNELM_PART_SHUFFLE);
    ck_assert_int_eq(cfg.train.reduce, CNNELM_REDUCE_MEAN);
    ck_assert_int_eq(cfg.n_workers, 1);
    ck_assert_str_eq(cfg.workers[0].backend, "cpu");
    ck_assert_int_eq(cfg.workers[0].device, 0);
    ck_assert_int_eq(cfg.workers[0].threads, 0);
    ck_assert_ptr_nonnull(cfg.text);
    ck_assert_ptr_nonnull(strstr(cfg.text, "layers = \"6c-2s-12c-2s\";"));
    ck_assert_ptr_nonnull(strstr(cfg.text, "backend = \"cpu\";"));

    cnnelm_config d;
    cnnelm_config_defaults(&d);
    ck_assert_ptr_null(d.text);
    d.text = cfg.text;
    ck_assert_mem_eq(&d, &cfg, sizeof d);
    cnnelm_config_free(&cfg);
    ck_assert_ptr_null(cfg.text);

    /* an empty file gives the defaults too */
    ck_assert_int_eq(load(&cfg, "# nothing\n", NULL, 0, &err), 0);
    ck_assert_str_eq(cfg.path, cfg_path);
    ck_assert_int_eq(cfg.model.kernel, 5);
    cnnelm_config_free(&cfg);
}
END_TEST

static const char *all_keys =
    "plugin_path = \"/opt/a:/opt/b\";\n"
    "data: {\n"
    "  train_images = \"/d/ti.gz\"; train_labels = \"/d/tl.gz\";\n"
    "  test_images = \"/d/xi\"; test_labels = \"/d/xl\";\n"
    "  train_limit = 1000; test_limit = 5000000000L;\n"
    "  extend = [\"salt_pepper\", \"gaussian\"];\n"
    "};\n"
    "model = {\n"
    "  layers = \"4c-2s\"; kernel = 3; activation = \"opttanh\"; pooling = \"max\";\n"
    "  elm_activation = \"relu\"; lambda = 0.5; init = \"uniform\";\n"
    "};\n"
    "train = {\n"
    "  seed = 9000000000L; iterations = 3; batch = 60000; chunk = 250; learning_rate = 2;\n"
    "  lr_schedule = \"inverse\"; momentum = 0.9; partitions = 5; partitioning = \"label-skew\";\n"
    "  reduce = \"refit\"; compare_single = true; trials = 5; folds = 10; checkpoint_dir = \"/ck\";\n"
    "};\n"
    "workers = ( { backend = \"opencl\"; device = 1; threads = 4; },\n"
    "            { backend = \"cpu\"; } );\n";

static void check_all_keys(const cnnelm_config *cfg)
{
    ck_assert_str_eq(cfg->plugin_path, "/opt/a:/opt/b");
    ck_assert_str_eq(cfg->data.train_images, "/d/ti.gz");
    ck_assert_str_eq(cfg->data.train_labels, "/d/tl.gz");
    ck_assert_str_eq(cfg->data.test_images, "/d/xi");
    ck_assert_str_eq(cfg->data.test_labels, "/d/xl");
    ck_assert_int_eq(cfg->data.train_limit, 1000);
    ck_assert_int_eq(cfg->data.test_limit, 5000000000L);
    ck_assert_str_eq(cfg->model.layers, "4c-2s");
    ck_assert_int_eq(cfg->model.kernel, 3);
    ck_assert_int_eq(cfg->model.activation, CNNELM_ACT_OPTTANH);
    ck_assert_int_eq(cfg->model.pooling, CNNELM_POOL_MAX);
    ck_assert_int_eq(cfg->model.elm_activation, CNNELM_ACT_RELU);
    ck_assert_double_eq(cfg->model.lambda, 0.5);
    ck_assert_uint_eq(cfg->train.seed, 9000000000ull);
    ck_assert_int_eq(cfg->train.iterations, 3);
    ck_assert_int_eq(cfg->train.batch, 60000);
    ck_assert_int_eq(cfg->train.chunk, 250);
    ck_assert_double_eq(cfg->train.learning_rate, 2.0);
    ck_assert_int_eq(cfg->train.lr_schedule, CNNELM_LR_INVERSE);
    ck_assert_double_eq(cfg->train.momentum, 0.9);
    ck_assert_int_eq(cfg->train.partitions, 5);
    ck_assert_int_eq(cfg->train.partitioning, CNNELM_PART_LABEL_SKEW);
    ck_assert_int_eq(cfg->train.reduce, CNNELM_REDUCE_REFIT);
    ck_assert_uint_eq(cfg->data.extend, CNNELM_NOISE_GAUSSIAN | CNNELM_NOISE_SALT_PEPPER);
    ck_assert_int_eq(cfg->data.n_sources, 0);
    ck_assert_int_eq(cfg->model.init, CNNELM_INIT_UNIFORM);
    ck_assert_int_eq(cfg->train.compare_single, 1);
    ck_assert_int_eq(cfg->train.trials, 5);
    ck_assert_int_eq(cfg->train.folds, 10);
    ck_assert_str_eq(cfg->train.checkpoint_dir, "/ck");
    ck_assert_int_eq(cfg->n_workers, 2);
    ck_assert_str_eq(cfg->workers[0].backend, "opencl");
    ck_assert_int_eq(cfg->workers[0].device, 1);
    ck_assert_int_eq(cfg->workers[0].threads, 4);
    ck_assert_str_eq(cfg->workers[1].backend, "cpu");
    ck_assert_int_eq(cfg->workers[1].device, 0);
    ck_assert_int_eq(cfg->workers[1].threads, 0);
}

START_TEST(every_key)
{
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_msg(load(&cfg, all_keys, NULL, 0, &err) == 0, "%s", err.msg);
    check_all_keys(&cfg);

    /* the effective text reads back to the same configuration */
    char again[600];
    snprintf(again, sizeof again, "%s/effective.cfg", dir);
    write_text(again, cfg.text);
    cnnelm_config cfg2;
    ck_assert_msg(cnnelm_config_load(&cfg2, again, NULL, 0, &err) == 0, "%s\n%s", err.msg, cfg.text);
    check_all_keys(&cfg2);
    ck_assert_str_eq(cfg2.text, cfg.text);
    cnnelm_config_free(&cfg);
    cnnelm_config_free(&cfg2);
}
END_TEST

START_TEST(overrides)
{
    const char *ov[] = {
        "train.seed=7",                         /* int */
        "model.lambda=2",                       /* float key given an int */
        "train.learning_rate = 0.5",            /* spaces around '=' */
        "data.train_images=\"/x y.gz\"",        /* quoted string */
        "data.train_labels=/data/labels.gz",    /* bare string */
        "model.layers=8c-2s-16c-2s",            /* bare string that looks like arithmetic */
        "model.activation=opttanh",             /* bare enum */
        "train.reduce=\"weighted\"",            /* quoted enum */
        "workers=({backend=\"opencl\";device=2;},{backend=\"cpu\";threads=3;})",
        "plugin_path=",                         /* empty bare string */
        "data.test_limit=3000000000",           /* beyond 32 bits: the L is added */
    };
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_msg(load(&cfg, "plugin_path = \"/p\";\ntrain = { seed = 3; chunk = 10; };\n"
                             "workers = ( { backend = \"cpu\"; } );\n",
                       ov, (int)(sizeof ov / sizeof ov[0]), &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.train.seed, 7);
    ck_assert_int_eq(cfg.train.chunk, 10); /* from the file, untouched */
    ck_assert_double_eq(cfg.model.lambda, 2.0);
    ck_assert_double_eq(cfg.train.learning_rate, 0.5);
    ck_assert_str_eq(cfg.data.train_images, "/x y.gz");
    ck_assert_str_eq(cfg.data.train_labels, "/data/labels.gz");
    ck_assert_str_eq(cfg.model.layers, "8c-2s-16c-2s");
    ck_assert_int_eq(cfg.model.activation, CNNELM_ACT_OPTTANH);
    ck_assert_int_eq(cfg.train.reduce, CNNELM_REDUCE_WEIGHTED);
    ck_assert_int_eq(cfg.n_workers, 2);
    ck_assert_str_eq(cfg.workers[0].backend, "opencl");
    ck_assert_int_eq(cfg.workers[0].device, 2);
    ck_assert_str_eq(cfg.workers[1].backend, "cpu");
    ck_assert_int_eq(cfg.workers[1].threads, 3);
    ck_assert_str_eq(cfg.plugin_path, "");
    ck_assert_int_eq(cfg.data.test_limit, 3000000000L);
    ck_assert_ptr_nonnull(strstr(cfg.text, "seed = 7L;"));
    cnnelm_config_free(&cfg);

    /* later overrides win; a group value merges into the group */
    const char *ov2[] = {"model.kernel=3", "model.kernel=7", "train={seed=11;iterations=2;}"};
    ck_assert_msg(load(&cfg, "train = { chunk = 10; seed = 5; };\n", ov2, 3, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.model.kernel, 7);
    ck_assert_uint_eq(cfg.train.seed, 11);
    ck_assert_int_eq(cfg.train.iterations, 2);
    ck_assert_int_eq(cfg.train.chunk, 10);
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(unknown_keys)
{
    expect_file_error("model = {\n  kernel = 5;\n  layer = \"6c-2s\";\n};\n",
                      ":3: unknown setting 'model.layer' (did you mean 'model.layers'?)");
    expect_file_error("train = { kernel = 5; };\n",
                      ":1: unknown setting 'train.kernel' (did you mean 'model.kernel'?)");
    expect_file_error("modle = { kernel = 5; };\n",
                      ":1: unknown setting 'modle' (did you mean 'model'?)");
    expect_file_error("\n\nfrobnicate = 1;\n", ":3: unknown setting 'frobnicate'");
    expect_file_error("workers = ( { backend = \"cpu\"; },\n { backend = \"cpu\";\n devcie = 1; } );\n",
                      ":3: unknown setting 'workers[1].devcie' (did you mean 'workers[1].device'?)");
    expect_override_error("model.layer=6c-2s",
                          "-s model.layer=6c-2s: unknown setting 'model.layer' (did you mean 'model.layers'?)");
    expect_override_error("model={kernal=3;}",
                          "-s model={kernal=3;}: unknown setting 'model.kernal' (did you mean 'model.kernel'?)");
    expect_override_error("seed=3", "-s seed=3: unknown setting 'seed' (did you mean 'train.seed'?)");
}
END_TEST

START_TEST(out_of_range)
{
    expect_file_error("model = {\n kernel = 0;\n};\n", ":2: model.kernel = 0 is out of range (1..27)");
    expect_file_error("model = { kernel = 28; };\n", ":1: model.kernel = 28 is out of range (1..27)");
    expect_file_error("model = { lambda = 0; };\n", ":1: model.lambda = 0 is out of range (> 0 or \"auto\")");
    expect_file_error("model = { lambda = -1.5; };\n", ":1: model.lambda = -1.5 is out of range (> 0 or \"auto\")");
    expect_file_error("train = { momentum = 1.0; };\n", ":1: train.momentum = 1 is out of range ([0, 1))");
    expect_file_error("train = { learning_rate = 0.0; };\n",
                      ":1: train.learning_rate = 0 is out of range (> 0)");
    expect_file_error("train = { iterations = 100001; };\n",
                      ":1: train.iterations = 100001 is out of range (0..100000)");
    expect_file_error("train = { seed = -1; };\n", ":1: train.seed = -1 is out of range (>= 0)");
    expect_file_error("train = { chunk = 0; };\n", ":1: train.chunk = 0 is out of range (1..1000000)");
    expect_file_error("train = { partitions = 0; };\n", ":1: train.partitions = 0 is out of range (1..100000)");
    expect_file_error("data = { train_limit = -5; };\n", ":1: data.train_limit = -5 is out of range (>= 0)");
    expect_file_error("workers = ( { backend = \"cpu\"; threads = -1; } );\n",
                      ":1: workers[0].threads = -1 is out of range (>= 0)");
    expect_file_error("workers = ( { backend = \"cpu\"; device = -2; } );\n",
                      ":1: workers[0].device = -2 is out of range (>= 0)");
    expect_override_error("model.kernel=0", "-s model.kernel=0: model.kernel = 0 is out of range (1..27)");
    expect_override_error("train.momentum=-0.5",
                          "-s train.momentum=-0.5: train.momentum = -0.5 is out of range ([0, 1))");
}
END_TEST

START_TEST(wrong_type)
{
    expect_file_error("model = { kernel = \"5\"; };\n", ":1: model.kernel must be an integer, not a string");
    expect_file_error("model = { kernel = 5.0; };\n", ":1: model.kernel must be an integer, not a float");
    expect_file_error("model = { lambda = \"1\"; };\n", ":1: model.lambda must be a number, not a string");
    expect_file_error("model = { layers = 6; };\n",
                      ":1: model.layers must be a string (in double quotes), not an integer");
    expect_file_error("model = { activation = true; };\n",
                      ":1: model.activation must be a string (in double quotes), not a boolean");
    expect_file_error("\nmodel = 5;\n", ":2: model must be a group { ... }, not an integer");
    expect_file_error("workers = { backend = \"cpu\"; };\n",
                      ":1: workers must be a list of groups, e.g. ( { backend = \"cpu\"; device = 0; } ), "
                      "not a group");
    expect_file_error("workers = ( \"cpu\" );\n",
                      ":1: workers[0] must be a group such as { backend = \"cpu\"; }, not a string");
    expect_override_error("train.seed=abc",
                          "-s train.seed=abc: cannot parse the value: syntax error (write it as in a config "
                          "file, strings in double quotes)");
    expect_override_error("train.seed=\"7\"", "-s train.seed=\"7\": train.seed must be an integer, not a string");
    expect_override_error("train.seed=1; plugin_path=\"/x\"",
                          "-s train.seed=1; plugin_path=\"/x\": cannot parse the value: more than one "
                          "setting (write it as in a config file, strings in double quotes)");
    expect_override_error("train.seed", "-s train.seed: expected key=value, e.g. -s train.seed=7");
    expect_override_error("train..seed=1",
                          "-s train..seed=1: bad key 'train..seed' (want names joined by '.', e.g. train.seed)");
}
END_TEST

START_TEST(bad_enum)
{
    expect_file_error("model = { activation = \"tanh\"; };\n",
                      ":1: model.activation = \"tanh\" is not one of \"identity\", \"relu\", \"opttanh\"");
    expect_file_error("model = { pooling = \"min\"; };\n",
                      ":1: model.pooling = \"min\" is not one of \"mean\", \"max\"");
    expect_file_error("train = { partitioning = \"random\"; };\n",
                      ":1: train.partitioning = \"random\" is not one of \"shuffle\", \"stratified\", "
                      "\"contiguous\", \"label-skew\", \"by-source\"");
    expect_file_error("train = { reduce = \"median\"; };\n",
                      ":1: train.reduce = \"median\" is not one of \"mean\", \"weighted\", \"refit\"");
    expect_file_error("train = { lr_schedule = \"step\"; };\n",
                      ":1: train.lr_schedule = \"step\" is not one of \"constant\", \"inverse\"");
    expect_override_error("model.pooling=avg",
                          "-s model.pooling=avg: model.pooling = \"avg\" is not one of \"mean\", \"max\"");
    /* layer syntax */
    expect_file_error("model = { layers = \"6c-2x-12c\"; };\n",
                      ":1: model.layers = \"6c-2x-12c\": bad layer '2x' (want layers like 6c or 2s: a count "
                      "1..1024 then c (convolution) or s (pooling), joined by '-', e.g. \"6c-2s-12c-2s\")");
    const char *bad[] = {"", "6c-", "-6c", "0c", "1025c", "6c--2s", "c", "6", "6c2s", "6c-2s "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "model = { layers = \"%s\"; };\n", bad[i]);
        cnnelm_config cfg;
        cnnelm_error err;
        ck_assert_msg(load(&cfg, text, NULL, 0, &err) != 0, "'%s' accepted", bad[i]);
        ck_assert_msg(strstr(err.msg, "bad layer") != NULL, "%s", err.msg);
    }
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_int_eq(load(&cfg, "model = { layers = \"1024c-1s-3c\"; };\n", NULL, 0, &err), 0);
    cnnelm_config_free(&cfg);
    /* backend names become file names: no slashes */
    expect_file_error("workers = ( { backend = \"../evil\"; } );\n",
                      ":1: workers[0].backend = \"../evil\": a backend name has only letters, digits, '_' and '-'");
}
END_TEST

START_TEST(parse_errors)
{
    expect_file_error("model = {\n  kernel = 5;\n  layers = = \"6c\";\n};\n", ":3: syntax error");
    expect_file_error("model = { kernel = 5; kernel = 6; };\n", ":1: duplicate setting name");
    expect_file_error("train = { seed = 3000000000; };\n",
                      ":1: integer 3000000000 does not fit in 32 bits; write it with the L suffix (3000000000L)");
    /* comments and strings are not mistaken for integers */
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_msg(load(&cfg, "# seed = 99999999999\n/* 88888888888 */ data = { train_images = \"/a/77777777777\"; };\n"
                             "model = { lambda = 1e-12; };\n", NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(cfg.data.train_images, "/a/77777777777");
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(missing_file)
{
    cnnelm_config cfg;
    cnnelm_error err = {""};
    char p[600];
    snprintf(p, sizeof p, "%s/absent.cfg", dir);
    ck_assert_int_ne(cnnelm_config_load(&cfg, p, NULL, 0, &err), 0);
    char want[700];
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", p);
    ck_assert_str_eq(err.msg, want);
}
END_TEST

START_TEST(workers)
{
    expect_file_error("\nworkers = ();\n", ":2: workers is empty: at least one worker is needed, e.g. ( { backend = \"cpu\"; } )");
    expect_file_error("workers = [];\n", ":1: workers is empty: at least one worker is needed, e.g. ( { backend = \"cpu\"; } )");
    expect_override_error("workers=()",
                          "-s workers=(): workers is empty: at least one worker is needed, e.g. ( { backend = \"cpu\"; } )");
    expect_file_error("workers = ( { backend = \"cpu\"; },\n { device = 1; } );\n",
                      ":2: workers[1] has no backend (e.g. backend = \"cpu\";)");
    expect_override_error("workers.device=1",
                          "-s workers.device=1: workers is a list; override it whole, e.g. "
                          "-s 'workers=({backend=\"cpu\";device=0;})'");
    /* the most workers */
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof text, "workers = (");
    for (int i = 0; i < CNNELM_MAX_WORKERS + 1; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%s{backend=\"cpu\";device=%d;}", i ? "," : "", i);
    snprintf(text + used, sizeof text - used, ");\n");
    char want[128];
    snprintf(want, sizeof want, ":1: workers has %d entries (at most %d)", CNNELM_MAX_WORKERS + 1, CNNELM_MAX_WORKERS);
    expect_file_error(text, want);
    char *last = strrchr(text, ',');
    snprintf(last, 8, ");\n");
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_msg(load(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.n_workers, CNNELM_MAX_WORKERS);
    ck_assert_int_eq(cfg.workers[CNNELM_MAX_WORKERS - 1].device, CNNELM_MAX_WORKERS - 1);
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(include_relative)
{
    char inc[600];
    snprintf(inc, sizeof inc, "%s/model.inc", dir);
    write_text(inc, "model = {\n kernel = 3;\n activation = \"bogus\";\n};\n");
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_int_ne(load(&cfg, "@include \"model.inc\"\n", NULL, 0, &err), 0);
    ck_assert_str_eq(err.msg, "model.inc:3: model.activation = \"bogus\" is not one of \"identity\", \"relu\", \"opttanh\"");
}
END_TEST

START_TEST(shipped_configs)
{
    static const char *const names[] = {"default.cfg", "paper-mnist.cfg", "finetune.cfg"};
    for (int i = 0; i < 3; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/conf/%s", CNNELM_SOURCE_DIR, names[i]);
        cnnelm_config cfg;
        cnnelm_error err = {""};
        ck_assert_msg(cnnelm_config_load(&cfg, p, NULL, 0, &err) == 0, "%s", err.msg);
        ck_assert_int_ge(cfg.n_workers, 1);
        cnnelm_config_free(&cfg);
    }
    /* default.cfg spells out every key with its default value, except the data paths and the
     * wide network it runs (model.layers, model.lambda) */
    char p[1024];
    snprintf(p, sizeof p, "%s/conf/default.cfg", CNNELM_SOURCE_DIR);
    cnnelm_config cfg, def;
    cnnelm_error err = {""};
    const char *blank[] = {"data.train_images=\"\"", "data.train_labels=\"\"", "data.test_images=\"\"",
                           "data.test_labels=\"\"", "model.layers=\"6c-2s-12c-2s\"", "model.lambda=100"};
    ck_assert_int_eq(cnnelm_config_load(&cfg, p, blank, 6, &err), 0);
    ck_assert_int_eq(cnnelm_config_load(&def, NULL, NULL, 0, &err), 0);
    ck_assert_str_eq(cfg.text, def.text);
    cnnelm_config_free(&cfg);
    cnnelm_config_free(&def);
    FILE *f = fopen(p, "r");
    ck_assert_ptr_nonnull(f);
    char file[16384];
    size_t n = fread(file, 1, sizeof file - 1, f);
    file[n] = 0;
    fclose(f);
    const char *keys[] = {"plugin_path =", "train_images =", "train_labels =", "test_images =",
                          "test_labels =", "train_limit =", "test_limit =", "layers =", "kernel =",
                          "activation =", "pooling =", "elm_activation =", "lambda =", "seed =",
                          "iterations =", "batch =", "chunk =", "learning_rate =", "lr_schedule =",
                          "momentum =", "partitions =", "partitioning =", "reduce =", "backend =",
                          "device =", "threads =", "extend =", "sources =", "init =",
                          "compare_single =", "trials =", "folds =", "checkpoint_dir =", "sums =",
                          "whiten ="};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_msg(strstr(file, keys[i]) != NULL, "default.cfg lacks %s", keys[i]);
    snprintf(p, sizeof p, "%s/conf/default.cfg", CNNELM_SOURCE_DIR);
    ck_assert_int_eq(cnnelm_config_load(&cfg, p, NULL, 0, &err), 0);
    ck_assert_ptr_nonnull(strstr(cfg.data.train_images, "fashion-mnist/train-images-idx3-ubyte.gz"));
    cnnelm_config_free(&cfg);
}
END_TEST

/* docs/config.md embeds the reference generated from the schema between two markers; run with
 * CNNELM_UPDATE_DOCS=1 to rewrite it. */
START_TEST(docs_match_schema)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/docs/config.md", CNNELM_SOURCE_DIR);
    char *ref = NULL;
    size_t ref_len = 0;
    FILE *m = open_memstream(&ref, &ref_len);
    cnnelm_config_write_reference(m);
    fclose(m);
    FILE *f = fopen(p, "r");
    ck_assert_msg(f != NULL, "%s missing", p);
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    doc[n] = 0;
    fclose(f);
    const char *begin_mark = "<!-- BEGIN GENERATED REFERENCE -->\n", *end_mark = "<!-- END GENERATED REFERENCE -->";
    char *b = strstr(doc, begin_mark), *e = strstr(doc, end_mark);
    ck_assert_msg(b && e && b < e, "%s lacks the generated-reference markers", p);
    b += strlen(begin_mark);
    if (getenv("CNNELM_UPDATE_DOCS")) {
        f = fopen(p, "w");
        ck_assert_ptr_nonnull(f);
        fwrite(doc, 1, (size_t)(b - doc), f);
        fputs(ref, f);
        fputs(e, f);
        fclose(f);
    } else {
        ck_assert_msg((size_t)(e - b) == ref_len && memcmp(b, ref, ref_len) == 0,
                      "docs/config.md is out of date with the schema; run test_config with CNNELM_UPDATE_DOCS=1");
    }
    free(ref);
}
END_TEST

START_TEST(lambda_auto)
{
    cnnelm_config cfg;
    cnnelm_error err;
    /* "auto" in the file, candidates given; the effective config writes them back */
    ck_assert_msg(load(&cfg, "model = { lambda = \"auto\"; lambda_candidates = [10.0, 1000.0, 1e5]; };\n",
                       NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_double_eq(cfg.model.lambda, 0.0);
    ck_assert_int_eq(cfg.model.lambda_candidates.n, 3);
    ck_assert_double_eq(cfg.model.lambda_candidates.v[1], 1000.0);
    ck_assert_double_eq(cfg.model.lambda_candidates.v[2], 1e5);
    ck_assert_ptr_nonnull(strstr(cfg.text, "lambda = \"auto\""));
    cnnelm_config_free(&cfg);
    /* bare auto on the command line; default candidates: none listed (1, 10, ..., 1e6) */
    const char *ov[] = { "model.lambda=auto" };
    ck_assert_msg(load(&cfg, "model = { lambda = 5.0; };\n", ov, 1, &err) == 0, "%s", err.msg);
    ck_assert_double_eq(cfg.model.lambda, 0.0);
    ck_assert_int_eq(cfg.model.lambda_candidates.n, 0);
    cnnelm_config_free(&cfg);
    expect_file_error("model = { lambda = \"automatic\"; };\n",
                      ":1: model.lambda must be a number, not a string");
    expect_file_error("model = { lambda_candidates = [10.0, 0.0]; };\n",
                      ":1: model.lambda_candidates[1] = 0 is out of range (a number > 0)");
    expect_file_error("model = { lambda_candidates = 10.0; };\n",
                      ":1: model.lambda_candidates must be an array of numbers, e.g. [10.0, 100.0, "
                      "1000.0], not a float");
}
END_TEST

START_TEST(enum_names)
{
    ck_assert_str_eq(cnnelm_activation_name(CNNELM_ACT_RELU), "relu");
    ck_assert_str_eq(cnnelm_activation_name(CNNELM_ACT_OPTTANH), "opttanh");
    ck_assert_str_eq(cnnelm_activation_name(CNNELM_ACT_IDENTITY), "identity");
    ck_assert_str_eq(cnnelm_pooling_name(CNNELM_POOL_MEAN), "mean");
    ck_assert_str_eq(cnnelm_pooling_name(CNNELM_POOL_MAX), "max");
    ck_assert_str_eq(cnnelm_reduce_name(CNNELM_REDUCE_MEAN), "mean");
    ck_assert_str_eq(cnnelm_reduce_name(CNNELM_REDUCE_WEIGHTED), "weighted");
    ck_assert_str_eq(cnnelm_reduce_name(CNNELM_REDUCE_REFIT), "refit");
    ck_assert_str_eq(cnnelm_partitioning_name(CNNELM_PART_SHUFFLE), "shuffle");
    ck_assert_str_eq(cnnelm_partitioning_name(CNNELM_PART_STRATIFIED), "stratified");
    ck_assert_str_eq(cnnelm_partitioning_name(CNNELM_PART_CONTIGUOUS), "contiguous");
    ck_assert_str_eq(cnnelm_partitioning_name(CNNELM_PART_LABEL_SKEW), "label-skew");
    ck_assert_str_eq(cnnelm_partitioning_name(CNNELM_PART_BY_SOURCE), "by-source");
    ck_assert_str_eq(cnnelm_lr_schedule_name(CNNELM_LR_CONSTANT), "constant");
    ck_assert_str_eq(cnnelm_lr_schedule_name(CNNELM_LR_INVERSE), "inverse");
    ck_assert_str_eq(cnnelm_reduce_name((cnnelm_reduce)42), "unknown");
}
END_TEST

/* data.sources: a list of IDX sets, test_* optional; the effective text reads back the same */
START_TEST(sources)
{
    const char *text =
        "data = {\n"
        "  sources = (\n"
        "    { train_images = \"/n/ti\"; train_labels = \"/n/tl\"; test_images = \"/n/xi\"; test_labels = \"/n/xl\"; },\n"
        "    { train_images = \"/l/ti\"; train_labels = \"/l/tl\"; }\n"
        "  );\n"
        "};\n"
        "train = { partitioning = \"by-source\"; };\n";
    cnnelm_config cfg, cfg2;
    cnnelm_error err;
    ck_assert_msg(load(&cfg, text, NULL, 0, &err) == 0, "%s", err.msg);
    for (int round = 0; round < 2; round++) {
        const cnnelm_config *c = round ? &cfg2 : &cfg;
        ck_assert_int_eq(c->data.n_sources, 2);
        ck_assert_str_eq(c->data.sources[0].train_images, "/n/ti");
        ck_assert_str_eq(c->data.sources[0].train_labels, "/n/tl");
        ck_assert_str_eq(c->data.sources[0].test_images, "/n/xi");
        ck_assert_str_eq(c->data.sources[0].test_labels, "/n/xl");
        ck_assert_str_eq(c->data.sources[1].train_images, "/l/ti");
        ck_assert_str_eq(c->data.sources[1].train_labels, "/l/tl");
        ck_assert_str_eq(c->data.sources[1].test_images, "");
        ck_assert_str_eq(c->data.sources[1].test_labels, "");
        ck_assert_int_eq(c->train.partitioning, CNNELM_PART_BY_SOURCE);
        if (round)
            break;
        char again[600];
        snprintf(again, sizeof again, "%s/effective.cfg", dir);
        write_text(again, cfg.text);
        ck_assert_msg(cnnelm_config_load(&cfg2, again, NULL, 0, &err) == 0, "%s\n%s", err.msg, cfg.text);
    }
    ck_assert_str_eq(cfg2.text, cfg.text);
    ck_assert_ptr_nonnull(strstr(cfg.text, "sources = ("));
    ck_assert_ptr_nonnull(strstr(cfg.text, "partitioning = \"by-source\";"));
    cnnelm_config_free(&cfg);
    cnnelm_config_free(&cfg2);

    /* overrides: the list replaced whole; an empty list or array is none */
    const char *ov[] = {"data.sources=({train_images=\"a\";train_labels=\"b\";})"};
    ck_assert_msg(load(&cfg, text, ov, 1, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.data.n_sources, 1);
    ck_assert_str_eq(cfg.data.sources[0].train_images, "a");
    cnnelm_config_free(&cfg);
    ck_assert_msg(load(&cfg, "data = { sources = (); train_images = \"x\"; };\n", NULL, 0, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(cfg.data.n_sources, 0);
    cnnelm_config_free(&cfg);
    ck_assert_msg(load(&cfg, "data = { sources = []; };\n", NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.data.n_sources, 0);
    cnnelm_config_free(&cfg);

    /* the most sources */
    char many[8192];
    size_t used = (size_t)snprintf(many, sizeof many, "data = { sources = (");
    for (int i = 0; i < CNNELM_MAX_SOURCES + 1; i++)
        used += (size_t)snprintf(many + used, sizeof many - used,
                                 "%s{train_images=\"i%d\";train_labels=\"l%d\";}", i ? "," : "", i, i);
    snprintf(many + used, sizeof many - used, "); };\n");
    char want[128];
    snprintf(want, sizeof want, ":1: data.sources has %d entries (at most %d)", CNNELM_MAX_SOURCES + 1,
             CNNELM_MAX_SOURCES);
    expect_file_error(many, want);
    char *last = strrchr(many, ',');
    snprintf(last, 16, "); };\n");
    ck_assert_msg(load(&cfg, many, NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.data.n_sources, CNNELM_MAX_SOURCES);
    ck_assert_str_eq(cfg.data.sources[CNNELM_MAX_SOURCES - 1].train_labels, "l15");
    cnnelm_config_free(&cfg);
}
END_TEST

START_TEST(source_errors)
{
    expect_file_error("data = {\n  train_images = \"x\";\n"
                      "  sources = ( { train_images = \"a\"; train_labels = \"b\"; } );\n};\n",
                      ":2: data.train_images is set, but data.sources replaces data.train_images, "
                      "data.train_labels, data.test_images and data.test_labels: set them to \"\"");
    expect_file_error("data = { test_labels = \"x\";\n"
                      "  sources = ( { train_images = \"a\"; train_labels = \"b\"; } );\n};\n",
                      ":1: data.test_labels is set, but data.sources replaces data.train_images, "
                      "data.train_labels, data.test_images and data.test_labels: set them to \"\"");
    expect_file_error("data = { sources = (\n { train_images = \"a\"; } ); };\n",
                      ":2: data.sources[0] has no train_labels");
    expect_file_error("data = { sources = ( { train_images = \"a\"; train_labels = \"b\"; },\n"
                      " { train_images = \"a\"; train_labels = \"b\"; test_images = \"c\"; } ); };\n",
                      ":2: data.sources[1]: test_images and test_labels go together (one is empty)");
    expect_file_error("data = { sources = \"a.gz\"; };\n",
                      ":1: data.sources must be a list of groups, e.g. ( { train_images = \"a.gz\"; "
                      "train_labels = \"b.gz\"; } ), not a string");
    expect_file_error("data = { sources = ( \"a.gz\" ); };\n",
                      ":1: data.sources[0] must be a group { train_images = ...; train_labels = ...; }, "
                      "not a string");
    expect_file_error("data = { sources = ( { train_images = \"a\"; train_labels = \"b\"; train_limit = 5; } ); };\n",
                      ":1: unknown setting 'data.sources[0].train_limit'");
    expect_file_error("data = { sources = ( { train_images = 5; train_labels = \"b\"; } ); };\n",
                      ":1: data.sources[0].train_images must be a string (in double quotes), not an integer");
    expect_override_error("data.sources.train_images=x",
                          "-s data.sources.train_images=x: data.sources is a list; override it whole");
    /* by-source needs sources */
    expect_file_error("train = {\n  partitioning = \"by-source\";\n};\n",
                      ":2: train.partitioning = \"by-source\" needs data.sources (one partition per source)");
    expect_override_error("train.partitioning=by-source",
                          "-s train.partitioning=by-source: train.partitioning = \"by-source\" needs "
                          "data.sources (one partition per source)");
}
END_TEST

START_TEST(extend_and_trials)
{
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_msg(load(&cfg, "data = { extend = [\"poisson\", \"gaussian\", \"salt_pepper\"]; };\n", NULL, 0,
                       &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.data.extend, CNNELM_NOISE_GAUSSIAN | CNNELM_NOISE_SALT_PEPPER | CNNELM_NOISE_POISSON);
    /* the text lists them in the fixed order */
    ck_assert_msg(strstr(cfg.text, "extend = [ \"gaussian\", \"salt_pepper\", \"poisson\" ];") != NULL, "%s", cfg.text);
    cnnelm_config_free(&cfg);
    const char *ov[] = {"data.extend=[\"poisson\"]", "train.compare_single=true", "train.trials=1000",
                        "train.folds=2"};
    ck_assert_msg(load(&cfg, "data = { extend = [\"gaussian\"]; };\n", ov, 4, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.data.extend, CNNELM_NOISE_POISSON);
    ck_assert_int_eq(cfg.train.compare_single, 1);
    ck_assert_int_eq(cfg.train.trials, 1000);
    ck_assert_int_eq(cfg.train.folds, 2);
    ck_assert_ptr_nonnull(strstr(cfg.text, "compare_single = true;"));
    cnnelm_config_free(&cfg);
    const char *none[] = {"data.extend=[]"};
    ck_assert_msg(load(&cfg, "data = { extend = [\"gaussian\"]; };\n", none, 1, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.data.extend, 0);
    cnnelm_config_free(&cfg);

    expect_file_error("data = {\n extend = [\"gaussian\", \"gaussian\"]; };\n",
                      ":2: data.extend lists \"gaussian\" twice");
    expect_file_error("data = { extend = [\"gaussian\", \"speckle\"]; };\n",
                      ":1: data.extend[1] is not one of \"gaussian\", \"salt_pepper\", \"poisson\"");
    expect_file_error("data = { extend = \"gaussian\"; };\n",
                      ":1: data.extend must be an array of strings, e.g. [\"gaussian\"], not a string");
    expect_file_error("data = { extend = [1]; };\n",
                      ":1: data.extend[0] is not one of \"gaussian\", \"salt_pepper\", \"poisson\"");
    expect_file_error("train = { compare_single = 1; };\n",
                      ":1: train.compare_single must be true or false, not an integer");
    expect_file_error("train = { trials = 0; };\n", ":1: train.trials = 0 is out of range (1..1000)");
    expect_file_error("train = { trials = 1001; };\n", ":1: train.trials = 1001 is out of range (1..1000)");
    expect_file_error("train = { folds = 101; };\n", ":1: train.folds = 101 is out of range (0..100)");
    expect_file_error("train = {\n folds = 1; };\n",
                      ":2: train.folds = 1: cross-validation needs at least 2 folds (0: off)");
    expect_override_error("train.folds=1", "-s train.folds=1: train.folds = 1: cross-validation needs at "
                          "least 2 folds (0: off)");
}
END_TEST

/* workers and data.sources go through one list checker: the same faults give the same
 * sentence, with only the list's name, example and element shape differing. */
typedef struct list_case {
    const char *name;      /* as messages name it */
    const char *open, *close; /* the file text around the list's value */
    const char *example, *shape;
    const char *good;      /* one valid element */
    const char *typo, *meant; /* a misspelled member and the key it should be */
    const char *required;  /* the member every element needs */
    const char *without;   /* an element without it */
    const char *example_value; /* the required member's example in "has no" (NULL: none) */
} list_case;

static const list_case list_cases[] = {
    {"workers", "workers = ", ";\n", "( { backend = \"cpu\"; device = 0; } )",
     "such as { backend = \"cpu\"; }", "{ backend = \"cpu\"; }", "devcie", "device", "backend",
     "{ device = 1; }", "\"cpu\""},
    {"data.sources", "data = { sources = ", "; };\n",
     "( { train_images = \"a.gz\"; train_labels = \"b.gz\"; } )",
     "{ train_images = ...; train_labels = ...; }", "{ train_images = \"a\"; train_labels = \"b\"; }",
     "train_lables", "train_labels", "train_images", "{ train_labels = \"b\"; }", NULL},
};

static void expect_list_error(const list_case *l, const char *value, const char *want_fmt, ...)
{
    char text[1024], suffix[1024];
    snprintf(text, sizeof text, "%s%s%s", l->open, value, l->close);
    va_list ap;
    va_start(ap, want_fmt);
    vsnprintf(suffix, sizeof suffix, want_fmt, ap);
    va_end(ap);
    expect_file_error(text, suffix);
}

START_TEST(lists_one_checker)
{
    for (size_t i = 0; i < sizeof list_cases / sizeof list_cases[0]; i++) {
        const list_case *l = &list_cases[i];
        char value[512];
        expect_list_error(l, "5", ":1: %s must be a list of groups, e.g. %s, not an integer", l->name,
                          l->example);
        expect_list_error(l, "\"x\"", ":1: %s must be a list of groups, e.g. %s, not a string", l->name,
                          l->example);
        snprintf(value, sizeof value, "( %s, 7 )", l->good);
        expect_list_error(l, value, ":1: %s[1] must be a group %s, not an integer", l->name, l->shape);
        /* the element is named by its index, the suggestion keeps the element's prefix */
        snprintf(value, sizeof value, "( %s, { %s = 1; } )", l->good, l->typo);
        expect_list_error(l, value, ":1: unknown setting '%s[1].%s' (did you mean '%s[1].%s'?)", l->name,
                          l->typo, l->name, l->meant);
        expect_list_error(l, "( { zzzzzzzzzzzz = 1; } )", ":1: unknown setting '%s[0].zzzzzzzzzzzz'", l->name);
        snprintf(value, sizeof value, "( %s,\n %s )", l->good, l->without);
        if (l->example_value)
            expect_list_error(l, value, ":2: %s[1] has no %s (e.g. %s = %s;)", l->name, l->required,
                              l->required, l->example_value);
        else
            expect_list_error(l, value, ":2: %s[1] has no %s", l->name, l->required);
        /* a member's value is checked as a top-level key's is, named by its element */
        snprintf(value, sizeof value, "( { %s = 3; } )", l->required);
        expect_list_error(l, value, ":1: %s[0].%s must be a string (in double quotes), not an integer",
                          l->name, l->required);
        /* the same from -s, pointing at the override */
        char ov[600], want[1024];
        snprintf(ov, sizeof ov, "%s=5", l->name);
        snprintf(want, sizeof want, "-s %s: %s must be a list of groups, e.g. %s, not an integer", ov, l->name,
                 l->example);
        expect_override_error(ov, want);
        snprintf(ov, sizeof ov, "%s=(%s,{%s=1;})", l->name, l->good, l->typo);
        snprintf(want, sizeof want, "-s %s: unknown setting '%s[1].%s' (did you mean '%s[1].%s'?)", ov, l->name,
                 l->typo, l->name, l->meant);
        expect_override_error(ov, want);
    }
    /* only workers refuses an empty list; an empty data.sources means "no sources" */
    expect_file_error("workers = ();\n", ":1: workers is empty: at least one worker is needed, e.g. "
                                         "( { backend = \"cpu\"; } )");
    cnnelm_config cfg;
    cnnelm_error err;
    ck_assert_msg(load(&cfg, "data = { sources = (); };\n", NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.data.n_sources, 0);
    cnnelm_config_free(&cfg);
    /* every element starts from the members' defaults, whatever the element before it held */
    ck_assert_msg(load(&cfg, "workers = ( { backend = \"cpu\"; threads = 4; op_timeout = 5.0; match = \"x\"; },"
                             " { backend = \"opencl\"; } );\n"
                             "data = { sources = ( { train_images = \"a\"; train_labels = \"b\"; "
                             "test_images = \"c\"; test_labels = \"d\"; }, { train_images = \"e\"; "
                             "train_labels = \"f\"; } ); };\n", NULL, 0, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cfg.n_workers, 2);
    ck_assert_int_eq(cfg.workers[1].threads, 0);
    ck_assert_double_eq(cfg.workers[1].op_timeout, 600.0);
    ck_assert_str_eq(cfg.workers[1].match, "");
    ck_assert_int_eq(cfg.data.n_sources, 2);
    ck_assert_str_eq(cfg.data.sources[1].train_labels, "f");
    ck_assert_str_eq(cfg.data.sources[1].test_images, "");
    ck_assert_str_eq(cfg.data.sources[0].test_labels, "d");
    cnnelm_config_free(&cfg);
}
END_TEST

/* libconfig reads an integer literal without L as 32 bits and wraps larger ones silently
 * (4294967301 would read as 5): -s adds the L to a plain decimal, a file must write it. */
START_TEST(wide_integer_overrides)
{
    cnnelm_config cfg;
    cnnelm_error err = {""};
    const char *ov[] = {"train.seed=5000000000", "data.train_limit=2147483648", "data.max_bytes=8589934592L",
                        "data.test_limit=2147483647", "data.train_images=12345678901"};
    ck_assert_msg(cnnelm_config_load(&cfg, NULL, ov, 5, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.train.seed, 5000000000ull);
    ck_assert_int_eq(cfg.data.train_limit, 2147483648L);
    ck_assert_int_eq(cfg.data.max_bytes, 8589934592LL);
    ck_assert_int_eq(cfg.data.test_limit, 2147483647L);
    ck_assert_str_eq(cfg.data.train_images, "12345678901"); /* a string key keeps the digits as typed */
    ck_assert_ptr_nonnull(strstr(cfg.text, "seed = 5000000000L;"));
    ck_assert_ptr_nonnull(strstr(cfg.text, "train_limit = 2147483648L;"));
    cnnelm_config_free(&cfg);

    /* a wide value is range-checked as itself, not as its 32-bit wrap */
    expect_override_error("model.kernel=4294967301",
                          "-s model.kernel=4294967301: model.kernel = 4294967301 is out of range (1..27)");
    expect_override_error("data.train_limit=-5000000000",
                          "-s data.train_limit=-5000000000: data.train_limit = -5000000000 is out of range (>= 0)");
    /* inside a group or in hex the L cannot be added for the user: say where it goes */
    expect_override_error("train={seed=5000000000;}", "-s train={seed=5000000000;}: integer 5000000000 does "
                          "not fit in 32 bits; write it with the L suffix (5000000000L)");
    expect_override_error("train.seed=0x100000000", "-s train.seed=0x100000000: integer 0x100000000 does "
                          "not fit in 32 bits; write it with the L suffix (0x100000000L)");
    expect_file_error("model = { kernel = 4294967301; };\n",
                      ":1: integer 4294967301 does not fit in 32 bits; write it with the L suffix (4294967301L)");
    /* -2147483648 still fits in 32 bits: no L, no error; range checks see the real value */
    expect_override_error("train.iterations=-2147483648",
                          "-s train.iterations=-2147483648: train.iterations = -2147483648 is out of range "
                          "(0..100000)");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, every_key);
    tcase_add_test(tc, overrides);
    tcase_add_test(tc, unknown_keys);
    tcase_add_test(tc, out_of_range);
    tcase_add_test(tc, wrong_type);
    tcase_add_test(tc, bad_enum);
    tcase_add_test(tc, parse_errors);
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, workers);
    tcase_add_test(tc, include_relative);
    tcase_add_test(tc, shipped_configs);
    tcase_add_test(tc, docs_match_schema);
    tcase_add_test(tc, lambda_auto);
    tcase_add_test(tc, enum_names);
    tcase_add_test(tc, sources);
    tcase_add_test(tc, source_errors);
    tcase_add_test(tc, extend_and_trials);
    tcase_add_test(tc, lists_one_checker);
    tcase_add_test(tc, wide_integer_overrides);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
