/* A short example of the modeconn C API: open a bundle, predict one batch with a grid of
 * members, print the mean probabilities, close everything.
 *
 *   cc -std=c11 -Iinclude examples/c/predict.c -Ltarget/release -lmodeconn -o predict
 *   ./predict model.safetensors input.f32 BATCH [M]
 *
 * input.f32 holds BATCH samples of the bundle's input shape as raw float32 values. ONNX
 * Runtime comes from ORT_DYLIB_PATH. */
#include <stdio.h>
#include <stdlib.h>

#include "modeconn.h"

static int fail(const char *what, modeconn_status s) {
    fprintf(stderr, "%s: %s: %s\n", what, modeconn_status_name(s), modeconn_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL;
    modeconn_ensemble *ens = NULL;
    modeconn_sampling sampling = {0};
    modeconn_status s;
    size_t batch, classes, n_prob, n_in, i, j;
    float *input = NULL, *prob = NULL;
    FILE *f;
    uint32_t kind;
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
    batch = (size_t)strtoul(argv[3], NULL, 10);

    if ((s = modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 1, &rt)) != MODECONN_STATUS_OK)
        return fail("runtime", s);
    if ((s = modeconn_ensemble_open(rt, argv[1], &ens)) != MODECONN_STATUS_OK) {
        rc = fail("open", s);
        goto done;
    }
    modeconn_ensemble_kind(ens, &kind);
    modeconn_ensemble_classes(ens, &classes);
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
    n_in = (size_t)ftell(f) / sizeof(float);
    fseek(f, 0, SEEK_SET);
    input = malloc(n_in * sizeof(float) + 1);
    if (!input || fread(input, sizeof(float), n_in, f) != n_in) {
        fclose(f);
        goto done;
    }
    fclose(f);

    /* Ask for the output size, then predict into our own buffer. */
    if ((s = modeconn_ensemble_predict_sizes(ens, &sampling, batch, &n_prob, NULL, NULL)) !=
        MODECONN_STATUS_OK) {
        rc = fail("sizes", s);
        goto done;
    }
    prob = malloc(n_prob * sizeof(float));
    if (!prob)
        goto done;
    s = modeconn_ensemble_predict(ens, input, n_in, batch, &sampling, prob, n_prob, NULL, 0, NULL,
                                  0);
    if (s != MODECONN_STATUS_OK) {
        rc = fail("predict", s);
        goto done;
    }
    for (i = 0; i < batch; i++) {
        for (j = 0; j < classes; j++)
            printf("%s%.6f", j ? " " : "", (double)prob[i * classes + j]);
        printf("\n");
    }
    rc = 0;
done:
    free(prob);
    free(input);
    modeconn_ensemble_free(ens);
    modeconn_runtime_free(rt);
    return rc;
}
