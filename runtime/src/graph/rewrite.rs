//! The rewrites the runtime needs: varying tensors computed inside the graph
//! ([`OnnxModel::rewrite_dynamic`]), fixed weights baked in ([`OnnxModel::with_tensors`]), and
//! initializers turned into graph inputs ([`OnnxModel::lift_to_inputs`]).
//!
//! Both work on the wire: the model's and the graph's fields are re-emitted verbatim, in order,
//! except the ones a rewrite removes; new fields are inserted beside their kin (nodes first,
//! initializers after the last initializer, inputs after the last input).

use std::collections::{HashMap, HashSet};

use super::elem;
use super::encode;
use super::model::{Dim, Layout, OnnxModel, element_count, layout, tensor_name, value_info_name};
use super::proto::{graph as graph_f, model as model_f};
use super::spec::{Attr, DimSpec};
use super::wire::{Field, put_len_prefix, put_message_field, tag_len, varint_len};
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

/// A tensor to bake into a model as a `FLOAT` initializer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NamedTensor<'a> {
    /// The name of the initializer or graph input it replaces.
    pub name: &'a str,
    /// Its shape.
    pub dims: &'a [i64],
    /// Its values, row-major; `product(dims)` of them.
    pub data: &'a [f32],
}

/// A piece of output: borrowed from the input model, freshly encoded, or float data written
/// straight into the output.
enum Chunk<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
    F32(&'a [f32]),
}

/// The new graph body, as a list of pieces whose total length is known before writing.
#[derive(Default)]
struct Chunks<'a>(Vec<Chunk<'a>>);

impl<'a> Chunks<'a> {
    fn push(&mut self, chunk: Chunk<'a>) {
        self.0.push(chunk);
    }

    fn extend(&mut self, chunks: impl IntoIterator<Item = Chunk<'a>>) {
        self.0.extend(chunks);
    }

    fn len(&self) -> usize {
        self.0
            .iter()
            .map(|c| match c {
                Chunk::Borrowed(b) => b.len(),
                Chunk::Owned(b) => b.len(),
                Chunk::F32(d) => 4 * d.len(),
            })
            .sum()
    }

    fn write(&self, out: &mut Vec<u8>) {
        for c in &self.0 {
            match c {
                Chunk::Borrowed(b) => out.extend_from_slice(b),
                Chunk::Owned(b) => out.extend_from_slice(b),
                Chunk::F32(d) => {
                    for v in *d {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
    }
}

/// The model with its graph field replaced by `graph`; every other field verbatim. The output
/// is allocated once, at its final size.
fn assemble(layout: &Layout<'_>, graph: &Chunks<'_>) -> Vec<u8> {
    let graph_len = graph.len();
    let graph_field_len = tag_len(model_f::GRAPH) + varint_len(graph_len as u64) + graph_len;
    let total: usize = layout
        .model
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == layout.graph_index {
                graph_field_len
            } else {
                f.raw.len()
            }
        })
        .sum();
    let mut out = Vec::with_capacity(total);
    for (i, f) in layout.model.iter().enumerate() {
        if i == layout.graph_index {
            put_len_prefix(&mut out, model_f::GRAPH, graph_len);
            graph.write(&mut out);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    out
}

/// Copies the graph's fields in order, keeping those for which `keep` says `true` (`keep` may
/// also push replacement chunks in place of a field it drops), and inserts `new_initializers`
/// after the last initializer field and `new_inputs` after the last input field (at the end
/// when there is none).
fn rebuild_graph<'a>(
    fields: &[Field<'a>],
    mut keep: impl FnMut(&Field<'a>, &mut Chunks<'a>) -> Result<bool>,
    new_initializers: Vec<Chunk<'a>>,
    new_inputs: Vec<Chunk<'a>>,
) -> Result<Chunks<'a>> {
    let last_init = fields
        .iter()
        .rposition(|f| f.number == graph_f::INITIALIZER);
    let last_input = fields.iter().rposition(|f| f.number == graph_f::INPUT);
    let mut new_initializers = Some(new_initializers);
    let mut new_inputs = Some(new_inputs);
    let mut out = Chunks::default();
    for (i, f) in fields.iter().enumerate() {
        if keep(f, &mut out)? {
            out.push(Chunk::Borrowed(f.raw));
        }
        if Some(i) == last_init {
            out.extend(new_initializers.take().into_iter().flatten());
        }
        if Some(i) == last_input {
            out.extend(new_inputs.take().into_iter().flatten());
        }
    }
    out.extend(new_initializers.into_iter().flatten());
    out.extend(new_inputs.into_iter().flatten());
    Ok(out)
}

/// Checks that the graph has an initializer or input called `name` that can hold a `FLOAT`
/// tensor of shape `dims`.
fn check_target(model: &OnnxModel, name: &str, dims: &[i64]) -> Result<()> {
    let init = model.initializer(name);
    let input = model.graph_input(name);
    if init.is_none() && input.is_none() {
        return Err(Error::MissingGraphInput {
            tensor: name.to_string(),
        });
    }
    let dtype = |found: i32| Error::DType {
        tensor: name.to_string(),
        expected: elem::name(elem::FLOAT).to_string(),
        found: elem::name(found).to_string(),
    };
    if let Some(init) = init {
        if init.data_type != elem::FLOAT {
            return Err(dtype(init.data_type));
        }
        if init.dims != dims {
            return Err(Error::ShapeMismatch {
                tensor: name.to_string(),
                expected: init.dims.clone(),
                found: dims.to_vec(),
            });
        }
    }
    if let Some(input) = input {
        if input.elem_type != elem::FLOAT && input.elem_type != elem::UNDEFINED {
            return Err(dtype(input.elem_type));
        }
        if let Some(declared) = &input.dims {
            let agrees = declared.len() == dims.len()
                && declared.iter().zip(dims).all(|(d, &n)| match d {
                    Dim::Fixed(v) => *v == n,
                    Dim::Symbolic(_) | Dim::Unknown => true,
                });
            if !agrees {
                return Err(Error::ShapeMismatch {
                    tensor: name.to_string(),
                    expected: declared
                        .iter()
                        .map(|d| if let Dim::Fixed(v) = d { *v } else { -1 })
                        .collect(),
                    found: dims.to_vec(),
                });
            }
        }
    }
    Ok(())
}

fn to_i64(v: usize, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(what, format!("has a size {v} too large")))
}

/// A graph field holding an encoded message.
fn graph_field(number: u32, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    put_message_field(&mut out, number, body);
    out
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

    /// Bakes tensors into the model as `FLOAT` initializers with `raw_data`, for a standalone
    /// model with fixed weights.
    ///
    /// Each tensor replaces the initializer of its name in place (a later duplicate of that
    /// initializer is dropped), or is appended after the last initializer when there is none;
    /// a graph input of its name is removed. The float data is written straight into the
    /// output. Every other byte of the model is kept. An empty `tensors` returns the bytes
    /// unchanged.
    ///
    /// Errors: [`Error::MissingGraphInput`] when the graph has neither an initializer nor an
    /// input of a tensor's name; [`Error::InvalidArgument`] when a name is empty or repeated, a
    /// dimension is negative or `data.len()` is not the product of `dims`; [`Error::DType`] or
    /// [`Error::ShapeMismatch`] when the existing initializer or input is not `FLOAT` or is
    /// declared with another shape.
    pub fn with_tensors(&self, tensors: &[NamedTensor<'_>]) -> Result<Vec<u8>> {
        if tensors.is_empty() {
            return Ok(self.bytes.clone());
        }
        let mut by_name: HashMap<&str, &NamedTensor<'_>> = HashMap::new();
        for t in tensors {
            if t.name.is_empty() {
                return Err(Error::invalid("a tensor", "has an empty name"));
            }
            if by_name.insert(t.name, t).is_some() {
                return Err(Error::invalid(
                    format!("tensor `{}`", t.name),
                    "is given twice",
                ));
            }
            let count = element_count(t.dims).ok_or_else(|| {
                Error::invalid(
                    format!("tensor `{}`", t.name),
                    format!("has an invalid shape {:?}", t.dims),
                )
            })?;
            if t.data.len() != count {
                return Err(Error::invalid(
                    format!("tensor `{}`", t.name),
                    format!(
                        "has {} values for shape {:?}, which needs {count}",
                        t.data.len(),
                        t.dims
                    ),
                ));
            }
            check_target(self, t.name, t.dims)?;
        }

        let layout = layout(&self.bytes)?;
        let mut placed = HashSet::new();
        let appended = tensors
            .iter()
            .filter(|t| self.initializer(t.name).is_none())
            .flat_map(|t| initializer_chunks(t))
            .collect();
        let graph = rebuild_graph(
            &layout.graph,
            |f, out| match f.number {
                graph_f::INITIALIZER => {
                    let name = tensor_name(f)?;
                    match by_name.get(name) {
                        None => Ok(true),
                        Some(t) => {
                            if placed.insert(name) {
                                out.extend(initializer_chunks(t));
                            }
                            Ok(false)
                        }
                    }
                }
                graph_f::INPUT => Ok(!by_name.contains_key(value_info_name(f)?)),
                _ => Ok(true),
            },
            appended,
            Vec::new(),
        )?;
        Ok(assemble(&layout, &graph))
    }
}

impl OnnxModel {
    /// Turns `FLOAT` initializers of the main graph into graph inputs, so that their values
    /// come from outside the model (a bundle stores them once, stacked, instead of twice).
    ///
    /// For each name that is a `FLOAT` initializer, every initializer field of that name is
    /// removed and, unless the graph already declares an input of that name, an input is
    /// declared with the initializer's element type and its dimensions as fixed sizes (a scalar
    /// gets an empty shape). New inputs follow the last existing input, in the order of
    /// `names`. A name that is a graph input and not an initializer is left alone, and a name
    /// given twice counts once, so lifting a lifted model returns its bytes unchanged. Every
    /// other byte of the model is kept; when nothing is lifted the bytes are returned as they
    /// are.
    ///
    /// Errors: [`Error::MissingGraphInput`] when the graph has neither an initializer nor an
    /// input of a name; [`Error::DType`] when the initializer is not `FLOAT`; [`Error::Onnx`]
    /// when it has a negative dimension.
    pub fn lift_to_inputs(&self, names: &[&str]) -> Result<Vec<u8>> {
        let mut lifted: HashSet<&str> = HashSet::new();
        let mut new_inputs = Vec::new();
        for &name in names {
            let Some(init) = self.initializer(name) else {
                if self.graph_input(name).is_none() {
                    return Err(Error::MissingGraphInput {
                        tensor: name.to_string(),
                    });
                }
                continue;
            };
            if init.data_type != elem::FLOAT {
                return Err(Error::DType {
                    tensor: name.to_string(),
                    expected: elem::name(elem::FLOAT).to_string(),
                    found: elem::name(init.data_type).to_string(),
                });
            }
            if element_count(&init.dims).is_none() {
                return Err(Error::onnx(
                    format!("initializer `{name}`"),
                    format!("has an invalid shape {:?}", init.dims),
                ));
            }
            if !lifted.insert(name) || self.graph_input(name).is_some() {
                continue;
            }
            let dims: Vec<DimSpec> = init.dims.iter().map(|&d| DimSpec::Fixed(d)).collect();
            new_inputs.extend(graph_field(graph_f::INPUT, |m| {
                encode::value_info(m, name, init.data_type, &dims)
            }));
        }
        if lifted.is_empty() {
            return Ok(self.bytes.clone());
        }
        let layout = layout(&self.bytes)?;
        let graph = rebuild_graph(
            &layout.graph,
            |f, _| match f.number {
                graph_f::INITIALIZER => Ok(!lifted.contains(tensor_name(f)?)),
                _ => Ok(true),
            },
            Vec::new(),
            vec![Chunk::Owned(new_inputs)],
        )?;
        Ok(assemble(&layout, &graph))
    }
}

/// A graph `initializer` field holding `t` as `raw_data`: the encoded header, then the data
/// itself (written later, straight into the output).
fn initializer_chunks<'a>(t: &NamedTensor<'a>) -> [Chunk<'a>; 2] {
    let raw_len = 4 * t.data.len();
    let mut prefix = Vec::new();
    encode::tensor_prefix(&mut prefix, t.name, elem::FLOAT, t.dims, raw_len);
    let mut header = Vec::with_capacity(prefix.len() + 12);
    put_len_prefix(&mut header, graph_f::INITIALIZER, prefix.len() + raw_len);
    header.extend_from_slice(&prefix);
    [Chunk::Owned(header), Chunk::F32(t.data)]
}
