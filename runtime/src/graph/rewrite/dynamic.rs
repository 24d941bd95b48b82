//! Varying tensors computed inside the graph: each becomes `Reshape(MatMul(coef, stack))` or
//! `Gather(stack, index)` of a stack of values the caller hands to ONNX Runtime.

use std::collections::{HashMap, HashSet};

use super::super::elem;
use super::super::encode;
use super::super::model::{OnnxModel, element_count, layout, tensor_name, value_info_name};
use super::super::proto::graph as graph_f;
use super::super::spec::{Attr, DimSpec};
use super::{Chunk, Chunks, assemble, check_target, graph_field, rebuild_graph, to_i64};
use crate::{Error, Result};

/// The `location` written into the `external_data` of every stack initializer. No such file
/// exists: the caller supplies the data to ONNX Runtime (`AddExternalInitializers`).
pub const STACK_LOCATION: &str = "modeconn.stack";

/// A tensor that varies per query, and how the rewritten graph computes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mix {
    /// The tensor's name in the graph (an initializer, a graph input, or both).
    pub name: String,
    /// Its shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The name of the new initializer that holds all its values, stacked.
    pub stack: String,
    /// How a value is taken from the stack.
    pub via: MixVia,
    /// Where ONNX Runtime finds the stack's data.
    pub source: StackSource,
}

/// Where the data of a stack initializer comes from. Either way the rewritten graph holds no
/// weights itself: the stack is an initializer marked as external data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StackSource {
    /// The caller supplies the data as a value to ONNX Runtime (`AddExternalInitializers`);
    /// the location written is [`STACK_LOCATION`], which names no file. ONNX Runtime 1.31
    /// copies such values once.
    Supplied,
    /// The data lies in a file, little-endian and row-major, at `offset` bytes: ONNX Runtime
    /// maps it itself (no copy on the CPU). `location` is relative to the folder the session is
    /// told to resolve external data against.
    File {
        /// The file name, relative to that folder.
        location: String,
        /// Byte offset of the data in the file.
        offset: u64,
    },
}

/// How a [`Mix`] computes its tensor from the stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MixVia {
    /// `Reshape(MatMul(coef, stack), shape)`: a weighted sum of `points` values, with
    /// `coef` a `FLOAT [1, points]` graph input and the stack `[points, prod(shape)]`.
    MatMul {
        /// The name of the coefficient input (shared by every mix that names it).
        coef: String,
        /// The number of stacked values.
        points: usize,
    },
    /// `Gather(stack, index, axis = 0)`: one of `members` values, with `index` an `INT64`
    /// scalar graph input and the stack `[members, ...shape]`.
    Gather {
        /// The name of the index input (shared by every mix that names it).
        index: String,
        /// The number of stacked values.
        members: usize,
    },
}

impl Mix {
    /// The shape of the stack initializer: `[points, prod(shape)]` for
    /// [`MixVia::MatMul`], `[members, ...shape]` for [`MixVia::Gather`].
    ///
    /// Fails with [`Error::InvalidArgument`] when the sizes overflow.
    pub fn stack_dims(&self) -> Result<Vec<usize>> {
        let overflow =
            || Error::invalid(format!("tensor `{}`", self.name), "has a stack too large");
        match &self.via {
            MixVia::MatMul { points, .. } => {
                let n = self
                    .shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(overflow)?;
                Ok(vec![*points, n])
            }
            MixVia::Gather { members, .. } => Ok(std::iter::once(*members)
                .chain(self.shape.iter().copied())
                .collect()),
        }
    }
}

/// Hands out names for the new nodes and values, refusing clashes with the graph.
struct Namer<'m> {
    model: &'m OnnxModel,
    values: HashSet<String>,
    nodes: HashSet<String>,
}

impl Namer<'_> {
    /// Reserves a new value name, which must not be in use.
    fn value(&mut self, name: &str, what: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid(what, "has an empty name"));
        }
        if self.model.value_names.contains(name) || !self.values.insert(name.to_string()) {
            return Err(Error::invalid(
                format!("{what} `{name}`"),
                "is taken: the graph already has a value of that name",
            ));
        }
        Ok(())
    }

    /// A node name starting with `base` that no node has.
    fn node(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 1;
        while self.model.node_names.contains(&name) || self.nodes.contains(&name) {
            name = format!("{base}#{k}");
            k += 1;
        }
        self.nodes.insert(name.clone());
        name
    }
}

/// The encoded fields [`OnnxModel::rewrite_dynamic`] adds to the graph, built mix by mix.
struct DynamicPlan<'m> {
    model: &'m OnnxModel,
    namer: Namer<'m>,
    /// Mixed tensor names seen so far.
    mixed: HashSet<&'m str>,
    /// Coefficient inputs added so far, with their point counts.
    coefs: HashMap<&'m str, usize>,
    /// Index inputs added so far.
    indices: HashSet<&'m str>,
    nodes: Vec<u8>,
    initializers: Vec<u8>,
    inputs: Vec<u8>,
}

impl<'m> DynamicPlan<'m> {
    fn new(model: &'m OnnxModel, mixes: &'m [Mix]) -> Result<Self> {
        let mut plan = DynamicPlan {
            model,
            namer: Namer {
                model,
                values: HashSet::new(),
                nodes: HashSet::new(),
            },
            mixed: HashSet::new(),
            coefs: HashMap::new(),
            indices: HashSet::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
        };
        for mix in mixes {
            plan.add(mix)?;
        }
        Ok(plan)
    }

    fn add(&mut self, mix: &'m Mix) -> Result<()> {
        let name = mix.name.as_str();
        if name.is_empty() {
            return Err(Error::invalid("a mix", "has an empty tensor name"));
        }
        if !self.mixed.insert(name) {
            return Err(Error::invalid(format!("tensor `{name}`"), "is mixed twice"));
        }
        let shape = mix
            .shape
            .iter()
            .map(|&d| to_i64(d, name))
            .collect::<Result<Vec<_>>>()?;
        check_target(self.model, name, &shape)?;
        match &mix.via {
            MixVia::MatMul { coef, points } => self.add_matmul(mix, &shape, coef, *points),
            MixVia::Gather { index, members } => self.add_gather(mix, index, *members),
        }
    }

    /// The stack initializer: dims, no data, marked external.
    fn add_stack(&mut self, mix: &Mix) -> Result<()> {
        let name = &mix.name;
        self.namer
            .value(&mix.stack, &format!("stack of `{name}`"))?;
        let dims = mix
            .stack_dims()?
            .into_iter()
            .map(|d| to_i64(d, name))
            .collect::<Result<Vec<_>>>()?;
        let bytes = element_count(&dims)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| Error::invalid(format!("tensor `{name}`"), "has a stack too large"))?;
        let length = bytes.to_string();
        let (location, offset) = match &mix.source {
            StackSource::Supplied => (STACK_LOCATION, "0".to_string()),
            StackSource::File { location, offset } => (location.as_str(), offset.to_string()),
        };
        let external = [
            ("location", location),
            ("offset", offset.as_str()),
            ("length", length.as_str()),
        ];
        self.initializers
            .extend(graph_field(graph_f::INITIALIZER, |m| {
                encode::external_tensor(m, &mix.stack, elem::FLOAT, &dims, &external)
            }));
        Ok(())
    }

    /// `Reshape(MatMul(coef, stack), shape) -> name`, the shape initializer, and the `coef`
    /// input the first time it is named.
    fn add_matmul(
        &mut self,
        mix: &'m Mix,
        shape: &[i64],
        coef: &'m str,
        points: usize,
    ) -> Result<()> {
        let name = mix.name.as_str();
        if points == 0 {
            return Err(Error::invalid(format!("tensor `{name}`"), "has 0 points"));
        }
        if mix.shape.contains(&0) {
            return Err(Error::invalid(
                format!("tensor `{name}`"),
                "has a zero-size dimension, which a MatMul mix cannot have",
            ));
        }
        self.add_stack(mix)?;
        match self.coefs.get(coef) {
            Some(&p) if p == points => {}
            Some(&p) => {
                return Err(Error::invalid(
                    format!("coefficient input `{coef}`"),
                    format!("is used with {p} and {points} points"),
                ));
            }
            None => {
                self.namer.value(coef, "coefficient input")?;
                self.coefs.insert(coef, points);
                let dims = [DimSpec::Fixed(1), DimSpec::Fixed(to_i64(points, coef)?)];
                self.inputs.extend(graph_field(graph_f::INPUT, |m| {
                    encode::value_info(m, coef, elem::FLOAT, &dims)
                }));
            }
        }

        let flat = format!("{name}/modeconn.mixed");
        let shape_name = format!("{name}/modeconn.shape");
        self.namer.value(&flat, "intermediate value")?;
        self.namer.value(&shape_name, "shape initializer")?;
        let raw: Vec<u8> = shape.iter().flat_map(|d| d.to_le_bytes()).collect();
        self.initializers
            .extend(graph_field(graph_f::INITIALIZER, |m| {
                let rank = [shape.len() as i64];
                encode::tensor_prefix(m, &shape_name, elem::INT64, &rank, raw.len());
                m.extend_from_slice(&raw);
            }));

        let matmul = self.namer.node(format!("modeconn/mix/{name}"));
        let reshape = self.namer.node(format!("modeconn/mix/{name}/reshape"));
        let (stack, no_attrs) = (mix.stack.as_str(), &[]);
        self.nodes.extend(graph_field(graph_f::NODE, |m| {
            encode::node(m, &matmul, "MatMul", "", &[coef, stack], &[&flat], no_attrs)
        }));
        self.nodes.extend(graph_field(graph_f::NODE, |m| {
            let inputs = [flat.as_str(), shape_name.as_str()];
            encode::node(m, &reshape, "Reshape", "", &inputs, &[name], no_attrs)
        }));
        Ok(())
    }

    /// `Gather(stack, index, axis = 0) -> name`, and the `index` input the first time it is
    /// named.
    fn add_gather(&mut self, mix: &'m Mix, index: &'m str, members: usize) -> Result<()> {
        let name = mix.name.as_str();
        if members == 0 {
            return Err(Error::invalid(format!("tensor `{name}`"), "has 0 members"));
        }
        self.add_stack(mix)?;
        if !self.indices.contains(index) {
            self.namer.value(index, "index input")?;
            self.indices.insert(index);
            self.inputs.extend(graph_field(graph_f::INPUT, |m| {
                encode::value_info(m, index, elem::INT64, &[])
            }));
        }
        let gather = self.namer.node(format!("modeconn/mix/{name}"));
        let inputs = [mix.stack.as_str(), index];
        self.nodes.extend(graph_field(graph_f::NODE, |m| {
            encode::node(
                m,
                &gather,
                "Gather",
                "",
                &inputs,
                &[name],
                &[Attr::int("axis", 0)],
            )
        }));
        Ok(())
    }
}

impl OnnxModel {
    /// Rewrites the model so that each mixed tensor is computed inside the graph from a stack of
    /// values and a small per-query input.
    ///
    /// For each [`Mix`]: the initializer and/or graph input called `name` is removed (value
    /// info is left alone); a `FLOAT` initializer `stack` is added with no data, marked external
    /// (`location` [`STACK_LOCATION`], offset 0, its byte length) so the caller can hand the
    /// data to ONNX Runtime as an external initializer; and new nodes at the start of the graph
    /// compute `name`, as [`MixVia`] describes, from graph inputs `coef` (`FLOAT [1, points]`)
    /// or `index` (`INT64` scalar) added once per distinct name. New nodes are named
    /// `modeconn/mix/{name}` (with `/reshape` for the second node of a MatMul mix), made unique.
    /// Every other byte of the model is kept. An empty `mixes` returns the bytes unchanged.
    ///
    /// Errors: [`Error::MissingGraphInput`] when the graph has neither an initializer nor an
    /// input called `name`; [`Error::DType`] or [`Error::ShapeMismatch`] when that initializer
    /// or input is not `FLOAT` or is declared with a different shape; [`Error::InvalidArgument`]
    /// for a tensor mixed twice, zero points or members, a zero-size dimension in a MatMul mix,
    /// a coefficient input used with different point counts, or a new name (stack, input,
    /// `{name}/modeconn.mixed`, `{name}/modeconn.shape`) already used in the main graph.
    pub fn rewrite_dynamic(&self, mixes: &[Mix]) -> Result<Vec<u8>> {
        if mixes.is_empty() {
            return Ok(self.bytes.clone());
        }
        let plan = DynamicPlan::new(self, mixes)?;
        let removed: HashSet<&str> = mixes.iter().map(|m| m.name.as_str()).collect();
        let layout = layout(&self.bytes)?;
        let mut graph = Chunks::default();
        graph.push(Chunk::Owned(plan.nodes));
        let rest = rebuild_graph(
            &layout.graph,
            |f, _| {
                Ok(match f.number {
                    graph_f::INITIALIZER => !removed.contains(tensor_name(f)?),
                    graph_f::INPUT => !removed.contains(value_info_name(f)?),
                    _ => true,
                })
            },
            vec![Chunk::Owned(plan.initializers)],
            vec![Chunk::Owned(plan.inputs)],
        )?;
        graph.extend(rest.0);
        Ok(assemble(&layout, &graph))
    }
}
