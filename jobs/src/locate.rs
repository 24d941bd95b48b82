//! Where a job's JSON is at fault. serde loses the path to the faulty field of a job, which is
//! tagged (`command`) and flattens its [`TrainingOptions`]; the job's struct is parsed again on
//! its own to find it.

use crate::job::{CurveJob, EvalJob, FgeJob, TrainJob, TrainingOptions};

/// The error of a job that does not parse, prefixed with the path to the field at fault, or
/// `None` when the job parses or its command is not known here.
pub(crate) fn locate_error(value: serde_json::Value) -> Option<String> {
    let mut fields = match value {
        serde_json::Value::Object(fields) => fields,
        other => {
            let kind = match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            return Some(format!(
                "a job is a JSON object tagged by `command`, not {kind}"
            ));
        }
    };
    let command = match fields.remove("command")? {
        serde_json::Value::String(c) => c,
        _ => return None,
    };
    match command.as_str() {
        "train" => located::<TrainJob>(fields, true),
        "curve" => located::<CurveJob>(fields, true),
        "fge" => located::<FgeJob>(fields, true),
        "eval" => located::<EvalJob>(fields, false),
        "bn" => located::<crate::job::BnJob>(fields, false),
        "doctor" => located::<crate::job::DoctorJob>(fields, false),
        "attack" => located::<crate::job::AttackJob>(fields, false),
        "samples" => located::<crate::job::SamplesJob>(fields, false),
        "plane" => located::<crate::job::PlaneJob>(fields, false),
        _ => None,
    }
}

/// Parses `fields` as a `T` and returns its error with the path to the field at fault.
/// `flattened`: `T` holds [`TrainingOptions`] through `#[serde(flatten)]`, whose errors are
/// located by parsing the training options among `fields` on their own.
fn located<T: serde::de::DeserializeOwned>(
    fields: serde_json::Map<String, serde_json::Value>,
    flattened: bool,
) -> Option<String> {
    let training: serde_json::Map<String, serde_json::Value> = if flattened {
        let names = struct_fields::<TrainingOptions>();
        fields
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        serde_json::Map::new()
    };
    let error =
        serde_path_to_error::deserialize::<_, T>(serde_json::Value::Object(fields)).err()?;
    let with_path = |e: &serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // The root has no name, and an unknown field names itself.
        if path == "." || message.starts_with("unknown field") {
            None
        } else {
            Some(format!("{path}: {message}"))
        }
    };
    if let Some(message) = with_path(&error) {
        return Some(message);
    }
    if flattened
        && let Err(e) = serde_path_to_error::deserialize::<_, TrainingOptions>(
            serde_json::Value::Object(training),
        )
        && let Some(message) = with_path(&e)
    {
        return Some(message);
    }
    Some(error.into_inner().to_string())
}

/// The field names the derived `Deserialize` of a struct asks for (empty for anything else).
fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    let mut capture = FieldCapture::default();
    let _ = T::deserialize(&mut capture);
    capture.fields
}

/// A deserializer that fails at once, noting the field names of the struct asked for.
#[derive(Default)]
struct FieldCapture {
    fields: &'static [&'static str],
}

impl<'de> serde::Deserializer<'de> for &mut FieldCapture {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.fields = fields;
        Err(serde::de::Error::custom("fields noted"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_options_fields_are_known() {
        let names = struct_fields::<TrainingOptions>();
        for name in ["data", "epochs", "lr", "seed", "resume", "checkpoint"] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(struct_fields::<String>().is_empty());
    }
}
