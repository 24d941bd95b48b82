// include/modeconn.hpp: modeconn::train through the real trainer plugin: progress events, the
// report, a callback that throws (rethrown after the job, nothing leaked), refused and invalid
// jobs, a library that is no plugin, and the MODECONN_TRAINER search.
//
//   hpp_train PLUGIN NOT_A_PLUGIN OUT_DIR
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common.hpp"
#include "modeconn.hpp"

namespace {

std::string job(const std::string &arch, const std::string &out) {
    return R"({"command":"train","arch":")" + arch +
           R"(","hidden":[8],"data":"digits","epochs":1,"limit":128,"batch_size":64,)"
           R"("device":"cpu","out":")" +
           out + R"("})";
}

}  // namespace

int main(int argc, char **argv) {
    const char *usage = "hpp_train PLUGIN NOT_A_PLUGIN OUT_DIR";
    return test::run(argc, argv, 3, usage, [](const test::Args &arg) {
        const std::string &plugin = arg[0], &not_a_plugin = arg[1], &dir = arg[2];
        int events = 0;
        const std::string a = dir + "/hpp-a.safetensors";
        const std::string report = modeconn::train(job("mlp", a), plugin, [&](std::string_view e) {
            if (e.find("\"event\"") != std::string_view::npos)
                events++;
        });
        std::printf("report: %s\n", report.c_str());
        CHECK(events > 0);
        CHECK(report.find("\"ok\":true") != std::string::npos);
        {
            const modeconn::Runtime rt;
            CHECK(modeconn::Ensemble(rt, a).classes() == 10);
        }

        // A callback that throws: called once, the job runs to its end, the exception comes
        // out of train() (the report is released: LeakSanitizer checks).
        int calls = 0;
        try {
            (void)modeconn::train(job("mlp", dir + "/hpp-b.safetensors"), plugin,
                                  [&](std::string_view) {
                                      calls++;
                                      throw std::logic_error("stop here");
                                  });
            std::fprintf(stderr, "the callback's exception was lost\n");
            failures++;
        } catch (const std::logic_error &e) {
            CHECK(std::string(e.what()) == "stop here");
        }
        CHECK(calls == 1);

        EXPECT_ERROR(MODECONN_STATUS_TRAINER_FAILED,
                     (void)modeconn::train(job("no-such-net", a), plugin));
        EXPECT_ERROR(MODECONN_STATUS_INVALID_JOB,
                     (void)modeconn::train(R"({"command":"trian"})", plugin));
        EXPECT_ERROR(MODECONN_STATUS_INVALID_JOB, (void)modeconn::train("not json", plugin));
        EXPECT_ERROR(MODECONN_STATUS_TRAINER_UNAVAILABLE,
                     (void)modeconn::train(TRAIN_JOB, not_a_plugin));
        // The job is checked first: a bad one needs no plugin to be refused.
        EXPECT_ERROR(MODECONN_STATUS_INVALID_JOB, (void)modeconn::train("{}", not_a_plugin));
        // MODECONN_TRAINER is used when no path is given (the test sets it to the plugin).
        CHECK(modeconn::train(job("mlp", dir + "/hpp-c.safetensors")).find("\"ok\":true") !=
              std::string::npos);
    });
}
