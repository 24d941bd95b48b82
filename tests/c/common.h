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

MODECONN_TEST_UNUSED static int failures = 0;

/* A valid training job, for the cases where what fails is the plugin, not the job. */
#define TRAIN_JOB                                                                              \
    "{\"command\":\"train\",\"arch\":\"mlp\",\"data\":\"digits\",\"epochs\":1,"               \
    "\"out\":\"/nonexistent/x.safetensors\"}"

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

/* Opens DIR/NAME for writing; exits on error. */
MODECONN_TEST_UNUSED static FILE *create_file(const char *dir, const char *name, const char *mode) {
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, mode);
    if (!f) {
        perror(path);
        exit(2);
    }
    return f;
}

/* Writes `n` items of `size` bytes to DIR/NAME; exits on error. */
MODECONN_TEST_UNUSED static void write_file(const char *dir, const char *name, const void *data,
                                            size_t size, size_t n) {
    FILE *f = create_file(dir, name, "wb");
    if (fwrite(data, size, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s/%s\n", dir, name);
        exit(2);
    }
}

/* Writes DIR/NAME.SUFFIX (`n` items of `size` bytes): the files ffi/tests/c_api.rs compares. */
MODECONN_TEST_UNUSED static void write_output(const char *dir, const char *name,
                                              const char *suffix, const void *data, size_t size,
                                              size_t n) {
    char file[256];
    snprintf(file, sizeof file, "%s.%s", name, suffix);
    write_file(dir, file, data, size, n);
}

/* Writes the members of a prediction as DIR/NAME.members: float64 t, or the index. */
MODECONN_TEST_UNUSED static void write_members(const char *dir, const char *name,
                                               const modeconn_member *members, size_t n) {
    double *values = (double *)calloc(n + 1, sizeof(double));
    size_t i;
    if (!values)
        exit(2);
    for (i = 0; i < n; i++)
        values[i] = members[i].kind == MODECONN_MEMBER_KIND_T ? members[i].t
                                                              : (double)members[i].index;
    write_output(dir, name, "members", values, sizeof(double), n);
    free(values);
}

/* The line predict.c and hpp_predict.cpp print for each bundle, checked by c_api.rs:
 * LABEL kind=K basis=B points=P classes=C provider=V shape=-1,4 */
MODECONN_TEST_UNUSED static void print_description(const char *label, unsigned kind,
                                                   unsigned basis, size_t points,
                                                   size_t classes, unsigned provider,
                                                   const int64_t *shape, size_t rank) {
    size_t i;
    printf("%s kind=%u basis=%u points=%zu classes=%zu provider=%u shape=", label, kind, basis,
           points, classes, provider);
    for (i = 0; i < rank; i++)
        printf("%s%lld", i ? "," : "", (long long)shape[i]);
    printf("\n");
}

/* What the metadata accessors of one ensemble returned, written by write_metadata. */
struct metadata_dump {
    unsigned kind, basis, provider;
    size_t points, classes;
    double temperature;
    const char *input_name, *output_name;
    const int64_t *shape;
    size_t rank;
    const char *const *labels; /* label_count of them */
    size_t label_count;
    const char *provenance; /* NULL when the bundle records none */
    const double *mean, *std; /* channels of each */
    size_t channels;
    size_t static_before, static_after; /* static members before and after one prediction */
};

/* Writes DIR/NAME.meta, one "key value" line each, for c_api.rs to compare with the bundle's
 * metadata in the Rust API (doubles with 17 significant digits, exact on reading back). */
MODECONN_TEST_UNUSED static void write_metadata(const char *dir, const char *name,
                                                const struct metadata_dump *m) {
    char file[256];
    FILE *f;
    size_t i;
    snprintf(file, sizeof file, "%s.meta", name);
    f = create_file(dir, file, "w");
    fprintf(f, "kind %u\nbasis %u\nprovider %u\npoints %zu\nclasses %zu\n", m->kind, m->basis,
            m->provider, m->points, m->classes);
    fprintf(f, "temperature %.17g\ninput_name %s\noutput_name %s\nshape", m->temperature,
            m->input_name, m->output_name);
    for (i = 0; i < m->rank; i++)
        fprintf(f, " %lld", (long long)m->shape[i]);
    fprintf(f, "\nlabels %zu\n", m->label_count);
    for (i = 0; i < m->label_count; i++)
        fprintf(f, "label %s\n", m->labels[i]);
    if (m->provenance)
        fprintf(f, "provenance %s\n", m->provenance);
    else
        fprintf(f, "provenance-absent\n");
    fprintf(f, "channels %zu\nmean", m->channels);
    for (i = 0; i < m->channels; i++)
        fprintf(f, " %.17g", m->mean[i]);
    fprintf(f, "\nstd");
    for (i = 0; i < m->channels; i++)
        fprintf(f, " %.17g", m->std[i]);
    fprintf(f, "\nstatic_before %zu\nstatic_after %zu\n", m->static_before, m->static_after);
    if (fclose(f) != 0) {
        fprintf(stderr, "cannot write %s/%s\n", dir, file);
        exit(2);
    }
}

#endif
