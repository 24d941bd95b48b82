//! The safetensors header as JSON text, checked before the safetensors crate reads it: JSON
//! objects that give a key twice are refused. The safetensors crate (like most JSON readers)
//! keeps the last value of a repeated key, so a bundle could say one thing to this reader and
//! another to a reader that keeps the first.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

/// The header's JSON text, when the file is long enough to hold one; `None` leaves the
/// file's shortcomings to the safetensors reader, which names them.
pub(super) fn text(file: &[u8]) -> Option<&[u8]> {
    let len: [u8; 8] = file.get(..8)?.try_into().ok()?;
    let len = usize::try_from(u64::from_le_bytes(len)).ok()?;
    file.get(8..8usize.checked_add(len)?)
}

/// The largest header the safetensors reader accepts (`safetensors::tensor::MAX_HEADER_SIZE`,
/// which it does not export).
const MAX_HEADER: u64 = 100_000_000;

/// The header length the first 8 bytes give, when it is both beyond what the safetensors
/// reader accepts and beyond the end of the file: the file is not a bundle at all (a text
/// file's first 8 characters read as a length of 10^17 and more), rather than one cut short
/// (whose header length is plausible and which the reader calls truncated).
pub(super) fn beyond_the_end(file: &[u8]) -> Option<u64> {
    let len: [u8; 8] = file.get(..8)?.try_into().ok()?;
    let declared = u64::from_le_bytes(len);
    let room = (file.len() - 8) as u64;
    (declared > MAX_HEADER && declared > room).then_some(declared)
}

/// Fails on the first object key given twice, at any depth of the JSON text.
pub(super) fn unique_keys(json: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    Unique.deserialize(&mut de).map_err(|e| e.to_string())
}

/// Walks a JSON value, remembering the keys of each object.
struct Unique;

impl<'de> DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(A::Error::custom(format!("the key `{key}` is given twice")));
            }
            map.next_value_seed(Unique)?;
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lengths_past_the_reader_and_the_file_make_a_file_no_bundle() {
        let mut text = b"1\n2\n3\n4\n5\n".to_vec();
        let declared = u64::from_le_bytes(text[..8].try_into().unwrap());
        assert_eq!(beyond_the_end(&text), Some(declared));
        // A bundle cut short: a plausible header length, beyond the end.
        text[..8].copy_from_slice(&500u64.to_le_bytes());
        assert_eq!(beyond_the_end(&text), None);
        assert_eq!(beyond_the_end(b"short"), None);
    }

    #[test]
    fn repeated_keys_are_found_at_any_depth() {
        assert!(unique_keys(br#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#).is_ok());
        let e = unique_keys(br#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(e.contains("the key `a` is given twice"), "{e}");
        let e = unique_keys(br#"{"__metadata__": {"k": "1", "k": "2"}}"#).unwrap_err();
        assert!(e.contains("`k`"), "{e}");
        assert!(unique_keys(br#"{"x": [{"a": 1}, {"a": 2}]}"#).is_ok());
        assert!(unique_keys(b"{not json").is_err());
    }
}
