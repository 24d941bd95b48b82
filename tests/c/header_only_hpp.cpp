// include/modeconn.hpp compiles on its own, as C++17 and C++20 (where the std::span overload of
// predict exists). Compiled only (-c): every function is inline, so the ones used here are
// compiled as well.
#include "modeconn.hpp"

#include <vector>

std::size_t modeconn_header_only_hpp(const modeconn::Ensemble &e, const std::vector<float> &x);
std::size_t modeconn_header_only_hpp(const modeconn::Ensemble &e, const std::vector<float> &x) {
    modeconn::check_abi();
    const modeconn::Prediction p =
        e.predict(x.data(), x.size(), 1, modeconn::Sampling::grid(3), modeconn::Outputs::entropy());
#if defined(__cpp_lib_span)
    const modeconn::Prediction q =
        e.predict(std::span<const float>(x), 1, modeconn::Sampling::all_members());
    return p.probabilities.size() + q.probabilities.size();
#else
    return p.probabilities.size();
#endif
}
