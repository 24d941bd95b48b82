// include/modeconn.hpp: predictions in every sampling mode and every metadata accessor, written
// as predict.c and metadata.c write them, for ffi/tests/c_api.rs to compare with the Rust API.
//
//   hpp_predict CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR LABELED
//
// Writes the cases of predict.c (NAME.prob, .per, .members, .ent, .dis) and NAME.meta for
// curve, snapshots and labeled; prints the bundles' properties as predict.c does. Built as
// C++17 and as C++20, where the std::span overload of predict is used too.
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "modeconn.hpp"

namespace {

using modeconn::Ensemble;
using modeconn::Outputs;
using modeconn::Prediction;
using modeconn::Sampling;

const Outputs every = Outputs::per_member() | Outputs::members() | Outputs::entropy() |
                      Outputs::disagreement();
const Outputs per_sample = Outputs::members() | Outputs::entropy();

struct Input {
    std::vector<float> data;
    std::size_t batch;
};

// The probabilities alone, through the std::span overload where there is one.
Prediction probabilities_only(const Ensemble &e, const Input &in, const Sampling &s) {
#if defined(__cpp_lib_span)
    return e.predict(std::span<const float>(in.data), in.batch, s);
#else
    return e.predict(in.data.data(), in.data.size(), in.batch, s);
#endif
}

// Predicts one case, checks the shapes of what came back, writes it.
void run_case(const Ensemble &e, const Input &in, const std::string &dir, const std::string &name,
              const Sampling &s, Outputs wanted) {
    const modeconn::OutputSizes sizes = e.output_sizes(s, in.batch);
    const Prediction p = e.predict(in.data.data(), in.data.size(), in.batch, s, wanted);
    CHECK(p.batch == in.batch && p.classes == e.classes());
    CHECK(p.probabilities.size() == sizes.probabilities);
    CHECK(p.per_member.has_value() == wanted.has(Outputs::per_member()));
    CHECK(p.members.has_value() == wanted.has(Outputs::members()));
    CHECK(p.entropy.has_value() == wanted.has(Outputs::entropy()));
    CHECK(p.disagreement.has_value() == wanted.has(Outputs::disagreement()));
    test::write(dir, name, "prob", p.probabilities);
    if (p.per_member) {
        CHECK(p.per_member->size() == sizes.per_member);
        test::write(dir, name, "per", *p.per_member);
    }
    if (p.members) {
        CHECK(p.members->size() == sizes.members);
        std::vector<double> values;
        for (const modeconn::Member &m : *p.members)
            values.push_back(m.kind == modeconn::MemberKind::t ? m.t
                                                               : static_cast<double>(m.index));
        test::write(dir, name, "members", values);
    }
    if (p.entropy) {
        CHECK(p.entropy->size() == in.batch);
        test::write(dir, name, "ent", *p.entropy);
    }
    if (p.disagreement) {
        CHECK(p.disagreement->size() == in.batch);
        test::write(dir, name, "dis", *p.disagreement);
    }
    // The optional outputs do not change the probabilities.
    CHECK(probabilities_only(e, in, s).probabilities == p.probabilities);
}

void describe(const Ensemble &e, const char *label) {
    const std::vector<std::int64_t> shape = e.input_shape();
    print_description(label, static_cast<unsigned>(e.kind()), static_cast<unsigned>(e.basis()),
                      e.points(), e.classes(), static_cast<unsigned>(e.provider()), shape.data(),
                      shape.size());
}

// Writes NAME.meta as metadata.c does: every accessor, and the static members around one
// prediction of a zero sample.
void dump_metadata(const Ensemble &e, const std::string &dir, const std::string &name) {
    const std::vector<std::int64_t> shape = e.input_shape();
    const std::vector<std::string> labels = e.labels();
    CHECK(labels.size() == e.label_count());
    std::vector<const char *> label_ptrs;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        CHECK(labels[i] == e.label(i));
        label_ptrs.push_back(labels[i].c_str());
    }
    const std::optional<std::string_view> provenance = e.provenance();
    const std::string provenance_text = provenance ? std::string(*provenance) : std::string();
    const std::optional<modeconn::Preprocess> pre = e.preprocess();
    const std::string input_name(e.input_name()), output_name(e.output_name());

    metadata_dump m{};
    m.kind = static_cast<unsigned>(e.kind());
    m.basis = static_cast<unsigned>(e.basis());
    m.provider = static_cast<unsigned>(e.provider());
    m.points = e.points();
    m.classes = e.classes();
    m.temperature = e.temperature();
    m.input_name = input_name.c_str();
    m.output_name = output_name.c_str();
    m.shape = shape.data();
    m.rank = shape.size();
    m.labels = label_ptrs.data();
    m.label_count = label_ptrs.size();
    m.provenance = provenance ? provenance_text.c_str() : nullptr;
    if (pre) {
        CHECK(pre->mean.size() == pre->stddev.size() && !pre->mean.empty());
        m.mean = pre->mean.data();
        m.std = pre->stddev.data();
        m.channels = pre->mean.size();
    }
    m.static_before = e.static_members();
    std::size_t features = 1;
    for (std::size_t i = 1; i < shape.size(); ++i)
        features *= static_cast<std::size_t>(shape[i]);
    const std::vector<float> zeros(features, 0.0f);
    (void)e.predict(zeros.data(), zeros.size(), 1,
                    e.kind() == modeconn::Kind::curve ? Sampling::grid(3)
                                                      : Sampling::all_members());
    m.static_after = e.static_members();
    write_metadata(dir.c_str(), name.c_str(), &m);
}

}  // namespace

int main(int argc, char **argv) {
    const char *usage = "hpp_predict CURVE SNAPSHOTS INPUT.f32 BATCH OUTDIR LABELED";
    return test::run(argc, argv, 6, usage, [](const test::Args &arg) {
        modeconn::check_abi();
        std::printf("version %s abi %u\n", std::string(modeconn::version()).c_str(),
                    static_cast<unsigned>(modeconn::abi_version()));
        const Input in{test::read_input(arg[2]), std::strtoul(arg[3].c_str(), nullptr, 10)};
        const std::string out = arg[4];

        // The runtime goes before the ensembles, which keep what they need of it; the vector
        // moves them as it grows.
        std::vector<Ensemble> ensembles;
        {
            modeconn::Runtime rt(modeconn::Device::cpu, 1);
            ensembles.emplace_back(rt, arg[0]);
            ensembles.emplace_back(rt, arg[1]);
            ensembles.emplace_back(rt, arg[0], 0, 0);        // no static sessions
            ensembles.emplace_back(rt, arg[1], 1 << 20, 1);  // small budget, one session
            ensembles.emplace_back(rt, arg[5]);
        }
        const Ensemble &curve = ensembles[0], &snaps = ensembles[1];
        const Ensemble &curve_nostatic = ensembles[2], &snaps_one = ensembles[3];
        describe(curve, "curve");
        describe(snaps, "snapshots");

        std::array<std::uint8_t, 32> key{};
        for (std::size_t i = 0; i < key.size(); ++i)
            key[i] = static_cast<std::uint8_t>(i);
        struct Case {
            const char *name;
            const Ensemble &ensemble;
            Sampling sampling;
            Outputs wanted;
        };
        const Case cases[] = {
            {"at", curve, Sampling::at({0.0, 0.3, 1.0}), every},
            {"grid5", curve, Sampling::grid(5), every},
            {"uniform", curve, Sampling::uniform(4, 7), every},
            {"arc", curve, Sampling::arc_uniform(4, 9),
             Outputs::members() | Outputs::entropy() | Outputs::disagreement()},
            {"randomized", curve, Sampling::randomized(5, 11), per_sample},
            {"keyed", curve, Sampling::keyed(key, 5), per_sample},
            {"all", snaps, Sampling::all_members(), every},
            {"members", snaps, Sampling::members({2, 0}), every},
            {"snap_randomized", snaps, Sampling::randomized(0, 3), per_sample},
            {"snap_keyed", snaps, Sampling::keyed(key, 0), per_sample},
            {"grid5_ent", curve, Sampling::grid(5), Outputs::entropy()},
            {"grid5_nostatic", curve_nostatic, Sampling::grid(5), every},
            {"grid5_nostatic_ent", curve_nostatic, Sampling::grid(5), Outputs::entropy()},
            {"randomized_ent", curve, Sampling::randomized(5, 11), Outputs::entropy()},
            {"all_ent", snaps, Sampling::all_members(), Outputs::entropy()},
            {"all_one_ent", snaps_one, Sampling::all_members(), Outputs::entropy()},
            {"all_one_dis", snaps_one, Sampling::all_members(), Outputs::disagreement()},
        };
        for (const Case &c : cases)
            run_case(c.ensemble, in, out, c.name, c.sampling, c.wanted);

        // Metadata on fresh ensembles, so that the static members start from none.
        modeconn::Runtime rt;
        dump_metadata(Ensemble(rt, arg[0]), out, "curve");
        dump_metadata(Ensemble(rt, arg[1]), out, "snapshots");
        dump_metadata(Ensemble(rt, arg[5]), out, "labeled");
    });
}
