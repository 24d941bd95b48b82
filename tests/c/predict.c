/* Predicts with every sampling mode on a curve and a snapshot bundle and writes the results
 * for ffi/tests/c_api.rs to compare with the Rust API.
 *
 *   predict CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR
 *
 * For each case NAME it writes OUTDIR/NAME.prob (float32 [batch, classes]), and where asked
 * NAME.per (float32 [members, batch, classes]) and NAME.members (float64: t or index). The
 * entropy cases (modeconn_ensemble_predict_entropy) write NAME.prob and NAME.ent (float32
 * [batch]); the case grid5_nostatic predicts with an ensemble opened by
 * modeconn_ensemble_open_with without static sessions. It prints the bundles' properties on
 * stdout. */
#include "common.h"

static const float *input;
static size_t input_len, batch;
static const char *outdir;

static void run_case(modeconn_ensemble *ens, const char *name, const modeconn_sampling *s,
                     int want_per, int want_members) {
    size_t n_prob = 0, n_per = 0, n_mem = 0, i;
    float *prob, *per = NULL;
    modeconn_member *mem = NULL;
    double *mem_values;
    char file[256];

    EXPECT_STATUS(modeconn_ensemble_predict_sizes(ens, s, batch, &n_prob, &n_per, &n_mem),
                  MODECONN_STATUS_OK);
    prob = (float *)calloc(n_prob + 1, sizeof(float));
    if (want_per)
        per = (float *)calloc(n_per + 1, sizeof(float));
    if (want_members)
        mem = (modeconn_member *)calloc(n_mem + 1, sizeof(modeconn_member));
    EXPECT_STATUS(modeconn_ensemble_predict(ens, input, input_len, batch, s, prob, n_prob, per,
                                            n_per, mem, n_mem),
                  MODECONN_STATUS_OK);
    snprintf(file, sizeof file, "%s.prob", name);
    write_file(outdir, file, prob, sizeof(float), n_prob);
    if (want_per) {
        snprintf(file, sizeof file, "%s.per", name);
        write_file(outdir, file, per, sizeof(float), n_per);
    }
    if (want_members) {
        mem_values = (double *)calloc(n_mem + 1, sizeof(double));
        for (i = 0; i < n_mem; i++)
            mem_values[i] =
                mem[i].kind == MODECONN_MEMBER_KIND_T ? mem[i].t : (double)mem[i].index;
        snprintf(file, sizeof file, "%s.members", name);
        write_file(outdir, file, mem_values, sizeof(double), n_mem);
        free(mem_values);
    }
    free(prob);
    free(per);
    free(mem);
}

/* Predicts with modeconn_ensemble_predict_entropy; writes NAME.prob and NAME.ent, and checks
 * that the probabilities are those of modeconn_ensemble_predict. */
static void run_entropy_case(modeconn_ensemble *ens, const char *name,
                             const modeconn_sampling *s) {
    size_t n_prob = 0, i;
    float *prob, *prob2, *ent;
    char file[256];

    EXPECT_STATUS(modeconn_ensemble_predict_sizes(ens, s, batch, &n_prob, NULL, NULL),
                  MODECONN_STATUS_OK);
    prob = (float *)calloc(n_prob + 1, sizeof(float));
    prob2 = (float *)calloc(n_prob + 1, sizeof(float));
    ent = (float *)calloc(batch + 1, sizeof(float));
    for (i = 0; i < batch; i++)
        ent[i] = -1.0f;
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(ens, input, input_len, batch, s, prob, n_prob,
                                                    ent, batch),
                  MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_predict(ens, input, input_len, batch, s, prob2, n_prob, NULL,
                                            0, NULL, 0),
                  MODECONN_STATUS_OK);
    CHECK(memcmp(prob, prob2, n_prob * sizeof(float)) == 0);
    for (i = 0; i < batch; i++)
        CHECK(ent[i] >= 0.0f);
    snprintf(file, sizeof file, "%s.prob", name);
    write_file(outdir, file, prob, sizeof(float), n_prob);
    snprintf(file, sizeof file, "%s.ent", name);
    write_file(outdir, file, ent, sizeof(float), batch);
    free(prob);
    free(prob2);
    free(ent);
}

static void describe(modeconn_ensemble *ens, const char *label) {
    uint32_t kind = 99, basis = 99, provider = 99;
    size_t points = 0, classes = 0, rank = 0, i;
    int64_t shape[8];
    EXPECT_STATUS(modeconn_ensemble_kind(ens, &kind), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_basis(ens, &basis), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_points(ens, &points), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_classes(ens, &classes), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_provider(ens, &provider), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_input_shape(ens, NULL, 0, &rank), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_input_shape(ens, shape, 8, &rank), MODECONN_STATUS_OK);
    printf("%s kind=%u basis=%u points=%zu classes=%zu provider=%u shape=", label,
           (unsigned)kind, (unsigned)basis, points, classes, (unsigned)provider);
    for (i = 0; i < rank; i++)
        printf("%s%lld", i ? "," : "", (long long)shape[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL;
    modeconn_ensemble *curve = NULL, *snaps = NULL, *curve_nostatic = NULL, *snaps_one = NULL;
    modeconn_sampling s;
    float *data;
    double ts[3] = {0.0, 0.3, 1.0};
    size_t pick[2] = {2, 0};
    uint8_t key[32];
    int i;

    if (argc != 6) {
        fprintf(stderr, "usage: predict CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR\n");
        return 2;
    }
    data = read_floats(argv[3], &input_len);
    input = data;
    batch = (size_t)strtoul(argv[4], NULL, 10);
    outdir = argv[5];
    for (i = 0; i < 32; i++)
        key[i] = (uint8_t)i;

    printf("version %s abi %u header %d.%d.%d\n", modeconn_version(),
           (unsigned)modeconn_abi_version(), MODECONN_VERSION_MAJOR, MODECONN_VERSION_MINOR,
           MODECONN_VERSION_PATCH);
    CHECK(modeconn_abi_version() == MODECONN_ABI_VERSION);
    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 1, &rt), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[1], &curve), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[2], &snaps), MODECONN_STATUS_OK);
    /* No static sessions, the default number of sessions. */
    EXPECT_STATUS(modeconn_ensemble_open_with(rt, argv[1], 0, 0, &curve_nostatic),
                  MODECONN_STATUS_OK);
    /* A small static budget, one session per model. */
    EXPECT_STATUS(modeconn_ensemble_open_with(rt, argv[2], 1 << 20, 1, &snaps_one),
                  MODECONN_STATUS_OK);
    /* Ensembles keep what they need of the runtime. */
    EXPECT_STATUS(modeconn_runtime_free(rt), MODECONN_STATUS_OK);
    if (failures)
        return 1;
    describe(curve, "curve");
    describe(snaps, "snapshots");

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_AT;
    s.ts = ts;
    s.ts_len = 3;
    run_case(curve, "at", &s, 1, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 5;
    run_case(curve, "grid5", &s, 1, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_UNIFORM;
    s.count = 4;
    s.seed = 7;
    run_case(curve, "uniform", &s, 1, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_ARC_UNIFORM;
    s.count = 4;
    s.seed = 9;
    run_case(curve, "arc", &s, 0, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_RANDOMIZED;
    s.count = 5;
    s.seeded = 1;
    s.seed = 11;
    run_case(curve, "randomized", &s, 0, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_KEYED;
    s.count = 5;
    s.key = key;
    run_case(curve, "keyed", &s, 0, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    run_case(snaps, "all", &s, 1, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_MEMBERS;
    s.members = pick;
    s.members_len = 2;
    run_case(snaps, "members", &s, 1, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_RANDOMIZED;
    s.seeded = 1;
    s.seed = 3;
    run_case(snaps, "snap_randomized", &s, 0, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_KEYED;
    s.key = key;
    run_case(snaps, "snap_keyed", &s, 0, 1);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 5;
    run_entropy_case(curve, "grid5_ent", &s);
    run_case(curve_nostatic, "grid5_nostatic", &s, 1, 1);
    run_entropy_case(curve_nostatic, "grid5_nostatic_ent", &s);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_RANDOMIZED;
    s.count = 5;
    s.seeded = 1;
    s.seed = 11;
    run_entropy_case(curve, "randomized_ent", &s);

    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    run_entropy_case(snaps, "all_ent", &s);
    run_entropy_case(snaps_one, "all_one_ent", &s);

    EXPECT_STATUS(modeconn_ensemble_free(curve), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_free(snaps), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_free(curve_nostatic), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_free(snaps_one), MODECONN_STATUS_OK);
    free(data);
    return failures ? 1 : 0;
}
