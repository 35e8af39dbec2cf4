/* cnnelm command-line tool: parses arguments and calls the library's jobs (cnnelm/run.h).
 * Exit status: 0 success, 1 a failed job (the message says why), 2 a usage error. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnelm/backend.h"
#include "cnnelm/run.h"

#ifndef CNNELM_VERSION
#define CNNELM_VERSION "unknown"
#endif

static const char *usage_main =
    "usage: cnnelm COMMAND [OPTIONS]\n"
    "\n"
    "Train and evaluate CNN-ELM image classifiers (distributed averaging CNN-ELM).\n"
    "\n"
    "commands:\n"
    "  train     train a model as a config file says, evaluate it, save it\n"
    "  eval      evaluate a saved model on a config's test set\n"
    "  devices   list the backend plugins found and their devices\n"
    "\n"
    "options:\n"
    "  -h, --help     this help (`cnnelm COMMAND --help` for a command's options)\n"
    "  -V, --version  print the version\n";

static const char *usage_train =
    "usage: cnnelm train -c CONFIG [-s KEY=VALUE]... [-o MODEL] [--report FILE.json] [--quiet]\n"
    "\n"
    "Train a CNN-ELM as CONFIG says (see conf/default.cfg and docs/config.md), evaluate it on the\n"
    "configured test set, print accuracy, kappa and the confusion matrix, and save the model.\n"
    "\n"
    "  -c, --config FILE     libconfig file (required)\n"
    "  -s, --set KEY=VALUE   override one setting, VALUE written as in a config file:\n"
    "                        -s train.seed=7  -s 'data.train_images=\"/data/x.gz\"'\n"
    "                        -s 'workers=({backend=\"cpu\";device=0;threads=2;})'\n"
    "  -o, --output MODEL    model file to write (default: cnnelm.model)\n"
    "      --report FILE     write a JSON report (results, per-iteration series, timings, config)\n"
    "  -q, --quiet           no progress on stderr\n"
    "  -h, --help            this help\n";

static const char *usage_eval =
    "usage: cnnelm eval -m MODEL -c CONFIG [-s KEY=VALUE]... [--report FILE.json] [--quiet]\n"
    "\n"
    "Evaluate a saved model on the test set named by CONFIG (data.test_images, data.test_labels),\n"
    "on the config's first worker. Prints accuracy, kappa and the confusion matrix.\n"
    "\n"
    "  -m, --model MODEL     model file (required)\n"
    "  -c, --config FILE     libconfig file (required)\n"
    "  -s, --set KEY=VALUE   override one setting (as for train)\n"
    "      --report FILE     write a JSON report\n"
    "  -q, --quiet           no progress on stderr\n"
    "  -h, --help            this help\n";

static const char *usage_devices =
    "usage: cnnelm devices [-v] [--plugin-path DIRS]\n"
    "\n"
    "List every backend plugin (libcnnelm-NAME.so) on the search path and its devices. The search\n"
    "path is DIRS (colon-separated), then $CNNELM_PLUGIN_PATH, the build tree, the install directory.\n"
    "\n"
    "  -v, --verbose         also print the search path and driver versions\n"
    "      --plugin-path D   directories to search first\n"
    "  -h, --help            this help\n";

enum { OPT_REPORT = 256, OPT_PLUGIN_PATH };

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "cnnelm: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

static int cmd_job(int argc, char **argv, int is_train)
{
    const char *usage = is_train ? usage_train : usage_eval;
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "set", required_argument, NULL, 's' },
        { "output", required_argument, NULL, 'o' }, { "model", required_argument, NULL, 'm' },
        { "report", required_argument, NULL, OPT_REPORT }, { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },           { NULL, 0, NULL, 0 },
    };
    cnnelm_run_options o = { 0 };
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets)
        return 1;
    int n_sets = 0, ch, rc;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, is_train ? "c:s:o:qh" : "c:s:m:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': o.config_path = optarg; break;
        case 's':
            if (!strchr(optarg, '=')) {
                free(sets);
                return usage_error(usage, "-s %s: expected KEY=VALUE", optarg);
            }
            sets[n_sets++] = optarg;
            break;
        case 'o': o.model_path = optarg; break;
        case 'm': o.model_path = optarg; break;
        case OPT_REPORT: o.report_path = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'h': fputs(usage, stdout); free(sets); return 0;
        default:
            free(sets);
            return usage_error(usage, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        free(sets);
        return usage_error(usage, "unexpected argument '%s'", argv[optind]);
    }
    if (!o.config_path) {
        free(sets);
        return usage_error(usage, "%s", "a config file is required (-c CONFIG)");
    }
    if (!is_train && !o.model_path) {
        free(sets);
        return usage_error(usage, "%s", "a model file is required (-m MODEL)");
    }
    if (!o.model_path)
        o.model_path = "cnnelm.model";
    o.overrides = sets;
    o.n_overrides = n_sets;
    cnnelm_error err = { "" };
    rc = is_train ? cnnelm_run_train(&o, &err) : cnnelm_run_eval(&o, &err);
    free(sets);
    if (rc != 0) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int cmd_devices(int argc, char **argv)
{
    static const struct option opts[] = {
        { "verbose", no_argument, NULL, 'v' }, { "plugin-path", required_argument, NULL, OPT_PLUGIN_PATH },
        { "help", no_argument, NULL, 'h' },    { NULL, 0, NULL, 0 },
    };
    int verbose = 0, ch;
    const char *path = NULL;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'v': verbose = 1; break;
        case OPT_PLUGIN_PATH: path = optarg; break;
        case 'h': fputs(usage_devices, stdout); return 0;
        default: return usage_error(usage_devices, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error(usage_devices, "unexpected argument '%s'", argv[optind]);
    cnnelm_error err = { "" };
    if (cnnelm_run_devices(path, verbose, &err) < 0) {
        fprintf(stderr, "cnnelm: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error(usage_main, "%s", "no command given");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("cnnelm %s (plugin ABI %d.%d)\n", CNNELM_VERSION, CNNELM_BACKEND_ABI_MAJOR,
               CNNELM_BACKEND_ABI_MINOR);
        return 0;
    }
    /* getopt_long permutes from argv[1]: hand it the command's own arguments. */
    if (!strcmp(cmd, "train"))
        return cmd_job(argc - 1, argv + 1, 1);
    if (!strcmp(cmd, "eval"))
        return cmd_job(argc - 1, argv + 1, 0);
    if (!strcmp(cmd, "devices"))
        return cmd_devices(argc - 1, argv + 1);
    return usage_error(usage_main, "unknown command '%s'", cmd);
}
