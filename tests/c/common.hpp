// Helpers shared by the C++ test programs (run from ffi/tests/c_api.rs): the C helpers of
// common.h with std::vector in and out, and expectations of modeconn::Error.
#ifndef MODECONN_TEST_COMMON_HPP
#define MODECONN_TEST_COMMON_HPP

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "common.h"
#include "modeconn.hpp"

namespace test {

// The floats of a whole file.
inline std::vector<float> read_input(const std::string &path) {
    std::size_t n = 0;
    float *data = read_floats(path.c_str(), &n);
    std::vector<float> v(data, data + n);
    std::free(data);
    return v;
}

// Writes DIR/NAME.SUFFIX, the files ffi/tests/c_api.rs compares.
template <typename T>
void write(const std::string &dir, const std::string &name, const char *suffix,
           const std::vector<T> &values) {
    write_output(dir.c_str(), name.c_str(), suffix, values.data(), sizeof(T), values.size());
}

// A test program's arguments, argv[1] on.
using Args = std::vector<std::string>;

// The main of a test program: checks that it has `count` arguments (else prints the usage, exit
// status 2), runs `body` with them, and returns 1 after a check failed or an exception escaped
// (printed), else 0.
template <typename Body> int run(int argc, char **argv, int count, const char *usage, Body body) {
    if (argc != count + 1) {
        std::fprintf(stderr, "usage: %s\n", usage);
        return 2;
    }
    try {
        body(Args(argv + 1, argv + argc));
    } catch (const std::exception &e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        return 1;
    }
    std::printf("%d failures\n", failures);
    return failures ? 1 : 0;
}

// Expects `f` to throw modeconn::Error with `want`, a message, and what() "NAME: message";
// counts a failure otherwise.
inline void expect_error(int line, modeconn_status want, const std::function<void()> &f) {
    try {
        f();
        std::fprintf(stderr, "line %d: no exception, expected %s\n", line,
                     modeconn_status_name(want));
        failures++;
    } catch (const modeconn::Error &e) {
        const std::string name(e.status_name());
        if (e.status() != want || name != modeconn_status_name(want) || e.message().empty() ||
            std::string(e.what()) != name + ": " + e.message()) {
            std::fprintf(stderr, "line %d: %s, expected %s\n", line, e.what(),
                         modeconn_status_name(want));
            failures++;
        } else {
            std::printf("  %s\n", e.what());
        }
    }
}

}  // namespace test

// Expects the statements to throw modeconn::Error with status `want`.
#define EXPECT_ERROR(want, ...) test::expect_error(__LINE__, want, [&] { __VA_ARGS__; })

#endif
