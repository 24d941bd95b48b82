//! ONNX models: decoding, building, and the rewrites the runtime needs.
