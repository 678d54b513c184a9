/* Fuzz target: the JPEG decoder (io/image.c, through libpng / libjpeg). The input is
 * the file, named .jpg (the decoder tells formats apart by content, so JPEG bytes in the
 * PNG target are fair game too). On success the image must be C = 1 or 3 and non-empty,
 * and every pixel is read; both entry points are exercised (image_load with the error
 * model, image_decode_file with its reason string). */
#include <string.h>

#include "core/status.h"
#include "fuzz.h"
#include "io/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("input.jpg", data, size);
    ImageU8 img;
    if (fuzz_status(image_load(&img, path)) == D2C_OK) {
        fuzz_require((img.c == 1 || img.c == 3) && img.h > 0 && img.w > 0, "a decoded image has 1 or 3 channels");
        fuzz_touch(img.pixels, (size_t)img.c * img.h * img.w);
        image_free(&img);
    }
    char err[256] = "";
    ImageU8 again;
    if (image_decode_file(path, &again, err, sizeof err) == 0) image_free(&again);
    else fuzz_require(err[0] != 0, "a failed decode gives a reason");
    return 0;
}
