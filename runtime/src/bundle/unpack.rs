//! One member of a bundle as a PyTorch `state_dict` in safetensors: what `modeconn unpack`
//! writes, so that a point of a curve or a snapshot loads back into the user's model.

use std::collections::BTreeMap;

use safetensors::tensor::{Dtype, TensorView};

use super::{Bundle, Member};
use crate::graph::elem;
use crate::{Error, Result};

impl Bundle {
    /// The weights of `member` as safetensors bytes, by their ONNX names (the state_dict names
    /// for graphs exported from PyTorch): every tensor of the bundle at that member (batch-norm
    /// statistics interpolated on their grid) and the graph's fixed `FLOAT` initializers, which
    /// are the same for every member.
    ///
    /// Errors: those of [`Bundle::weights_at`] (a t on a snapshot set, an index on a curve, a
    /// t outside `[0, 1]`, a member that does not exist).
    pub fn state_dict(&self, member: Member) -> Result<Vec<u8>> {
        let weights = self.weights_at(member)?;
        let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
        let bytes = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect();
        for (name, shape, values) in &weights.tensors {
            let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
            tensors.insert(name.clone(), (shape, bytes(values)));
        }
        for init in self.graph().initializers() {
            if init.data_type != elem::FLOAT || tensors.contains_key(&init.name) {
                continue;
            }
            let values = self.graph().initializer_f32(&init.name)?;
            let shape = init.dims.iter().map(|&d| d.max(0) as usize).collect();
            tensors.insert(init.name.clone(), (shape, bytes(&values)));
        }
        let views = tensors
            .iter()
            .map(|(name, (shape, data))| {
                TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (name.as_str(), v))
                    .map_err(|e| Error::Header {
                        detail: format!("tensor `{name}`: {e}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let info = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::tensor::serialize(views, Some(info)).map_err(|e| Error::Header {
            detail: e.to_string(),
        })
    }
}
