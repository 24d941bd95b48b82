/* Helpers shared by the C test programs (run from ffi/tests/c_api.rs). */
#ifndef MODECONN_TEST_COMMON_H
#define MODECONN_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modeconn.h"

#if defined(__GNUC__)
#define MODECONN_TEST_UNUSED __attribute__((unused))
#else
#define MODECONN_TEST_UNUSED
#endif

static int failures = 0;

/* Expects `call` to return `want`, and a message exactly when it is not OK. */
#define EXPECT_STATUS(call, want)                                                              \
    do {                                                                                       \
        modeconn_status got_ = (call);                                                         \
        const char *msg_ = modeconn_last_error_message();                                      \
        if (got_ != (modeconn_status)(want)) {                                                 \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__,   \
                    #call, modeconn_status_name(got_), modeconn_status_name(want), msg_);      \
            failures++;                                                                        \
        } else if ((want) != MODECONN_STATUS_OK && (msg_ == NULL || msg_[0] == '\0')) {        \
            fprintf(stderr, "%s:%d: %s gave no message\n", __FILE__, __LINE__, #call);         \
            failures++;                                                                        \
        } else if ((want) != MODECONN_STATUS_OK) {                                             \
            printf("  %-34s %s\n", modeconn_status_name(got_), msg_);                          \
        }                                                                                      \
    } while (0)

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

/* Reads a whole file of floats; exits on error. */
MODECONN_TEST_UNUSED static float *read_floats(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    long len;
    float *data;
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    *n = (size_t)len / sizeof(float);
    data = (float *)malloc((size_t)len + 1);
    if (!data || fread(data, sizeof(float), *n, f) != *n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    return data;
}

/* Writes `n` items of `size` bytes to DIR/NAME; exits on error. */
MODECONN_TEST_UNUSED static void write_file(const char *dir, const char *name, const void *data, size_t size,
                       size_t n) {
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(data, size, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

#endif
