/* Predicts with every sampling mode on a curve and a snapshot bundle and writes the results
 * for ffi/tests/c_api.rs to compare with the Rust API.
 *
 *   predict CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR
 *
 * For each case NAME it writes OUTDIR/NAME.prob (float32 [batch, classes]) and, as the case
 * asks, NAME.per (float32 [members, batch, classes]), NAME.members (float64: t or index),
 * NAME.ent (float32 [batch], the entropy output) and NAME.dis (float32 [batch], the
 * disagreement output, shared modes only). Every case also predicts the probabilities alone and
 * checks they are the same. The cases grid5_nostatic* and all_one_ent predict with ensembles
 * opened by modeconn_ensemble_open_with (no static sessions; one session per model). It prints
 * the bundles' properties on stdout. */
#include "common.h"

/* The outputs a case asks for besides the probabilities. */
enum { PER = 1, MEMBERS = 2, ENTROPY = 4, DISAGREEMENT = 8 };

static modeconn_input input;
static const char *outdir;

/* Sizes a prediction with modeconn_ensemble_output_sizes, fills the outputs `want` asks for in
 * one call, writes them, and checks that the probabilities alone are the same. */
static void run_case(const modeconn_ensemble *ens, const char *name, const modeconn_sampling *s,
                     unsigned want) {
    modeconn_output_sizes n = {0};
    modeconn_outputs out = {0};
    float *alone;
    int per_sample = s->mode == MODECONN_SAMPLING_MODE_RANDOMIZED ||
                     s->mode == MODECONN_SAMPLING_MODE_KEYED;
    size_t i;

    EXPECT_STATUS(modeconn_ensemble_output_sizes(ens, s, input.batch, &n), MODECONN_STATUS_OK);
    CHECK(n.entropy == input.batch);
    CHECK(n.disagreement == (per_sample ? 0 : input.batch));
    CHECK(per_sample ? n.per_member == 0 && n.members == input.batch
                     : n.per_member == n.members * n.probabilities);
    out.probabilities = (float *)calloc(n.probabilities + 1, sizeof(float));
    out.probabilities_len = n.probabilities;
    alone = (float *)calloc(n.probabilities + 1, sizeof(float));
    if (want & PER) {
        out.per_member = (float *)calloc(n.per_member + 1, sizeof(float));
        out.per_member_len = n.per_member;
    }
    if (want & MEMBERS) {
        out.members = (modeconn_member *)calloc(n.members + 1, sizeof(modeconn_member));
        out.members_len = n.members;
    }
    if (want & ENTROPY) {
        out.entropy = (float *)malloc((n.entropy + 1) * sizeof(float));
        out.entropy_len = n.entropy;
        for (i = 0; out.entropy && i < n.entropy; i++)
            out.entropy[i] = -1.0f;
    }
    if (want & DISAGREEMENT) {
        out.disagreement = (float *)malloc((n.disagreement + 1) * sizeof(float));
        out.disagreement_len = n.disagreement;
        for (i = 0; out.disagreement && i < n.disagreement; i++)
            out.disagreement[i] = -1.0f;
    }
    EXPECT_STATUS(modeconn_ensemble_predict(ens, &input, s, &out), MODECONN_STATUS_OK);
    write_output(outdir, name, "prob", out.probabilities, sizeof(float), n.probabilities);
    if (want & PER)
        write_output(outdir, name, "per", out.per_member, sizeof(float), n.per_member);
    if (want & MEMBERS)
        write_members(outdir, name, out.members, n.members);
    if (want & ENTROPY) {
        for (i = 0; i < n.entropy; i++)
            CHECK(out.entropy[i] >= 0.0f);
        write_output(outdir, name, "ent", out.entropy, sizeof(float), n.entropy);
    }
    if (want & DISAGREEMENT) {
        for (i = 0; i < n.disagreement; i++)
            CHECK(out.disagreement[i] >= 0.0f && out.disagreement[i] <= 1.0f);
        write_output(outdir, name, "dis", out.disagreement, sizeof(float), n.disagreement);
    }

    /* The optional outputs do not change the probabilities. */
    {
        modeconn_outputs only = {0};
        only.probabilities = alone;
        only.probabilities_len = n.probabilities;
        EXPECT_STATUS(modeconn_ensemble_predict(ens, &input, s, &only), MODECONN_STATUS_OK);
        CHECK(memcmp(alone, out.probabilities, n.probabilities * sizeof(float)) == 0);
    }
    free(alone);
    free(out.probabilities);
    free(out.per_member);
    free(out.members);
    free(out.entropy);
    free(out.disagreement);
}

static void describe(const modeconn_ensemble *ens, const char *label) {
    modeconn_kind kind = 99;
    modeconn_basis basis = 99;
    modeconn_provider provider = 99;
    size_t points = 0, classes = 0, rank = 0;
    int64_t shape[8];
    EXPECT_STATUS(modeconn_ensemble_kind(ens, &kind), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_basis(ens, &basis), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_points(ens, &points), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_classes(ens, &classes), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_provider(ens, &provider), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_input_shape(ens, NULL, 0, &rank), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_input_shape(ens, shape, 8, &rank), MODECONN_STATUS_OK);
    print_description(label, (unsigned)kind, (unsigned)basis, points, classes,
                      (unsigned)provider, shape, rank);
}

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL;
    modeconn_ensemble *curve = NULL, *snaps = NULL, *curve_nostatic = NULL, *snaps_one = NULL;
    float *data;
    double ts[3] = {0.0, 0.3, 1.0};
    size_t pick[2] = {2, 0}, i;
    uint8_t key[32];
    const unsigned all = PER | MEMBERS | ENTROPY | DISAGREEMENT;
    const unsigned per_sample = MEMBERS | ENTROPY;

    if (argc != 6) {
        fprintf(stderr, "usage: predict CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR\n");
        return 2;
    }
    data = read_floats(argv[3], &input.len);
    input.data = data;
    input.batch = (size_t)strtoul(argv[4], NULL, 10);
    outdir = argv[5];
    for (i = 0; i < 32; i++)
        key[i] = (uint8_t)i;

    printf("version %s abi %u header %d.%d.%d\n", modeconn_version(),
           (unsigned)modeconn_abi_version(), MODECONN_VERSION_MAJOR, MODECONN_VERSION_MINOR,
           MODECONN_VERSION_PATCH);
    CHECK(modeconn_abi_version() == MODECONN_ABI_VERSION);
    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 0, 1, &rt), MODECONN_STATUS_OK);
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

    {
        const struct {
            const char *name;
            const modeconn_ensemble *ens;
            modeconn_sampling sampling;
            unsigned want;
        } cases[] = {
            {"at", curve, {.mode = MODECONN_SAMPLING_MODE_AT, .ts = ts, .ts_len = 3}, all},
            {"grid5", curve, {.mode = MODECONN_SAMPLING_MODE_GRID, .count = 5}, all},
            {"uniform", curve, {.mode = MODECONN_SAMPLING_MODE_UNIFORM, .count = 4, .seed = 7},
             all},
            {"arc", curve, {.mode = MODECONN_SAMPLING_MODE_ARC_UNIFORM, .count = 4, .seed = 9},
             all & ~PER},
            {"randomized",
             curve,
             {.mode = MODECONN_SAMPLING_MODE_RANDOMIZED, .count = 5, .seeded = 1, .seed = 11},
             per_sample},
            {"keyed", curve, {.mode = MODECONN_SAMPLING_MODE_KEYED, .count = 5, .key = key},
             per_sample},
            {"all", snaps, {.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS}, all},
            {"members",
             snaps,
             {.mode = MODECONN_SAMPLING_MODE_MEMBERS, .members = pick, .members_len = 2},
             all},
            {"snap_randomized",
             snaps,
             {.mode = MODECONN_SAMPLING_MODE_RANDOMIZED, .seeded = 1, .seed = 3},
             per_sample},
            {"snap_keyed", snaps, {.mode = MODECONN_SAMPLING_MODE_KEYED, .key = key}, per_sample},
            /* The entropy cases: probabilities and entropy only. */
            {"grid5_ent", curve, {.mode = MODECONN_SAMPLING_MODE_GRID, .count = 5}, ENTROPY},
            {"grid5_nostatic", curve_nostatic, {.mode = MODECONN_SAMPLING_MODE_GRID, .count = 5},
             all},
            {"grid5_nostatic_ent",
             curve_nostatic,
             {.mode = MODECONN_SAMPLING_MODE_GRID, .count = 5},
             ENTROPY},
            {"randomized_ent",
             curve,
             {.mode = MODECONN_SAMPLING_MODE_RANDOMIZED, .count = 5, .seeded = 1, .seed = 11},
             ENTROPY},
            {"all_ent", snaps, {.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS}, ENTROPY},
            {"all_one_ent", snaps_one, {.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS}, ENTROPY},
            /* Disagreement without the other optional outputs. */
            {"all_one_dis", snaps_one, {.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS},
             DISAGREEMENT},
        };
        for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_case(cases[i].ens, cases[i].name, &cases[i].sampling, cases[i].want);
    }

    EXPECT_STATUS(modeconn_ensemble_free(curve), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_free(snaps), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_free(curve_nostatic), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_free(snaps_one), MODECONN_STATUS_OK);
    free(data);
    return failures ? 1 : 0;
}
