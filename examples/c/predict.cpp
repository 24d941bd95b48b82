// examples/c/predict.c with include/modeconn.hpp: open a bundle, predict one batch with a grid
// of members (every member of a snapshot set), print each sample's mean probabilities, its
// predictive entropy and its most probable class (by label when the bundle names them).
//
//   c++ -std=c++17 -Iinclude examples/c/predict.cpp -Ltarget/release -lmodeconn -o predict
//   ./predict model.safetensors input.f32 BATCH [M]
//
// input.f32 holds BATCH samples of the bundle's input shape as raw float32 values. ONNX
// Runtime comes from ORT_DYLIB_PATH.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "modeconn.hpp"

int main(int argc, char **argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s BUNDLE INPUT.f32 BATCH [M]\n", argv[0]);
        return 2;
    }
    try {
        modeconn::check_abi();
        const std::size_t batch = std::strtoul(argv[3], nullptr, 10);
        const std::size_t m = argc > 4 ? std::strtoul(argv[4], nullptr, 10) : 5;

        // Read the input: its length is checked by predict.
        std::ifstream in(argv[2], std::ios::binary | std::ios::ate);
        if (!in) {
            std::perror(argv[2]);
            return 1;
        }
        std::vector<float> x(static_cast<std::size_t>(in.tellg()) / sizeof(float));
        in.seekg(0);
        in.read(reinterpret_cast<char *>(x.data()),
                static_cast<std::streamsize>(x.size() * sizeof(float)));

        const modeconn::Runtime rt(modeconn::Device::cpu, 1);
        const modeconn::Ensemble ens(rt, argv[1]);
        const modeconn::Sampling sampling = ens.kind() == modeconn::Kind::curve
                                                ? modeconn::Sampling::grid(m)
                                                : modeconn::Sampling::all_members();
        const modeconn::Prediction p =
            ens.predict(x.data(), x.size(), batch, sampling, modeconn::Outputs::entropy());
        const std::vector<std::string> labels = ens.labels();
        for (std::size_t i = 0; i < p.batch; ++i) {
            std::size_t best = 0;
            for (std::size_t c = 0; c < p.classes; ++c) {
                std::printf("%.6f ", static_cast<double>(p.probability(i, c)));
                if (p.probability(i, c) > p.probability(i, best))
                    best = c;
            }
            std::printf("entropy=%.6f class=%zu%s%s\n", static_cast<double>((*p.entropy)[i]), best,
                        labels.empty() ? "" : " ", labels.empty() ? "" : labels[best].c_str());
        }
    } catch (const modeconn::Error &e) {
        // e.status() is the modeconn_status; e.what() is "NAME: the library's message".
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    } catch (const std::exception &e) {  // modeconn::AbiMismatch, std::bad_alloc
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
