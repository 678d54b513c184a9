/* Workspace: the caller-owned scratch arena every kernel takes its temporary buffers
 * from. It only grows, so after the first training step no kernel allocates. Contents
 * are scratch: they are not kept when the arena grows. */
#include "engine/cpu/kernels.h"

#include <stdlib.h>

#include "core/util.h"

float *workspace_ensure(Workspace *ws, size_t floats) {
    if (floats > ws->capacity) {
        free(ws->data);
        ws->data = xmalloc_floats(floats);
        ws->capacity = floats;
    }
    return ws->data;
}

void workspace_free(Workspace *ws) {
    free(ws->data);
    ws->data = NULL;
    ws->capacity = 0;
}
