/* The measured-choice cache file (algo_cache.h): read, look up, merge, atomic rewrite. */
#define _POSIX_C_SOURCE 200809L
#include "engine/algo_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

#define HEADER "# d2c algorithm cache v1"
#define LINE_MAX_CHARS 2048

typedef struct {
    char *dev, *key, *val;
} Entry;

typedef struct {
    Entry *v;
    int n, cap;
} Entries;

struct AlgoCache {
    char *path; /* NULL: memory only */
    char *dev;
    Entries file; /* every entry of the file as last read (all device keys) */
    Entries mine; /* the values this process uses (its device key) */
    int warnings, read_warned, write_warned;
};

static void entries_free(Entries *es) {
    for (int i = 0; i < es->n; i++) {
        free(es->v[i].dev);
        free(es->v[i].key);
        free(es->v[i].val);
    }
    free(es->v);
    memset(es, 0, sizeof *es);
}

static void entries_add(Entries *es, const char *dev, const char *key, const char *val) {
    if (es->n == es->cap) {
        es->cap = es->cap ? 2 * es->cap : 32;
        es->v = xrealloc(es->v, (size_t)es->cap * sizeof *es->v);
    }
    Entry *e = &es->v[es->n++];
    e->dev = xstrdup(dev);
    e->key = xstrdup(key);
    e->val = xstrdup(val);
}

static Entry *entries_find(Entries *es, const char *dev, const char *key) {
    for (int i = 0; i < es->n; i++)
        if (strcmp(es->v[i].dev, dev) == 0 && strcmp(es->v[i].key, key) == 0) return &es->v[i];
    return NULL;
}

static void warn(AlgoCache *c, const char *fmt, const char *a, const char *b) {
    c->warnings++;
    warn_msg(fmt, a, b);
}

/* Reads c->path into c->file (emptied first). A missing file is an empty cache; one that
 * cannot be read or parsed is one warning (the first time) and an empty cache. */
static void reload(AlgoCache *c) {
    entries_free(&c->file);
    if (!c->path) return;
    FILE *f = fopen(c->path, "r");
    if (!f) {
        if (errno != ENOENT && !c->read_warned) {
            c->read_warned = 1;
            warn(c, "%s: cannot read the algorithm cache (%s); measuring again", c->path, strerror(errno));
        }
        return;
    }
    char line[LINE_MAX_CHARS], why[64] = "";
    int lineno = 0;
    Entries got = {0};
    while (!why[0] && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            snprintf(why, sizeof why, "line %d is too long", lineno);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (lineno == 1) {
            if (strncmp(line, HEADER, strlen(HEADER)) != 0) snprintf(why, sizeof why, "line 1 is not \"%s\"", HEADER);
            continue;
        }
        if (!len || line[0] == '#') continue;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t1 || !t2 || strchr(t2 + 1, '\t') || t1 == line || t2 == t1 + 1 || !t2[1]) {
            snprintf(why, sizeof why, "line %d is not <device> TAB <key> TAB <value>", lineno);
            break;
        }
        *t1 = *t2 = 0;
        Entry *old = entries_find(&got, line, t1 + 1);
        if (old) { /* a later line for the same entry: the first one stays (first writer wins) */
            continue;
        }
        entries_add(&got, line, t1 + 1, t2 + 1);
    }
    if (!why[0] && ferror(f)) snprintf(why, sizeof why, "read error");
    if (!why[0] && lineno == 0) snprintf(why, sizeof why, "the file is empty");
    fclose(f);
    if (why[0]) {
        entries_free(&got);
        if (!c->read_warned) {
            c->read_warned = 1;
            warn(c, "%s: %s; ignoring the algorithm cache (measuring again; the file is rewritten)", c->path, why);
        }
        return;
    }
    c->file = got;
}

static char *clean_copy(const char *s) {
    char *d = xstrdup(s ? s : "");
    for (char *p = d; *p; p++)
        if (*p == '\t' || *p == '\n' || *p == '\r') *p = ' ';
    return d;
}

int algo_cache_path(const char *override, const char *name, char *buf, size_t cap) {
    int n;
    if (override) {
        if (!*override) return 0;
        n = snprintf(buf, cap, "%s", override);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg == '/')
            n = snprintf(buf, cap, "%s/d2c/%s", xdg, name);
        else if (home && *home)
            n = snprintf(buf, cap, "%s/.cache/d2c/%s", home, name);
        else
            return 0;
    }
    return n > 0 && (size_t)n < cap;
}

AlgoCache *algo_cache_open(const char *path, const char *devkey) {
    AlgoCache *c = xcalloc(1, sizeof *c);
    c->path = path ? xstrdup(path) : NULL;
    c->dev = clean_copy(devkey);
    reload(c);
    return c;
}

const char *algo_cache_get(AlgoCache *c, const char *key) {
    Entry *e = entries_find(&c->mine, c->dev, key);
    if (!e) e = entries_find(&c->file, c->dev, key);
    return e ? e->val : NULL;
}

/* mkdir -p of the folders above path (errors show up when the file is written) */
static void make_parents(const char *path) {
    char *d = xstrdup(path);
    for (char *p = d + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(d, 0777);
            *p = '/';
        }
    free(d);
}

static int write_file(AlgoCache *c) {
    size_t n = strlen(c->path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", c->path, (long)getpid());
    make_parents(c->path);
    FILE *f = fopen(tmp, "w");
    int ok = f != NULL;
    if (ok) {
        fprintf(f, "%s (<device> TAB <key> TAB <value>; delete the file to measure again)\n", HEADER);
        for (int i = 0; i < c->file.n; i++)
            fprintf(f, "%s\t%s\t%s\n", c->file.v[i].dev, c->file.v[i].key, c->file.v[i].val);
        ok = fflush(f) == 0 && !ferror(f);
        ok = fclose(f) == 0 && ok;
        ok = ok && rename(tmp, c->path) == 0;
        if (!ok) remove(tmp);
    }
    if (!ok && !c->write_warned) {
        c->write_warned = 1;
        warn(c, "%s: cannot write the algorithm cache (%s); the choices are kept for this run only", c->path,
             strerror(errno));
    }
    free(tmp);
    return ok;
}

const char *algo_cache_put(AlgoCache *c, const char *key, const char *value, int replace) {
    char *k = clean_copy(key), *v = clean_copy(value);
    reload(c);
    Entry *f = entries_find(&c->file, c->dev, k);
    int changed = 0;
    if (f && replace && strcmp(f->val, v) != 0) {
        free(f->val);
        f->val = xstrdup(v);
        changed = 1;
    }
    const char *use = f ? f->val : v;
    Entry *m = entries_find(&c->mine, c->dev, k);
    if (m) { /* already in use in this run: it stays */
        use = m->val;
    } else {
        entries_add(&c->mine, c->dev, k, use);
        m = &c->mine.v[c->mine.n - 1];
    }
    /* the file keeps what it has and gains this run's other entries */
    for (int i = 0; i < c->mine.n; i++)
        if (!entries_find(&c->file, c->mine.v[i].dev, c->mine.v[i].key)) {
            entries_add(&c->file, c->mine.v[i].dev, c->mine.v[i].key, c->mine.v[i].val);
            changed = 1;
        }
    if (changed && c->path) write_file(c);
    free(k);
    free(v);
    return m->val;
}

int algo_cache_warnings(const AlgoCache *c) { return c->warnings; }

void algo_cache_close(AlgoCache *c) {
    if (!c) return;
    entries_free(&c->file);
    entries_free(&c->mine);
    free(c->path);
    free(c->dev);
    free(c);
}
