// include/modeconn.hpp: misuse is a modeconn::Error with the right status; handles are owned
// (moves transfer them, destructors and move assignment free them); the value types, versions,
// threads and train() without a plugin. Run under AddressSanitizer and LeakSanitizer.
//
//   hpp_misuse CURVE SNAPSHOTS CORRUPT MISSING OUTDIR LABELED (the arguments of misuse.c)
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "modeconn.hpp"

namespace {

using modeconn::Ensemble;
using modeconn::Member;
using modeconn::Outputs;
using modeconn::Runtime;
using modeconn::Sampling;

static_assert(!std::is_copy_constructible_v<Runtime> && !std::is_copy_assignable_v<Runtime>);
static_assert(!std::is_copy_constructible_v<Ensemble> && !std::is_copy_assignable_v<Ensemble>);
static_assert(std::is_nothrow_move_constructible_v<Runtime> &&
              std::is_nothrow_move_assignable_v<Runtime>);
static_assert(std::is_nothrow_move_constructible_v<Ensemble> &&
              std::is_nothrow_move_assignable_v<Ensemble>);
static_assert(std::is_base_of_v<std::runtime_error, modeconn::Error>);
static_assert(static_cast<std::uint32_t>(modeconn::SamplingMode::keyed) ==
              MODECONN_SAMPLING_MODE_KEYED);

// Whether the C API still knows `raw` as an ensemble handle.
bool live(const modeconn_ensemble *raw) {
    modeconn_kind kind{};
    return modeconn_ensemble_kind(raw, &kind) == MODECONN_STATUS_OK;
}

}  // namespace

int main(int argc, char **argv) {
    const char *usage = "hpp_misuse CURVE SNAPSHOTS CORRUPT MISSING OUTDIR LABELED";
    return test::run(argc, argv, 6, usage, [](const test::Args &arg) {
        const std::string &curve_path = arg[0], &snaps_path = arg[1], &corrupt = arg[2],
                          &missing = arg[3], &outdir = arg[4], &labeled_path = arg[5];
        std::printf("versions\n");
        modeconn::check_abi();
        CHECK(modeconn::abi_version() == MODECONN_ABI_VERSION);
        CHECK(modeconn::version() == std::to_string(MODECONN_VERSION_MAJOR) + "." +
                                         std::to_string(MODECONN_VERSION_MINOR) + "." +
                                         std::to_string(MODECONN_VERSION_PATCH));
        try {
            modeconn::check_abi(MODECONN_ABI_VERSION + 100);
            std::fprintf(stderr, "check_abi accepted another version\n");
            failures++;
        } catch (const modeconn::AbiMismatch &e) {
            CHECK(e.header_version() == MODECONN_ABI_VERSION + 100);
            CHECK(e.library_version() == modeconn::abi_version());
            std::printf("  %s\n", e.what());
        }
        CHECK(modeconn::status_name(MODECONN_STATUS_INPUT) == "MODECONN_STATUS_INPUT");

        std::printf("runtime and open\n");
        EXPECT_ERROR(MODECONN_STATUS_INVALID_ARGUMENT,
                     Runtime(static_cast<modeconn::Device>(7), 1));
        Runtime rt(modeconn::Device::cpu, 1);
        EXPECT_ERROR(MODECONN_STATUS_IO, Ensemble(rt, missing));
        EXPECT_ERROR(MODECONN_STATUS_IO, Ensemble(rt, missing, 0, 0));
        EXPECT_ERROR(MODECONN_STATUS_UTF8, Ensemble(rt, "\xff\xfe.safetensors"));
        try {
            const Ensemble e(rt, corrupt);
            std::fprintf(stderr, "a corrupt bundle opened\n");
            failures++;
        } catch (const modeconn::Error &e) {
            CHECK(e.status() != MODECONN_STATUS_PANIC && !e.message().empty());
            std::printf("  %s\n", e.what());
        }
        const Ensemble curve(rt, curve_path), snaps(rt, snaps_path), labeled(rt, labeled_path);
        CHECK(curve.kind() == modeconn::Kind::curve && snaps.kind() == modeconn::Kind::snapshots);
        CHECK(curve.basis() == modeconn::Basis::bezier && snaps.basis() == modeconn::Basis::none);
        CHECK(curve.provider() == modeconn::Provider::cpu);

        std::printf("predict\n");
        const std::vector<float> x(2 * 4, 0.25f);
        EXPECT_ERROR(MODECONN_STATUS_INPUT,
                     (void)curve.predict(x.data(), x.size() - 1, 2, Sampling::grid(5)));
        EXPECT_ERROR(MODECONN_STATUS_INPUT,
                     (void)curve.predict(x.data(), x.size(), 3, Sampling::grid(5)));
        EXPECT_ERROR(MODECONN_STATUS_INPUT, (void)curve.predict(x.data(), 0, 0, Sampling::grid(5)));
        EXPECT_ERROR(MODECONN_STATUS_NULL_ARGUMENT,
                     (void)curve.predict(nullptr, 8, 2, Sampling::grid(5)));
        EXPECT_ERROR(MODECONN_STATUS_T_OUT_OF_RANGE,
                     (void)curve.predict(x.data(), x.size(), 2, Sampling::at({0.5, 1.5})));
        EXPECT_ERROR(MODECONN_STATUS_T_OUT_OF_RANGE,
                     (void)curve.predict(x.data(), x.size(), 2, Sampling::at({std::nan("")})));
        EXPECT_ERROR(MODECONN_STATUS_INVALID_ARGUMENT,
                     (void)curve.predict(x.data(), x.size(), 2, Sampling::grid(1)));
        EXPECT_ERROR(MODECONN_STATUS_INVALID_ARGUMENT,
                     (void)curve.output_sizes(Sampling::grid(1), 2));
        EXPECT_ERROR(MODECONN_STATUS_SAMPLING,
                     (void)curve.predict(x.data(), x.size(), 2, Sampling::all_members()));
        EXPECT_ERROR(MODECONN_STATUS_SAMPLING,
                     (void)curve.output_sizes(Sampling::all_members(), 2));
        EXPECT_ERROR(MODECONN_STATUS_SAMPLING,
                     (void)snaps.predict(x.data(), x.size(), 2, Sampling::grid(3)));
        EXPECT_ERROR(MODECONN_STATUS_MEMBER_OUT_OF_RANGE,
                     (void)snaps.predict(x.data(), x.size(), 2, Sampling::members({0, 5})));
        {
            // Per-member probabilities and disagreement do not exist in the per-sample modes.
            std::array<std::uint8_t, 32> key{};
            for (const Ensemble *e : {&curve, &snaps}) {
                const std::size_t grid = e == &curve ? 5 : 0;
                for (const Sampling &s :
                     {Sampling::randomized(grid), Sampling::keyed(key, grid)}) {
                    CHECK(s.per_sample());
                    for (const Outputs o : {Outputs::per_member(), Outputs::disagreement()})
                        EXPECT_ERROR(MODECONN_STATUS_SAMPLING,
                                     (void)e->predict(x.data(), x.size(), 2, s, o));
                    const modeconn::Prediction p = e->predict(
                        x.data(), x.size(), 2, s, Outputs::members() | Outputs::entropy());
                    CHECK(p.members && p.members->size() == 2 && p.entropy &&
                          p.entropy->size() == 2 && !p.per_member && !p.disagreement);
                    CHECK((*p.members)[0].kind == (e == &curve ? modeconn::MemberKind::t
                                                               : modeconn::MemberKind::index));
                }
            }
        }
        {
            // A prediction with every output, read back through the accessors.
            const modeconn::Prediction p =
                curve.predict(x.data(), x.size(), 2, Sampling::grid(5),
                              Outputs::per_member() | Outputs::members() | Outputs::entropy() |
                                  Outputs::disagreement());
            CHECK(p.batch == 2 && p.classes == 3 && p.probabilities.size() == 6);
            CHECK(p.per_member && p.per_member->size() == 30);
            CHECK(p.members && p.members->size() == 5 && (*p.members)[0] == Member::point(0.0) &&
                  (*p.members)[4] == Member::point(1.0));
            CHECK(p.probability(1, 2) == p.probabilities[5]);
            for (std::size_t i = 0; i < 2; ++i) {
                CHECK((*p.entropy)[i] >= 0.0f && (*p.entropy)[i] <= std::log(3.0f) + 1e-5f);
                CHECK((*p.disagreement)[i] >= 0.0f && (*p.disagreement)[i] <= 1.0f);
            }
            const modeconn::OutputSizes sizes = curve.output_sizes(Sampling::grid(5), 2);
            CHECK(sizes.probabilities == 6 && sizes.per_member == 30 && sizes.members == 5 &&
                  sizes.entropy == 2 && sizes.disagreement == 2);
        }

        std::printf("values\n");
        {
            CHECK(Member::point(0.5) == Member::point(0.5));
            CHECK(Member::point(0.5) != Member::point(0.25));
            CHECK(Member::snapshot(2) != Member::point(2.0));
            CHECK(Member::from_c(Member::snapshot(3).c_struct()) == Member::snapshot(3));
            const modeconn_member c = Member::point(0.75).c_struct();
            CHECK(c.kind == MODECONN_MEMBER_KIND_T && c.t == 0.75);
            constexpr Outputs both = Outputs::entropy() | Outputs::members();
            static_assert(both.has(Outputs::entropy()) && both.has(Outputs::members()) &&
                          !both.has(Outputs::per_member()) && Outputs{}.has(Outputs{}));
            std::array<std::uint8_t, 32> key{};
            key[31] = 7;
            const Sampling k = Sampling::keyed(key, 5);
            const modeconn_sampling ck = k.c_struct();
            CHECK(k.mode() == modeconn::SamplingMode::keyed && ck.count == 5 && ck.key != nullptr &&
                  ck.key[31] == 7);
            // (c_struct() of a temporary does not compile: its pointers would dangle.)
            const Sampling seeded = Sampling::randomized(4, 9), unseeded = Sampling::randomized(4);
            const modeconn_sampling r = seeded.c_struct();
            CHECK(r.mode == MODECONN_SAMPLING_MODE_RANDOMIZED && r.seeded == 1 && r.seed == 9);
            CHECK(unseeded.c_struct().seeded == 0);
            const Sampling at = Sampling::at({0.1, 0.2});
            CHECK(at.c_struct().ts_len == 2 && at.c_struct().ts[1] == 0.2 && !at.per_sample());
            const Sampling members = Sampling::members({4, 1, 2});
            const modeconn_sampling m = members.c_struct();
            CHECK(m.members_len == 3 && m.members[0] == 4);
            const Sampling arc = Sampling::arc_uniform(6, 2);
            const modeconn_sampling u = arc.c_struct();
            CHECK(u.mode == MODECONN_SAMPLING_MODE_ARC_UNIFORM && u.count == 6 && u.seed == 2);
            const Sampling grid = Sampling::grid(7), all = Sampling::all_members();
            CHECK(grid.c_struct().count == 7 && grid.mode() == modeconn::SamplingMode::grid);
            CHECK(all.mode() == modeconn::SamplingMode::all_members && !all.per_sample());
        }

        std::printf("metadata\n");
        EXPECT_ERROR(MODECONN_STATUS_INVALID_ARGUMENT, (void)labeled.label(3));
        EXPECT_ERROR(MODECONN_STATUS_INVALID_ARGUMENT, (void)curve.label(0));
        CHECK(curve.labels().empty() && curve.label_count() == 0);
        CHECK(!curve.provenance() && !curve.preprocess());
        CHECK(curve.temperature() == 1.0 && curve.input_name() == "x" &&
              curve.output_name() == "logits");
        CHECK(labeled.labels().size() == 3 && labeled.provenance() && labeled.preprocess());
        CHECK(curve.input_shape() == (std::vector<std::int64_t>{-1, 4}));

        std::printf("materialize\n");
        const std::string onnx = outdir + "/hpp-member.onnx";
        curve.materialize(Member::point(0.5), onnx);
        CHECK(std::ifstream(onnx).good());
        snaps.materialize(Member::snapshot(1), onnx);
        EXPECT_ERROR(MODECONN_STATUS_T_OUT_OF_RANGE, curve.materialize(Member::point(2.0), onnx));
        EXPECT_ERROR(MODECONN_STATUS_SAMPLING, curve.materialize(Member::snapshot(0), onnx));
        EXPECT_ERROR(MODECONN_STATUS_MEMBER_OUT_OF_RANGE,
                     snaps.materialize(Member::snapshot(7), onnx));
        EXPECT_ERROR(MODECONN_STATUS_IO,
                     curve.materialize(Member::point(0.5), "/nonexistent/dir/m.onnx"));
        EXPECT_ERROR(MODECONN_STATUS_INVALID_ARGUMENT,
                     curve.materialize(Member{static_cast<modeconn::MemberKind>(9), 0.5, 0}, onnx));

        std::printf("ownership\n");
        {
            // A move transfers the handle and leaves none behind.
            Ensemble a(rt, curve_path);
            const modeconn_ensemble *raw_a = a.get();
            Ensemble b(std::move(a));
            CHECK(a.get() == nullptr && b.get() == raw_a && live(raw_a));
            EXPECT_ERROR(MODECONN_STATUS_NULL_ARGUMENT, (void)a.kind());
            EXPECT_ERROR(MODECONN_STATUS_NULL_ARGUMENT,
                         (void)a.predict(x.data(), x.size(), 2, Sampling::grid(5)));
            CHECK(b.kind() == modeconn::Kind::curve);
            // Move assignment frees the handle it replaces.
            Ensemble c(rt, snaps_path);
            const modeconn_ensemble *raw_c = c.get();
            c = std::move(b);
            CHECK(c.get() == raw_a && b.get() == nullptr && !live(raw_c) && live(raw_a));
            // Assigning an object to itself keeps its handle.
            Ensemble &alias = c;
            c = std::move(alias);
            CHECK(c.get() == raw_a && live(raw_a));
            // A moved-from object takes a new handle.
            a = Ensemble(rt, snaps_path);
            CHECK(a.kind() == modeconn::Kind::snapshots);
        }
        {
            // The destructor frees the handle.
            const modeconn_ensemble *raw = nullptr;
            {
                const Ensemble d(rt, curve_path);
                raw = d.get();
                CHECK(live(raw));
            }
            CHECK(!live(raw));
        }
        {
            // Runtimes: moves, move assignment, destruction; ensembles outlive them.
            Runtime r1(modeconn::Device::cpu, 1);
            const modeconn_runtime *raw1 = r1.get();
            Runtime r2(std::move(r1));
            CHECK(r1.get() == nullptr && r2.get() == raw1);
            EXPECT_ERROR(MODECONN_STATUS_NULL_ARGUMENT, Ensemble(r1, curve_path));
            Runtime r3(modeconn::Device::cpu, 1);
            const modeconn_runtime *raw3 = r3.get();
            r3 = std::move(r2);
            CHECK(r3.get() == raw1 && r2.get() == nullptr);
            modeconn_ensemble *none = nullptr;
            CHECK(modeconn_ensemble_open(raw3, curve_path.c_str(), &none) ==
                  MODECONN_STATUS_INVALID_HANDLE);
            Ensemble survivor(r3, curve_path);
            r3 = Runtime(modeconn::Device::cpu, 1);
            CHECK(modeconn_ensemble_open(raw1, curve_path.c_str(), &none) ==
                  MODECONN_STATUS_INVALID_HANDLE);
            CHECK(survivor.predict(x.data(), x.size(), 2, Sampling::grid(3)).probabilities.size() ==
                  6);
        }

        std::printf("threads\n");
        {
            // One const Ensemble shared by several threads gives the answers of one.
            const std::vector<float> want =
                curve.predict(x.data(), x.size(), 2, Sampling::grid(4)).probabilities;
            std::vector<int> same(4, 0);
            std::vector<std::thread> threads;
            for (std::size_t t = 0; t < same.size(); ++t)
                threads.emplace_back([&, t] {
                    for (int r = 0; r < 5; ++r)
                        same[t] += curve.predict(x.data(), x.size(), 2, Sampling::grid(4))
                                       .probabilities == want;
                });
            for (std::thread &t : threads)
                t.join();
            for (int s : same)
                CHECK(s == 5);
        }

        std::printf("train\n");
        int events = 0;
        EXPECT_ERROR(MODECONN_STATUS_TRAINER_UNAVAILABLE,
                     modeconn::train(TRAIN_JOB, "/nonexistent/libmodeconn_trainer.so",
                                     [&](std::string_view) { events++; }));
        CHECK(events == 0);
    });
}
