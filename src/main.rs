//! `modeconn`: inspect, run, materialise and pack mode-connected ensembles; train endpoints,
//! curves and FGE ensembles and evaluate them through the trainer plugin.

mod attack;
mod cmd;
mod evaltable;
mod plot;
mod plugin;
mod progress;
mod summary;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Mode-connected curves and fast geometric ensembles.
#[derive(Parser)]
#[command(name = "modeconn", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a bundle: kind, basis, points, bn grid, input, classes, tensors, size.
    Inspect(cmd::inspect::Args),
    /// Say what runs where: ONNX Runtime and its CUDA provider, the trainer plugin, libtorch and
    /// the CUDA devices it sees.
    Doctor(cmd::doctor::Args),
    /// Predict class probabilities for a batch with members chosen along a curve or from a set.
    Predict(cmd::predict::Args),
    /// Write one member as a standalone ONNX model with fixed weights.
    Materialize(cmd::materialize::Args),
    /// Make a bundle from an ONNX classifier and weight files saved with safetensors.
    Pack(cmd::pack::Args),
    /// Serve bundles over HTTP and gRPC (Open Inference Protocol v2): ensembles, points,
    /// randomised and keyed queries, dynamic batching, Prometheus metrics.
    Serve(cmd::serve::Args),
    /// Ask a running server whether it is ready (or live): exit status 0 when it is; for
    /// container health checks.
    Health(cmd::health::Args),
    /// Open the sealed points of an audit log written by `serve`, given its key.
    Unseal(cmd::unseal::Args),
    /// Train one network (one of the trainer's architectures, or your own ONNX export): writes
    /// a one-member snapshot bundle (needs the trainer plugin).
    Train(cmd::train::Args),
    /// Fit a curve between two trained endpoints: writes a curve bundle (needs the trainer
    /// plugin).
    Curve(cmd::curve::Args),
    /// Fast Geometric Ensembling from a trained network: writes a snapshot-set bundle (needs
    /// the trainer plugin).
    Fge(cmd::fge::Args),
    /// Evaluate a bundle along its curve or over its members (needs the trainer plugin).
    Eval(cmd::eval::Args),
    /// Evaluate the plane through a curve's endpoints and bend, or through three networks:
    /// train loss, train error and test error on a grid (needs the trainer plugin).
    Plane(cmd::plane::Args),
    /// Measure a serving mode against adversarial attacks: gradient attacks through the trainer
    /// plugin, score-based ones through the runtime, evaluated as the server answers.
    Attack(Box<cmd::attack::Args>),
    /// Fit the softmax temperature of a serving mode on held-out data and write the bundle
    /// with it (needs the trainer plugin for the data).
    Calibrate(Box<cmd::calibrate::Args>),
    /// Recompute a curve's batch-norm statistics on a grid of t from the training data, and
    /// write the bundle with them (needs the trainer plugin).
    Bn(cmd::bn::Args),
    /// Write one point of a curve or one member of a snapshot set as a PyTorch state_dict
    /// (safetensors).
    Unpack(cmd::unpack::Args),
    /// Draw a report of eval, plane, fge, attack or calibrate as a PNG or SVG picture.
    Plot(cmd::plot::Args),
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`),
    // instead of failing on the broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default action of a signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // ONNX Runtime's telemetry keeps a device id and an event database under the user's cache
    // folder (~/.cache/Microsoft/DeveloperTools/.onnxruntime): files a server has no business
    // writing. It stays off unless ORT_DISABLE_TELEMETRY says otherwise.
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        // SAFETY: no other thread exists yet, so none reads the environment meanwhile.
        unsafe { std::env::set_var("ORT_DISABLE_TELEMETRY", "1") };
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Doctor(a) => cmd::doctor::run(a),
        Command::Predict(a) => cmd::predict::run(a),
        Command::Materialize(a) => cmd::materialize::run(a),
        Command::Pack(a) => cmd::pack::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Health(a) => cmd::health::run(a),
        Command::Unseal(a) => cmd::unseal::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Curve(a) => cmd::curve::run(a),
        Command::Fge(a) => cmd::fge::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Plane(a) => cmd::plane::run(a),
        Command::Attack(a) => cmd::attack::run(*a),
        Command::Calibrate(a) => cmd::calibrate::run(*a),
        Command::Bn(a) => cmd::bn::run(a),
        Command::Unpack(a) => cmd::unpack::run(a),
        Command::Plot(a) => cmd::plot::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: errors that already print their
/// source (`path: No such file or directory`) do not get it twice.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text.replace('\n', " ")
}
