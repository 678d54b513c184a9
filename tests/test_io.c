/* Tests of the I/O layer (src/io): safetensors, IDX, PNG/JPEG, image grids, data sets.
 *
 *   test_io                      unit tests, in a fresh folder under $TMPDIR
 *   test_io open KIND PATH       opens PATH as KIND (st, idx3, idx1, image, data) and exits
 *                                0; any bad input must exit 2 with one "d2c: error:" line.
 *                                The unit tests run themselves in this mode on corrupt files.
 *   test_io load SRC             loads a data set, prints one JSON line describing it
 *   test_io dump SRC OUT [N]     loads a data set, writes its first N images and all labels
 *   test_io write-sample OUT     writes the sample file tests/io_interop.py checks
 *   test_io check-sample IN      checks a sample file written by Python; exit 0 iff equal
 * The last four modes serve tests/io_interop.py and tests/io_cifar10.py. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "io/dataset.h"
#include "io/idx.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "testing.h"

static char g_self[4096]; /* this program, for running the open mode */
static char g_tmp[512];   /* scratch folder */

static const char *tmp_path(const char *name) {
    static char buf[8][1024];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", g_tmp, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) d2c_fatal("cannot write %s", path);
}

/* ---------------------------------------------------------------------------------- */
/* The sample file shared with Python: one tensor per dtype, a scalar, an empty tensor. */

#define SAMPLE_META_VALUE "quote \" backslash \\ newline \n unicode \xc3\xa9"

typedef struct {
    float a[24];   /* F32 (2, 3, 4): i * 0.5 - 3 */
    double b[5];   /* F64 (5): i / 3 */
    int32_t c[6];  /* I32 (3, 2): i - 3 */
    int64_t d[4];  /* I64 (4): -2^40, 0, 1, 2^40 + 7 */
    uint8_t e[7];  /* U8 (7): i * 37 mod 256 */
    float s;       /* F32 (): 2.5 */
} Sample;

static void sample_fill(Sample *x) {
    for (int i = 0; i < 24; i++) x->a[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 5; i++) x->b[i] = i / 3.0;
    for (int i = 0; i < 6; i++) x->c[i] = i - 3;
    int64_t d[4] = {-((int64_t)1 << 40), 0, 1, ((int64_t)1 << 40) + 7};
    memcpy(x->d, d, sizeof d);
    for (int i = 0; i < 7; i++) x->e[i] = (uint8_t)(i * 37 % 256);
    x->s = 2.5f;
}

static void sample_write(const char *path, const Sample *x) {
    StWriter *w = st_writer_new();
    st_set_meta(w, "who", "d2c");
    st_set_meta(w, "tricky", SAMPLE_META_VALUE);
    st_add(w, "a", ST_F32, 3, (int64_t[]){2, 3, 4}, x->a);
    st_add(w, "b", ST_F64, 1, (int64_t[]){5}, x->b);
    st_add(w, "c", ST_I32, 2, (int64_t[]){3, 2}, x->c);
    st_add(w, "d", ST_I64, 1, (int64_t[]){4}, x->d);
    st_add(w, "e", ST_U8, 1, (int64_t[]){7}, x->e);
    st_add(w, "s", ST_F32, 0, NULL, &x->s);
    st_add(w, "z", ST_F32, 2, (int64_t[]){0, 3}, NULL);
    test_require_ok(st_write(w, path));
    st_writer_free(w);
}

/* Checks a sample file's tensors (order-independent); returns the number of mismatches. */
static int sample_check(const char *path, const char *who) {
    Sample x;
    sample_fill(&x);
    StFile *f;
    if (st_open(&f, path)) {
        printf("sample %s: %s\n", path, d2c_last_error());
        return 1;
    }
    int bad = 0;
    struct { const char *name; StDtype dtype; int ndim; int64_t shape[3]; const void *want; size_t bytes; } t[] = {
        {"a", ST_F32, 3, {2, 3, 4}, x.a, sizeof x.a}, {"b", ST_F64, 1, {5}, x.b, sizeof x.b},
        {"c", ST_I32, 2, {3, 2}, x.c, sizeof x.c},    {"d", ST_I64, 1, {4}, x.d, sizeof x.d},
        {"e", ST_U8, 1, {7}, x.e, sizeof x.e},        {"s", ST_F32, 0, {0}, &x.s, sizeof x.s},
        {"z", ST_F32, 2, {0, 3}, NULL, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const StTensor *s = st_find(f, t[i].name);
        int ok = s && s->dtype == t[i].dtype && s->ndim == t[i].ndim && s->nbytes == t[i].bytes;
        for (int d = 0; ok && d < t[i].ndim; d++) ok = s->shape[d] == t[i].shape[d];
        ok = ok && (t[i].bytes == 0 || memcmp(st_data(f, s), t[i].want, t[i].bytes) == 0);
        ok = ok && (uintptr_t)st_data(f, s) % st_dtype_size(s->dtype) == 0;
        if (!ok) printf("sample %s: tensor '%s' differs\n", path, t[i].name);
        bad += !ok;
    }
    if (st_count(f) != 7) printf("sample %s: %d tensors, expected 7\n", path, st_count(f)), bad++;
    const char *m = st_meta(f, "who");
    if (who && (!m || strcmp(m, who) != 0)) printf("sample %s: metadata who = %s\n", path, m ? m : "(none)"), bad++;
    m = st_meta(f, "tricky");
    if (!m || strcmp(m, SAMPLE_META_VALUE) != 0) printf("sample %s: metadata 'tricky' differs\n", path), bad++;
    st_close(f);
    return bad;
}

/* ---------------------------------------------------------------------------------- */
/* Bad input: run "test_io open KIND PATH" and expect exit 2 and one error line.       */

static void expect_input_error(const char *kind, const char *path, const char *needle) {
    char err_path[1100];
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", g_tmp);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(err_path, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(99);
        execl(g_self, g_self, "open", kind, path, (char *)NULL);
        _exit(98);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    size_t len = 0;
    char *text;
    test_require_ok(read_whole_file(err_path, 0, (unsigned char **)&text, &len));
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    const char *line = strstr(text, "d2c: error: ");
    int lines = 0;
    for (const char *p = text; (p = strstr(p, "d2c: error: ")) != NULL; p++) lines++;
    /* The line names the file: for a data source, the path inside "kind:PATH[:split]". */
    char named_part[1024];
    const char *colon = strchr(path, ':');
    snprintf(named_part, sizeof named_part, "%s", strcmp(kind, "data") == 0 && colon ? colon + 1 : path);
    char *split = strrchr(named_part, ':');
    if (split && (strcmp(split, ":test") == 0 || strcmp(split, ":train") == 0)) *split = 0;
    int named = line && strstr(line, named_part) != NULL;
    int has_needle = !needle || (line && strstr(line, needle));
    int ok = code == 2 && lines == 1 && (line == text || line[-1] == '\n') && named && has_needle;
    const char *shown = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char *nl = line ? strchr(line, '\n') : NULL;
    if (nl) *nl = 0;
    printf("%-4s %s %s -> exit %d: %s\n", ok ? "ok" : "FAIL", kind, shown, code, line ? line : text);
    CHECK(ok);
    free(text);
}

/* A safetensors file from a header string and data bytes; header_len overrides the
 * length field when nonzero. */
static const char *raw_st(const char *name, const char *header, const void *data, size_t data_len,
                          uint64_t header_len) {
    const char *path = tmp_path(name);
    size_t h = strlen(header);
    unsigned char *buf = xmalloc(8 + h + data_len);
    uint64_t n = header_len ? header_len : h;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, h);
    if (data_len) memcpy(buf + 8 + h, data, data_len);
    write_bytes(path, buf, 8 + h + data_len);
    free(buf);
    return path;
}

static void test_safetensors(void) {
    Sample x;
    sample_fill(&x);
    const char *path = tmp_path("sample.safetensors");
    sample_write(path, &x);
    CHECK(sample_check(path, "d2c") == 0);

    /* Header padded to a multiple of 8; tensors in the order added. */
    size_t len;
    unsigned char *raw;
    test_require_ok(read_whole_file(path, 0, &raw, &len));
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--) header = header << 8 | raw[i];
    CHECK(header % 8 == 0 && raw[8] == '{' && (raw[8 + header - 1] == ' ' || raw[8 + header - 1] == '}'));
    CHECK(strstr((char *)raw + 8, "\"__metadata__\"") == (char *)raw + 9);
    free(raw);
    StFile *f;
    test_require_ok(st_open(&f, path));
    const char *order = "abcdesz";
    for (int i = 0; i < st_count(f); i++) CHECK(st_tensor(f, i)->name[0] == order[i]);
    CHECK(st_find(f, "nope") == NULL && st_meta(f, "nope") == NULL && st_meta_count(f) == 3);
    CHECK(st_meta(f, "checksum") && strncmp(st_meta(f, "checksum"), "crc32:", 6) == 0); /* st_checksum.h */
    const float *b, *a;
    test_require_ok(st_require_f32(f, "b", 1, (int64_t[]){5}, &b)); /* F64 converted */
    for (int i = 0; i < 5; i++) CHECK(b[i] == (float)(i / 3.0));
    const int64_t *c, *e;
    test_require_ok(st_require_i64(f, "c", 2, (int64_t[]){-1, 2}, &c)); /* I32 converted */
    for (int i = 0; i < 6; i++) CHECK(c[i] == i - 3);
    test_require_ok(st_require_i64(f, "e", 1, NULL, &e)); /* U8 converted */
    CHECK(e[6] == 6 * 37 % 256);
    test_require_ok(st_require_f32(f, "a", 3, (int64_t[]){2, 3, 4}, &a));
    CHECK(a[23] == 8.5f);
    /* a tensor of another dtype, shape or name is a status with a message, not an exit */
    const float *none = b;
    CHECK(st_require_f32(f, "c", 2, NULL, &none) == D2C_ERR_INPUT && none == NULL && strstr(d2c_last_error(), "'c' is I32"));
    CHECK(st_require_f32(f, "a", 3, (int64_t[]){2, 3, 5}, &none) == D2C_ERR_INPUT && strstr(d2c_last_error(), "expected (2, 3, 5)"));
    CHECK(st_require_i64(f, "nope", 1, NULL, &e) == D2C_ERR_INPUT && e == NULL && strstr(d2c_last_error(), "no tensor 'nope'"));
    st_close(f);

    /* A tensor misaligned in the file (after 3 bytes of U8) still comes back aligned. */
    float vals[2] = {1.25f, -7.0f};
    unsigned char data[11] = {1, 2, 3};
    memcpy(data + 3, vals, 8);
    path = raw_st("misaligned.safetensors",
                  "{\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                  "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}",
                  data, sizeof data, 0);
    test_require_ok(st_open(&f, path));
    const float *v;
    test_require_ok(st_require_f32(f, "v", 1, (int64_t[]){2}, &v));
    CHECK((uintptr_t)v % 4 == 0 && v[0] == 1.25f && v[1] == -7.0f);
    st_close(f);

    /* Integrity: one changed byte of a d2c file, in its data or in its metadata, is a
     * checksum mismatch naming the file; the same bytes without the checksum key (as an
     * older d2c or another tool writes them) load. */
    {
        size_t n;
        unsigned char *bytes;
        test_require_ok(read_whole_file(tmp_path("sample.safetensors"), 0, &bytes, &n));
        bytes[n - 30] ^= 0x01; /* a bit of tensor data */
        write_bytes(tmp_path("flipped_data.safetensors"), bytes, n);
        expect_input_error("st", tmp_path("flipped_data.safetensors"), "checksum mismatch");
        bytes[n - 30] ^= 0x01;
        char *who = strstr((char *)bytes + 8, "\"who\":\"d2c\"");
        CHECK(who != NULL);
        if (who) who[8] = 'D'; /* a metadata value: "d2c" -> "D2c" */
        write_bytes(tmp_path("flipped_meta.safetensors"), bytes, n);
        expect_input_error("st", tmp_path("flipped_meta.safetensors"), "checksum mismatch");
        if (who) who[8] = 'd';
        char *sum = strstr((char *)bytes + 8, "\"checksum\":\"crc32:");
        CHECK(sum != NULL);
        if (sum) memcpy(sum + 12, "sha256", 6); /* an algorithm d2c does not write */
        write_bytes(tmp_path("other_checksum.safetensors"), bytes, n);
        expect_input_error("st", tmp_path("other_checksum.safetensors"), "is not crc32:");
        free(bytes);
    }

    /* Corrupt files: each one line, exit 2, naming the file. */
    const char *ok_entry = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    float two[2] = {1, 2};
    expect_input_error("st", raw_st("truncated_data.safetensors", ok_entry, two, 5, 0), "truncated");
    expect_input_error("st", raw_st("truncated_header.safetensors", ok_entry, NULL, 0, strlen(ok_entry) + 40), "header length");
    expect_input_error("st", raw_st("huge_header.safetensors", ok_entry, two, 8, (uint64_t)1 << 62), "header length");
    expect_input_error("st", raw_st("out_of_bounds.safetensors",
                                    "{\"x\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}", two, 8, 0),
                       "past the end");
    expect_input_error("st", raw_st("bad_json.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],", two, 8, 0), "JSON");
    expect_input_error("st", raw_st("f16.safetensors", "{\"x\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", two, 8, 0),
                       "F16");
    expect_input_error("st", raw_st("size_mismatch.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", two, 8, 0),
                       "need 12 bytes");
    expect_input_error("st", raw_st("overlap.safetensors",
                                    "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                    "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", two, 8, 0),
                       "overlaps");
    expect_input_error("st", raw_st("gap.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", two, 8, 0),
                       "unused bytes");
    expect_input_error("st", raw_st("trailing.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", two, 8, 0),
                       "after the last tensor");
    expect_input_error("st", raw_st("negative_shape.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", two, 8, 0),
                       "shape");
    expect_input_error("st", raw_st("huge_shape.safetensors",
                                    "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}", two, 8, 0),
                       "more bytes");
    expect_input_error("st", raw_st("meta_number.safetensors", "{\"__metadata__\":{\"n\":3}}", NULL, 0, 0), "not a string");
    expect_input_error("st", raw_st("meta_twice.safetensors", "{\"__metadata__\":{\"n\":\"3\",\"n\":\"4\"}}", NULL, 0, 0),
                       "appears twice");
    expect_input_error("st", raw_st("no_offsets.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", two, 8, 0),
                       "data_offsets");
    expect_input_error("st", raw_st("reversed.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", two, 8, 0),
                       "end before they begin");
    expect_input_error("st", raw_st("overflow_shape.safetensors",
                                    "{\"x\":{\"dtype\":\"F64\",\"shape\":[9007199254740992,9007199254740992,8],\"data_offsets\":[0,8]}}",
                                    two, 8, 0),
                       "more bytes");
    /* The official header bound (100,000,000 bytes): a sparse file long enough to hold a
     * header of 100,000,001 bytes is refused before anything is read or allocated. */
    {
        const char *big = tmp_path("header_over_limit.safetensors");
        uint64_t n = 100000001;
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
        FILE *fb = fopen(big, "wb");
        CHECK(fb && fwrite(len8, 1, 8, fb) == 8 && fputc('{', fb) != EOF && ftruncate(fileno(fb), (off_t)(8 + n + 8)) == 0);
        if (fb) fclose(fb);
        expect_input_error("st", big, "implausible header length 100000001");
        unlink(big);
    }
    expect_input_error("st", raw_st("duplicate.safetensors",
                                    "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                    "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", two, 8, 0),
                       "twice");
    expect_input_error("st", raw_st("latin1.safetensors", "{\"caf\xe9\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8, 0),
                       "UTF-8");
    expect_input_error("st", raw_st("control.safetensors", "{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", two, 8, 0),
                       "control character");
    expect_input_error("st", raw_st("not_json.safetensors", "PK\x03\x04 zip file, say", NULL, 0, 0), "not a safetensors");
    write_bytes(tmp_path("tiny.safetensors"), "abc", 3);
    expect_input_error("st", tmp_path("tiny.safetensors"), "too short");
    expect_input_error("st", tmp_path("missing.safetensors"), "cannot open");

    /* Well-formed files that are not data sets. */
    expect_input_error("data", raw_st("no_labels.safetensors",
                                      "{\"images\":{\"dtype\":\"F32\",\"shape\":[1,1,1,2],\"data_offsets\":[0,8]}}", two, 8, 0),
                       "no tensor 'labels'");
    expect_input_error("data", raw_st("images_3d.safetensors",
                                      "{\"images\":{\"dtype\":\"F32\",\"shape\":[1,1,2],\"data_offsets\":[0,8]}}", two, 8, 0),
                       "expected (any, any, any, any)");
    expect_input_error("data", raw_st("float_labels.safetensors",
                                      "{\"images\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1],\"data_offsets\":[0,4]},"
                                      "\"labels\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", two, 8, 0),
                       "expected I64");
}

/* ---------------------------------------------------------------------------------- */
/* IDX                                                                                 */

static size_t idx_bytes(unsigned char *buf, int type, int ndim, const int *dims, const uint8_t *values) {
    size_t n = 0, count = 1;
    buf[n++] = 0, buf[n++] = 0, buf[n++] = (unsigned char)type, buf[n++] = (unsigned char)ndim;
    for (int d = 0; d < ndim; d++) {
        for (int k = 3; k >= 0; k--) buf[n++] = (unsigned char)(dims[d] >> (8 * k));
        count *= (size_t)dims[d];
    }
    memcpy(buf + n, values, count);
    return n + count;
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile gz = gzopen(path, "wb");
    if (!gz || gzwrite(gz, data, (unsigned)n) != (int)n || gzclose(gz) != Z_OK) d2c_fatal("cannot write %s", path);
}

static void test_idx(void) {
    uint8_t pixels[5 * 3 * 2], labels[5] = {2, 0, 1, 2, 0};
    for (int i = 0; i < 30; i++) pixels[i] = (uint8_t)(i * 17);
    unsigned char img[64], lab[64];
    size_t ni = idx_bytes(img, 8, 3, (int[]){5, 3, 2}, pixels), nl = idx_bytes(lab, 8, 1, (int[]){5}, labels);
    mkdir(tmp_path("mnist"), 0755);
    write_bytes(tmp_path("mnist/train-images-idx3-ubyte"), img, ni); /* raw */
    write_gz(tmp_path("mnist/train-labels-idx1-ubyte.gz"), lab, nl);  /* gzip */
    write_gz(tmp_path("mnist/t10k-images-idx3-ubyte.gz"), img, ni);
    write_gz(tmp_path("mnist/t10k-labels-idx1-ubyte.gz"), lab, nl);

    IdxArray a;
    test_require_ok(idx_read_u8(&a, tmp_path("mnist/train-images-idx3-ubyte"), 3));
    CHECK(a.dims[0] == 5 && a.dims[1] == 3 && a.dims[2] == 2 && a.size == 30 && memcmp(a.data, pixels, 30) == 0);
    idx_free(&a);
    char src[1100];
    snprintf(src, sizeof src, "mnist:%s:test", tmp_path("mnist"));
    Dataset d;
    test_require_ok(dataset_load(&d, src));
    CHECK(d.n == 5 && d.c == 1 && d.h == 3 && d.w == 2 && d.num_classes == 10 && d.labels[0] == 2);
    CHECK(d.images[0] == -1.0f && d.images[29] == (uint8_t)(29 * 17) / 127.5f - 1.0f && d.images[15] == 255 / 127.5f - 1.0f);
    CHECK(strcmp(d.class_names[3], "3") == 0 && strstr(d.source, ":test") != NULL);
    dataset_free(&d);
    snprintf(src, sizeof src, "idx:%s/mnist/train", g_tmp);
    test_require_ok(dataset_load(&d, src));
    CHECK(d.n == 5 && d.num_classes == 3 && d.labels[3] == 2);

    /* Subsets and per-class index lists. */
    Dataset s = dataset_subset(&d, (int[]){4, 0, 4}, 3);
    CHECK(s.n == 3 && s.labels[0] == 0 && s.labels[1] == 2 && s.images[0] == d.images[24] && s.images[6] == d.images[0] && s.num_classes == 3);
    ClassIndex ci = class_index_build(&d);
    CHECK(class_index_count(&ci, 0) == 2 && class_index_count(&ci, 1) == 1 && class_index_count(&ci, 2) == 2);
    CHECK(ci.index[0] == 1 && ci.index[1] == 4 && ci.index[2] == 2 && ci.index[3] == 0 && ci.index[4] == 3);
    class_index_free(&ci);
    dataset_free(&s);
    dataset_free(&d);

    /* Corrupt files. */
    write_bytes(tmp_path("trunc-images-idx3-ubyte"), img, ni - 1);
    expect_input_error("idx3", tmp_path("trunc-images-idx3-ubyte"), "truncated");
    unsigned char gz_full[256];
    write_gz(tmp_path("full.gz"), img, ni);
    size_t gz_len;
    unsigned char *gz;
    test_require_ok(read_whole_file(tmp_path("full.gz"), 0, &gz, &gz_len));
    memcpy(gz_full, gz, gz_len);
    free(gz);
    write_bytes(tmp_path("trunc.gz"), gz_full, gz_len - 12); /* cut the deflate stream */
    expect_input_error("idx3", tmp_path("trunc.gz"), "truncated");
    write_bytes(tmp_path("trunc_trailer.gz"), gz_full, gz_len - 3); /* cut the CRC trailer */
    expect_input_error("idx3", tmp_path("trunc_trailer.gz"), NULL);
    gz_full[gz_len - 6] ^= 0xFF; /* wrong CRC */
    write_bytes(tmp_path("bad_crc.gz"), gz_full, gz_len);
    expect_input_error("idx3", tmp_path("bad_crc.gz"), "corrupt gzip");
    unsigned char bad[64];
    memcpy(bad, img, ni);
    bad[0] = 0x1F, bad[1] = 0x00;
    write_bytes(tmp_path("magic-idx3-ubyte"), bad, ni);
    expect_input_error("idx3", tmp_path("magic-idx3-ubyte"), "magic");
    memcpy(bad, img, ni);
    bad[2] = 0x0D;
    write_bytes(tmp_path("float-idx3-ubyte"), bad, ni);
    expect_input_error("idx3", tmp_path("float-idx3-ubyte"), "0x0d");
    expect_input_error("idx1", tmp_path("mnist/train-images-idx3-ubyte"), "expected 1");
    memcpy(bad, img, ni);
    bad[4] = 0x7F; /* 2 billion images promised */
    write_bytes(tmp_path("huge-idx3-ubyte"), bad, ni);
    expect_input_error("idx3", tmp_path("huge-idx3-ubyte"), "truncated");
    memcpy(bad, img, ni);
    write_bytes(tmp_path("long-idx3-ubyte"), bad, ni + 1);
    expect_input_error("idx3", tmp_path("long-idx3-ubyte"), "after the data");
    mkdir(tmp_path("mismatch"), 0755);
    write_bytes(tmp_path("mismatch/x-images-idx3-ubyte"), img, ni);
    nl = idx_bytes(lab, 8, 1, (int[]){4}, labels);
    write_bytes(tmp_path("mismatch/x-labels-idx1-ubyte"), lab, nl);
    snprintf(src, sizeof src, "idx:%s/mismatch/x", g_tmp);
    expect_input_error("data", src, "4 labels for the 5 images");
    expect_input_error("data", "no-such-source", "unknown data source");
    /* 20 bytes claiming 10^9 images of 28x28: an error before any allocation */
    unsigned char claim[20] = {0, 0, 8, 3};
    const uint32_t dims3[3] = {1000000000u, 28, 28};
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 4; k++) claim[4 + 4 * j + k] = (unsigned char)(dims3[j] >> (8 * (3 - k)));
    write_bytes(tmp_path("claim-images-idx3-ubyte"), claim, sizeof claim);
    expect_input_error("idx3", tmp_path("claim-images-idx3-ubyte"), "truncated");
    write_gz(tmp_path("claim-images-idx3-ubyte.gz"), claim, sizeof claim); /* and compressed */
    expect_input_error("idx3", tmp_path("claim-images-idx3-ubyte.gz"), "truncated");

    /* The label rule: mnist has 10 classes, so label 200 is an error; an idx: source
     * takes K = max label + 1 = 201, which loads, but leaves classes without images. */
    uint8_t bad_labels[5] = {2, 0, 200, 1, 0};
    mkdir(tmp_path("label200"), 0755);
    write_bytes(tmp_path("label200/train-images-idx3-ubyte"), img, ni);
    nl = idx_bytes(lab, 8, 1, (int[]){5}, bad_labels);
    write_bytes(tmp_path("label200/train-labels-idx1-ubyte"), lab, nl);
    snprintf(src, sizeof src, "mnist:%s", tmp_path("label200"));
    expect_input_error("data", src, "label 200 of image 2 is outside the 10 classes");
    write_bytes(tmp_path("label200/x-images-idx3-ubyte"), img, ni);
    write_bytes(tmp_path("label200/x-labels-idx1-ubyte"), lab, nl);
    snprintf(src, sizeof src, "idx:%s/label200/x", g_tmp);
    Dataset d200;
    test_require_ok(dataset_load(&d200, src));
    CHECK(d200.num_classes == 201);
    CHECK(dataset_require_all_classes(&d200) == D2C_ERR_INPUT);
    printf("     %s\n", d2c_last_error());
    CHECK(strstr(d2c_last_error(), "197 of its 201 classes have no images (classes 3-199)") != NULL);
    dataset_free(&d200);
    snprintf(src, sizeof src, "idx:%s/nothing/here", g_tmp);
    expect_input_error("data", src, "no such file");
}

/* ---------------------------------------------------------------------------------- */
/* Images                                                                              */

static void make_image(uint8_t *px, int c, int h, int w, int seed) {
    for (int k = 0; k < c; k++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) px[(k * h + y) * w + x] = (uint8_t)(seed * 20 + k * 40 + y * 6 + x * 4); /* smooth, < 256 */
}

static void test_images(void) {
    uint8_t rgb[3 * 6 * 8], grey[6 * 8];
    make_image(rgb, 3, 6, 8, 1);
    make_image(grey, 1, 6, 8, 2);
    test_require_ok(png_write_u8(tmp_path("rgb.png"), rgb, 3, 6, 8));
    test_require_ok(png_write_u8(tmp_path("grey.png"), grey, 1, 6, 8));
    ImageU8 a, b;
    test_require_ok(image_load(&a, tmp_path("rgb.png")));
    test_require_ok(image_load(&b, tmp_path("grey.png")));
    CHECK(a.c == 3 && a.h == 6 && a.w == 8 && memcmp(a.pixels, rgb, sizeof rgb) == 0);
    CHECK(b.c == 1 && b.h == 6 && b.w == 8 && memcmp(b.pixels, grey, sizeof grey) == 0);
    image_free(&a);
    image_free(&b);
    test_require_ok(jpeg_write_u8(tmp_path("rgb.jpg"), rgb, 3, 6, 8, 100));
    test_require_ok(image_load(&a, tmp_path("rgb.jpg")));
    int max_diff = 0;
    for (size_t i = 0; i < sizeof rgb; i++) max_diff = D2C_MAX(max_diff, abs((int)a.pixels[i] - rgb[i]));
    printf("     JPEG quality 100 round trip: max |diff| %d\n", max_diff);
    CHECK(a.c == 3 && a.h == 6 && a.w == 8 && max_diff <= 8);
    image_free(&a);

    /* A folder data set: classes sorted by name, PNG and JPEG mixed, splits. */
    const char *classes[3] = {"b_second", "a_first", "c_third"};
    mkdir(tmp_path("folder"), 0755);
    mkdir(tmp_path("folder/train"), 0755);
    mkdir(tmp_path("folder/test"), 0755);
    for (int k = 0; k < 3; k++) {
        char dir[300], file[400];
        for (int split = 0; split < 2; split++) {
            snprintf(dir, sizeof dir, "folder/%s/%s", split ? "test" : "train", classes[k]);
            mkdir(tmp_path(dir), 0755);
            for (int i = 0; i < 2 + k + split; i++) {
                make_image(rgb, 3, 6, 8, k);
                snprintf(file, sizeof file, "%s/%02d.%s", dir, i, i % 2 ? "JPG" : "png");
                if (i % 2) test_require_ok(jpeg_write_u8(tmp_path(file), rgb, 3, 6, 8, 95));
                else test_require_ok(png_write_u8(tmp_path(file), rgb, 3, 6, 8));
            }
        }
    }
    write_bytes(tmp_path("folder/train/a_first/notes.txt"), "hi", 2); /* skipped with a warning */
    char src[1100];
    snprintf(src, sizeof src, "folder:%s", tmp_path("folder"));
    Dataset d;
    test_require_ok(dataset_load(&d, src));
    CHECK(d.n == 2 + 3 + 4 && d.c == 3 && d.h == 6 && d.w == 8 && d.num_classes == 3);
    CHECK(strcmp(d.class_names[0], "a_first") == 0 && strcmp(d.class_names[2], "c_third") == 0);
    CHECK(d.labels[0] == 0 && d.labels[2] == 0 && d.labels[3] == 1 && d.labels[4] == 1 && d.labels[8] == 2);
    make_image(rgb, 3, 6, 8, 1); /* "a_first" is classes[1] */
    CHECK(d.images[5] == rgb[5] / 127.5f - 1.0f);
    dataset_free(&d);
    snprintf(src, sizeof src, "folder:%s:test", tmp_path("folder"));
    test_require_ok(dataset_load(&d, src));
    CHECK(d.n == 3 + 4 + 5 && d.num_classes == 3);
    dataset_free(&d);

    /* Bad folders and images. */
    make_image(rgb, 3, 6, 8, 0);
    test_require_ok(png_write_u8(tmp_path("folder/test/c_third/99.png"), rgb, 3, 8, 6)); /* 6 wide, 8 high */
    snprintf(src, sizeof src, "folder:%s:test", tmp_path("folder"));
    expect_input_error("data", src, "c_third/99.png: 6x8 with 3 channels, but");
    test_require_ok(png_write_u8(tmp_path("folder/test/c_third/99.png"), grey, 1, 6, 8));
    expect_input_error("data", src, "8x6 with 1 channel, but");
    size_t len;
    unsigned char *png;
    test_require_ok(read_whole_file(tmp_path("rgb.png"), 0, &png, &len));
    write_bytes(tmp_path("folder/test/c_third/99.png"), png, len - 20);
    expect_input_error("data", src, "corrupt PNG");
    expect_input_error("image", tmp_path("folder/test/c_third/99.png"), "corrupt PNG");
    free(png);
    unsigned char *jpg;
    test_require_ok(read_whole_file(tmp_path("rgb.jpg"), 0, &jpg, &len));
    write_bytes(tmp_path("truncated.jpg"), jpg, len / 2);
    expect_input_error("image", tmp_path("truncated.jpg"), "corrupt JPEG");
    free(jpg);
    uint8_t *large = xmalloc(3 * 64 * 64); /* entropy-coded data cut short: libjpeg only warns */
    for (int i = 0; i < 3 * 64 * 64; i++) large[i] = (uint8_t)(i * 7919 % 251);
    test_require_ok(jpeg_write_u8(tmp_path("large.jpg"), large, 3, 64, 64, 90));
    free(large);
    test_require_ok(read_whole_file(tmp_path("large.jpg"), 0, &jpg, &len));
    write_bytes(tmp_path("truncated_scan.jpg"), jpg, len - 200);
    expect_input_error("image", tmp_path("truncated_scan.jpg"), "Premature end");
    free(jpg);
    expect_input_error("image", tmp_path("folder/train/a_first/notes.txt"), "not a PNG or JPEG");
    mkdir(tmp_path("folder/test/d_empty"), 0755);
    expect_input_error("data", src, "holds no .png");
    snprintf(src, sizeof src, "folder:%s:test", tmp_path("folder/train"));
    expect_input_error("data", src, "no test split");
    snprintf(src, sizeof src, "folder:%s", tmp_path("no_such_folder"));
    expect_input_error("data", src, "no such folder");

    /* Grids: pixel values, size, caption ink below the grid. */
    float imgs[3 * 1 * 2 * 2] = {-1, -1, -1, -1, 1, 1, 1, 1, 0, 0.5f, -0.5f, 2};
    test_require_ok(png_write_grid(tmp_path("grid.png"), imgs, 3, 1, 2, 2, 2, 1));
    ImageU8 g;
    test_require_ok(image_load(&g, tmp_path("grid.png")));
    CHECK(g.c == 1 && g.w == 2 * 3 + 1 && g.h == 2 * 3 + 1);
    CHECK(g.pixels[0] == 255 && g.pixels[1 * 7 + 1] == 0 && g.pixels[1 * 7 + 4] == 255);
    CHECK(g.pixels[4 * 7 + 1] == 128 && g.pixels[4 * 7 + 2] == 191 && g.pixels[5 * 7 + 1] == 64 && g.pixels[5 * 7 + 2] == 255);
    image_free(&g);
    float big[10 * 3 * 28 * 28];
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) big[i] = sinf((float)i * 0.01f);
    test_require_ok(png_write_grid_caption(tmp_path("caption.png"), big, 10, 3, 28, 28, 5, 2, "pool vs real, ratio 1%\nIPC 10 (d2c)"));
    test_require_ok(image_load(&g, tmp_path("caption.png")));
    int grid_h = 2 * 30 + 2, ink = 0;
    for (int y = grid_h; y < g.h; y++)
        for (int x = 0; x < g.w; x++) ink += g.pixels[(size_t)y * g.w + x] == 0;
    printf("     caption grid %dx%d, %d caption pixels inked\n", g.w, g.h, ink);
    CHECK(g.c == 3 && g.w == 5 * 30 + 2 && g.h > grid_h + 14 && ink > 100);
    image_free(&g);
}

/* A 4-image pool with these labels (and num_classes metadata when meta is not NULL). */
static const char *label_pool(const char *name, const int64_t labels[4], const char *meta) {
    float images[4 * 2 * 2] = {0};
    StWriter *w = st_writer_new();
    st_add(w, "images", ST_F32, 4, (int64_t[]){4, 1, 2, 2}, images);
    st_add(w, "labels", ST_I64, 1, (int64_t[]){4}, labels);
    if (meta) st_set_meta(w, "num_classes", meta);
    const char *path = tmp_path(name);
    test_require_ok(st_write(w, path));
    st_writer_free(w);
    return path;
}

/* The label rule of io/dataset.h on pools and samples files. */
static void test_labels(void) {
    Dataset d;
    const char *ok = label_pool("labels_ok.safetensors", (int64_t[]){0, 1, 2, 1}, NULL);
    test_require_ok(dataset_load(&d, ok));
    CHECK(d.num_classes == 3 && dataset_require_all_classes(&d) == D2C_OK);
    dataset_free(&d);
    const char *gap = label_pool("labels_0_1_2_99.safetensors", (int64_t[]){0, 1, 2, 99}, NULL);
    test_require_ok(dataset_load(&d, gap)); /* K = 100 by the rule ... */
    CHECK(d.num_classes == 100);
    CHECK(dataset_require_all_classes(&d) == D2C_ERR_INPUT); /* ... 96 of them empty */
    printf("     %s\n", d2c_last_error());
    CHECK(strstr(d2c_last_error(), "96 of its 100 classes have no images (classes 3-98)") && strstr(d2c_last_error(), gap));
    dataset_free(&d);
    const char *spread = label_pool("labels_spread.safetensors", (int64_t[]){0, 2, 4, 6}, "8");
    test_require_ok(dataset_load(&d, spread));
    CHECK(dataset_require_all_classes(&d) == D2C_ERR_INPUT && strstr(d2c_last_error(), "(classes 1, 3, 5, 7)"));
    dataset_free(&d);
    expect_input_error("data", label_pool("labels_90000.safetensors", (int64_t[]){0, 1, 2, 90000}, NULL),
                       "label 90000 would make 90001 classes; d2c takes at most 1000");
    expect_input_error("data", label_pool("labels_negative.safetensors", (int64_t[]){0, -1, 2, 1}, NULL), "negative");
    expect_input_error("data", label_pool("labels_meta.safetensors", (int64_t[]){0, 1, 12, 1}, "10"),
                       "label 12 of image 2 is outside the 10 classes 0..9 (its num_classes metadata)");
    expect_input_error("data", label_pool("labels_meta_huge.safetensors", (int64_t[]){0, 1, 2, 1}, "5000"),
                       "num_classes '5000' is not a class count 1..1000");
    expect_input_error("data", label_pool("labels_meta_text.safetensors", (int64_t[]){0, 1, 2, 1}, "ten"), "num_classes");
}

/* Image folders that are not data sets: each one clear error naming the file. */
static void test_bad_folders(void) {
    uint8_t rgb[3 * 6 * 8];
    make_image(rgb, 3, 6, 8, 3);
    char src[1100];
    /* a symlink loop inside a class folder */
    mkdir(tmp_path("loop"), 0755);
    mkdir(tmp_path("loop/cat"), 0755);
    test_require_ok(png_write_u8(tmp_path("loop/cat/a.png"), rgb, 3, 6, 8));
    CHECK(symlink("b.png", tmp_path("loop/cat/a_loop.png")) == 0 && symlink("a_loop.png", tmp_path("loop/cat/b.png")) == 0);
    snprintf(src, sizeof src, "folder:%s", tmp_path("loop"));
    expect_input_error("data", src, "loop/cat/a_loop.png: cannot read: Too many levels of symbolic links");
    /* a dangling link */
    mkdir(tmp_path("dangling"), 0755);
    mkdir(tmp_path("dangling/cat"), 0755);
    test_require_ok(png_write_u8(tmp_path("dangling/cat/a.png"), rgb, 3, 6, 8));
    CHECK(symlink("gone.png", tmp_path("dangling/cat/z.png")) == 0);
    snprintf(src, sizeof src, "folder:%s", tmp_path("dangling"));
    expect_input_error("data", src, "dangling/cat/z.png: cannot read: No such file");
    /* a class folder that links back to the data set's own folder: a class of folders */
    mkdir(tmp_path("selfloop"), 0755);
    mkdir(tmp_path("selfloop/cat"), 0755);
    test_require_ok(png_write_u8(tmp_path("selfloop/cat/a.png"), rgb, 3, 6, 8));
    CHECK(symlink("..", tmp_path("selfloop/cat/up")) == 0 && symlink(".", tmp_path("selfloop/dog")) == 0);
    snprintf(src, sizeof src, "folder:%s", tmp_path("selfloop"));
    expect_input_error("data", src, "selfloop/dog: class folder holds no .png");
    /* an unreadable file (not testable as root, who reads everything) */
    mkdir(tmp_path("unreadable"), 0755);
    mkdir(tmp_path("unreadable/cat"), 0755);
    test_require_ok(png_write_u8(tmp_path("unreadable/cat/a.png"), rgb, 3, 6, 8));
    test_require_ok(png_write_u8(tmp_path("unreadable/cat/b.png"), rgb, 3, 6, 8));
    if (geteuid() != 0) {
        CHECK(chmod(tmp_path("unreadable/cat/b.png"), 0) == 0);
        snprintf(src, sizeof src, "folder:%s", tmp_path("unreadable"));
        expect_input_error("data", src, "unreadable/cat/b.png: cannot open: Permission denied");
    } else {
        printf("skip unreadable image file: running as root\n");
    }
    /* a truncated JPEG and a truncated PNG among good images */
    mkdir(tmp_path("truncated"), 0755);
    mkdir(tmp_path("truncated/cat"), 0755);
    mkdir(tmp_path("truncated/dog"), 0755);
    test_require_ok(png_write_u8(tmp_path("truncated/cat/a.png"), rgb, 3, 6, 8));
    test_require_ok(jpeg_write_u8(tmp_path("truncated/dog/a.jpg"), rgb, 3, 6, 8, 90));
    size_t len;
    unsigned char *bytes;
    test_require_ok(read_whole_file(tmp_path("truncated/dog/a.jpg"), 0, &bytes, &len));
    write_bytes(tmp_path("truncated/dog/b.jpg"), bytes, len / 2);
    free(bytes);
    snprintf(src, sizeof src, "folder:%s", tmp_path("truncated"));
    expect_input_error("data", src, "truncated/dog/b.jpg: corrupt JPEG");
    unlink(tmp_path("truncated/dog/b.jpg"));
    test_require_ok(read_whole_file(tmp_path("truncated/cat/a.png"), 0, &bytes, &len));
    write_bytes(tmp_path("truncated/cat/b.png"), bytes, len - 20); /* into the image data */
    free(bytes);
    expect_input_error("data", src, "truncated/cat/b.png: corrupt PNG");
    /* a PNG whose header claims 4000 x 4000 pixels in 57 bytes (IHDR, an empty IDAT,
     * IEND): refused before the decoder allocates for it */
    unsigned char png[8 + 25 + 12 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                           0, 0, 0x0F, 0xA0, 0, 0, 0x0F, 0xA0, 8, 2, 0, 0, 0};
    memcpy(png + 33, "\0\0\0\0IDAT", 8);
    memcpy(png + 45, "\0\0\0\0IEND", 8);
    const int chunk_at[3] = {12, 37, 49}, chunk_len[3] = {17, 4, 4}, crc_at[3] = {29, 41, 53};
    for (int c = 0; c < 3; c++) {
        uLong crc = crc32(0, png + chunk_at[c], (uInt)chunk_len[c]);
        for (int k = 0; k < 4; k++) png[crc_at[c] + k] = (unsigned char)(crc >> (8 * (3 - k)));
    }
    write_bytes(tmp_path("claims_4000.png"), png, sizeof png);
    expect_input_error("image", tmp_path("claims_4000.png"), "truncated PNG: its header claims 4000 x 4000 pixels");
}

static void test_fashion_mnist(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        printf("skip Fashion-MNIST: %s not installed\n", dir);
        return;
    }
    for (int test = 0; test < 2; test++) {
        /* The expected first label and pixel, read straight from the file. */
        char path[256];
        unsigned char head[17];
        snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, test ? "t10k" : "train");
        gzFile gz = gzopen(path, "rb");
        CHECK(gz && gzread(gz, head, 9) == 9);
        gzclose(gz);
        int first_label = head[8];
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, test ? "t10k" : "train");
        gz = gzopen(path, "rb");
        unsigned char pixels[16 + 784];
        CHECK(gz && gzread(gz, pixels, sizeof pixels) == (int)sizeof pixels);
        gzclose(gz);

        double t0 = now_seconds();
        Dataset d;
        test_require_ok(dataset_load(&d, test ? "fashion-mnist:test" : "fashion-mnist"));
        double seconds = now_seconds() - t0;
        printf("     fashion-mnist:%s: %d x %d x %d x %d, %d classes, first label %lld (file: %d), %.3f s\n",
               test ? "test" : "train", d.n, d.c, d.h, d.w, d.num_classes, (long long)d.labels[0], first_label, seconds);
        CHECK(d.n == (test ? 10000 : 60000) && d.c == 1 && d.h == 28 && d.w == 28 && d.num_classes == 10);
        CHECK(d.labels[0] == first_label && first_label == 9);
        CHECK(strcmp(d.class_names[9], "Ankle boot") == 0);
        int in_range = 1, counts[10] = {0};
        for (size_t i = 0; i < (size_t)d.n * 784; i++) in_range &= d.images[i] >= -1.0f && d.images[i] <= 1.0f;
        for (int i = 0; i < d.n; i++) counts[d.labels[i]]++;
        for (int k = 0; k < 10; k++) CHECK(counts[k] == d.n / 10);
        CHECK(in_range);
        for (int p = 0; p < 784; p++) in_range &= d.images[p] == pixels[16 + p] / 127.5f - 1.0f;
        CHECK(in_range);
        dataset_free(&d);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Modes                                                                               */

/* Opens path as kind; any failure is reported as the CLI does (one "d2c: error:" line,
 * exit status = the status). */
static int mode_open(const char *kind, const char *path) {
    int st;
    if (strcmp(kind, "st") == 0) {
        StFile *f;
        st = st_open(&f, path);
        if (!st) st_close(f);
    } else if (strcmp(kind, "idx3") == 0 || strcmp(kind, "idx1") == 0) {
        IdxArray a;
        st = idx_read_u8(&a, path, kind[3] - '0');
        if (!st) idx_free(&a);
    } else if (strcmp(kind, "image") == 0) {
        ImageU8 img;
        st = image_load(&img, path);
        if (!st) image_free(&img);
    } else if (strcmp(kind, "data") == 0) {
        Dataset d;
        st = dataset_load(&d, path);
        if (!st) dataset_free(&d);
    } else {
        st = d2c_error(D2C_ERR_INPUT, "unknown kind '%s'", kind);
    }
    if (st) report_line("error", d2c_last_error());
    return st;
}

static int mode_load(const char *src) {
    double t0 = now_seconds();
    Dataset d;
    test_require_ok(dataset_load(&d, src));
    double seconds = now_seconds() - t0;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < (size_t)d.n * d.c * d.h * d.w; i++) lo = fminf(lo, d.images[i]), hi = fmaxf(hi, d.images[i]);
    ClassIndex ci = class_index_build(&d);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "source", d.source);
    cJSON_AddNumberToObject(o, "n", d.n);
    cJSON_AddNumberToObject(o, "c", d.c);
    cJSON_AddNumberToObject(o, "h", d.h);
    cJSON_AddNumberToObject(o, "w", d.w);
    cJSON_AddNumberToObject(o, "num_classes", d.num_classes);
    cJSON_AddNumberToObject(o, "min", lo);
    cJSON_AddNumberToObject(o, "max", hi);
    cJSON_AddNumberToObject(o, "seconds", seconds);
    cJSON_AddNumberToObject(o, "threads", omp_get_max_threads());
    cJSON *counts = cJSON_AddArrayToObject(o, "counts"), *names = cJSON_AddArrayToObject(o, "class_names");
    for (int k = 0; k < d.num_classes; k++) {
        cJSON_AddItemToArray(counts, cJSON_CreateNumber(class_index_count(&ci, k)));
        cJSON_AddItemToArray(names, cJSON_CreateString(d.class_names[k]));
    }
    char *text = cJSON_PrintUnformatted(o);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
    class_index_free(&ci);
    dataset_free(&d);
    return 0;
}

static int mode_dump(const char *src, const char *out, long max_images) {
    Dataset d;
    test_require_ok(dataset_load(&d, src));
    int n = (int)D2C_MIN((long)d.n, max_images);
    StWriter *w = st_writer_new();
    st_add(w, "images", ST_F32, 4, (int64_t[]){n, d.c, d.h, d.w}, d.images);
    st_add(w, "labels", ST_I64, 1, (int64_t[]){d.n}, d.labels);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", d.num_classes);
    st_set_meta(w, "num_classes", buf);
    st_set_meta(w, "source", d.source);
    test_require_ok(st_write(w, out));
    st_writer_free(w);
    dataset_free(&d);
    return 0;
}

static int mode_write_sample(const char *out) {
    Sample x;
    sample_fill(&x);
    sample_write(out, &x);
    return 0;
}

static int mode_check_sample(const char *in) {
    int bad = sample_check(in, NULL);
    printf("%s: %s\n", in, bad ? "MISMATCH" : "all tensors and metadata equal");
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "open") == 0) return mode_open(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "load") == 0) return mode_load(argv[2]);
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "dump") == 0) {
        long n = 1L << 30;
        if (argc == 5 && (parse_long(argv[4], &n) != 0 || n < 0)) {
            fprintf(stderr, "d2c: error: bad image count '%s'\n", argv[4]);
            return 2;
        }
        return mode_dump(argv[2], argv[3], n);
    }
    if (argc == 3 && strcmp(argv[1], "write-sample") == 0) return mode_write_sample(argv[2]);
    if (argc == 3 && strcmp(argv[1], "check-sample") == 0) return mode_check_sample(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_io [open KIND PATH | load SRC | dump SRC OUT [N] | write-sample OUT | check-sample IN]\n");
        return 2;
    }

    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n <= 0) d2c_fatal("cannot find this program through /proc/self/exe");
    g_self[n] = 0;
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_tmp, sizeof g_tmp, "%s/d2c_test_io.XXXXXX", base);
    if (!mkdtemp(g_tmp)) d2c_fatal("cannot make a folder under %s", base);
    printf("scratch folder %s\n", g_tmp);

    test_safetensors();
    test_idx();
    test_images();
    test_labels();
    test_bad_folders();
    test_fashion_mnist();

    int status = test_finish();
    if (status == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0) printf("could not remove %s\n", g_tmp);
    }
    return status;
}
