/* Misuse of the C API is answered with a status and a message, never a crash.
 *
 *   misuse CURVE SNAPSHOTS CORRUPT MISSING OUTDIR */
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

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL, *rt2 = NULL;
    modeconn_ensemble *curve = NULL, *snaps = NULL, *none = NULL;
    modeconn_sampling s;
    modeconn_member member, members[2];
    float input[2 * 4], prob[2 * 3], per[5 * 2 * 3], ent[2];
    double ts[2] = {0.25, 1.5};
    size_t idx[2] = {0, 5};
    size_t n = 0, rank = 0, i;
    uint32_t kind = 0;
    int64_t shape[1];
    char path[4096], *report = NULL;
    FILE *f;

    if (argc != 6) {
        fprintf(stderr, "usage: misuse CURVE SNAPSHOTS CORRUPT MISSING OUTDIR\n");
        return 2;
    }
    for (i = 0; i < 8; i++)
        input[i] = (float)i / 8.0f;

    printf("runtime\n");
    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 1, NULL),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_runtime_new(NULL, 7, 1, &rt), MODECONN_STATUS_INVALID_ARGUMENT);
    CHECK(rt == NULL);
    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 1, &rt), MODECONN_STATUS_OK);
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
    EXPECT_STATUS(modeconn_ensemble_open((const modeconn_runtime *)input, argv[1], &none),
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
    EXPECT_STATUS(modeconn_ensemble_open_with((const modeconn_runtime *)input, argv[1], 0, 0,
                                              &none),
                  MODECONN_STATUS_INVALID_HANDLE);
    CHECK(none == NULL);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[1], &curve), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[2], &snaps), MODECONN_STATUS_OK);

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

    printf("predict\n");
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 5;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, NULL, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, NULL, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, NULL, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict(NULL, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_NULL_ARGUMENT);
    for (i = 0; i < 6; i++)
        prob[i] = -1.0f;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 5, NULL, 0, NULL, 0),
                  MODECONN_STATUS_BUFFER_TOO_SMALL);
    for (i = 0; i < 6; i++)
        CHECK(prob[i] == -1.0f); /* outputs untouched on failure */
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, per, 29, NULL, 0),
                  MODECONN_STATUS_BUFFER_TOO_SMALL);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, members, 2),
                  MODECONN_STATUS_BUFFER_TOO_SMALL);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 7, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_INPUT);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 0, 0, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_INPUT);
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, per, 30, NULL, 0),
                  MODECONN_STATUS_OK);

    printf("predict_entropy\n");
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, NULL, 8, 2, &s, prob, 6, ent, 2),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 8, 2, NULL, prob, 6, ent, 2),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 8, 2, &s, NULL, 6, ent, 2),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 8, 2, &s, prob, 6, NULL, 2),
                  MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(NULL, input, 8, 2, &s, prob, 6, ent, 2),
                  MODECONN_STATUS_NULL_ARGUMENT);
    for (i = 0; i < 6; i++)
        prob[i] = -1.0f;
    ent[0] = ent[1] = -1.0f;
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 8, 2, &s, prob, 6, ent, 1),
                  MODECONN_STATUS_BUFFER_TOO_SMALL);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 8, 2, &s, prob, 5, ent, 2),
                  MODECONN_STATUS_BUFFER_TOO_SMALL);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 7, 2, &s, prob, 6, ent, 2),
                  MODECONN_STATUS_INPUT);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 0, 0, &s, prob, 6, ent, 0),
                  MODECONN_STATUS_INPUT);
    for (i = 0; i < 6; i++)
        CHECK(prob[i] == -1.0f); /* outputs untouched on failure */
    CHECK(ent[0] == -1.0f && ent[1] == -1.0f);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 8, 2, &s, prob, 6, ent, 2),
                  MODECONN_STATUS_OK);
    for (i = 0; i < 2; i++)
        CHECK(ent[i] >= 0.0f && ent[i] <= 1.0986124f + 1e-5f); /* at most ln(3) */
    s.count = 1;
    check_not_ok(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                 "grid of 1");
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_AT;
    s.ts = ts;
    s.ts_len = 2;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_T_OUT_OF_RANGE);
    ts[1] = nan("");
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_T_OUT_OF_RANGE);
    ts[1] = -0.5;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_T_OUT_OF_RANGE);
    s.ts = NULL;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_NULL_ARGUMENT);
    s.ts_len = 0;
    check_not_ok(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                 "empty t list");
    memset(&s, 0, sizeof s);
    s.mode = 42;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_INVALID_ARGUMENT);
    s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_SAMPLING);
    s.mode = MODECONN_SAMPLING_MODE_KEYED;
    s.count = 5;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_NULL_ARGUMENT);
    s.mode = MODECONN_SAMPLING_MODE_RANDOMIZED;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, per, 30, NULL, 0),
                  MODECONN_STATUS_SAMPLING);
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_MEMBERS;
    s.members = idx;
    s.members_len = 2;
    EXPECT_STATUS(modeconn_ensemble_predict(snaps, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_MEMBER_OUT_OF_RANGE);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 3;
    EXPECT_STATUS(modeconn_ensemble_predict(snaps, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_SAMPLING);

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
    EXPECT_STATUS(modeconn_train("/nonexistent/libmodeconn_trainer.so", "{}", NULL, NULL, &report),
                  MODECONN_STATUS_TRAINER_UNAVAILABLE);
    EXPECT_STATUS(modeconn_train(NULL, "{}", NULL, NULL, NULL), MODECONN_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(modeconn_train(NULL, NULL, NULL, NULL, &report), MODECONN_STATUS_NULL_ARGUMENT);
    CHECK(report == NULL);

    printf("closed handles\n");
    EXPECT_STATUS(modeconn_ensemble_free(curve), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_kind(curve, &kind), MODECONN_STATUS_INVALID_HANDLE);
    memset(&s, 0, sizeof s);
    s.mode = MODECONN_SAMPLING_MODE_GRID;
    s.count = 5;
    EXPECT_STATUS(modeconn_ensemble_predict(curve, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_predict_entropy(curve, input, 8, 2, &s, prob, 6, ent, 2),
                  MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_free(curve), MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_runtime_free(rt), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[1], &none), MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_ensemble_open_with(rt, argv[1], 0, 0, &none),
                  MODECONN_STATUS_INVALID_HANDLE);
    EXPECT_STATUS(modeconn_runtime_free(rt), MODECONN_STATUS_INVALID_HANDLE);
    /* The snapshot ensemble outlives its runtime. */
    s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
    EXPECT_STATUS(modeconn_ensemble_predict(snaps, input, 8, 2, &s, prob, 6, NULL, 0, NULL, 0),
                  MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_points(snaps, &n), MODECONN_STATUS_OK);
    CHECK(n == 3);
    EXPECT_STATUS(modeconn_ensemble_free(snaps), MODECONN_STATUS_OK);
    (void)rt2;

    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
