//! What a model built in code declares: the dimensions of its inputs and outputs and the
//! attributes of its nodes. Shared by the builder ([`super::build`]) and the encoder that
//! writes them, which depend on it and not on each other.

/// One dimension of a declared graph input or output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DimSpec {
    /// A fixed size (`dim_value`).
    Fixed(i64),
    /// A named, free size (`dim_param`), e.g. `"batch"`.
    Symbolic(String),
}

impl From<i64> for DimSpec {
    fn from(v: i64) -> Self {
        DimSpec::Fixed(v)
    }
}

impl From<&str> for DimSpec {
    fn from(s: &str) -> Self {
        DimSpec::Symbolic(s.to_string())
    }
}

impl From<String> for DimSpec {
    fn from(s: String) -> Self {
        DimSpec::Symbolic(s)
    }
}

/// A node attribute: its name and value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// An `INT` attribute.
    Int(String, i64),
    /// An `INTS` attribute.
    Ints(String, Vec<i64>),
    /// A `FLOAT` attribute.
    Float(String, f32),
    /// A `FLOATS` attribute.
    Floats(String, Vec<f32>),
    /// A `STRING` attribute (stored as UTF-8 bytes).
    String(String, String),
}

impl Attr {
    /// An `INT` attribute.
    pub fn int(name: &str, v: i64) -> Self {
        Attr::Int(name.to_string(), v)
    }

    /// An `INTS` attribute.
    pub fn ints(name: &str, v: &[i64]) -> Self {
        Attr::Ints(name.to_string(), v.to_vec())
    }

    /// A `FLOAT` attribute.
    pub fn float(name: &str, v: f32) -> Self {
        Attr::Float(name.to_string(), v)
    }

    /// A `FLOATS` attribute.
    pub fn floats(name: &str, v: &[f32]) -> Self {
        Attr::Floats(name.to_string(), v.to_vec())
    }

    /// A `STRING` attribute.
    pub fn string(name: &str, v: &str) -> Self {
        Attr::String(name.to_string(), v.to_string())
    }

    /// The attribute's name.
    pub fn name(&self) -> &str {
        match self {
            Attr::Int(n, _)
            | Attr::Ints(n, _)
            | Attr::Float(n, _)
            | Attr::Floats(n, _)
            | Attr::String(n, _) => n,
        }
    }
}
