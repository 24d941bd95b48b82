// The C API from C++ without the wrapper (include/modeconn.hpp has its own tests): RAII owners
// of the handles, a grid prediction on the curve and all members of the snapshot set with every
// shared output, written like predict.c's cases `grid5` and `all`.
//
//   predict_cpp CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
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

// Predicts `s` with every output of a shared sampling and writes NAME.prob, .per, .ent, .dis.
void predict(const Ensemble &e, const std::vector<float> &data, std::size_t batch,
             const modeconn_sampling &s, const std::string &dir, const std::string &name) {
    modeconn_output_sizes sizes{};
    check(modeconn_ensemble_output_sizes(e.get(), &s, batch, &sizes), "sizes");
    std::vector<float> prob(sizes.probabilities), per(sizes.per_member), ent(sizes.entropy),
        dis(sizes.disagreement);
    const modeconn_input input{data.data(), data.size(), batch};
    modeconn_outputs out{};
    out.probabilities = prob.data();
    out.probabilities_len = prob.size();
    out.per_member = per.data();
    out.per_member_len = per.size();
    out.entropy = ent.data();
    out.entropy_len = ent.size();
    out.disagreement = dis.data();
    out.disagreement_len = dis.size();
    check(modeconn_ensemble_predict(e.get(), &input, &s, &out), "predict");
    test::write(dir, name, "prob", prob);
    test::write(dir, name, "per", per);
    test::write(dir, name, "ent", ent);
    test::write(dir, name, "dis", dis);
}

}  // namespace

int main(int argc, char **argv) {
    const char *usage = "predict_cpp CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR";
    return test::run(argc, argv, 5, usage, [](const test::Args &arg) {
        const std::vector<float> input = test::read_input(arg[2]);
        const std::size_t batch = std::strtoul(arg[3].c_str(), nullptr, 10);
        const std::string out = arg[4];

        modeconn_runtime *raw = nullptr;
        check(modeconn_runtime_new(nullptr, MODECONN_DEVICE_CPU, 0, 1, &raw), "runtime");
        Runtime rt(raw);
        Ensemble curve = open(rt, arg[0].c_str());
        Ensemble snaps = open(rt, arg[1].c_str());

        modeconn_sampling s{};
        s.mode = MODECONN_SAMPLING_MODE_GRID;
        s.count = 5;
        predict(curve, input, batch, s, out, "grid5");

        s = modeconn_sampling{};
        s.mode = MODECONN_SAMPLING_MODE_ALL_MEMBERS;
        predict(snaps, input, batch, s, out, "all");
    });
}
