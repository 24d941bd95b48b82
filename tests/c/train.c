/* Training from C through the real trainer plugin: progress events, the report and its release,
 * a refused job, jobs that do not parse, a library that is no plugin, and the MODECONN_TRAINER
 * search.
 *
 *   train PLUGIN NOT_A_PLUGIN OUT_DIR */
#include "common.h"

static void on_progress(const char *event_json, void *user) {
    int *count = (int *)user;
    if (strstr(event_json, "\"event\""))
        (*count)++;
    /* A failing call from the callback does not become modeconn_train's last error. */
    (void)modeconn_ensemble_kind(NULL, NULL);
}

static void job(char *buf, size_t len, const char *arch, const char *out) {
    snprintf(buf, len,
             "{\"command\":\"train\",\"arch\":\"%s\",\"hidden\":[8],\"data\":\"digits\","
             "\"epochs\":1,\"limit\":128,\"batch_size\":64,\"device\":\"cpu\",\"out\":\"%s\"}",
             arch, out);
}

int main(int argc, char **argv) {
    char *report = NULL;
    char text[1024], out[512];
    int events = 0;
    if (argc != 4)
        return 2;
    snprintf(out, sizeof out, "%s/a.safetensors", argv[3]);
    job(text, sizeof text, "mlp", out);
    EXPECT_STATUS(modeconn_train(argv[1], text, on_progress, &events, &report),
                  MODECONN_STATUS_OK);
    CHECK(events > 0);
    CHECK(report != NULL && strstr(report, "\"ok\":true") != NULL);
    CHECK(modeconn_last_error_message()[0] == '\0');
    printf("report: %s\n", report ? report : "(null)");
    EXPECT_STATUS(modeconn_string_free(report), MODECONN_STATUS_OK);

    /* The bundle it wrote opens and predicts in the runtime. */
    {
        struct modeconn_runtime *rt = NULL;
        struct modeconn_ensemble *ens = NULL;
        size_t classes = 0;
        EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 0, 0, &rt), MODECONN_STATUS_OK);
        EXPECT_STATUS(modeconn_ensemble_open(rt, out, &ens), MODECONN_STATUS_OK);
        EXPECT_STATUS(modeconn_ensemble_classes(ens, &classes), MODECONN_STATUS_OK);
        CHECK(classes == 10);
        modeconn_ensemble_free(ens);
        modeconn_runtime_free(rt);
    }

    report = NULL;
    job(text, sizeof text, "no-such-net", out);
    EXPECT_STATUS(modeconn_train(argv[1], text, NULL, NULL, &report),
                  MODECONN_STATUS_TRAINER_FAILED);
    CHECK(report == NULL);
    CHECK(strstr(modeconn_last_error_message(), "no-such-net") != NULL);
    /* Jobs that are not JSON, or not a job: the message names the field. */
    EXPECT_STATUS(modeconn_train(argv[1], "{\"command\":", NULL, NULL, &report),
                  MODECONN_STATUS_INVALID_JOB);
    EXPECT_STATUS(modeconn_train(argv[1], "{\"command\":\"trian\"}", NULL, NULL, &report),
                  MODECONN_STATUS_INVALID_JOB);
    EXPECT_STATUS(modeconn_train(argv[1],
                                 "{\"command\":\"train\",\"arch\":3,\"data\":\"digits\","
                                 "\"out\":\"x.safetensors\"}",
                                 NULL, NULL, &report),
                  MODECONN_STATUS_INVALID_JOB);
    CHECK(strstr(modeconn_last_error_message(), "arch") != NULL);
    CHECK(report == NULL);
    EXPECT_STATUS(modeconn_train(argv[2], TRAIN_JOB, NULL, NULL, &report),
                  MODECONN_STATUS_TRAINER_UNAVAILABLE);
    /* MODECONN_TRAINER is used when no path is given (the test sets it to the plugin). */
    snprintf(out, sizeof out, "%s/b.safetensors", argv[3]);
    job(text, sizeof text, "mlp", out);
    EXPECT_STATUS(modeconn_train(NULL, text, NULL, NULL, &report), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_string_free(report), MODECONN_STATUS_OK);
    return failures ? 1 : 0;
}
