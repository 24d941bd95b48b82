// modeconn.hpp: a header-only C++17 wrapper over the C API of modeconn (modeconn.h).
//
// Everything lives in namespace modeconn:
//
//   modeconn::check_abi();                              // the library matches this header
//   modeconn::Runtime rt(modeconn::Device::cpu);
//   modeconn::Ensemble curve(rt, "curve.safetensors");
//   modeconn::Prediction p = curve.predict(x.data(), x.size(), batch,
//                                          modeconn::Sampling::grid(5),
//                                          modeconn::Outputs::entropy());
//   float p01 = p.probability(0, 1);                  // sample 0, class 1
//   float h0 = (*p.entropy)[0];                       // nats
//
// Conventions
//  - Every failure of the library is thrown as modeconn::Error, which carries the
//    modeconn_status, its name and the library's message. Nothing else is thrown but
//    std::bad_alloc, modeconn::AbiMismatch from check_abi(), and whatever a progress callback
//    of train() throws.
//  - Runtime and Ensemble own their C handle: they are move-only, and the destructor frees it.
//    A moved-from object holds no handle; any call on it throws Error with
//    MODECONN_STATUS_NULL_ARGUMENT (assign a new object to use it again).
//  - An Ensemble keeps what it needs of its Runtime: the Runtime may be destroyed first.
//  - Threading is the C API's: a Runtime or a const Ensemble may be used from several threads
//    at once (predictions run in parallel). Moving or destroying an object while another
//    thread uses it is a data race, as for any C++ object.
//  - Strings returned as std::string_view (names, labels, provenance) are owned by the Ensemble
//    and stay valid until it is destroyed (moving it keeps them valid); copy them to keep them
//    longer.
//  - The C handles are reachable through get() to call the C API directly; do not free them.
//
// Only C++17 is needed. With C++20's std::span (when __cpp_lib_span is defined), predict also
// takes a std::span<const float>.

#ifndef MODECONN_HPP
#define MODECONN_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__has_include)
#if __has_include(<version>)
#include <version>
#endif
#endif
#if defined(__cpp_lib_span)
#include <span>
#endif

#include "modeconn.h"

namespace modeconn {

// ---------------------------------------------------------------------------------------------
// Errors and versions

/// A failure reported by the library: its status (never MODECONN_STATUS_OK), the status's name
/// and the library's message. what() is "NAME: message".
class Error : public std::runtime_error {
public:
    /// An error of `status` with the library's `message`.
    Error(modeconn_status status, const std::string &message)
        : std::runtime_error(std::string(modeconn_status_name(status)) + ": " + message),
          status_(status), message_(message) {}

    /// The status the C function returned.
    modeconn_status status() const noexcept { return status_; }

    /// The status's name, e.g. "MODECONN_STATUS_INPUT" (a static string).
    std::string_view status_name() const noexcept { return modeconn_status_name(status_); }

    /// The library's message (modeconn_last_error_message() right after the failing call).
    const std::string &message() const noexcept { return message_; }

private:
    modeconn_status status_;
    std::string message_;
};

/// Thrown by check_abi() when the library is not the version this header describes.
class AbiMismatch : public std::runtime_error {
public:
    /// A mismatch between the header's and the library's ABI versions.
    AbiMismatch(std::uint32_t header, std::uint32_t library)
        : std::runtime_error("modeconn.h describes ABI version " + std::to_string(header) +
                             " but the library is version " + std::to_string(library)),
          header_(header), library_(library) {}

    /// The version the program was compiled against.
    std::uint32_t header_version() const noexcept { return header_; }

    /// The version of the library loaded.
    std::uint32_t library_version() const noexcept { return library_; }

private:
    std::uint32_t header_;
    std::uint32_t library_;
};

namespace detail {

/// Throws Error unless `status` is MODECONN_STATUS_OK. Call it right after the C function, so
/// that the message read is that call's.
inline void check(modeconn_status status) {
    if (status != MODECONN_STATUS_OK)
        throw Error(status, modeconn_last_error_message());
}

}  // namespace detail

/// The name of a status, e.g. "MODECONN_STATUS_NULL_ARGUMENT" (a static string).
inline std::string_view status_name(modeconn_status status) noexcept {
    return modeconn_status_name(status);
}

/// The library's version, e.g. "0.2.0" (a static string).
inline std::string_view version() noexcept { return modeconn_version(); }

/// The library's ABI version: major * 10000 + minor * 100 + patch.
inline std::uint32_t abi_version() noexcept { return modeconn_abi_version(); }

/// Throws AbiMismatch unless the library loaded speaks the ABI `header` (by default the one of
/// the modeconn.h this program was compiled with). Call it once before anything else.
inline void check_abi(std::uint32_t header = MODECONN_ABI_VERSION) {
    if (modeconn_abi_version() != header)
        throw AbiMismatch(header, modeconn_abi_version());
}

// ---------------------------------------------------------------------------------------------
// Enumerations (the values are the C constants)

/// Where a Runtime runs.
enum class Device : std::uint32_t {
    cpu = MODECONN_DEVICE_CPU,        ///< ONNX Runtime's CPU execution provider.
    cuda = MODECONN_DEVICE_CUDA,      ///< CUDA; the Runtime throws when it cannot be used.
    automatic = MODECONN_DEVICE_AUTO, ///< CUDA when it can be used, else the CPU.
};

/// What a bundle holds.
enum class Kind : std::uint32_t {
    curve = MODECONN_KIND_CURVE,         ///< A curve: members are points w(t), t in [0, 1].
    snapshots = MODECONN_KIND_SNAPSHOTS, ///< A snapshot set: members are numbered from 0.
};

/// The basis of a curve.
enum class Basis : std::uint32_t {
    none = MODECONN_BASIS_NONE,           ///< Not a curve (a snapshot set).
    bezier = MODECONN_BASIS_BEZIER,       ///< Bezier curve.
    polychain = MODECONN_BASIS_POLYCHAIN, ///< Polygonal chain.
};

/// The execution provider that runs an Ensemble.
enum class Provider : std::uint32_t {
    cpu = MODECONN_PROVIDER_CPU,   ///< ONNX Runtime's CPU execution provider.
    cuda = MODECONN_PROVIDER_CUDA, ///< The CUDA execution provider.
};

/// How a Sampling chooses members; see the named constructors of Sampling.
enum class SamplingMode : std::uint32_t {
    at = MODECONN_SAMPLING_MODE_AT,
    grid = MODECONN_SAMPLING_MODE_GRID,
    uniform = MODECONN_SAMPLING_MODE_UNIFORM,
    arc_uniform = MODECONN_SAMPLING_MODE_ARC_UNIFORM,
    all_members = MODECONN_SAMPLING_MODE_ALL_MEMBERS,
    members = MODECONN_SAMPLING_MODE_MEMBERS,
    randomized = MODECONN_SAMPLING_MODE_RANDOMIZED,
    keyed = MODECONN_SAMPLING_MODE_KEYED,
};

/// Whether a Member is a point of a curve or a member of a snapshot set.
enum class MemberKind : std::uint32_t {
    t = MODECONN_MEMBER_KIND_T,         ///< The point w(t) of a curve.
    index = MODECONN_MEMBER_KIND_INDEX, ///< A member of a snapshot set, by index.
};

// ---------------------------------------------------------------------------------------------
// Values

/// One network of an ensemble: the point w(t) of a curve, or member `index` of a snapshot set.
struct Member {
    MemberKind kind = MemberKind::t; ///< Which of t and index holds the member.
    double t = 0.0;                  ///< t, for MemberKind::t.
    std::size_t index = 0;           ///< The index, for MemberKind::index.

    /// The point w(t) of a curve.
    static Member point(double t) noexcept { return Member{MemberKind::t, t, 0}; }

    /// Member `index` of a snapshot set.
    static Member snapshot(std::size_t index) noexcept {
        return Member{MemberKind::index, 0.0, index};
    }

    /// The C description of this member.
    modeconn_member c_struct() const noexcept {
        modeconn_member m{};
        m.kind = static_cast<std::uint32_t>(kind);
        m.t = t;
        m.index = index;
        return m;
    }

    /// The member a C description stands for.
    static Member from_c(const modeconn_member &m) noexcept {
        return Member{static_cast<MemberKind>(m.kind), m.t, m.index};
    }

    /// Same kind and same t or index.
    friend bool operator==(const Member &a, const Member &b) noexcept {
        return a.kind == b.kind && (a.kind == MemberKind::t ? a.t == b.t : a.index == b.index);
    }
    friend bool operator!=(const Member &a, const Member &b) noexcept { return !(a == b); }
};

/// How to choose the members of a prediction: build one with a named constructor.
///
/// Curves: at, grid, uniform, arc_uniform. Snapshot sets: all_members, members. Both:
/// randomized and keyed, the per-sample modes (one member per sample; no per-member
/// probabilities or disagreement there). A mode that does not fit the bundle throws Error
/// with MODECONN_STATUS_SAMPLING when used.
class Sampling {
public:
    /// Curves: the members w(t) for each t in `ts` (each in [0, 1]).
    static Sampling at(std::vector<double> ts) {
        Sampling s(SamplingMode::at);
        s.ts_ = std::move(ts);
        return s;
    }

    /// Curves: `m` >= 2 equally spaced t values from 0 to 1.
    static Sampling grid(std::size_t m) noexcept {
        Sampling s(SamplingMode::grid);
        s.count_ = m;
        return s;
    }

    /// Curves: `n` t values drawn uniformly in [0, 1] from a generator seeded with `seed`.
    static Sampling uniform(std::size_t n, std::uint64_t seed) noexcept {
        Sampling s(SamplingMode::uniform);
        s.count_ = n;
        s.seed_ = seed;
        return s;
    }

    /// Curves: `n` t values drawn uniformly in arc length, seeded with `seed`.
    static Sampling arc_uniform(std::size_t n, std::uint64_t seed) noexcept {
        Sampling s(SamplingMode::arc_uniform);
        s.count_ = n;
        s.seed_ = seed;
        return s;
    }

    /// Snapshot sets: every member.
    static Sampling all_members() noexcept { return Sampling(SamplingMode::all_members); }

    /// Snapshot sets: these members, in this order.
    static Sampling members(std::vector<std::size_t> indices) {
        Sampling s(SamplingMode::members);
        s.indices_ = std::move(indices);
        return s;
    }

    /// One member per sample, drawn uniformly: a point of a grid of `grid` points for curves
    /// (ignored for snapshot sets), a member for snapshot sets. From the operating system's
    /// CSPRNG, or from a generator seeded with `seed` (tests and reproducible experiments only).
    static Sampling randomized(std::size_t grid, std::optional<std::uint64_t> seed = {}) noexcept {
        Sampling s(SamplingMode::randomized);
        s.count_ = grid;
        s.seeded_ = seed.has_value();
        s.seed_ = seed.value_or(0);
        return s;
    }

    /// One member per sample, chosen by a keyed hash of the sample's values with `key` (a
    /// grid of `grid` points for curves; ignored for snapshot sets). With a positive `quantum`,
    /// each value is rounded to the nearest multiple of it before hashing, so that changes well
    /// below it meet the same member; 0 hashes the values themselves (-0.0 read as +0.0).
    static Sampling keyed(const std::array<std::uint8_t, 32> &key, std::size_t grid,
                          double quantum = 0.0) noexcept {
        Sampling s(SamplingMode::keyed);
        s.key_ = key;
        s.count_ = grid;
        s.quantum_ = quantum;
        return s;
    }

    /// The mode.
    SamplingMode mode() const noexcept { return mode_; }

    /// Whether the mode chooses one member per sample (randomized, keyed).
    bool per_sample() const noexcept {
        return mode_ == SamplingMode::randomized || mode_ == SamplingMode::keyed;
    }

    /// The C description. Its pointers point into this object: valid while it lives, unchanged
    /// (so there is none for a temporary Sampling).
    modeconn_sampling c_struct() const && = delete;
    /// The C description. Its pointers point into this object: valid while it lives, unchanged.
    modeconn_sampling c_struct() const & noexcept {
        modeconn_sampling s{};
        s.mode = static_cast<std::uint32_t>(mode_);
        s.seeded = seeded_ ? 1u : 0u;
        s.count = count_;
        s.seed = seed_;
        s.ts = ts_.empty() ? nullptr : ts_.data();
        s.ts_len = ts_.size();
        s.members = indices_.empty() ? nullptr : indices_.data();
        s.members_len = indices_.size();
        s.key = mode_ == SamplingMode::keyed ? key_.data() : nullptr;
        s.quantum = quantum_;
        return s;
    }

private:
    explicit Sampling(SamplingMode mode) noexcept : mode_(mode) {}

    SamplingMode mode_;
    bool seeded_ = false;
    std::size_t count_ = 0;
    std::uint64_t seed_ = 0;
    std::vector<double> ts_;
    std::vector<std::size_t> indices_;
    std::array<std::uint8_t, 32> key_{};
    double quantum_ = 0.0;
};

/// The outputs a prediction computes besides the mean probabilities, combined with |:
/// Outputs::entropy() | Outputs::members(). Outputs{} asks for the probabilities only.
class Outputs {
public:
    constexpr Outputs() noexcept = default;

    /// Each member's probabilities (shared samplings only).
    static constexpr Outputs per_member() noexcept { return Outputs(1); }
    /// The members used (one per sample in the per-sample modes).
    static constexpr Outputs members() noexcept { return Outputs(2); }
    /// Each sample's predictive entropy.
    static constexpr Outputs entropy() noexcept { return Outputs(4); }
    /// Each sample's disagreement (shared samplings only).
    static constexpr Outputs disagreement() noexcept { return Outputs(8); }

    /// Both sets of outputs.
    constexpr Outputs operator|(Outputs other) const noexcept {
        return Outputs(bits_ | other.bits_);
    }

    /// Whether every output of `other` is asked for.
    constexpr bool has(Outputs other) const noexcept {
        return (bits_ & other.bits_) == other.bits_;
    }

private:
    constexpr explicit Outputs(unsigned bits) noexcept : bits_(bits) {}
    unsigned bits_ = 0;
};

/// The result of Ensemble::predict. The optional outputs hold a value exactly when asked for.
struct Prediction {
    std::size_t batch = 0;   ///< Number of samples.
    std::size_t classes = 0; ///< Number of classes.
    /// Mean probabilities over the members, row-major [batch, classes].
    std::vector<float> probabilities;
    /// Each member's probabilities, [members, batch, classes].
    std::optional<std::vector<float>> per_member;
    /// The members used, in order; one per sample in the per-sample modes.
    std::optional<std::vector<Member>> members;
    /// Predictive entropy of each sample (nats, of its mean probabilities), [batch].
    std::optional<std::vector<float>> entropy;
    /// Fraction of members whose most probable class differs from the ensemble's, [batch].
    std::optional<std::vector<float>> disagreement;

    /// The mean probability of class `cls` for sample `sample` (unchecked).
    float probability(std::size_t sample, std::size_t cls) const noexcept {
        return probabilities[sample * classes + cls];
    }
};

/// The number of elements each output of a prediction needs (see modeconn_output_sizes).
using OutputSizes = modeconn_output_sizes;

/// The per-channel normalisation a bundle asks callers to apply to raw inputs:
/// (x - mean[c]) / stddev[c] for channel c, the axis after the batch.
struct Preprocess {
    std::vector<double> mean;   ///< Per-channel mean.
    std::vector<double> stddev; ///< Per-channel standard deviation.
};

// ---------------------------------------------------------------------------------------------
// Handles

namespace detail {

/// Sole owner of a C handle released by `Free`: move-only, frees it in the destructor and when
/// another is moved in. A moved-from Handle holds nullptr.
template <typename T, modeconn_status (*Free)(T *)> class Handle {
public:
    Handle() noexcept = default;
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            Free(ptr_);
            ptr_ = std::exchange(other.ptr_, nullptr);
        }
        return *this;
    }
    ~Handle() { Free(ptr_); }

    /// The handle, owned by this object.
    T *get() const noexcept { return ptr_; }

    /// Where a C constructor (modeconn_*_new, _open) writes the new handle; only for an
    /// empty Handle.
    T **out() noexcept { return &ptr_; }

private:
    T *ptr_ = nullptr;
};

}  // namespace detail

/// ONNX Runtime with a chosen device. Move-only; the destructor frees the handle.
class Runtime {
public:
    /// Loads ONNX Runtime (once per process) and creates a runtime on `device` with `threads`
    /// operator threads (0: one per core; the first runtime of the process fixes it).
    /// `ort_library` is the path of libonnxruntime.so; empty: ORT_DYLIB_PATH, then the
    /// executable's folder. Throws Error (ORT_LIBRARY, DEVICE, INVALID_ARGUMENT, ORT, ...).
    /// With Device::cuda, `gpu` is the index of the GPU (0 is the first).
    explicit Runtime(Device device = Device::cpu, std::size_t threads = 0,
                     const std::string &ort_library = {}, std::uint32_t gpu = 0) {
        detail::check(modeconn_runtime_new(ort_library.empty() ? nullptr : ort_library.c_str(),
                                           static_cast<std::uint32_t>(device), gpu, threads,
                                           handle_.out()));
    }

    Runtime(const Runtime &) = delete;
    Runtime &operator=(const Runtime &) = delete;
    /// Takes over `other`'s handle; `other` is left without one.
    Runtime(Runtime &&other) noexcept = default;
    /// Frees this runtime's handle and takes over `other`'s.
    Runtime &operator=(Runtime &&other) noexcept = default;
    /// Frees the handle (modeconn_runtime_free).
    ~Runtime() = default;

    /// The C handle (nullptr once moved from), owned by this object.
    const modeconn_runtime *get() const noexcept { return handle_.get(); }

private:
    detail::Handle<modeconn_runtime, modeconn_runtime_free> handle_;
};

/// A loaded bundle ready to predict. Move-only; the destructor frees the handle. Its const
/// member functions may be called from several threads at once.
class Ensemble {
public:
    /// Opens a bundle file with the default options (a static-session budget of 1 GiB, one
    /// session per CPU). Throws Error (IO, a bundle error such as HEADER or METADATA, ORT, ...).
    Ensemble(const Runtime &runtime, const std::string &path) {
        detail::check(modeconn_ensemble_open(runtime.get(), path.c_str(), handle_.out()));
    }

    /// Opens a bundle file keeping at most `static_budget_bytes` of weights in static sessions
    /// (0 disables them) with `max_sessions` ONNX Runtime sessions per model (0: the default).
    /// The predictions are the same whatever the options.
    Ensemble(const Runtime &runtime, const std::string &path, std::size_t static_budget_bytes,
             std::size_t max_sessions) {
        detail::check(modeconn_ensemble_open_with(runtime.get(), path.c_str(),
                                                  static_budget_bytes, max_sessions,
                                                  handle_.out()));
    }

    Ensemble(const Ensemble &) = delete;
    Ensemble &operator=(const Ensemble &) = delete;
    /// Takes over `other`'s handle; `other` is left without one.
    Ensemble(Ensemble &&other) noexcept = default;
    /// Frees this ensemble's handle and takes over `other`'s.
    Ensemble &operator=(Ensemble &&other) noexcept = default;
    /// Frees the handle (modeconn_ensemble_free); the strings it lent go with it.
    ~Ensemble() = default;

    /// The C handle (nullptr once moved from), owned by this object.
    const modeconn_ensemble *get() const noexcept { return handle_.get(); }

    // --- Properties

    /// Curve or snapshot set.
    Kind kind() const {
        return static_cast<Kind>(get_value<modeconn_kind>(modeconn_ensemble_kind));
    }

    /// The curve's basis (Basis::none for snapshot sets).
    Basis basis() const {
        return static_cast<Basis>(get_value<modeconn_basis>(modeconn_ensemble_basis));
    }

    /// Control points K of a curve, members M of a snapshot set.
    std::size_t points() const { return get_value<std::size_t>(modeconn_ensemble_points); }

    /// The number of classes.
    std::size_t classes() const { return get_value<std::size_t>(modeconn_ensemble_classes); }

    /// The execution provider in use (with Device::automatic, whether CUDA is).
    Provider provider() const {
        return static_cast<Provider>(get_value<modeconn_provider>(modeconn_ensemble_provider));
    }

    /// The number of members held in static sessions now.
    std::size_t static_members() const {
        return get_value<std::size_t>(modeconn_ensemble_static_members);
    }

    /// The input shape, batch axis first as -1 (e.g. {-1, 3, 32, 32}).
    std::vector<std::int64_t> input_shape() const {
        std::size_t rank = 0;
        detail::check(modeconn_ensemble_input_shape(handle_.get(), nullptr, 0, &rank));
        std::vector<std::int64_t> shape(rank);
        detail::check(
            modeconn_ensemble_input_shape(handle_.get(), shape.data(), shape.size(), &rank));
        return shape;
    }

    // --- Metadata

    /// The softmax temperature T: probabilities are softmax(logits / T).
    double temperature() const { return get_value<double>(modeconn_ensemble_temperature); }

    /// The name of the graph input the batch feeds (owned by this Ensemble).
    std::string_view input_name() const {
        return get_value<const char *>(modeconn_ensemble_input_name);
    }

    /// The name of the graph output that holds the logits (owned by this Ensemble).
    std::string_view output_name() const {
        return get_value<const char *>(modeconn_ensemble_output_name);
    }

    /// The number of class labels: 0 when the bundle names none, else classes().
    std::size_t label_count() const {
        return get_value<std::size_t>(modeconn_ensemble_label_count);
    }

    /// The label of class `index` (owned by this Ensemble). Throws Error with
    /// MODECONN_STATUS_INVALID_ARGUMENT when index >= label_count().
    std::string_view label(std::size_t index) const {
        const char *out = nullptr;
        detail::check(modeconn_ensemble_label(handle_.get(), index, &out));
        return out;
    }

    /// Every class label, in class order; empty when the bundle names none.
    std::vector<std::string> labels() const {
        std::vector<std::string> out;
        const std::size_t n = label_count();
        out.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            out.emplace_back(label(i));
        return out;
    }

    /// The bundle's provenance as JSON text (owned by this Ensemble), or nothing when the bundle
    /// records none.
    std::optional<std::string_view> provenance() const {
        const char *out = get_value<const char *>(modeconn_ensemble_provenance);
        if (out == nullptr)
            return std::nullopt;
        return std::string_view(out);
    }

    /// The normalisation the bundle asks for, or nothing when it asks for none.
    std::optional<Preprocess> preprocess() const {
        std::size_t channels = 0;
        detail::check(
            modeconn_ensemble_preprocess(handle_.get(), nullptr, nullptr, 0, &channels));
        if (channels == 0)
            return std::nullopt;
        Preprocess p{std::vector<double>(channels), std::vector<double>(channels)};
        detail::check(modeconn_ensemble_preprocess(handle_.get(), p.mean.data(),
                                                   p.stddev.data(), channels, &channels));
        return p;
    }

    // --- Predictions

    /// The size of each output of a prediction of `batch` samples with `sampling`. Throws Error
    /// for a sampling that cannot be used with this bundle.
    OutputSizes output_sizes(const Sampling &sampling, std::size_t batch) const {
        const modeconn_sampling s = sampling.c_struct();
        OutputSizes sizes{};
        detail::check(modeconn_ensemble_output_sizes(handle_.get(), &s, batch, &sizes));
        return sizes;
    }

    /// Predicts `batch` samples of the input shape, `len` floats in row-major order at `data`:
    /// the mean probabilities over the members `sampling` selects, and the outputs `wanted`.
    /// Throws Error: INPUT (len is not batch times a sample's size, batch 0), T_OUT_OF_RANGE,
    /// MEMBER_OUT_OF_RANGE, SAMPLING (a mode that does not fit the bundle, or per-member
    /// probabilities or disagreement asked for in a per-sample mode), INVALID_ARGUMENT, ORT...
    [[nodiscard]] Prediction predict(const float *data, std::size_t len, std::size_t batch,
                                     const Sampling &sampling, Outputs wanted = {}) const {
        const modeconn_sampling s = sampling.c_struct();
        OutputSizes sizes{};
        detail::check(modeconn_ensemble_output_sizes(handle_.get(), &s, batch, &sizes));
        Prediction p;
        p.batch = batch;
        p.classes = batch == 0 ? 0 : sizes.probabilities / batch;
        std::vector<float> per, entropy, disagreement;
        std::vector<modeconn_member> members;
        modeconn_outputs out{};
        out.probabilities = room(p.probabilities, sizes.probabilities);
        out.probabilities_len = sizes.probabilities;
        if (wanted.has(Outputs::per_member())) {
            out.per_member = room(per, sizes.per_member);
            out.per_member_len = sizes.per_member;
        }
        if (wanted.has(Outputs::members())) {
            out.members = room(members, sizes.members);
            out.members_len = sizes.members;
        }
        if (wanted.has(Outputs::entropy())) {
            out.entropy = room(entropy, sizes.entropy);
            out.entropy_len = sizes.entropy;
        }
        if (wanted.has(Outputs::disagreement())) {
            out.disagreement = room(disagreement, sizes.disagreement);
            out.disagreement_len = sizes.disagreement;
        }
        const modeconn_input input{data, len, batch};
        detail::check(modeconn_ensemble_predict(handle_.get(), &input, &s, &out));
        p.probabilities.resize(sizes.probabilities);
        if (out.per_member != nullptr) {
            per.resize(sizes.per_member);
            p.per_member = std::move(per);
        }
        if (out.members != nullptr) {
            std::vector<Member> m;
            m.reserve(sizes.members);
            for (std::size_t i = 0; i < sizes.members; ++i)
                m.push_back(Member::from_c(members[i]));
            p.members = std::move(m);
        }
        if (out.entropy != nullptr) {
            entropy.resize(sizes.entropy);
            p.entropy = std::move(entropy);
        }
        if (out.disagreement != nullptr) {
            disagreement.resize(sizes.disagreement);
            p.disagreement = std::move(disagreement);
        }
        return p;
    }

#if defined(__cpp_lib_span)
    /// Predicts the samples of `data`, `batch` of them (C++20): see the pointer overload.
    [[nodiscard]] Prediction predict(std::span<const float> data, std::size_t batch,
                                     const Sampling &sampling, Outputs wanted = {}) const {
        return predict(data.data(), data.size(), batch, sampling, wanted);
    }
#endif

    /// Writes a standalone ONNX model of `member` (Member::point(t) for curves,
    /// Member::snapshot(i) for snapshot sets) to the file `path`, replacing it atomically.
    /// Throws Error: T_OUT_OF_RANGE, MEMBER_OUT_OF_RANGE, SAMPLING (a kind of member that does
    /// not fit the bundle), IO, ONNX...
    void materialize(const Member &member, const std::string &path) const {
        const modeconn_member m = member.c_struct();
        detail::check(modeconn_ensemble_materialize(handle_.get(), &m, path.c_str()));
    }

private:
    /// Calls a C getter `f(handle, &out)` and returns out.
    template <typename T, typename F> T get_value(F f) const {
        T out{};
        detail::check(f(handle_.get(), &out));
        return out;
    }

    /// Sizes `v` for `n` elements and returns a pointer the C API sees as a buffer that is
    /// wanted: never NULL, even for n = 0 (NULL would mean "not wanted" and hide a
    /// MODECONN_STATUS_SAMPLING for outputs that do not exist in the per-sample modes).
    template <typename T> static T *room(std::vector<T> &v, std::size_t n) {
        v.resize(n == 0 ? 1 : n);
        return v.data();
    }

    detail::Handle<modeconn_ensemble, modeconn_ensemble_free> handle_;
};

// ---------------------------------------------------------------------------------------------
// Training

namespace detail {

/// What train() passes to the C callback: the user's callback and the first exception it threw.
struct Progress {
    const std::function<void(std::string_view)> *callback;
    std::exception_ptr error;
};

/// The C progress callback: calls the user's callback, never lets an exception unwind into
/// the library (the first one is kept for train() to rethrow; later events are then skipped).
inline void progress_trampoline(const char *event_json, void *user) noexcept {
    auto *progress = static_cast<Progress *>(user);
    if (progress->error)
        return;
    try {
        (*progress->callback)(event_json);
    } catch (...) {
        progress->error = std::current_exception();
    }
}

/// Releases a string of the library (modeconn_string_free).
struct StringFree {
    void operator()(char *s) const noexcept { modeconn_string_free(s); }
};

}  // namespace detail

/// Runs a training job (train, curve, fge or eval; the JSON the CLI's training commands send,
/// see docs/c-api.md) through the trainer plugin and returns its report, a JSON object.
///
/// `plugin` is the path of libmodeconn_trainer.so; empty: MODECONN_TRAINER, then beside
/// libmodeconn.so, then beside the executable. `progress`, when set, is called on this thread
/// with each progress event (a JSON object, valid during the call only) while the job runs.
///
/// Throws Error: TRAINER_UNAVAILABLE, INVALID_JOB (the message names the field),
/// TRAINER_FAILED, UTF8. If `progress` throws, the job runs on to its end without further
/// events, and train() then rethrows that exception (in preference to the job's own failure).
inline std::string train(const std::string &job_json, const std::string &plugin = {},
                         const std::function<void(std::string_view)> &progress = {}) {
    detail::Progress state{&progress, nullptr};
    const modeconn_progress_fn callback = progress ? &detail::progress_trampoline : nullptr;
    char *raw = nullptr;
    const modeconn_status status = modeconn_train(
        plugin.empty() ? nullptr : plugin.c_str(), job_json.c_str(), callback, &state, &raw);
    // Owned before anything else can throw; the message read before any other call.
    const std::unique_ptr<char, detail::StringFree> report(raw);
    const std::string message = status == MODECONN_STATUS_OK ? std::string()
                                                             : modeconn_last_error_message();
    if (state.error)
        std::rethrow_exception(state.error);
    if (status != MODECONN_STATUS_OK)
        throw Error(status, message);
    return std::string(report.get());
}

}  // namespace modeconn

#endif  // MODECONN_HPP
