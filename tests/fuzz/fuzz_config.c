/* Fuzz target: the JSON configs read from files: a model's "config" metadata
 * (unet_config_from_json, then unet_config_validate) and an evaluator's "arch" metadata
 * (eval_arch_from_json). The input: byte 0 picks the parser (even: model, odd: evaluator),
 * bytes 1-2 the image size to validate against, the rest is the JSON text. A config that
 * parses and validates must survive a round trip: to JSON and back gives the same config. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "eval/evaluator.h"
#include "fuzz.h"
#include "model/unet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    char *json = malloc(size - 2);
    memcpy(json, data + 3, size - 3);
    json[size - 3] = 0;
    const int H = 1 + data[1] % 64, W = 1 + data[2] % 64;
    if (data[0] % 2 == 0) {
        UNetConfig c;
        if (fuzz_status(unet_config_from_json(json, &c)) == D2C_OK &&
            fuzz_status(unet_config_validate(&c, H, W)) == D2C_OK) {
            char *again = unet_config_to_json(&c);
            UNetConfig c2;
            fuzz_require(unet_config_from_json(again, &c2) == D2C_OK, "a written config reads back");
            fuzz_require(memcmp(&c, &c2, sizeof c) == 0, "a config round-trips through JSON");
            free(again);
        }
    } else {
        EvalArch a, a2;
        if (fuzz_status(eval_arch_from_json(json, &a)) == D2C_OK) {
            char *again = eval_arch_to_json(&a);
            fuzz_require(eval_arch_from_json(again, &a2) == D2C_OK, "a written arch reads back");
            fuzz_require(memcmp(&a, &a2, sizeof a) == 0, "an arch round-trips through JSON");
            free(again);
        }
    }
    free(json);
    return 0;
}
