//! Target `onnx`: the ONNX wire parser (`OnnxModel::parse`) and the three rewrites, asked for
//! what the model itself suggests: its own small `FLOAT` initializers lifted to inputs, baked
//! in as zeros, and mixed from stacks (alternately by `MatMul` and by `Gather`).
//!
//! Properties: every rewrite either fails with an error or returns a model that parses and
//! has what was asked for; lifting twice is lifting once.

use std::collections::HashSet;

use modeconn_runtime::graph::{Mix, MixVia, NamedTensor, OnnxModel, StackSource, elem};

use crate::product;

/// The most floats of one initializer the rewrites are asked to handle.
const MAX_TENSOR_FLOATS: usize = 1 << 16;
/// The most initializers one input asks the rewrites about.
const MAX_TENSORS: usize = 8;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(model) = OnnxModel::parse(data) else {
        return;
    };
    let _ = (model.ir_version(), model.opset(), model.graph_outputs());
    let _ = (model.data_inputs(), model.batch_norm_statistics());
    for init in model.initializers() {
        // `initializer_f32` reads the first initializer of a name.
        if model.initializer(&init.name) != Some(init) {
            continue;
        }
        if let Ok(values) = model.initializer_f32(&init.name) {
            let dims = init.dims.iter().map(|&d| usize::try_from(d).ok());
            let count = dims.collect::<Option<Vec<_>>>().and_then(product);
            assert_eq!(
                Some(values.len()),
                count,
                "`{}` has its shape's values",
                init.name
            );
        }
    }

    // The model's own small float initializers, once each.
    let mut seen = HashSet::new();
    let floats: Vec<(&str, &[i64], usize)> = model
        .initializers()
        .iter()
        .filter(|i| i.data_type == elem::FLOAT && !i.name.is_empty())
        .filter_map(|i| {
            let dims = i.dims.iter().map(|&d| usize::try_from(d).ok());
            let count = dims.collect::<Option<Vec<_>>>().and_then(product)?;
            (count <= MAX_TENSOR_FLOATS && seen.insert(i.name.as_str())).then_some((
                i.name.as_str(),
                i.dims.as_slice(),
                count,
            ))
        })
        .take(MAX_TENSORS)
        .collect();
    let names: Vec<&str> = floats.iter().map(|&(n, _, _)| n).collect();

    if let Ok(lifted) = model.lift_to_inputs(&names) {
        let parsed = OnnxModel::parse(&lifted).expect("a lifted model parses");
        for &name in &names {
            assert!(parsed.initializer(name).is_none(), "`{name}` was lifted");
            assert!(parsed.graph_input(name).is_some(), "`{name}` is an input");
        }
        let again = parsed
            .lift_to_inputs(&names)
            .expect("a lifted model lifts again");
        assert!(again == lifted, "lifting a lifted model changed it");
    }

    let zeros: Vec<Vec<f32>> = floats.iter().map(|&(_, _, n)| vec![0.0; n]).collect();
    let tensors: Vec<NamedTensor<'_>> = floats
        .iter()
        .zip(&zeros)
        .map(|(&(name, dims, _), data)| NamedTensor { name, dims, data })
        .collect();
    if let Ok(baked) = model.with_tensors(&tensors) {
        let parsed = OnnxModel::parse(&baked).expect("a model with tensors baked in parses");
        for t in &tensors {
            let values = parsed
                .initializer_f32(t.name)
                .unwrap_or_else(|e| panic!("`{}` was baked in: {e}", t.name));
            assert!(values.iter().all(|&v| v == 0.0), "`{}` holds zeros", t.name);
        }
    }

    let mixes: Vec<Mix> = floats
        .iter()
        .enumerate()
        .map(|(k, &(name, dims, _))| Mix {
            name: name.to_string(),
            shape: dims.iter().map(|&d| d as usize).collect(),
            stack: format!("modeconn.stack/{name}"),
            via: if k % 2 == 0 {
                MixVia::MatMul {
                    coef: "modeconn.coef".into(),
                    points: 2,
                }
            } else {
                MixVia::Gather {
                    index: "modeconn.member".into(),
                    members: 2,
                }
            },
            source: StackSource::Supplied,
        })
        .collect();
    if let Ok(mixed) = model.rewrite_dynamic(&mixes) {
        let parsed = OnnxModel::parse(&mixed).expect("a rewritten model parses");
        for mix in &mixes {
            assert!(
                parsed.initializer(&mix.name).is_none(),
                "`{}` is computed",
                mix.name
            );
            let stack = parsed
                .initializer(&mix.stack)
                .unwrap_or_else(|| panic!("`{}` has its stack", mix.name));
            let dims: Vec<i64> = mix
                .stack_dims()
                .expect("dims")
                .iter()
                .map(|&d| d as i64)
                .collect();
            assert_eq!(stack.dims, dims, "the stack of `{}`", mix.name);
        }
        if !mixes.is_empty() {
            assert!(
                parsed.graph_input("modeconn.coef").is_some(),
                "the coefficients are an input"
            );
        }
    }
}
