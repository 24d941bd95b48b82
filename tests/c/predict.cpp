// The C API from C++: RAII owners of the handles, a grid prediction on the curve and all
// members of the snapshot set, written like predict.c's cases `grid5` and `all`.
//
//   predict_cpp CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "modeconn.h"

namespace {

void check(modeconn_status s, const char *what) {
    if (s != MODECONN_STATUS_OK)
        throw std::runtime_error(std::string(what) + ": " + modeconn_status_name(s) + ": " +
                                 modeconn_last_error_message());
}

struct RuntimeFree {
    void operator()(modeconn_runtime *r) const { modeconn_runtime_free(r); }
};
struct EnsembleFree {
    void operator()(modeconn_ensemble *e) const { modeconn_ensemble_free(e); }
};
using Runtime = std::unique_ptr<modeconn_runtime, RuntimeFree>;
using Ensemble = std::unique_ptr<modeconn_ensemble, EnsembleFree>;

Ensemble open(const Runtime &rt, const char *path) {
    modeconn_ensemble *e = nullptr;
    check(modeconn_ensemble_open(rt.get(), path, &e), "open");
    return Ensemble(e);
}

std::vector<float> predict(const Ensemble &e, const std::vector<float> &input, size_t batch,
                           const modeconn_sampling &s, std::vector<float> &per) {
    size_t n_prob = 0, n_per = 0;
    check(modeconn_ensemble_predict_sizes(e.get(), &s, batch, &n_prob, &n_per, nullptr),
          "sizes");
    std::vector<float> prob(n_prob);
    per.assign(n_per, 0.0f);
    check(modeconn_ensemble_predict(e.get(), input.data(), input.size(), batch, &s, prob.data(),
                                    prob.size(), per.data(), per.size(), nullptr, 0),
          "predict");
    return prob;
}

void write(const std::string &path, const std::vector<float> &v) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char *>(v.data()),
            static_cast<std::streamsize>(v.size() * sizeof(float)));
    if (!f)
        throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: predict_cpp CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR\n");
        return 2;
    }
    try {
        std::ifstream in(argv[3], std::ios::binary | std::ios::ate);
        std::vector<float> input(static_cast<size_t>(in.tellg()) / sizeof(float));
        in.seekg(0);
        in.read(reinterpret_cast<char *>(input.data()),
                static_cast<std::streamsize>(input.size() * sizeof(float)));
        const size_t batch = std::strtoul(argv[4], nullptr, 10);
        const std::string out = argv[5];

        modeconn_runtime *raw = nullptr;
        check(modeconn_runtime_new(nullptr, MODECONN_DEVICE_CPU, 1, &raw), "runtime");
        Runtime rt(raw);
        Ensemble curve = open(rt, argv[1]);
        Ensemble snaps = open(rt, argv[2]);

        modeconn_sampling s{};
        s.mode = MODECONN_SAMPLING_MODE_GRID;
        s.count = 5;
        std::vector<float> per;
        write(out + "/grid5.prob", predict(curve, input, batch, s, per));
        write(out + "/grid5.per", per);

        s = modeconn_sampling{};
        s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
        write(out + "/all.prob", predict(snaps, input, batch, s, per));
        write(out + "/all.per", per);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
