//! Members of a bundle: points `w(t)` of a curve or networks of a snapshot set, where they lie
//! ([`Members`]), and the weights and standalone models they stand for.

use std::borrow::Cow;

use super::{Bundle, Kind, Metadata, Role};
use crate::curve::{Basis, Coefficients};
use crate::graph::NamedTensor;
use crate::{Error, Result};

/// One network of an ensemble.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Member {
    /// The point `w(t)` of a curve.
    T(f64),
    /// Network `i` of a snapshot set.
    Index(usize),
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Member::T(t) => write!(f, "t={t}"),
            Member::Index(i) => write!(f, "member {i}"),
        }
    }
}

/// The members a bundle has: the points of its curve (basis, control points, batch-norm grid)
/// or the networks of its snapshot set. The one place that says whether a member exists and
/// how it combines the bundle's stacks.
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    kind: Kind,
    basis: Option<Basis>,
    points: usize,
    bn_grid: Option<Vec<f64>>,
}

impl Members {
    /// The members of a bundle with this (checked) metadata.
    pub fn of(meta: &Metadata) -> Self {
        Members {
            kind: meta.kind,
            basis: meta.basis,
            points: meta.points,
            bn_grid: meta.bn_grid.clone(),
        }
    }

    /// Curve or snapshot set.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The number of control points (curves) or members (snapshot sets).
    pub fn points(&self) -> usize {
        self.points
    }

    /// The coefficients of `member`: `c_k(t)` and the hat weights over `bn_grid` for a point of
    /// a curve, one-hot for a member of a snapshot set.
    ///
    /// Fails with [`Error::TOutOfRange`], [`Error::MemberOutOfRange`] or
    /// [`Error::KindMismatch`] (a t for a snapshot set, an index for a curve).
    pub fn coefficients(&self, member: Member) -> Result<Coefficients> {
        match (self.kind, member) {
            (Kind::Curve, Member::T(t)) => {
                let basis = self.basis.ok_or_else(|| Error::Metadata {
                    key: super::keys::BASIS.into(),
                    reason: "missing".into(),
                })?;
                Coefficients::on_curve(basis, self.points, self.bn_grid.as_deref(), t)
            }
            (Kind::Snapshots, Member::Index(i)) => Coefficients::one_hot(i, self.points),
            (kind, Member::Index(_)) => Err(Error::KindMismatch {
                asked: "member indices",
                kind,
            }),
            (kind, Member::T(_)) => Err(Error::KindMismatch {
                asked: "a point t",
                kind,
            }),
        }
    }

    /// Checks that `member` exists: t in `[0, 1]` for curves, an index below the number of
    /// members for snapshot sets (the rules of [`Members::coefficients`]).
    pub fn check(&self, member: Member) -> Result<Member> {
        self.coefficients(member).map(|_| member)
    }
}

/// The weights of one member: every varying tensor at that member, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberWeights {
    /// `(name, shape, values)` for each varying tensor of the bundle.
    pub tensors: Vec<(String, Vec<i64>, Vec<f32>)>,
}

impl Bundle {
    /// The members this bundle has.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The weights of `member`: control points combined with the curve's coefficients,
    /// batch-norm statistics interpolated on `bn_grid`, or a snapshot's own slices.
    pub fn weights_at(&self, member: Member) -> Result<MemberWeights> {
        self.weights(&self.members.coefficients(member)?)
    }

    /// The weights that `coefficients` (from [`Members::coefficients`]) combine.
    pub fn weights(&self, coefficients: &Coefficients) -> Result<MemberWeights> {
        let mut tensors = Vec::with_capacity(self.tensors.len());
        for entry in &self.tensors {
            let weights = match entry.role {
                Role::Points => &coefficients.points,
                Role::Grid => coefficients.grid.as_ref().ok_or_else(|| Error::Metadata {
                    key: super::keys::BN_GRID.into(),
                    reason: format!("missing, but `{}` lives on it", entry.name),
                })?,
            };
            let n = entry.slice_len();
            let mut values = vec![0.0f32; n];
            for (k, &c) in weights.iter().enumerate() {
                if c == 0.0 {
                    continue;
                }
                let slice: Cow<'_, [f32]> = self.slice(entry, k)?;
                for (v, p) in values.iter_mut().zip(slice.iter()) {
                    *v += c * p;
                }
            }
            let shape = entry.slice_shape().iter().map(|&d| d as i64).collect();
            tensors.push((entry.name.clone(), shape, values));
        }
        Ok(MemberWeights { tensors })
    }

    /// A standalone ONNX model of `member`: the bundle's graph with every varying tensor fixed
    /// to its value there, runnable by any ONNX Runtime.
    pub fn materialize(&self, member: Member) -> Result<Vec<u8>> {
        self.materialize_with(&self.members.coefficients(member)?)
    }

    /// A standalone ONNX model of the member that `coefficients` describe.
    pub fn materialize_with(&self, coefficients: &Coefficients) -> Result<Vec<u8>> {
        let weights = self.weights(coefficients)?;
        let named: Vec<NamedTensor<'_>> = weights
            .tensors
            .iter()
            .map(|(name, dims, data)| NamedTensor { name, dims, data })
            .collect();
        self.graph.with_tensors(&named)
    }

    /// Bytes of `f32` weights in one member: what a materialised copy of it costs.
    pub fn member_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.slice_len() * 4).sum()
    }
}
