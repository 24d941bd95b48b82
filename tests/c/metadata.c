/* Reads every property and metadata accessor of some bundles and writes them for
 * ffi/tests/c_api.rs to compare with the bundle's metadata in the Rust API.
 *
 *   metadata OUTDIR NAME=BUNDLE...
 *
 * For each NAME it writes OUTDIR/NAME.meta (see write_metadata in common.h); the static members
 * are read before and after one prediction of a zero sample (a grid of 3 on a curve, all
 * members of a snapshot set). */
#include "common.h"

#define MAX_LABELS 64

static void dump(const modeconn_runtime *rt, const char *dir, const char *name,
                 const char *path) {
    modeconn_ensemble *ens = NULL;
    struct metadata_dump m;
    modeconn_kind kind = 99;
    modeconn_basis basis = 99;
    modeconn_provider provider = 99;
    int64_t shape[8];
    const char *labels[MAX_LABELS];
    double mean[16], std[16];
    size_t i, features = 1;
    float *zeros;
    modeconn_sampling s = {0};
    modeconn_input input = {0};
    modeconn_outputs out = {0};
    float prob[64];

    memset(&m, 0, sizeof m);
    EXPECT_STATUS(modeconn_ensemble_open(rt, path, &ens), MODECONN_STATUS_OK);
    if (!ens)
        return;
    EXPECT_STATUS(modeconn_ensemble_kind(ens, &kind), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_basis(ens, &basis), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_provider(ens, &provider), MODECONN_STATUS_OK);
    m.kind = (unsigned)kind;
    m.basis = (unsigned)basis;
    m.provider = (unsigned)provider;
    EXPECT_STATUS(modeconn_ensemble_points(ens, &m.points), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_classes(ens, &m.classes), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_temperature(ens, &m.temperature), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_input_name(ens, &m.input_name), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_output_name(ens, &m.output_name), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_input_shape(ens, shape, 8, &m.rank), MODECONN_STATUS_OK);
    m.shape = shape;
    EXPECT_STATUS(modeconn_ensemble_label_count(ens, &m.label_count), MODECONN_STATUS_OK);
    CHECK(m.label_count == 0 || m.label_count == m.classes);
    CHECK(m.label_count <= MAX_LABELS);
    for (i = 0; i < m.label_count && i < MAX_LABELS; i++)
        EXPECT_STATUS(modeconn_ensemble_label(ens, i, &labels[i]), MODECONN_STATUS_OK);
    m.labels = labels;
    EXPECT_STATUS(modeconn_ensemble_provenance(ens, &m.provenance), MODECONN_STATUS_OK);
    /* The count first, then the values. */
    EXPECT_STATUS(modeconn_ensemble_preprocess(ens, NULL, NULL, 0, &m.channels),
                  MODECONN_STATUS_OK);
    CHECK(m.channels <= 16);
    EXPECT_STATUS(modeconn_ensemble_preprocess(ens, mean, std, 16, &m.channels),
                  MODECONN_STATUS_OK);
    m.mean = mean;
    m.std = std;

    EXPECT_STATUS(modeconn_ensemble_static_members(ens, &m.static_before), MODECONN_STATUS_OK);
    for (i = 1; i < m.rank; i++)
        features *= (size_t)shape[i];
    zeros = (float *)calloc(features, sizeof(float));
    input.data = zeros;
    input.len = features;
    input.batch = 1;
    if (kind == MODECONN_KIND_CURVE) {
        s.mode = MODECONN_SAMPLING_MODE_GRID;
        s.count = 3;
    } else {
        s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    }
    out.probabilities = prob;
    out.probabilities_len = sizeof prob / sizeof prob[0];
    EXPECT_STATUS(modeconn_ensemble_predict(ens, &input, &s, &out), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_static_members(ens, &m.static_after), MODECONN_STATUS_OK);
    free(zeros);

    write_metadata(dir, name, &m);
    EXPECT_STATUS(modeconn_ensemble_free(ens), MODECONN_STATUS_OK);
}

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL;
    char name[256];
    int i;
    if (argc < 3) {
        fprintf(stderr, "usage: metadata OUTDIR NAME=BUNDLE...\n");
        return 2;
    }
    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 0, 1, &rt), MODECONN_STATUS_OK);
    for (i = 2; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq || (size_t)(eq - argv[i]) >= sizeof name) {
            fprintf(stderr, "not NAME=BUNDLE: %s\n", argv[i]);
            return 2;
        }
        memcpy(name, argv[i], (size_t)(eq - argv[i]));
        name[eq - argv[i]] = '\0';
        dump(rt, argv[1], name, eq + 1);
    }
    EXPECT_STATUS(modeconn_runtime_free(rt), MODECONN_STATUS_OK);
    return failures ? 1 : 0;
}
