/* Misuse of the C API is answered with a status and a message, never a crash.
 *
 *   misuse CURVE SNAPSHOTS CORRUPT MISSING OUTDIR LABELED
 *
 * LABELED is a snapshot bundle with labels, preprocessing and provenance (4 channels, 3
 * labels). */
#include "common.h"

#include <math.h>

static void check_not_ok(modeconn_status s, const char *what) {
    const char *msg = modeconn_last_error_message();
    if (s == MODECONN_STATUS_OK || s == MODECONN_STATUS_PANIC || msg[0] == '\0') {
        fprintf(stderr, "%s: unexpected %s (%s)\n", what, modeconn_status_name(s), msg);
        failures++;
    } else {
        printf("  %-34s %s\n", modeconn_status_name(s), msg);
    }
}

/* Sets n floats of p to -1 (to see that a failed call leaves its outputs alone). */
static void poison(float *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = -1.0f;
}

static int untouched(const float *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != -1.0f)
            return 0;
    return 1;
}

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL;
    modeconn_ensemble *curve = NULL, *snaps = NULL, *labeled = NULL, *none = NULL;
    modeconn_sampling s;
    modeconn_member member, members[5];
    modeconn_output_sizes sizes, unset;
    float data[2 * 4], prob[2 * 3], per[5 * 2 * 3], ent[2], dis[2];
    modeconn_input in = {data, 8, 2}, bad;
    modeconn_outputs out = {prob, 6, NULL, 0, NULL, 0, NULL, 0, NULL, 0}, o;
    double ts[2] = {0.25, 1.5}, temperature = -1.0, mean[4], std[4];
    size_t idx[2] = {0, 5};
    size_t n = 0, rank = 0, i;
    modeconn_kind kind = 0;
    int64_t shape[1];
    const char *text = NULL;
    char path[4096], *report = NULL;
    FILE *f;

    if (argc != 7) {
        fprintf(stderr, "usage: misuse CURVE SNAPSHOTS CORRUPT MISSING OUTDIR LABELED\n");
        return 2;
    }
    for (i = 0; i < 8; i++)
        data[i] = (float)i / 8.0f;

    printf("runtime\n");
    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 0, 1, NULL),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_runtime_new(NULL, 7, 0, 1, &rt), MODECONN_STATUS_INVALID_ARGUMENT);
    CHECK(rt == NULL);
    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 0, 1, &rt), MODECONN_STATUS_OK);
    CHECK(modeconn_last_error_message()[0] == '\0');
    EXPECT_STATUS(modeconn_runtime_free(NULL), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_free(NULL), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_string_free(NULL), MODECONN_STATUS_OK);

    printf("open\n");
    EXPECT_STATUS(modeconn_ensemble_open(NULL, argv[1], &none), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_open(rt, NULL, &none), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[1], NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[4], &none), MODECONN_STATUS_IO);
    EXPECT_STATUS(modeconn_ensemble_open(rt, "\xff\xfe.safetensors", &none), MODECONN_STATUS_UTF8);
    check_not_ok(modeconn_ensemble_open(rt, argv[3], &none), "corrupt bundle");
    CHECK(none == NULL);
    /* A handle of the wrong type is not a live handle of this type. */
    EXPECT_STATUS(modeconn_ensemble_open((const modeconn_runtime *)data, argv[1], &none),
                  MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_open_with(NULL, argv[1], 0, 0, &none),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_open_with(rt, NULL, 0, 0, &none),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_open_with(rt, argv[1], 0, 0, NULL),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_open_with(rt, argv[4], 0, 0, &none), MODECONN_STATUS_IO);
    EXPECT_STATUS(modeconn_ensemble_open_with(rt, "\xff\xfe.safetensors", 0, 0, &none),
                  MODECONN_STATUS_UTF8);
    check_not_ok(modeconn_ensemble_open_with(rt, argv[3], 0, 1, &none), "corrupt bundle (with)");
    EXPECT_STATUS(modeconn_ensemble_open_with((const modeconn_runtime *)data, argv[1], 0, 0,
                                              &none),
                  MODECONN_STATUS_INVALID_HANDLE);
    CHECK(none == NULL);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[1], &curve), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[2], &snaps), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[6], &labeled), MODECONN_STATUS_OK);

    printf("queries\n");
    EXPECT_STATUS(modeconn_ensemble_kind(NULL, &kind), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_kind(curve, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_classes(curve, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_input_shape(curve, NULL, 0, NULL),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_input_shape(curve, shape, 1, &rank),
                  MODECONN_STATUS_BUFFER_TOO_SMALL);
    CHECK(rank == 2);
    EXPECT_STATUS(modeconn_ensemble_input_shape(curve, NULL, 3, &rank),
                  MODECONN_STATUS_NULL_ARGUMENT);
    CHECK(strcmp(modeconn_status_name(12345), "MODECONN_STATUS_UNKNOWN") == 0);

    printf("metadata\n");
    EXPECT_STATUS(modeconn_ensemble_static_members(curve, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_static_members(NULL, &n), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_temperature(curve, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_temperature(NULL, &temperature),
                  MODECONN_STATUS_NULL_ARGUMENT);
    CHECK(temperature == -1.0);
    EXPECT_STATUS(modeconn_ensemble_input_name(curve, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_input_name(NULL, &text), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_output_name(curve, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_output_name(NULL, &text), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_label_count(curve, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_label_count(NULL, &n), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_label(labeled, 0, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_label(NULL, 0, &text), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_provenance(labeled, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_provenance(NULL, &text), MODECONN_STATUS_NULL_ARGUMENT);
    CHECK(text == NULL); /* out-parameters are written only on success */
    /* Label indices: one past the last, and any index of a bundle without labels. */
    EXPECT_STATUS(modeconn_ensemble_label_count(labeled, &n), MODECONN_STATUS_OK);
    CHECK(n == 3);
    EXPECT_STATUS(modeconn_ensemble_label(labeled, 2, &text), MODECONN_STATUS_OK);
    CHECK(text != NULL);
    text = NULL;
    EXPECT_STATUS(modeconn_ensemble_label(labeled, 3, &text), MODECONN_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_label(labeled, (size_t)-1, &text),
                  MODECONN_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_label(curve, 0, &text), MODECONN_STATUS_INVALID_ARGUMENT);
    CHECK(text == NULL);
    EXPECT_STATUS(modeconn_ensemble_provenance(curve, &text), MODECONN_STATUS_OK);
    CHECK(text == NULL); /* none recorded */
    /* Preprocessing: the count only, a buffer too small, NULL buffers with a capacity. */
    EXPECT_STATUS(modeconn_ensemble_preprocess(labeled, mean, std, 4, NULL),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_preprocess(NULL, NULL, NULL, 0, &n),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_preprocess(labeled, NULL, NULL, 0, &n), MODECONN_STATUS_OK);
    CHECK(n == 4);
    n = 0;
    for (i = 0; i < 4; i++)
        mean[i] = std[i] = -1.0;
    EXPECT_STATUS(modeconn_ensemble_preprocess(labeled, mean, std, 3, &n),
                  MODECONN_STATUS_BUFFER_TOO_SMALL);
    CHECK(n == 4); /* the count is written, the buffers are not */
    for (i = 0; i < 4; i++)
        CHECK(mean[i] == -1.0 && std[i] == -1.0);
    EXPECT_STATUS(modeconn_ensemble_preprocess(labeled, NULL, std, 4, &n),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_preprocess(labeled, mean, NULL, 4, &n),
                  MODECONN_STATUS_NULL_ARGUMENT);
    for (i = 0; i < 4; i++)
        CHECK(mean[i] == -1.0 && std[i] == -1.0);
    EXPECT_STATUS(modeconn_ensemble_preprocess(labeled, mean, std, 4, &n), MODECONN_STATUS_OK);
    CHECK(std[0] > 0.0);
    EXPECT_STATUS(modeconn_ensemble_preprocess(curve, mean, std, 4, &n), MODECONN_STATUS_OK);
    CHECK(n == 0); /* none asked for */

    printf("output_sizes\n");
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 5;
    memset(&unset, 0xab, sizeof unset);
    sizes = unset;
    EXPECT_STATUS(modeconn_ensemble_output_sizes(NULL, &s, 2, &sizes),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, NULL, 2, &sizes),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, NULL),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_output_sizes((const modeconn_ensemble *)data, &s, 2, &sizes),
                  MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, (size_t)-1, &sizes),
                  MODECONN_STATUS_INPUT);
    s.count = 1;
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, &sizes),
                  MODECONN_STATUS_INVALID_ARGUMENT);
    s.mode = 42;
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, &sizes),
                  MODECONN_STATUS_INVALID_ARGUMENT);
    s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, &sizes), MODECONN_STATUS_SAMPLING);
    s.mode = MODECONN_SAMPLING_MODE_AT;
    s.ts = NULL;
    s.ts_len = 2;
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, &sizes),
                  MODECONN_STATUS_NULL_ARGUMENT);
    CHECK(memcmp(&sizes, &unset, sizeof sizes) == 0); /* untouched on failure */
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 5;
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, &sizes), MODECONN_STATUS_OK);
    CHECK(sizes.probabilities == 6 && sizes.per_member == 30 && sizes.members == 5 &&
          sizes.entropy == 2 && sizes.disagreement == 2);
    s.mode = MODECONN_SAMPLING_MODE_RANDOMIZED;
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, &sizes), MODECONN_STATUS_OK);
    CHECK(sizes.probabilities == 6 && sizes.per_member == 0 && sizes.members == 2 &&
          sizes.entropy == 2 && sizes.disagreement == 0);

    printf("counts beyond what a query may use\n");
    {
        /* A count of 10^10 in these modes aborted the host process on a failed allocation. */
        static const uint8_t key[32] = {1};
        const uint32_t modes[] = {MODECONN_SAMPLING_MODE_GRID, MODECONN_SAMPLING_MODE_UNIFORM,
                                  MODECONN_SAMPLING_MODE_ARC_UNIFORM,
                                  MODECONN_SAMPLING_MODE_RANDOMIZED, MODECONN_SAMPLING_MODE_KEYED};
        const size_t counts[] = {(size_t)10000000000ULL, (size_t)1 << 61, (size_t)-1, 65537};
        size_t m, c;
        for (m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            for (c = 0; c < sizeof counts / sizeof counts[0]; c++) {
                memset(&s, 0, sizeof s);
                s.mode = modes[m];
                s.count = counts[c];
                s.key = key;
                EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, &sizes),
                              MODECONN_STATUS_INVALID_ARGUMENT);
                EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out),
                              MODECONN_STATUS_INVALID_ARGUMENT);
            }
        }
        /* Batch 2^63 wrapped to 0 floats. */
        memset(&s, 0, sizeof s);
        s.mode = MODECONN_SAMPLING_MODE_GRID;
        s.count = 5;
        EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, (size_t)1 << 63, &sizes),
                      MODECONN_STATUS_INPUT);
    }

    printf("predict\n");
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 5;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, NULL, &s, &out), MODECONN_STATUS_NULL_ARGUMENT);
    bad = in;
    bad.data = NULL;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &bad, &s, &out), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, NULL, &out),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    o = out;
    o.probabilities = NULL;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &o), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict(NULL, &in, &s, &out), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict((const modeconn_ensemble *)data, &in, &s, &out),
                  MODECONN_STATUS_INVALID_HANDLE);
    /* Each buffer one element too small; nothing is written. */
    poison(prob, 6);
    poison(per, 30);
    poison(ent, 2);
    poison(dis, 2);
    {
        const modeconn_outputs small[] = {
            {prob, 5, NULL, 0, NULL, 0, NULL, 0, NULL, 0},
            {prob, 6, per, 29, NULL, 0, NULL, 0, NULL, 0},
            {prob, 6, NULL, 0, members, 4, NULL, 0, NULL, 0},
            {prob, 6, NULL, 0, NULL, 0, ent, 1, NULL, 0},
            {prob, 6, NULL, 0, NULL, 0, NULL, 0, dis, 1},
            /* Big enough optional buffers beside a probabilities buffer too small. */
            {prob, 5, per, 30, members, 5, ent, 2, dis, 2},
        };
        for (i = 0; i < sizeof small / sizeof small[0]; i++)
            EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &small[i]),
                          MODECONN_STATUS_BUFFER_TOO_SMALL);
    }
    /* Inputs of the wrong length, and an empty batch. */
    o = out;
    o.entropy = ent;
    o.entropy_len = 2;
    bad = in;
    bad.len = 7;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &bad, &s, &o), MODECONN_STATUS_INPUT);
    bad.len = 0;
    bad.batch = 0;
    o.entropy_len = 0;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &bad, &s, &o), MODECONN_STATUS_INPUT);
    bad.len = 8;
    bad.batch = 3;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &bad, &s, &o), MODECONN_STATUS_INPUT);
    CHECK(untouched(prob, 6) && untouched(per, 30) && untouched(ent, 2) && untouched(dis, 2));
    /* A NULL optional buffer is an output not wanted, whatever its capacity. */
    o = out;
    o.entropy_len = 2;
    o.disagreement_len = 2;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &o), MODECONN_STATUS_OK);
    CHECK(untouched(ent, 2) && untouched(dis, 2));
    o = out;
    o.per_member = per;
    o.per_member_len = 30;
    o.members = members;
    o.members_len = 5;
    o.entropy = ent;
    o.entropy_len = 2;
    o.disagreement = dis;
    o.disagreement_len = 2;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &o), MODECONN_STATUS_OK);
    for (i = 0; i < 2; i++) {
        CHECK(ent[i] >= 0.0f && ent[i] <= 1.0986124f + 1e-5f); /* at most ln(3) */
        CHECK(dis[i] >= 0.0f && dis[i] <= 1.0f);
    }
    CHECK(members[0].kind == MODECONN_MEMBER_KIND_T && members[0].t == 0.0);
    CHECK(members[4].kind == MODECONN_MEMBER_KIND_T && members[4].t == 1.0);

    printf("non-finite input\n");
    /* NaN or infinite inputs gave NaN probabilities and OK, though NOT_FINITE is documented. */
    poison(prob, 6);
    data[5] = nanf("");
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_NOT_FINITE);
    data[5] = HUGE_VALF;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_NOT_FINITE);
    CHECK(untouched(prob, 6));
    data[5] = 5.0f / 8.0f;

    printf("sampling\n");
    s.count = 1;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out),
                  MODECONN_STATUS_INVALID_ARGUMENT);
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_AT;
    s.ts = ts;
    s.ts_len = 2;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_T_OUT_OF_RANGE);
    ts[1] = nan("");
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_T_OUT_OF_RANGE);
    ts[1] = -0.5;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_T_OUT_OF_RANGE);
    s.ts = NULL;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_NULL_ARGUMENT);
    s.ts_len = 0;
    check_not_ok(modeconn_ensemble_predict(curve, &in, &s, &out), "empty t list");
    memset(&s, 0, sizeof s);
    s.mode = 42;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out),
                  MODECONN_STATUS_INVALID_ARGUMENT);
    s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_SAMPLING);
    s.mode = MODECONN_SAMPLING_MODE_KEYED;
    s.count = 5;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_NULL_ARGUMENT);
    /* Per-member probabilities and disagreement do not exist in the per-sample modes, on a
     * curve or a snapshot set, whatever the capacity given. */
    s.mode = MODECONN_SAMPLING_MODE_RANDOMIZED;
    for (i = 0; i < 4; i++) {
        modeconn_sampling ps = s;
        modeconn_ensemble *e = i < 2 ? curve : snaps;
        uint8_t key[32] = {0};
        ps.mode = i % 2 ? MODECONN_SAMPLING_MODE_KEYED : MODECONN_SAMPLING_MODE_RANDOMIZED;
        ps.count = e == curve ? 5 : 0;
        ps.key = key;
        o = out;
        o.per_member = per;
        o.per_member_len = 30;
        EXPECT_STATUS(modeconn_ensemble_predict(e, &in, &ps, &o), MODECONN_STATUS_SAMPLING);
        o.per_member_len = 0;
        EXPECT_STATUS(modeconn_ensemble_predict(e, &in, &ps, &o), MODECONN_STATUS_SAMPLING);
        o = out;
        o.disagreement = dis;
        o.disagreement_len = 2;
        EXPECT_STATUS(modeconn_ensemble_predict(e, &in, &ps, &o), MODECONN_STATUS_SAMPLING);
        /* The outputs they do have. */
        o.disagreement = NULL;
        o.members = members;
        o.members_len = 2;
        o.entropy = ent;
        o.entropy_len = 2;
        EXPECT_STATUS(modeconn_ensemble_predict(e, &in, &ps, &o), MODECONN_STATUS_OK);
        CHECK(members[0].kind ==
              (e == curve ? MODECONN_MEMBER_KIND_T : MODECONN_MEMBER_KIND_INDEX));
    }
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_MEMBERS;
    s.members = idx;
    s.members_len = 2;
    EXPECT_STATUS(modeconn_ensemble_predict(snaps, &in, &s, &out),
                  MODECONN_STATUS_MEMBER_OUT_OF_RANGE);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 3;
    EXPECT_STATUS(modeconn_ensemble_predict(snaps, &in, &s, &out), MODECONN_STATUS_SAMPLING);

    printf("materialize\n");
    member.kind = MODECONN_MEMBER_KIND_T;
    member.t = 0.5;
    member.index = 0;
    snprintf(path, sizeof path, "%s/member.onnx", argv[5]);
    EXPECT_STATUS(modeconn_ensemble_materialize(curve, &member, path), MODECONN_STATUS_OK);
    f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    EXPECT_STATUS(modeconn_ensemble_materialize(curve, NULL, path), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_materialize(curve, &member, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_materialize(curve, &member, "/nonexistent/dir/m.onnx"),
                  MODECONN_STATUS_IO);
    member.t = 2.0;
    EXPECT_STATUS(modeconn_ensemble_materialize(curve, &member, path),
                  MODECONN_STATUS_T_OUT_OF_RANGE);
    member.kind = MODECONN_MEMBER_KIND_INDEX;
    EXPECT_STATUS(modeconn_ensemble_materialize(curve, &member, path), MODECONN_STATUS_SAMPLING);
    member.index = 7;
    EXPECT_STATUS(modeconn_ensemble_materialize(snaps, &member, path),
                  MODECONN_STATUS_MEMBER_OUT_OF_RANGE);
    member.kind = 9;
    EXPECT_STATUS(modeconn_ensemble_materialize(snaps, &member, path),
                  MODECONN_STATUS_INVALID_ARGUMENT);

    printf("trainer\n");
    EXPECT_STATUS(modeconn_train("/nonexistent/libmodeconn_trainer.so", TRAIN_JOB, NULL, NULL,
                                 &report),
                  MODECONN_STATUS_TRAINER_UNAVAILABLE);
    /* The job is checked first: a bad one needs no plugin to be refused. */
    EXPECT_STATUS(modeconn_train("/nonexistent/libmodeconn_trainer.so", "{}", NULL, NULL, &report),
                  MODECONN_STATUS_INVALID_JOB);
    EXPECT_STATUS(modeconn_train(NULL, "{}", NULL, NULL, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_train(NULL, NULL, NULL, NULL, &report), MODECONN_STATUS_NULL_ARGUMENT);
    CHECK(report == NULL);

    printf("closed handles\n");
    EXPECT_STATUS(modeconn_ensemble_free(curve), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_kind(curve, &kind), MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_input_name(curve, &text), MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_label_count(curve, &n), MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_preprocess(curve, NULL, NULL, 0, &n),
                  MODECONN_STATUS_INVALID_HANDLE);
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 5;
    EXPECT_STATUS(modeconn_ensemble_output_sizes(curve, &s, 2, &sizes),
                  MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &out), MODECONN_STATUS_INVALID_HANDLE);
    o = out;
    o.entropy = ent;
    o.entropy_len = 2;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, &in, &s, &o), MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_free(curve), MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_runtime_free(rt), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[1], &none), MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_open_with(rt, argv[1], 0, 0, &none),
                  MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_runtime_free(rt), MODECONN_STATUS_INVALID_HANDLE);
    /* The snapshot ensemble outlives its runtime. */
    s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    EXPECT_STATUS(modeconn_ensemble_predict(snaps, &in, &s, &out), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_points(snaps, &n), MODECONN_STATUS_OK);
    CHECK(n == 3);
    EXPECT_STATUS(modeconn_ensemble_free(snaps), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_free(labeled), MODECONN_STATUS_OK);

    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
