/* A small text file of measured choices (the CUDA engine's convolution algorithm per shape
 * and direction, src/engine/cuda/conv_choice.cu), so that a choice measured once is the
 * same in every later run and a run's bits are the same run to run. Plain C, no device
 * code: built into every d2c and checked on the CPU by test_backend_ops.
 *
 * File format (text, one entry a line, tab-separated):
 *     # d2c algorithm cache v1 ...            (the first line, required)
 *     <device key> TAB <key> TAB <value>
 * The device key names what a measurement depends on (GPU, SM count, library versions,
 * TF32, ...); entries of other device keys are kept when the file is rewritten. A file that
 * cannot be read or parsed is ignored with one warning line (and rewritten, whole, by the
 * next put); writes go to a temporary file that is renamed over the old one (atomic). */
#ifndef D2C_ENGINE_ALGO_CACHE_H
#define D2C_ENGINE_ALGO_CACHE_H

#include <stddef.h>

typedef struct AlgoCache AlgoCache;

/* The cache file for `name`: override when not NULL (an empty override: no file, returns
 * 0), else $XDG_CACHE_HOME/d2c/<name>, else $HOME/.cache/d2c/<name>. Returns 1 with the
 * path in buf, 0 when there is none (or it does not fit). */
int algo_cache_path(const char *override, const char *name, char *buf, size_t cap);

/* Reads path's entries (path NULL: memory only). Tabs and newlines in devkey become
 * spaces. Never fails: an unreadable or corrupt file gives an empty cache and one warning. */
AlgoCache *algo_cache_open(const char *path, const char *devkey);
/* The value stored for key under the cache's device key, or NULL. */
const char *algo_cache_get(AlgoCache *c, const char *key);
/* Records key = value and rewrites the file: it is read again first, and an entry for key
 * that another process wrote in the meantime wins (the first measurement is the one every
 * run uses) unless replace is 1 (the file's entry was found unusable). A key this cache
 * already used keeps its value in this run. Returns the value to use (owned by the
 * cache). A failed write warns once and keeps the entry in memory. Tabs and newlines in
 * key and value become spaces. */
const char *algo_cache_put(AlgoCache *c, const char *key, const char *value, int replace);
/* How many warnings the cache has printed (tests). */
int algo_cache_warnings(const AlgoCache *c);
void algo_cache_close(AlgoCache *c);

#endif
