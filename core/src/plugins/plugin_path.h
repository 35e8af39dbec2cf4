/* What the plugin loader (plugin.c) takes from the search path and permission rules
 * (plugin_path.c). Internal to plugins/. */
#ifndef CNNELM_PLUGIN_PATH_H
#define CNNELM_PLUGIN_PATH_H

#include "cnnelm/plugin.h"

/* Resolves `file` (symlinks and all) into `real` (PATH_MAX bytes) and checks the file, its
 * directory, and the directory the name was found in when that is another one (a link there
 * can be replaced). */
int cnnelm_plugin_resolve_and_check(const char *file, char *real, cnnelm_error *err);

#endif
