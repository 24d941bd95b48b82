//! Training one network from scratch (an endpoint): SGD with momentum and weight decay on the
//! reference schedule; writes a one-member snapshot bundle.

use std::collections::BTreeMap;

use tch::{Device, Tensor};

use crate::arch::{self, Mode, Net, Params};
use crate::checkpoint::{self, Checkpoint};
use crate::data::Data;
use crate::device;
use crate::epochs::{self, EpochEnd, Epochs, LastEpoch, Trainee};
use crate::fit::{self, Pass};
use crate::job::{Event, Phase, TrainJob, TrainReport, TrainingOptions, report};
use crate::model_io::{self, ModelSpec};
use crate::optim::{Sgd, reference_lr};
use crate::{Error, Result};
use modeconn_runtime::graph::OnnxModel as OnnxGraph;

/// Trains the network of `job` (one of the trainer's architectures, or a user's ONNX graph)
/// on `job.training.data` and writes it to `job.out`.
pub fn train(job: &TrainJob, on_event: &mut dyn FnMut(&Event)) -> Result<TrainReport> {
    let t = &job.training;
    fit::check_options(t)?;
    let device = device::select(t.device)?;
    // A graph that cannot be imported fails before the data is read.
    let imported = match (&job.arch, &job.onnx) {
        (Some(_), Some(_)) => {
            return Err(Error::Config(
                "give `arch` (one of the trainer's architectures) or `onnx` (your own graph), \
                 not both"
                    .into(),
            ));
        }
        (None, None) => {
            return Err(Error::Config(
                "give `arch` (one of the trainer's architectures) or `onnx` (your own graph)"
                    .into(),
            ));
        }
        (Some(_), None) if job.init.is_some() => {
            return Err(Error::Config(
                "`init` is a state_dict of an `onnx` graph; the trainer's architectures start \
                 from a seeded initialisation"
                    .into(),
            ));
        }
        (Some(_), None) => None,
        (None, Some(onnx)) => Some(match &job.init {
            Some(init) => Start::Loaded(Box::new(
                model_io::endpoint(init, Some(onnx), None, "--init")?.0,
            )),
            None => {
                let bytes = std::fs::read(onnx).map_err(|e| Error::io(onnx, e))?;
                let graph = OnnxGraph::parse(&bytes)?;
                let net = arch::import::import(&graph, &[]).map_err(|e| match e {
                    Error::Arch(reason) => Error::Arch(format!("{}: {reason}", onnx.display())),
                    other => other,
                })?;
                Start::Fresh(net)
            }
        }),
    };
    let data = fit::load_data(t)?;
    let spec = match &job.arch {
        Some(arch) => Some(ModelSpec {
            arch: arch.clone(),
            hidden: job.hidden.clone(),
            input: data.input.clone(),
            classes: data.classes,
            mean: data.mean.clone(),
            std: data.std.clone(),
        }),
        None => None,
    };
    let net = match (&spec, &imported) {
        (Some(spec), _) => spec.net()?,
        (None, Some(Start::Fresh(net))) => net.clone(),
        (None, Some(Start::Loaded(l))) => l.net.clone(),
        (None, None) => return Err(Error::Config("no network to train".into())),
    };
    fit::check_fits(&data, &net, "the network")?;
    tch::manual_seed(t.seed as i64);
    let params = match &imported {
        Some(Start::Loaded(l)) => model_io::member(l, 0, device)?,
        _ => arch::init(&net, t.seed as i64, device)?,
    };
    let origin = match &imported {
        Some(Start::Loaded(l)) => l.origin(),
        _ => model_io::Origin {
            spec: spec.as_ref(),
            base: None,
        },
    };
    let mut endpoint = Endpoint {
        network: Network::new(&net, params, t),
        net: &net,
        data: &data,
        device,
        training: t,
    };
    let epochs = Epochs {
        phase: Phase::Train,
        training: t,
        data: &data,
        device,
        out: &job.out,
    };
    let finished = epochs::drive(epochs, job, &mut endpoint, on_event)?;
    let params = &endpoint.network.params;
    let (train, test) = match finished.last {
        Some(LastEpoch {
            train,
            end: EpochEnd {
                test: Some(test), ..
            },
        }) => (train, test),
        // Everything was done before; score what the checkpoint holds.
        _ => (
            Pass::train(&data, 256, device).evaluate(&net, params)?,
            Pass::test(&data, 256, device).evaluate(&net, params)?,
        ),
    };
    let scores = report::Scores {
        train_loss: train.loss,
        train_accuracy: train.accuracy,
        test_nll: test.loss,
        test_accuracy: test.accuracy,
    };
    let run = &finished.run;
    model_io::write_snapshots(
        &job.out,
        &net,
        origin,
        std::slice::from_ref(params),
        serde_json::json!({ "command": "train", "job": run.job, "metrics": scores, "history": run.history }),
    )?;
    // The last checkpoint stays: it holds the optimiser's momentum, which FGE from this
    // network continues (as the reference's fge.py continues its training checkpoint's).
    Ok(TrainReport {
        arch: net.arch.clone(),
        run: finished.trained(&job.out),
        scores,
    })
}

/// Where an imported network starts: a seeded initialisation, or the state_dict of `init`.
enum Start {
    Fresh(Net),
    Loaded(Box<model_io::Loaded>),
}

/// An endpoint in training: its network, and what it trains on.
struct Endpoint<'a> {
    network: Network,
    net: &'a Net,
    data: &'a Data,
    device: Device,
    training: &'a TrainingOptions,
}

impl Trainee for Endpoint<'_> {
    fn lr(&self, epoch: usize) -> f64 {
        reference_lr(self.training.lr, epoch, self.training.epochs)
    }

    fn resume(&mut self, checkpoint: Option<Checkpoint>) -> Result<()> {
        if let Some(c) = checkpoint {
            self.network.restore(c.tensors)?;
        }
        self.network.track_gradients()
    }

    fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64) -> Result<(Tensor, Tensor)> {
        self.network.step(self.net, x, y, lr)
    }

    fn end_epoch(&mut self, _: usize, _: &mut dyn FnMut(&Event)) -> Result<EpochEnd> {
        let test =
            Pass::test(self.data, 256, self.device).evaluate(self.net, &self.network.params)?;
        Ok(EpochEnd {
            test: Some(test),
            members: None,
        })
    }

    fn checkpoint(&self) -> (serde_json::Value, Vec<(String, &Tensor)>) {
        (serde_json::json!({}), self.network.tensors())
    }
}

/// One network trained by SGD (`train`, `fge`): its parameters, the names of those trained,
/// and the optimiser.
pub(crate) struct Network {
    pub params: Params,
    trainable: Vec<String>,
    sgd: Sgd,
}

/// The prefix of the parameters' names in checkpoints.
pub(crate) const PARAM: &str = "param/";

impl Network {
    /// `params` of `net`, to be trained with the momentum and weight decay of `t`.
    pub fn new(net: &Net, params: Params, t: &TrainingOptions) -> Self {
        Network {
            params,
            trainable: fit::trained_names(net),
            sgd: Sgd::new(t.momentum, t.wd),
        }
    }

    /// Makes libtorch track the gradients of the trained parameters.
    pub fn track_gradients(&mut self) -> Result<()> {
        fit::track_gradients(&mut self.params, &self.trainable)
    }

    /// One mini-batch of SGD at rate `lr`: returns the batch's loss and logits.
    pub fn step(&mut self, net: &Net, x: &Tensor, y: &Tensor, lr: f64) -> Result<(Tensor, Tensor)> {
        let logits = arch::forward(net, &self.params, x, Mode::Train)?;
        let loss = fit::cross_entropy(&logits, y)?;
        loss.f_backward()?;
        let trainable = &self.trainable;
        self.sgd.step(
            self.params
                .iter_mut()
                .filter(|(n, _)| trainable.contains(n)),
            lr,
        )?;
        Ok((loss, logits))
    }

    /// The parameters (as `param/NAME`) and momentum buffers, for checkpoints.
    pub fn tensors(&self) -> Vec<(String, &Tensor)> {
        let params = self.params.iter().map(|(n, t)| (format!("{PARAM}{n}"), t));
        params.chain(self.sgd.checkpoint_tensors()).collect()
    }

    /// Continues with these momentum buffers (by parameter name), as if the optimiser had run
    /// before: FGE from a training checkpoint.
    pub fn continue_momentum(&mut self, buffers: BTreeMap<String, Tensor>) {
        self.sgd.set_buffers(buffers);
    }

    /// The names of the trained parameters.
    pub fn trainable(&self) -> &[String] {
        &self.trainable
    }

    /// Restores what [`Network::tensors`] saved; other tensors are refused.
    pub fn restore(&mut self, tensors: BTreeMap<String, Tensor>) -> Result<()> {
        for (name, t) in self.sgd.restore(tensors) {
            let slot = name
                .strip_prefix(PARAM)
                .and_then(|p| self.params.get_mut(p));
            checkpoint::restore_tensor(slot, &name, &t)?;
        }
        Ok(())
    }
}
