/* A missing ONNX Runtime library is a status and a message, not a crash. Run in its own
 * process (ONNX Runtime is loaded once per process), with ORT_DYLIB_PATH unset.
 *
 *   no_ort MISSING_LIBRARY_PATH */
#include "common.h"

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL;
    if (argc != 2)
        return 2;
    EXPECT_STATUS(modeconn_runtime_new(argv[1], MODECONN_DEVICE_CPU, 0, 1, &rt),
                  MODECONN_STATUS_ORT_LIBRARY);
    CHECK(rt == NULL);
    /* Without a path, ORT_DYLIB_PATH (unset here) and the executable's folder are searched. */
    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_AUTO, 0, 1, &rt),
                  MODECONN_STATUS_ORT_LIBRARY);
    CHECK(rt == NULL);
    return failures ? 1 : 0;
}
