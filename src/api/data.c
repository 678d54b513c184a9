/* d2c_data (d2c.h): a labelled image set in memory, a thin handle over io/dataset.h's
 * Dataset and its loaders. */
#include <stdlib.h>

#include "api/api.h"
#include "core/util.h"
#include "io/dataset.h"

struct d2c_data {
    Dataset d;
};

int d2c_data_load(d2c_data **out, const char *src) {
    API_NOT_NULL("d2c_data_load", out, "out");
    *out = NULL;
    API_NOT_NULL("d2c_data_load", src, "src");
    d2c_data *h = xcalloc(1, sizeof *h);
    int st = dataset_load(&h->d, src);
    if (st != D2C_OK) {
        free(h);
        return st;
    }
    *out = h;
    return D2C_OK;
}

void d2c_data_free(d2c_data *h) {
    if (!h) return;
    dataset_free(&h->d);
    free(h);
}

int d2c_data_shape(const d2c_data *h, int *n, int *c, int *hh, int *w) {
    API_NOT_NULL("d2c_data_shape", h, "the data handle");
    if (n) *n = h->d.n;
    if (c) *c = h->d.c;
    if (hh) *hh = h->d.h;
    if (w) *w = h->d.w;
    return D2C_OK;
}

int d2c_data_num_classes(const d2c_data *h, int *k) {
    API_NOT_NULL("d2c_data_num_classes", h, "the data handle");
    API_NOT_NULL("d2c_data_num_classes", k, "k");
    *k = h->d.num_classes;
    return D2C_OK;
}

int d2c_data_images(const d2c_data *h, const float **images) {
    API_NOT_NULL("d2c_data_images", h, "the data handle");
    API_NOT_NULL("d2c_data_images", images, "images");
    *images = h->d.images;
    return D2C_OK;
}

int d2c_data_labels(const d2c_data *h, const int64_t **labels) {
    API_NOT_NULL("d2c_data_labels", h, "the data handle");
    API_NOT_NULL("d2c_data_labels", labels, "labels");
    *labels = h->d.labels;
    return D2C_OK;
}

int d2c_data_class_name(const d2c_data *h, int k, const char **name) {
    API_NOT_NULL("d2c_data_class_name", h, "the data handle");
    API_NOT_NULL("d2c_data_class_name", name, "name");
    *name = NULL;
    if (k < 0 || k >= h->d.num_classes)
        return d2c_error(D2C_ERR_INPUT, "d2c_data_class_name: class %d is not one of %s's classes 0..%d", k,
                         h->d.source, h->d.num_classes - 1);
    *name = h->d.class_names[k];
    return D2C_OK;
}

int d2c_data_source(const d2c_data *h, const char **src) {
    API_NOT_NULL("d2c_data_source", h, "the data handle");
    API_NOT_NULL("d2c_data_source", src, "src");
    *src = h->d.source;
    return D2C_OK;
}
