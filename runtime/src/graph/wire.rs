//! The protocol-buffer wire format, read losslessly and written field by field.
//!
//! A message is read as a list of [`Field`]s in their original order. Each field keeps the exact
//! bytes it was read from ([`Field::raw`], tag included), so a rewrite can emit every field it does
//! not touch verbatim, whatever it holds: unknown field numbers, non-canonical varints, groups.

use crate::{Error, Result};

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// The most bytes a varint may take (ten for 64 bits).
const MAX_VARINT_LEN: usize = 10;

/// How a field's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    /// A base-128 varint.
    Varint = 0,
    /// Eight little-endian bytes.
    Fixed64 = 1,
    /// A varint length followed by that many bytes (strings, bytes, messages, packed scalars).
    Len = 2,
    /// The start of a (deprecated) group.
    StartGroup = 3,
    /// The end of a group.
    EndGroup = 4,
    /// Four little-endian bytes.
    Fixed32 = 5,
}

impl WireType {
    fn from_bits(bits: u64) -> Option<Self> {
        Some(match bits {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return None,
        })
    }

    /// A short human name for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::Len => "length-delimited",
            WireType::StartGroup => "start-group",
            WireType::EndGroup => "end-group",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// The decoded payload of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// A varint, as the raw 64 bits.
    Varint(u64),
    /// Eight bytes, as a little-endian integer.
    Fixed64(u64),
    /// The bytes of a length-delimited field, without the length.
    Len(&'a [u8]),
    /// The bytes between a group's start and end tags.
    Group(&'a [u8]),
    /// Four bytes, as a little-endian integer.
    Fixed32(u32),
}

impl Value<'_> {
    /// The wire type this value was encoded with.
    pub(crate) fn wire_type(&self) -> WireType {
        match self {
            Value::Varint(_) => WireType::Varint,
            Value::Fixed64(_) => WireType::Fixed64,
            Value::Len(_) => WireType::Len,
            Value::Group(_) => WireType::StartGroup,
            Value::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// One field of a message, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// The field number.
    pub(crate) number: u32,
    /// The payload.
    pub(crate) value: Value<'a>,
    /// The exact bytes of the field: tag, then payload (and end tag for a group).
    pub(crate) raw: &'a [u8],
    /// Where the field starts, counted from the start of the whole buffer being decoded.
    pub(crate) offset: usize,
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The buffer ends inside the varint.
    Truncated,
    /// More than ten bytes, or a tenth byte that overflows 64 bits.
    Overflow,
}

impl VarintError {
    fn describe(self) -> &'static str {
        match self {
            VarintError::Truncated => "the data ends inside a varint",
            VarintError::Overflow => "a varint is longer than 64 bits",
        }
    }
}

/// Reads a varint at `*pos`, advancing `*pos` past it. Non-canonical encodings (redundant
/// trailing zero groups) are accepted, as protobuf parsers do.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let byte = *buf.get(*pos + i).ok_or(VarintError::Truncated)?;
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(VarintError::Overflow);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err(VarintError::Overflow)
}

/// A cursor over one message's bytes that reports errors with absolute offsets.
struct Cursor<'a, 'w> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    what: &'w str,
}

impl<'a> Cursor<'a, '_> {
    fn error(&self, at: usize, problem: impl std::fmt::Display) -> Error {
        Error::Onnx {
            part: self.what.to_string(),
            offset: Some(self.base + at),
            reason: problem.to_string(),
        }
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.pos;
        read_varint(self.buf, &mut self.pos).map_err(|e| self.error(start, e.describe()))
    }

    fn take(&mut self, n: u64, number: u64) -> Result<&'a [u8]> {
        let remaining = self.buf.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= remaining => {
                let bytes = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(bytes)
            }
            _ => Err(self.error(
                self.pos,
                format!("field {number} needs {n} bytes but only {remaining} remain"),
            )),
        }
    }

    /// Reads a tag: the field number and wire type.
    fn tag(&mut self) -> Result<(u64, WireType)> {
        let start = self.pos;
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(self.error(start, format!("invalid field number {number}")));
        }
        let wire = WireType::from_bits(tag & 7).ok_or_else(|| {
            self.error(
                start,
                format!("field {number} has invalid wire type {}", tag & 7),
            )
        })?;
        Ok((number, wire))
    }

    /// Skips the payload of a non-group field.
    fn skip_scalar(&mut self, number: u64, wire: WireType) -> Result<()> {
        match wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8, number).map(drop),
            WireType::Fixed32 => self.take(4, number).map(drop),
            WireType::Len => {
                let n = self.varint()?;
                self.take(n, number).map(drop)
            }
            WireType::StartGroup | WireType::EndGroup => Ok(()),
        }
    }

    /// Reads the body of a group whose start tag has just been read, up to and including the
    /// matching end tag; returns the body without the end tag. Iterative, so deep nesting in
    /// hostile input cannot exhaust the stack.
    fn group(&mut self, number: u64) -> Result<&'a [u8]> {
        let start = self.pos;
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            if self.pos >= self.buf.len() {
                return Err(self.error(start, format!("group {number} is never closed")));
            }
            let tag_start = self.pos;
            let (n, wire) = self.tag()?;
            match wire {
                WireType::StartGroup => open.push(n),
                WireType::EndGroup if n == innermost => {
                    open.pop();
                    if open.is_empty() {
                        return Ok(&self.buf[start..tag_start]);
                    }
                }
                WireType::EndGroup => {
                    return Err(self.error(
                        tag_start,
                        format!("end of group {n} inside group {innermost}"),
                    ));
                }
                _ => self.skip_scalar(n, wire)?,
            }
        }
        Err(self.error(start, format!("group {number} is never closed")))
    }

    fn field(&mut self) -> Result<Field<'a>> {
        let start = self.pos;
        let (number, wire) = self.tag()?;
        let value = match wire {
            WireType::Varint => Value::Varint(self.varint()?),
            WireType::Fixed64 => {
                let b = self.take(8, number)?;
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(le))
            }
            WireType::Fixed32 => {
                let b = self.take(4, number)?;
                let mut le = [0u8; 4];
                le.copy_from_slice(b);
                Value::Fixed32(u32::from_le_bytes(le))
            }
            WireType::Len => {
                let n = self.varint()?;
                Value::Len(self.take(n, number)?)
            }
            WireType::StartGroup => Value::Group(self.group(number)?),
            WireType::EndGroup => {
                return Err(self.error(start, format!("end of group {number} without a start")));
            }
        };
        Ok(Field {
            // MAX_FIELD_NUMBER < 2^29, so this cannot truncate.
            number: number as u32,
            value,
            raw: &self.buf[start..self.pos],
            offset: self.base + start,
        })
    }
}

/// Reads a whole message as a list of fields in their original order.
///
/// `base` is the offset of `buf` within the outermost buffer and `what` names the message type;
/// both only serve error messages, which say what was wrong and at which byte.
pub(crate) fn parse_message<'a>(buf: &'a [u8], base: usize, what: &str) -> Result<Vec<Field<'a>>> {
    let mut cursor = Cursor {
        buf,
        pos: 0,
        base,
        what,
    };
    let mut fields = Vec::new();
    while cursor.pos < buf.len() {
        fields.push(cursor.field()?);
    }
    Ok(fields)
}

impl<'a> Field<'a> {
    fn wrong_type(&self, what: &str, expected: WireType) -> Error {
        Error::Onnx {
            part: what.to_string(),
            offset: Some(self.offset),
            reason: format!(
                "field {} is {}, expected {}",
                self.number,
                self.value.wire_type().name(),
                expected.name()
            ),
        }
    }

    /// The payload of a varint field.
    pub(crate) fn varint(&self, what: &str) -> Result<u64> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.wrong_type(what, WireType::Varint)),
        }
    }

    /// An `int64` field (two's complement in 64 bits).
    pub(crate) fn int64(&self, what: &str) -> Result<i64> {
        self.varint(what).map(|v| v as i64)
    }

    /// An `int32` or enum field: protobuf keeps the low 32 bits.
    pub(crate) fn int32(&self, what: &str) -> Result<i32> {
        self.varint(what).map(|v| v as i32)
    }

    /// The payload of a length-delimited field.
    pub(crate) fn bytes(&self, what: &str) -> Result<&'a [u8]> {
        match self.value {
            Value::Len(b) => Ok(b),
            _ => Err(self.wrong_type(what, WireType::Len)),
        }
    }

    /// A `string` field, which must be UTF-8.
    pub(crate) fn string(&self, what: &str) -> Result<&'a str> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b).map_err(|e| Error::Onnx {
            part: what.to_string(),
            offset: Some(self.offset),
            reason: format!("field {} is not valid UTF-8 ({e})", self.number),
        })
    }

    /// Where the payload of a length-delimited field starts in the outermost buffer.
    pub(crate) fn payload_offset(&self) -> usize {
        match self.value {
            Value::Len(b) => self.offset + self.raw.len() - b.len(),
            _ => self.offset,
        }
    }

    /// The field as a sub-message: its fields, with offsets in the outermost buffer.
    pub(crate) fn message(&self, what: &str) -> Result<Vec<Field<'a>>> {
        let b = self.bytes(what)?;
        parse_message(b, self.payload_offset(), what)
    }

    /// Appends the values of a repeated varint field, packed (one length-delimited run) or not
    /// (one varint).
    pub(crate) fn repeated_varints(&self, what: &str, out: &mut Vec<u64>) -> Result<()> {
        match self.value {
            Value::Varint(v) => {
                out.push(v);
                Ok(())
            }
            Value::Len(b) => {
                let mut pos = 0;
                while pos < b.len() {
                    let start = pos;
                    let v = read_varint(b, &mut pos).map_err(|e| Error::Onnx {
                        part: what.to_string(),
                        offset: Some(self.payload_offset() + start),
                        reason: format!("packed field {}: {}", self.number, e.describe()),
                    })?;
                    out.push(v);
                }
                Ok(())
            }
            _ => Err(self.wrong_type(what, WireType::Varint)),
        }
    }

    /// The raw little-endian 4-byte values of a repeated fixed32 (e.g. float) field, packed or
    /// not, as one byte slice whose length is a multiple of four.
    pub(crate) fn repeated_fixed32(&self, what: &str) -> Result<&'a [u8]> {
        match self.value {
            Value::Fixed32(_) => Ok(&self.raw[self.raw.len() - 4..]),
            Value::Len(b) if b.len() % 4 == 0 => Ok(b),
            Value::Len(b) => Err(Error::Onnx {
                part: what.to_string(),
                offset: Some(self.offset),
                reason: format!(
                    "packed field {} has {} bytes, not a multiple of 4",
                    self.number,
                    b.len()
                ),
            }),
            _ => Err(self.wrong_type(what, WireType::Fixed32)),
        }
    }
}

/// How many bytes `v` takes as a varint.
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v` as a canonical varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a tag.
pub(crate) fn put_tag(out: &mut Vec<u8>, number: u32, wire: WireType) {
    put_varint(out, (u64::from(number) << 3) | wire as u64);
}

/// How many bytes the tag of field `number` takes.
pub(crate) fn tag_len(number: u32) -> usize {
    varint_len(u64::from(number) << 3)
}

/// Appends a varint field.
pub(crate) fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_tag(out, number, WireType::Varint);
    put_varint(out, v);
}

/// Appends an `int64` (or `int32`/enum, sign-extended) field.
pub(crate) fn put_int64_field(out: &mut Vec<u8>, number: u32, v: i64) {
    put_varint_field(out, number, v as u64);
}

/// Appends a fixed32 field holding a float.
pub(crate) fn put_float_field(out: &mut Vec<u8>, number: u32, v: f32) {
    put_tag(out, number, WireType::Fixed32);
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends the tag and length of a length-delimited field whose payload follows.
pub(crate) fn put_len_prefix(out: &mut Vec<u8>, number: u32, len: usize) {
    put_tag(out, number, WireType::Len);
    put_varint(out, len as u64);
}

/// Appends a length-delimited field (bytes, string or encoded message).
pub(crate) fn put_bytes_field(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_len_prefix(out, number, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a sub-message field whose payload `body` writes.
pub(crate) fn put_message_field(out: &mut Vec<u8>, number: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut payload = Vec::new();
    body(&mut payload);
    put_bytes_field(out, number, &payload);
}
