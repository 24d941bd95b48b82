//! ONNX element types (`TensorProto.DataType`), as stored in `elem_type` and `data_type` fields.

/// Not set (also what a non-tensor type reports).
pub const UNDEFINED: i32 = 0;
/// 32-bit float.
pub const FLOAT: i32 = 1;
/// Unsigned 8-bit integer.
pub const UINT8: i32 = 2;
/// Signed 8-bit integer.
pub const INT8: i32 = 3;
/// Unsigned 16-bit integer.
pub const UINT16: i32 = 4;
/// Signed 16-bit integer.
pub const INT16: i32 = 5;
/// Signed 32-bit integer.
pub const INT32: i32 = 6;
/// Signed 64-bit integer.
pub const INT64: i32 = 7;
/// UTF-8 string.
pub const STRING: i32 = 8;
/// Boolean.
pub const BOOL: i32 = 9;
/// IEEE 754 half precision.
pub const FLOAT16: i32 = 10;
/// 64-bit float.
pub const DOUBLE: i32 = 11;
/// Unsigned 32-bit integer.
pub const UINT32: i32 = 12;
/// Unsigned 64-bit integer.
pub const UINT64: i32 = 13;
/// Brain floating point (bfloat16).
pub const BFLOAT16: i32 = 16;

/// The ONNX name of an element type (`"FLOAT"`, `"INT64"`, ...), or `"UNKNOWN"` for a value
/// this module does not list.
pub fn name(elem_type: i32) -> &'static str {
    match elem_type {
        UNDEFINED => "UNDEFINED",
        FLOAT => "FLOAT",
        UINT8 => "UINT8",
        INT8 => "INT8",
        UINT16 => "UINT16",
        INT16 => "INT16",
        INT32 => "INT32",
        INT64 => "INT64",
        STRING => "STRING",
        BOOL => "BOOL",
        FLOAT16 => "FLOAT16",
        DOUBLE => "DOUBLE",
        UINT32 => "UINT32",
        UINT64 => "UINT64",
        BFLOAT16 => "BFLOAT16",
        _ => "UNKNOWN",
    }
}
