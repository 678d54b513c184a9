/* Which committed evaluators measure a reference: the models folder's registry,
 * evaluators.json, lists one set of evaluator files per data set and its default:
 *
 *   {"format": "d2c-evaluators-1",
 *    "sets": [{"name": "fashion-mnist", "default": "evaluator-fashion-mnist-spatial.safetensors",
 *              "evaluators": ["evaluator-fashion-mnist.safetensors", ...]}, ...]}
 *
 * A reference SRC picks the set whose name equals the SRC without its split suffix
 * (fashion-mnist:test -> fashion-mnist) or, for folder:DIR, DIR's last component
 * (folder:cache/cifar10:test -> cifar10). Otherwise the first set whose default evaluator
 * takes images of the reference's shape is used, with a warning (mnist:DIR gets the
 * Fashion-MNIST set). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "eval/evaluator.h"
#include "io/safetensors.h"

#define REGISTRY_FILE "evaluators.json"
#define REGISTRY_FORMAT "d2c-evaluators-1"

void evaluator_set_free(EvaluatorSet *set) {
    for (int i = 0; i < set->n; i++) free(set->paths[i]);
    free(set->paths);
    memset(set, 0, sizeof *set);
}

static void set_add(EvaluatorSet *set, const char *path) {
    set->paths = xrealloc(set->paths, sizeof *set->paths * (size_t)(set->n + 1));
    set->paths[set->n++] = xstrdup(path);
}

int evaluator_set_from_list(EvaluatorSet *set, const char *list) {
    memset(set, 0, sizeof *set);
    snprintf(set->name, sizeof set->name, "--evaluator");
    char *buf = xstrdup(list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (*tok) set_add(set, tok);
    free(buf);
    if (set->n == 0) return d2c_error(D2C_ERR_INPUT, "--evaluator: give one evaluator file or a comma-separated list");
    return D2C_OK;
}

/* The name a reference SRC is known by: without ":train"/":test"/":val"/":fit", and for
 * folder:DIR the last component of DIR. */
static void ref_set_name(const char *src, char *out, size_t n) {
    char base[1024];
    snprintf(base, sizeof base, "%s", src);
    const char *suffixes[] = {":train", ":test", ":val", ":fit"};
    size_t len = strlen(base);
    for (int i = 0; i < 4; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len > sl && strcmp(base + len - sl, suffixes[i]) == 0) {
            base[len - sl] = 0;
            break;
        }
    }
    const char *p = base;
    if (strncmp(base, "folder:", 7) == 0) {
        char *dir = base + 7;
        len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/') dir[--len] = 0;
        char *slash = strrchr(dir, '/');
        p = slash ? slash + 1 : dir;
    }
    snprintf(out, n, "%s", p);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Does the evaluator file take (C, H, W) images? 0 when it cannot be read as one. */
static int takes_shape(const char *path, int C, int H, int W) {
    StFile *f;
    if (!file_exists(path) || st_open(&f, path) != D2C_OK) return 0;
    const char *arch = st_meta(f, "arch");
    EvalArch a;
    int ok = arch && eval_arch_from_json(arch, &a) == D2C_OK && a.in_channels == C && a.height == H && a.width == W;
    st_close(f);
    return ok;
}

/* Fills set from one registry entry; status. */
static int set_from_entry(EvaluatorSet *set, const cJSON *entry, const char *dir, const char *reg) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(entry, "name");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(entry, "evaluators");
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(entry, "default");
    if (!cJSON_IsString(name) || !cJSON_IsArray(list) || !cJSON_IsString(def))
        return d2c_error(D2C_ERR_INPUT, "%s: a set needs a 'name', an 'evaluators' list and a 'default'", reg);
    memset(set, 0, sizeof *set);
    snprintf(set->name, sizeof set->name, "%s", name->valuestring);
    set->default_index = -1;
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        if (!cJSON_IsString(item)) {
            evaluator_set_free(set);
            return d2c_error(D2C_ERR_INPUT, "%s: set '%s' lists a non-string evaluator", reg, name->valuestring);
        }
        size_t len = strlen(dir) + strlen(item->valuestring) + 2;
        char *p = xmalloc(len);
        snprintf(p, len, "%s/%s", dir, item->valuestring);
        if (strcmp(item->valuestring, def->valuestring) == 0) set->default_index = set->n;
        set_add(set, p);
        free(p);
    }
    if (set->n == 0 || set->default_index < 0) {
        evaluator_set_free(set);
        return d2c_error(D2C_ERR_INPUT, "%s: set '%s' must list its default '%s' among its evaluators", reg,
                         name->valuestring, def->valuestring);
    }
    return D2C_OK;
}

/* No registry: every evaluator-*.safetensors taking (C, H, W) images (the old layout). */
static int set_from_scan(EvaluatorSet *set, const char *dir, const char *want, int C, int H, int W) {
    memset(set, 0, sizeof *set);
    snprintf(set->name, sizeof set->name, "%.63s", want);
    char named[1200];
    snprintf(named, sizeof named, "%.900s/evaluator-%.200s.safetensors", dir, want);
    if (takes_shape(named, C, H, W)) set_add(set, named);
    if (set->n == 0) return d2c_error(D2C_ERR_INPUT, "eval: %s has no %s and no evaluator for '%s'", dir, REGISTRY_FILE, want);
    return D2C_OK;
}

int evaluator_set_for_ref(EvaluatorSet *set, const char *ref_src, int C, int H, int W) {
    memset(set, 0, sizeof *set);
    char *dir = NULL;
    D2C_TRY(evaluator_models_dir(&dir));
    if (!dir)
        return d2c_error(D2C_ERR_INPUT, "eval: no models folder with committed evaluators found (set D2C_MODELS_DIR); "
                                        "pass --evaluator FILE");
    char want[256];
    ref_set_name(ref_src, want, sizeof want);
    size_t rl = strlen(dir) + sizeof REGISTRY_FILE + 2;
    char *reg = xmalloc(rl);
    snprintf(reg, rl, "%s/%s", dir, REGISTRY_FILE);
    int st = D2C_OK;
    if (!file_exists(reg)) {
        st = set_from_scan(set, dir, want, C, H, W);
        goto done;
    }
    size_t len;
    unsigned char *text;
    if ((st = read_whole_file(reg, 1 << 20, &text, &len)) != D2C_OK) goto done;
    cJSON *root = cJSON_Parse((const char *)text);
    free(text);
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *sets = cJSON_GetObjectItemCaseSensitive(root, "sets");
    if (!cJSON_IsString(format) || strcmp(format->valuestring, REGISTRY_FORMAT) || !cJSON_IsArray(sets)) {
        st = d2c_error(D2C_ERR_INPUT, "%s: not a registry of evaluators (format '%s' with a 'sets' list)", reg,
                       REGISTRY_FORMAT);
        cJSON_Delete(root);
        goto done;
    }
    const cJSON *entry, *by_name = NULL, *by_shape = NULL;
    cJSON_ArrayForEach(entry, sets) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(entry, "name");
        if (cJSON_IsString(name) && strcmp(name->valuestring, want) == 0) {
            by_name = entry;
            break;
        }
    }
    if (!by_name)
        cJSON_ArrayForEach(entry, sets) {
            EvaluatorSet s;
            if (set_from_entry(&s, entry, dir, reg) != D2C_OK) continue;
            int fits = takes_shape(s.paths[s.default_index], C, H, W);
            evaluator_set_free(&s);
            if (fits) {
                by_shape = entry;
                break;
            }
        }
    if (by_name || by_shape) {
        st = set_from_entry(set, by_name ? by_name : by_shape, dir, reg);
        if (st == D2C_OK && !by_name)
            warn_msg("eval: no evaluators were trained on '%s'; using the '%s' set, which takes %dx%dx%d images",
                     ref_src, set->name, C, H, W);
    } else {
        st = d2c_error(D2C_ERR_INPUT, "eval: no committed evaluator in %s takes %dx%dx%d images like '%s'; train one "
                                      "(d2c evaluator train) and pass --evaluator FILE", dir, C, H, W, ref_src);
    }
    cJSON_Delete(root);
done:
    free(reg);
    free(dir);
    return st;
}
