//! The Open Inference Protocol v2 on the wire: request bodies (JSON, or JSON followed by
//! binary tensor data) and response bodies.

use std::fmt::{self, Write as _};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::ApiError;

/// Header giving the length of the JSON part of a body with binary tensor data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The most inputs a request may list (a model takes one: the rest is only counted).
pub const MAX_INPUTS: usize = 8;
/// The most dimensions of an input's shape.
pub const MAX_DIMS: usize = 32;
/// The most bytes of JSON of `parameters`, `outputs`, or an input's `parameters`: they are
/// parsed into a tree that takes many times the bytes of its text.
pub const MAX_PARAMETERS_BYTES: usize = 64 << 10;

/// An inference request as sent. The input values stay unparsed text in the body until the
/// shape says how many there must be ([`values`]).
#[derive(Debug, Deserialize)]
pub struct InferRequest<'a> {
    /// The client's identifier of the request, echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters (`mode`, `t`, `members`, `binary_data_output`, ...).
    #[serde(default, deserialize_with = "small")]
    pub parameters: Option<Map<String, Value>>,
    /// Input tensors (at most [`MAX_INPUTS`]).
    #[serde(borrow, deserialize_with = "few_inputs")]
    pub inputs: Vec<InputTensor<'a>>,
    /// Outputs asked for; all defaults when absent.
    #[serde(default, deserialize_with = "small")]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// One input tensor as sent.
#[derive(Debug, Deserialize)]
pub struct InputTensor<'a> {
    /// Tensor name.
    pub name: String,
    /// Shape (at most [`MAX_DIMS`] dimensions).
    #[serde(deserialize_with = "dims")]
    pub shape: Vec<i64>,
    /// Datatype (`FP32`, ...).
    pub datatype: String,
    /// Tensor parameters (`binary_data_size`).
    #[serde(default, deserialize_with = "small")]
    pub parameters: Option<Map<String, Value>>,
    /// The values in row-major order, flat or nested, as sent; absent with binary data.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

/// One output asked for.
#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Output parameters (`binary_data`).
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

/// A value of at most [`MAX_PARAMETERS_BYTES`] of JSON, parsed once its size is known.
fn small<'de, D: Deserializer<'de>, T: de::DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let raw = <&RawValue>::deserialize(d)?;
    if raw.get().len() > MAX_PARAMETERS_BYTES {
        return Err(de::Error::custom(format!(
            "parameters and outputs may take {MAX_PARAMETERS_BYTES} bytes each at most, not {}",
            raw.get().len()
        )));
    }
    serde_json::from_str(raw.get()).map_err(de::Error::custom)
}

/// Input tensors, refusing more than [`MAX_INPUTS`].
fn few_inputs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<InputTensor<'de>>, D::Error> {
    d.deserialize_seq(AtMost::new(MAX_INPUTS, "inputs (the model takes one)"))
}

/// A shape, refusing more than [`MAX_DIMS`] dimensions.
fn dims<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    d.deserialize_seq(AtMost::new(MAX_DIMS, "dimensions in a shape"))
}

/// A list of at most `max` elements, refused as soon as it holds one more.
struct AtMost<T> {
    max: usize,
    what: &'static str,
    element: std::marker::PhantomData<T>,
}

impl<T> AtMost<T> {
    fn new(max: usize, what: &'static str) -> Self {
        AtMost {
            max,
            what,
            element: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for AtMost<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} {}", self.max, self.what)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(element) = seq.next_element()? {
            if out.len() == self.max {
                return Err(de::Error::custom(format!(
                    "more than {} {}",
                    self.max, self.what
                )));
            }
            out.push(element);
        }
        Ok(out)
    }
}

/// The bytes the values of `data` take once parsed when `count` are expected: no more than the
/// text can hold (a value takes two bytes of it at least, with its separator).
pub fn values_bytes(data: &RawValue, count: usize) -> usize {
    count.min(data.get().len() / 2 + 1) * std::mem::size_of::<f32>()
}

/// Parses `data` (numbers, flat or nested) into exactly `count` values, allocating no more than
/// [`values_bytes`] says. Err says what is wrong: not numbers, or how many there are.
pub fn values(data: &RawValue, count: usize) -> Result<Vec<f32>, String> {
    let mut out = Vec::with_capacity(values_bytes(data, count) / std::mem::size_of::<f32>());
    let mut de = serde_json::Deserializer::from_str(data.get());
    let seen = Flatten {
        out: &mut out,
        count,
        seen: 0,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    if seen != count {
        return Err(format!("has {seen} values; its shape needs {count}"));
    }
    Ok(out)
}

/// Splits a body into its JSON part and its binary part, using the
/// `Inference-Header-Content-Length` header when present.
pub fn split_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let len: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("Inference-Header-Content-Length is not a number"))?;
    if len > body.len() {
        return Err(ApiError::bad_request(format!(
            "Inference-Header-Content-Length is {len} but the body has {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(len))
}

/// Parses the JSON part of a request.
pub fn parse_request(json: &[u8]) -> Result<InferRequest<'_>, ApiError> {
    serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("malformed inference request: {e}")))
}

/// Reads a boolean parameter (`true`/`false`; absent is `false`).
pub fn bool_param(params: Option<&Map<String, Value>>, key: &str) -> Result<bool, ApiError> {
    match params.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::bad_request(format!(
            "parameter `{key}` must be true or false, not {other}"
        ))),
    }
}

/// The widest a number is written in a response's JSON: shortest or fixed-width (`F32`:
/// sign, 9 significant digits and a two-digit exponent; `F64`: 17 digits and three; `I64`:
/// sign and 19 digits).
pub const F32_WIDTH: usize = 15;
/// See [`F32_WIDTH`].
pub const F64_WIDTH: usize = 24;
/// See [`F32_WIDTH`].
pub const I64_WIDTH: usize = 20;

/// The type of an output tensor's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `INT64`.
    Int64,
}

impl Datatype {
    /// The protocol's name.
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Int64 => "INT64",
        }
    }

    /// The most bytes one value takes in a response: in binary, or in JSON with its separator.
    pub fn value_bytes(self, binary: bool) -> usize {
        match (self, binary) {
            (Datatype::Fp32, true) => 4,
            (Datatype::Fp64 | Datatype::Int64, true) => 8,
            (Datatype::Fp32, false) => F32_WIDTH + 1,
            (Datatype::Fp64, false) => F64_WIDTH + 1,
            (Datatype::Int64, false) => I64_WIDTH + 1,
        }
    }
}

/// The most bytes a response takes besides its values, for a model name, a client's request id
/// and a number of outputs: the JSON around the values (an id may need six bytes a character,
/// escaped).
pub fn frame_bytes(model_name: &str, client_id: Option<&str>, outputs: usize) -> usize {
    let id = client_id.map_or(0, str::len);
    512 + 2 * model_name.len() + 6 * id + 256 * outputs
}

/// Values of an output tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// `FP32`.
    F32(Vec<f32>),
    /// `FP64`.
    F64(Vec<f64>),
    /// `INT64`.
    I64(Vec<i64>),
}

impl Data {
    fn datatype(&self) -> Datatype {
        match self {
            Data::F32(_) => Datatype::Fp32,
            Data::F64(_) => Datatype::Fp64,
            Data::I64(_) => Datatype::Int64,
        }
    }

    /// The values as little-endian bytes.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// One output tensor of a response.
#[derive(Debug, Clone)]
pub struct OutputTensor {
    /// Name.
    pub name: &'static str,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Data,
    /// Whether it goes in the binary part.
    pub binary: bool,
}

/// A successful inference response.
#[derive(Debug, Clone)]
pub struct InferResponse {
    /// The model's name.
    pub model_name: String,
    /// The client's request id, when it sent one.
    pub id: Option<String>,
    /// Response parameters.
    pub parameters: Map<String, Value>,
    /// Outputs in the order asked for.
    pub outputs: Vec<OutputTensor>,
    /// Whether JSON numbers take their type's full width, so that the body's length does not
    /// depend on the values (per-sample modes: it would tell the point).
    pub fixed_width: bool,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonData<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I64(&'a [i64]),
    Fixed(Box<RawValue>),
}

impl Data {
    /// The values as a JSON array whose length depends only on how many there are: each
    /// number at its type's full width ([`F32_WIDTH`], ...), right-aligned with spaces. Floats
    /// keep every digit their type needs to be read back exactly (9 for `FP32`, 17 for
    /// `FP64`); a non-finite value is `null`.
    pub fn fixed_width_json(&self) -> String {
        let mut out = String::from("[");
        let mut number = String::new();
        let push = |out: &mut String, text: &str, width: usize| {
            if out.len() > 1 {
                out.push(',');
            }
            out.extend(std::iter::repeat_n(' ', width.saturating_sub(text.len())));
            out.push_str(text);
        };
        match self {
            Data::F32(v) => v.iter().for_each(|&x| {
                float(&mut number, f64::from(x), x.is_finite(), 8, 2);
                push(&mut out, &number, F32_WIDTH);
            }),
            Data::F64(v) => v.iter().for_each(|&x| {
                float(&mut number, x, x.is_finite(), 16, 3);
                push(&mut out, &number, F64_WIDTH);
            }),
            Data::I64(v) => v.iter().for_each(|&x| {
                number.clear();
                let _ = write!(number, "{x}");
                push(&mut out, &number, I64_WIDTH);
            }),
        }
        out.push(']');
        out
    }
}

/// Writes `x` in scientific notation with `digits` after the point and an exponent of
/// `exponent_digits` with its sign (`-1.23456789e-01`), or `null`.
fn float(out: &mut String, x: f64, finite: bool, digits: usize, exponent_digits: usize) {
    out.clear();
    if !finite {
        out.push_str("null");
        return;
    }
    let text = format!("{:.*e}", digits, x);
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    let _ = write!(
        out,
        "{mantissa}e{sign}{:0width$}",
        exponent.unsigned_abs(),
        width = exponent_digits
    );
}

impl InferResponse {
    /// The response body, and the JSON part's length when a binary part follows.
    pub fn encode(&self) -> (Vec<u8>, Option<usize>) {
        let mut binary = Vec::new();
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            let (parameters, data) = if o.binary {
                let bytes = o.data.bytes();
                let p = serde_json::json!({ "binary_data_size": bytes.len() });
                binary.extend_from_slice(&bytes);
                (Some(p), None)
            } else {
                let fixed = self
                    .fixed_width
                    .then(|| RawValue::from_string(o.data.fixed_width_json()).ok())
                    .flatten();
                let d = match (&o.data, fixed) {
                    (_, Some(raw)) => JsonData::Fixed(raw),
                    (Data::F32(v), None) => JsonData::F32(v),
                    (Data::F64(v), None) => JsonData::F64(v),
                    (Data::I64(v), None) => JsonData::I64(v),
                };
                (None, Some(d))
            };
            outputs.push(JsonOutput {
                name: o.name,
                datatype: o.data.datatype().name(),
                shape: &o.shape,
                parameters,
                data,
            });
        }
        let mut head = Map::new();
        head.insert("model_name".into(), self.model_name.clone().into());
        head.insert("model_version".into(), "1".into());
        if let Some(id) = &self.id {
            head.insert("id".into(), id.clone().into());
        }
        head.insert("parameters".into(), Value::Object(self.parameters.clone()));
        let mut json = serde_json::to_vec(&head).unwrap_or_default();
        // Outputs are serialised straight from the slices (no intermediate `Value` per number).
        json.pop();
        json.extend_from_slice(b",\"outputs\":");
        json.extend_from_slice(&serde_json::to_vec(&outputs).unwrap_or_default());
        json.push(b'}');
        if binary.is_empty() {
            (json, None)
        } else {
            let len = json.len();
            json.extend_from_slice(&binary);
            (json, Some(len))
        }
    }
}

/// A JSON response with a status.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, &serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Appends the numbers of a nested sequence to a vector, keeping the first `count` and
/// counting the rest.
struct Flatten<'a> {
    out: &'a mut Vec<f32>,
    count: usize,
    seen: usize,
}

impl Flatten<'_> {
    fn push(&mut self, v: f64) {
        self.seen += 1;
        if self.out.len() < self.count {
            // Values beyond the FP32 range become infinite, and are refused as such.
            self.out.push(v as f32);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or an array of numbers")
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<usize, E> {
        self.push(v);
        Ok(self.seen)
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<usize, E> {
        self.push(v as f64);
        Ok(self.seen)
    }
    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<usize, E> {
        self.push(v as f64);
        Ok(self.seen)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<usize, A::Error> {
        loop {
            let inner = Flatten {
                out: &mut *self.out,
                count: self.count,
                seen: self.seen,
            };
            match seq.next_element_seed(inner)? {
                Some(seen) => self.seen = seen,
                None => return Ok(self.seen),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_of(body: &[u8], count: usize) -> Result<Vec<f32>, String> {
        let r = parse_request(body).unwrap();
        values(r.inputs[0].data.unwrap(), count)
    }

    #[test]
    fn nested_and_flat_data_agree() {
        let a = data_of(
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2.5],[3,-4]]}]}"#,
            4,
        );
        let b = data_of(
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2.5,3,-4]}]}"#,
            4,
        );
        assert_eq!(a, Ok(vec![1.0, 2.5, 3.0, -4.0]));
        assert_eq!(a, b);
    }

    #[test]
    fn strings_in_data_are_refused_and_counts_are_exact() {
        let e = data_of(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#,
            1,
        )
        .unwrap_err();
        assert!(e.contains("number"), "{e}");
        let body =
            br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[[0,0],[0,0,0]]}]}"#;
        assert_eq!(
            data_of(body, 3).unwrap_err(),
            "has 5 values; its shape needs 3"
        );
        assert_eq!(
            data_of(body, 9).unwrap_err(),
            "has 5 values; its shape needs 9"
        );
    }

    #[test]
    fn the_parsed_parts_of_a_request_are_bounded() {
        let many = format!(
            r#"{{"inputs":[{}]}}"#,
            [r#"{"name":"x","shape":[1],"datatype":"FP32"}"#; MAX_INPUTS + 1].join(",")
        );
        let e = parse_request(many.as_bytes()).unwrap_err();
        assert!(e.message.contains("more than 8 inputs"), "{}", e.message);
        let deep = format!(
            r#"{{"inputs":[{{"name":"x","shape":[{}],"datatype":"FP32"}}]}}"#,
            vec!["1"; MAX_DIMS + 1].join(",")
        );
        assert!(parse_request(deep.as_bytes()).is_err());
        let big = format!(
            r#"{{"inputs":[],"parameters":{{"junk":[{}]}}}}"#,
            vec!["0"; MAX_PARAMETERS_BYTES].join(",")
        );
        let e = parse_request(big.as_bytes()).unwrap_err();
        assert!(e.message.contains("65536 bytes"), "{}", e.message);
        // The values of `[0,0,...]` take twice its bytes at most, whatever the shape says.
        let raw: &RawValue = serde_json::from_str("[0,0,0]").unwrap();
        assert_eq!(values_bytes(raw, 1 << 40), 4 * 4);
    }

    #[test]
    fn binary_outputs_follow_the_json() {
        let r = InferResponse {
            model_name: "m".into(),
            id: Some("7".into()),
            parameters: Map::new(),
            outputs: vec![
                OutputTensor {
                    name: "probabilities",
                    shape: vec![1, 2],
                    data: Data::F32(vec![0.25, 0.75]),
                    binary: true,
                },
                OutputTensor {
                    name: "class",
                    shape: vec![1],
                    data: Data::I64(vec![1]),
                    binary: false,
                },
            ],
            fixed_width: false,
        };
        let (body, len) = r.encode();
        let len = len.unwrap();
        let head: Value = serde_json::from_slice(&body[..len]).unwrap();
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(head["outputs"][1]["data"], serde_json::json!([1]));
        assert_eq!(head["id"], "7");
        assert_eq!(&body[len..len + 4], &0.25f32.to_le_bytes());
    }

    #[test]
    fn fixed_width_numbers_read_back_exactly() {
        let floats = [
            0.0f32,
            -0.0,
            1.0,
            0.1,
            1.0e-45,
            f32::MAX,
            -3.4e-7,
            0.999_999_9,
        ];
        let text = Data::F32(floats.to_vec()).fixed_width_json();
        assert_eq!(text.len(), 2 + floats.len() * (F32_WIDTH + 1) - 1, "{text}");
        let back: Vec<f64> = serde_json::from_str(&text).unwrap();
        for (a, b) in floats.iter().zip(&back) {
            assert_eq!(a.to_bits(), (*b as f32).to_bits(), "{a} {b} in {text}");
        }
        assert!(text.starts_with("[ 0.00000000e+00,-0.00000000e+00, 1.00000000e+00"));
        let doubles = [0.25, 1.0 / 3.0, -2.2250738585072014e-308, f64::MAX];
        let text = Data::F64(doubles.to_vec()).fixed_width_json();
        assert_eq!(
            text.len(),
            2 + doubles.len() * (F64_WIDTH + 1) - 1,
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Vec<f64>>(&text).unwrap(), doubles);
        let ints = [0i64, 7, -1, i64::MIN];
        let text = Data::I64(ints.to_vec()).fixed_width_json();
        assert_eq!(text.len(), 2 + ints.len() * (I64_WIDTH + 1) - 1, "{text}");
        assert_eq!(serde_json::from_str::<Vec<i64>>(&text).unwrap(), ints);
        assert_eq!(
            Data::F32(vec![f32::NAN]).fixed_width_json(),
            "[           null]"
        );
    }

    #[test]
    fn header_length_is_checked() {
        let mut h = HeaderMap::new();
        h.insert(HEADER_LENGTH, HeaderValue::from_static("10"));
        assert!(split_body(&h, b"abc").is_err());
        h.insert(HEADER_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(split_body(&h, b"abc").unwrap(), (&b"ab"[..], &b"c"[..]));
    }
}
