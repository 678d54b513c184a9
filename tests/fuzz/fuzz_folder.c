/* Fuzz target: the image-folder loader (io/dataset_folder.c) on a folder tree built from
 * the input, file contents included. The input is a list of records
 *     flags (1 byte), then up to 24 x [op (1), where (1), length (2, little-endian), bytes]
 * flags bit 0: a train/ + test/ layout (a record's where bit 7 picks test/), bit 1: load
 * the test split. where % 6 picks the class folder c0..c5; op % 8 makes, in that folder:
 *   0 a .png file, 1 a .jpg file, 2 a .txt file (not an image) with the bytes;
 *   3 the empty class folder; 4 a link "up" -> .. (a loop back to the root);
 *   5 a link "self.png" -> self.png (a link loop); 6 a link named "l<i>.png" whose target
 *   is the bytes (as text: dangling, absolute, into another class...);
 *   7 a sub-folder "sub<i>" holding the bytes as 0.png.
 * On success every label must lie in [0, K), K the number of class folders, every class
 * must hold an image and every pixel value must be a finite number in [-1, 1]. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "fuzz.h"
#include "io/dataset.h"

static void put(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return; /* a path the records made impossible (e.g. under a file): skip it */
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    fuzz_clear_scratch();
    char root[4200], dir[4400], path[4600];
    snprintf(root, sizeof root, "%s/tree", fuzz_scratch_dir());
    mkdir(root, 0755);
    const int splits = data[0] & 1, want_test = (data[0] >> 1) & 1;
    if (splits) {
        snprintf(dir, sizeof dir, "%s/train", root);
        mkdir(dir, 0755);
        snprintf(dir, sizeof dir, "%s/test", root);
        mkdir(dir, 0755);
    }
    size_t pos = 1;
    for (int i = 0; i < 24 && pos + 4 <= size; i++) {
        const int op = data[pos] % 8, where = data[pos + 1];
        size_t len = (size_t)data[pos + 2] | (size_t)data[pos + 3] << 8;
        pos += 4;
        if (len > size - pos) len = size - pos;
        const uint8_t *bytes = data + pos;
        pos += len;
        snprintf(dir, sizeof dir, "%s%s/c%d", root, splits ? (where & 128 ? "/test" : "/train") : "", where % 6);
        mkdir(dir, 0755);
        switch (op) {
        case 0: snprintf(path, sizeof path, "%s/%d.png", dir, i); put(path, bytes, len); break;
        case 1: snprintf(path, sizeof path, "%s/%d.jpg", dir, i); put(path, bytes, len); break;
        case 2: snprintf(path, sizeof path, "%s/%d.txt", dir, i); put(path, bytes, len); break;
        case 3: break;
        case 4: snprintf(path, sizeof path, "%s/up", dir); (void)!symlink("..", path); break;
        case 5: snprintf(path, sizeof path, "%s/self.png", dir); (void)!symlink("self.png", path); break;
        case 6: {
            char target[256];
            size_t n = len < sizeof target - 1 ? len : sizeof target - 1;
            memcpy(target, bytes, n);
            target[n] = 0;
            snprintf(path, sizeof path, "%s/l%d.png", dir, i);
            if (target[0]) (void)!symlink(target, path);
            break;
        }
        default:
            snprintf(path, sizeof path, "%s/sub%d", dir, i);
            mkdir(path, 0755);
            snprintf(path, sizeof path, "%s/sub%d/0.png", dir, i);
            put(path, bytes, len);
        }
    }
    Dataset d;
    if (fuzz_status(dataset_load_folder(&d, root, want_test ? "test" : "train", "folder:fuzz")) == D2C_OK) {
        fuzz_require(d.n > 0 && d.num_classes > 0 && (d.c == 1 || d.c == 3), "a loaded folder holds images");
        int seen[64] = {0};
        for (int i = 0; i < d.n; i++) {
            fuzz_require(d.labels[i] >= 0 && d.labels[i] < d.num_classes, "labels lie in [0, K)");
            if (d.labels[i] < 64) seen[d.labels[i]] = 1;
        }
        for (int k = 0; k < d.num_classes && k < 64; k++) fuzz_require(seen[k], "every class holds an image");
        for (size_t i = 0; i < (size_t)d.n * d.c * d.h * d.w; i++)
            fuzz_require(isfinite(d.images[i]) && d.images[i] >= -1 && d.images[i] <= 1, "pixels in [-1, 1]");
        dataset_free(&d);
    }
    fuzz_clear_scratch();
    return 0;
}
