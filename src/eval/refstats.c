/* Reference features and statistics with the on-disk cache described in refstats.h. */
#include "eval/refstats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

static const char MAGIC[8] = {'D', '2', 'C', 'R', 'E', 'F', '0', '1'};

char *ref_cache_default_dir(void) {
    const char *env = getenv("D2C_CACHE_DIR");
    if (env && *env) return xstrdup(env);
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    const char *base = xdg && *xdg ? xdg : home && *home ? home : NULL;
    if (!base) return NULL;
    size_t n = strlen(base) + 16;
    char *s = xmalloc(n);
    snprintf(s, n, xdg && *xdg ? "%s/d2c" : "%s/.cache/d2c", base);
    return s;
}

/* mkdir -p; 0 on success. */
static int make_dirs(const char *dir) {
    char *p = xstrdup(dir);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) && errno != EEXIST) rc = -1;
            *s = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(p, &st) || !S_ISDIR(st.st_mode)) rc = -1;
    free(p);
    return rc;
}

static size_t entry_size(size_t src_len, int n, int d) {
    return 8 + 8 + 4 * 3 + src_len + (size_t)n * d * sizeof(float) + (size_t)d * sizeof(double) +
           (size_t)d * d * sizeof(double) + 8;
}

/* 0: read into r; 1: no entry; -1: an entry that is not usable (reason in why). */
static int cache_read(const char *path, uint64_t key, int n, int d, RefFeatures *r, const char **why) {
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    unsigned char *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    int rc = -1;
    *why = "unreadable";
    if (size > 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = xmalloc((size_t)size);
        if (fread(buf, 1, (size_t)size, f) != (size_t)size) size = -1;
    }
    fclose(f);
    if (size < 36) goto done;
    *why = "not a reference-cache entry";
    if (memcmp(buf, MAGIC, 8) != 0) goto done;
    uint64_t k, sum;
    uint32_t fn, fd, len;
    memcpy(&k, buf + 8, 8);
    memcpy(&fn, buf + 16, 4);
    memcpy(&fd, buf + 20, 4);
    memcpy(&len, buf + 24, 4);
    *why = "for another evaluator or reference";
    if (k != key || (int)fn != n || (int)fd != d) goto done;
    *why = "truncated or padded";
    if ((size_t)size != entry_size(len, n, d)) goto done;
    memcpy(&sum, buf + size - 8, 8);
    *why = "checksum mismatch (corrupt)";
    if (fnv1a64(FNV64_INIT, buf, (size_t)size - 8) != sum) goto done;
    const unsigned char *p = buf + 28 + len;
    size_t nf = (size_t)n * d;
    memcpy(r->feats, p, nf * sizeof(float));
    p += nf * sizeof(float);
    r->stats.n = n;
    r->stats.d = d;
    r->stats.mean = xmalloc((size_t)d * sizeof(double));
    r->stats.cov = xmalloc((size_t)d * d * sizeof(double));
    memcpy(r->stats.mean, p, (size_t)d * sizeof(double));
    memcpy(r->stats.cov, p + (size_t)d * sizeof(double), (size_t)d * d * sizeof(double));
    rc = 0;
done:
    free(buf);
    return rc;
}

/* Writes the entry atomically; 0 on success, -1 (nothing left behind) otherwise. */
static int cache_write(const char *path, uint64_t key, const char *src, const RefFeatures *r) {
    uint32_t n = (uint32_t)r->n, d = (uint32_t)r->d, len = (uint32_t)strlen(src);
    size_t size = entry_size(len, r->n, r->d);
    unsigned char *buf = xmalloc(size), *p = buf;
    memcpy(p, MAGIC, 8), p += 8;
    memcpy(p, &key, 8), p += 8;
    memcpy(p, &n, 4), p += 4;
    memcpy(p, &d, 4), p += 4;
    memcpy(p, &len, 4), p += 4;
    memcpy(p, src, len), p += len;
    memcpy(p, r->feats, (size_t)n * d * sizeof(float)), p += (size_t)n * d * sizeof(float);
    memcpy(p, r->stats.mean, (size_t)d * sizeof(double)), p += (size_t)d * sizeof(double);
    memcpy(p, r->stats.cov, (size_t)d * d * sizeof(double)), p += (size_t)d * d * sizeof(double);
    uint64_t sum = fnv1a64(FNV64_INIT, buf, size - 8);
    memcpy(p, &sum, 8);
    size_t tlen = strlen(path) + 32;
    char *tmp = xmalloc(tlen);
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(buf, 1, size, f) == size;
    if (f) {
        ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
        if (fclose(f) != 0) ok = 0;
    }
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) remove(tmp);
    free(tmp);
    free(buf);
    return ok ? 0 : -1;
}

int ref_features_get(RefFeatures *r, Evaluator *net, const EvaluatorInfo *info, const Dataset *ref,
                      const char *cache_dir, const char *label) {
    memset(r, 0, sizeof *r);
    r->n = ref->n;
    r->d = net->lay.feature_dim;
    r->feats = xmalloc_floats((size_t)r->n * r->d);
    r->cache = "off";
    uint64_t key = 0;
    if (cache_dir) {
        key = fnv1a64(FNV64_INIT, info->hash, strlen(info->hash) + 1);
        key = fnv1a64(key, ref->source, strlen(ref->source) + 1);
        int dims[4] = {ref->n, ref->c, ref->h, ref->w};
        key = fnv1a64(key, dims, sizeof dims);
        key = fnv1a64(key, ref->images, (size_t)ref->n * ref->c * ref->h * ref->w * sizeof(float));
        size_t n = strlen(cache_dir) + 64;
        r->cache_path = xmalloc(n);
        snprintf(r->cache_path, n, "%s/ref-%s-%016llx.bin", cache_dir, info->hash, (unsigned long long)key);
        const char *why = NULL;
        int rc = cache_read(r->cache_path, key, r->n, r->d, r, &why);
        if (rc == 0) {
            r->cache = "hit";
            return D2C_OK;
        }
        if (rc < 0) warn_msg("%s: reference cache entry is %s; recomputing it", r->cache_path, why);
    }
    evaluator_apply(net, ref->images, ref->n, r->feats, NULL, label);
    int st = feature_stats_compute(&r->stats, r->feats, r->n, r->d);
    if (st != D2C_OK) {
        ref_features_free(r);
        return d2c_error_context(st, "reference features: ");
    }
    if (cache_dir) {
        if (make_dirs(cache_dir) == 0 && cache_write(r->cache_path, key, ref->source, r) == 0) {
            r->cache = "miss";
        } else {
            warn_msg("%s: cannot write the reference cache there; continuing without it", cache_dir);
            r->cache = "unwritable";
            free(r->cache_path);
            r->cache_path = NULL;
        }
    }
    return D2C_OK;
}

void ref_features_free(RefFeatures *r) {
    free(r->radii);
    free(r->feats);
    feature_stats_free(&r->stats);
    free(r->cache_path);
    memset(r, 0, sizeof *r);
}
