/* Several pthreads predicting on one ensemble handle at once get the answers of one thread;
 * each thread has its own last error.
 *
 *   threads CURVE */
#include "common.h"

#include <pthread.h>

#define THREADS 8
#define ROUNDS 10
#define BATCH 3
#define FEATURES 4
#define CLASSES 3

static modeconn_ensemble *ens;
static float data[BATCH * FEATURES];
static const modeconn_input input = {data, BATCH * FEATURES, BATCH};
static float reference[2][BATCH * CLASSES];
static modeconn_sampling samplings[2];

static void *worker(void *arg) {
    size_t id = (size_t)arg, r, i, k;
    float prob[BATCH * CLASSES];
    modeconn_outputs out = {0};
    modeconn_input short_input = input;
    long bad = 0;
    out.probabilities = prob;
    out.probabilities_len = BATCH * CLASSES;
    for (r = 0; r < ROUNDS; r++) {
        k = (id + r) % 2;
        if (modeconn_ensemble_predict(ens, &input, &samplings[k], &out) != MODECONN_STATUS_OK) {
            fprintf(stderr, "thread %zu: %s\n", id, modeconn_last_error_message());
            bad++;
            continue;
        }
        for (i = 0; i < BATCH * CLASSES; i++)
            if (prob[i] != reference[k][i])
                bad++;
    }
    /* A failure on this thread leaves the other threads' messages alone. */
    if (id == 0) {
        short_input.len = 1;
        if (modeconn_ensemble_predict(ens, &short_input, &samplings[0], &out) !=
                MODECONN_STATUS_INPUT ||
            modeconn_last_error_message()[0] == '\0')
            bad++;
    }
    return (void *)bad;
}

int main(int argc, char **argv) {
    modeconn_runtime *rt = NULL;
    pthread_t threads[THREADS];
    size_t i;
    long total = 0;
    void *ret;

    if (argc != 2)
        return 2;
    for (i = 0; i < BATCH * FEATURES; i++)
        data[i] = (float)((int)(i * 7 % 11) - 5) / 4.0f;
    memset(samplings, 0, sizeof samplings);
    samplings[0].mode = MODECONN_SAMPLING_MODE_GRID;
    samplings[0].count = 4;
    samplings[1].mode = MODECONN_SAMPLING_MODE_UNIFORM;
    samplings[1].count = 3;
    samplings[1].seed = 5;

    EXPECT_STATUS(modeconn_runtime_new(NULL, MODECONN_DEVICE_CPU, 0, 1, &rt), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_ensemble_open(rt, argv[1], &ens), MODECONN_STATUS_OK);
    if (failures)
        return 1;
    for (i = 0; i < 2; i++) {
        modeconn_outputs out = {0};
        out.probabilities = reference[i];
        out.probabilities_len = BATCH * CLASSES;
        EXPECT_STATUS(modeconn_ensemble_predict(ens, &input, &samplings[i], &out),
                      MODECONN_STATUS_OK);
    }
    for (i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    for (i = 0; i < THREADS; i++) {
        pthread_join(threads[i], &ret);
        total += (long)ret;
    }
    /* The main thread's last error is still empty: errors are per thread. */
    CHECK(modeconn_last_error_message()[0] == '\0');
    CHECK(total == 0);
    printf("%d threads x %d predictions, %ld mismatches\n", THREADS, ROUNDS, total);
    EXPECT_STATUS(modeconn_ensemble_free(ens), MODECONN_STATUS_OK);
    EXPECT_STATUS(modeconn_runtime_free(rt), MODECONN_STATUS_OK);
    return failures ? 1 : 0;
}
