//! The Open Inference Protocol v2 on the wire: request bodies (JSON, or JSON followed by
//! binary tensor data) and response bodies.

use std::fmt;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ApiError;

/// Header giving the length of the JSON part of a body with binary tensor data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// An inference request as sent.
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    /// The client's identifier of the request, echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters (`mode`, `t`, `members`, `binary_data_output`, ...).
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// Input tensors.
    pub inputs: Vec<InputTensor>,
    /// Outputs asked for; all defaults when absent.
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// One input tensor as sent.
#[derive(Debug, Deserialize)]
pub struct InputTensor {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// Datatype (`FP32`, ...).
    pub datatype: String,
    /// Tensor parameters (`binary_data_size`).
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// The values in row-major order, flat or nested; absent with binary data.
    #[serde(default, deserialize_with = "flat_numbers")]
    pub data: Option<Vec<f64>>,
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
pub fn parse_request(json: &[u8]) -> Result<InferRequest, ApiError> {
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
    fn datatype(&self) -> &'static str {
        match self {
            Data::F32(_) => "FP32",
            Data::F64(_) => "FP64",
            Data::I64(_) => "INT64",
        }
    }

    fn bytes(&self) -> Vec<u8> {
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
                let d = match &o.data {
                    Data::F32(v) => JsonData::F32(v),
                    Data::F64(v) => JsonData::F64(v),
                    Data::I64(v) => JsonData::I64(v),
                };
                (None, Some(d))
            };
            outputs.push(JsonOutput {
                name: o.name,
                datatype: o.data.datatype(),
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

/// `data` as flat numbers, however deeply nested; `null` and absent are `None`.
fn flat_numbers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f64>>, D::Error> {
    struct Top;
    impl<'de> Visitor<'de> for Top {
        type Value = Option<Vec<f64>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of numbers (flat or nested)")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(Top)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            Flatten(&mut out).visit_seq(seq)?;
            Ok(Some(out))
        }
    }
    d.deserialize_option(Top)
}

/// Appends every number of a nested sequence to a vector.
struct Flatten<'a>(&'a mut Vec<f64>);

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or an array of numbers")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.0.push(v);
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push(v as f64);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.0.push(v as f64);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_flat_data_agree() {
        let a = parse_request(
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2.5],[3,-4]]}]}"#,
        )
        .unwrap();
        let b = parse_request(
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2.5,3,-4]}]}"#,
        )
        .unwrap();
        assert_eq!(a.inputs[0].data, Some(vec![1.0, 2.5, 3.0, -4.0]));
        assert_eq!(a.inputs[0].data, b.inputs[0].data);
    }

    #[test]
    fn strings_in_data_are_refused() {
        let e = parse_request(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("number"), "{}", e.message);
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
    fn header_length_is_checked() {
        let mut h = HeaderMap::new();
        h.insert(HEADER_LENGTH, HeaderValue::from_static("10"));
        assert!(split_body(&h, b"abc").is_err());
        h.insert(HEADER_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(split_body(&h, b"abc").unwrap(), (&b"ab"[..], &b"c"[..]));
    }
}
