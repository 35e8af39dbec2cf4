/* cnnelm plot: the tool's drawing of a JSON report through gnuplot (beside the tool, not in
 * the library: it runs an external program). */
#ifndef CNNELM_TOOLS_PLOT_H
#define CNNELM_TOOLS_PLOT_H

#include "cnnelm/error.h"

/* Plot the per-iteration series of a JSON report (accuracy and J against iterations) into a
 * PNG or SVG file (chosen by the extension of `out`) through gnuplot. */
int cnnelm_run_plot(const char *report, const char *out, cnnelm_error *err);

#endif
