//! The samples of a split as `.npy` files: what `samples` jobs write, and how `attack` jobs
//! write their clean and adversarial inputs.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use tch::{Device, Tensor};

use crate::data::Split;
use crate::fit;
use crate::job::{DataSplit, SamplesJob, SamplesReport};
use crate::model_io;
use crate::{Error, Result};

/// Writes inputs (float32, any shape) as a `.npy` file, atomically.
pub fn write_inputs(path: &Path, t: &Tensor) -> Result<()> {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values = model_io::host(t)?;
    let array = ArrayD::from_shape_vec(IxDyn(&shape), values)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    modeconn_runtime::npy::write(path, &array.view())?;
    Ok(())
}

/// Writes labels (int64, one axis) as a `.npy` file, atomically.
pub fn write_labels(path: &Path, y: &Tensor) -> Result<()> {
    let y = y.f_to_device(Device::Cpu)?.f_contiguous()?.f_view([-1])?;
    let values = Vec::<i64>::try_from(&y)?;
    let array = ArrayD::from_shape_vec(IxDyn(&[values.len()]), values)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    modeconn_runtime::npy::write(path, &array.view())?;
    Ok(())
}

/// The first `samples` samples of the split (all of them when `None`).
pub fn first(split: &Split, samples: Option<usize>) -> Result<(Tensor, Tensor)> {
    if samples == Some(0) {
        return Err(Error::Config("`samples` must be at least 1".into()));
    }
    let n = samples.map_or(split.len(), |s| s.min(split.len()));
    if n == 0 {
        return Err(Error::Config("the split has no samples".into()));
    }
    let n = n as i64;
    Ok((split.x.f_narrow(0, 0, n)?, split.y.f_narrow(0, 0, n)?))
}

/// Runs a `samples` job: `x.npy` and `y.npy` in the job's folder.
pub fn samples(job: &SamplesJob) -> Result<SamplesReport> {
    let data = fit::load_eval_data(&job.data, job.held_out, job.seed, job.limit)?;
    let split = match job.split {
        DataSplit::Test => &data.test,
        DataSplit::Train => &data.train,
    };
    let (x, y) = first(split, job.samples)?;
    std::fs::create_dir_all(&job.out).map_err(|error| Error::Io {
        path: job.out.clone(),
        error,
    })?;
    let (xp, yp) = (job.out.join("x.npy"), job.out.join("y.npy"));
    write_inputs(&xp, &x)?;
    write_labels(&yp, &y)?;
    Ok(SamplesReport {
        samples: usize::try_from(y.size()[0]).unwrap_or(0),
        input_shape: data.input.iter().map(|&d| d as usize).collect(),
        classes: usize::try_from(data.classes).unwrap_or(0),
        x: xp,
        y: yp,
    })
}
