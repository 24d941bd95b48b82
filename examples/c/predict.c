/* A short example of the modeconn C API: open a bundle, predict one batch with a grid of
 * members (every member of a snapshot set), print each sample's mean probabilities, its
 * predictive entropy and its most probable class (by label when the bundle names them), close
 * everything. examples/c/predict.cpp does the same with include/modeconn.hpp.
 *
 *   cc -std=c11 -Iinclude examples/c/predict.c -Ltarget/release -lmodeconn -o predict
 *   ./predict model.safetensors input.f32 BATCH [M]
 *
 * input.f32 holds BATCH samples of the bundle's input shape as raw float32 values. ONNX
 * Runtime comes from ORT_DYLIB_PATH. */
#include <stdio.h>
#include <stdlib.h>

#include "modeconn.h"

/* Prints what failed and the library's message; returns the exit status. */
static int fail(const char *what, modeconn_status s) {
    fprintf(stderr, "%s: %s: %s\n", what, modeconn_status_name(s), modeconn_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL;
    modeconn_ensemble *ens = NULL;
    modeconn_sampling sampling = {0};
    modeconn_input input = {0};
    modeconn_outputs out = {0};
    modeconn_output_sizes sizes;
    modeconn_status s;
    modeconn_kind kind = MODECONN_KIND_CURVE;
    size_t classes = 0, labels = 0, i, j, best;
    float *data = NULL;
    const char *label;
    FILE *f;
    int rc = 1;

    if (argc < 4) {
        fprintf(stderr, "usage: %s BUNDLE INPUT.f32 BATCH [M]\n", argv[0]);
        return 2;
    }
    if (modeconn_abi_version() != MODECONN_ABI_VERSION) {
        fprintf(stderr, "header %d and library %u differ\n", MODECONN_ABI_VERSION,
                (unsigned)modeconn_abi_version());
        return 1;
    }
    input.batch = (size_t)strtoul(argv[3], NULL, 10);

    if ((s = modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 0, 1, &rt)) != MODECONN_STATUS_OK)
        return fail("runtime", s);
    if ((s = modeconn_ensemble_open(rt, argv[1], &ens)) != MODECONN_STATUS_OK) {
        rc = fail("open", s);
        goto done;
    }
    /* These cannot fail on a live handle with valid out-parameters. */
    modeconn_ensemble_kind(ens, &kind);
    modeconn_ensemble_classes(ens, &classes);
    modeconn_ensemble_label_count(ens, &labels);
    if (kind == MODECONN_KIND_CURVE) {
        sampling.mode = MODECONN_SAMPLING_MODE_GRID;
        sampling.count = argc > 4 ? (size_t)strtoul(argv[4], NULL, 10) : 5;
    } else {
        sampling.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    }

    /* Read the input: its length is checked by modeconn_ensemble_predict. */
    f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        goto done;
    }
    fseek(f, 0, SEEK_END);
    input.len = (size_t)ftell(f) / sizeof(float);
    fseek(f, 0, SEEK_SET);
    data = malloc(input.len * sizeof(float) + 1);
    if (!data || fread(data, sizeof(float), input.len, f) != input.len) {
        fclose(f);
        goto done;
    }
    fclose(f);
    input.data = data;

    /* Ask for the output sizes, then predict into our own buffers: the mean probabilities and
     * the entropy; the other outputs stay NULL (not wanted). */
    if ((s = modeconn_ensemble_output_sizes(ens, &sampling, input.batch, &sizes)) !=
        MODECONN_STATUS_OK) {
        rc = fail("sizes", s);
        goto done;
    }
    out.probabilities = malloc(sizes.probabilities * sizeof(float) + 1);
    out.probabilities_len = sizes.probabilities;
    out.entropy = malloc(sizes.entropy * sizeof(float) + 1);
    out.entropy_len = sizes.entropy;
    if (!out.probabilities || !out.entropy)
        goto done;
    if ((s = modeconn_ensemble_predict(ens, &input, &sampling, &out)) != MODECONN_STATUS_OK) {
        rc = fail("predict", s);
        goto done;
    }
    for (i = 0; i < input.batch; i++) {
        const float *row = out.probabilities + i * classes;
        for (j = 0, best = 0; j < classes; j++) {
            printf("%.6f ", (double)row[j]);
            if (row[j] > row[best])
                best = j;
        }
        label = NULL;
        if (labels > 0)
            modeconn_ensemble_label(ens, best, &label);
        printf("entropy=%.6f class=%zu%s%s\n", (double)out.entropy[i], best, label ? " " : "",
               label ? label : "");
    }
    rc = 0;
done:
    free(out.probabilities);
    free(out.entropy);
    free(data);
    modeconn_ensemble_free(ens);
    modeconn_runtime_free(rt);
    return rc;
}
