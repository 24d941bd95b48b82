//! Members of a bundle: points `w(t)` of a curve or networks of a snapshot set, and the weights
//! and standalone models they stand for.

use std::borrow::Cow;

use super::{Bundle, Kind, Role};
use crate::curve::{check_t, fill_hat};
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

/// The weights of one member: every varying tensor at that member, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberWeights {
    /// `(name, shape, values)` for each varying tensor of the bundle.
    pub tensors: Vec<(String, Vec<i64>, Vec<f32>)>,
}

impl Bundle {
    /// Checks that a member exists in this bundle: t in `[0, 1]` for curves, an index below the
    /// number of members for snapshot sets.
    pub fn check_member(&self, member: Member) -> Result<Member> {
        match (self.meta.kind, member) {
            (Kind::Curve, Member::T(t)) => check_t(t).map(Member::T),
            (Kind::Snapshots, Member::Index(i)) if i < self.meta.points => Ok(member),
            (Kind::Snapshots, Member::Index(i)) => Err(Error::MemberOutOfRange {
                index: i,
                count: self.meta.points,
            }),
            (Kind::Curve, Member::Index(_)) => Err(Error::Sampling(
                "this bundle is a curve: choose points by t, not member indices".into(),
            )),
            (Kind::Snapshots, Member::T(_)) => Err(Error::Sampling(
                "this bundle is a snapshot set: choose members by index, not t".into(),
            )),
        }
    }

    /// The weights of control points (or members) that make up `member`: `c_k(t)` for curves,
    /// one-hot for snapshot sets.
    pub fn point_coefficients(&self, member: Member) -> Result<Vec<f32>> {
        let k = self.meta.points;
        let mut out = vec![0.0f64; k];
        match self.check_member(member)? {
            Member::T(t) => {
                let basis = self.meta.basis.ok_or_else(|| Error::Metadata {
                    key: super::keys::BASIS.into(),
                    reason: "missing".into(),
                })?;
                basis.fill_coefficients(t, &mut out);
            }
            Member::Index(i) => out[i] = 1.0,
        }
        Ok(out.into_iter().map(|c| c as f32).collect())
    }

    /// The hat weights over `bn_grid` at `member`'s t (curves with batch-norm statistics).
    pub fn grid_coefficients(&self, member: Member) -> Result<Option<Vec<f32>>> {
        let Some(grid) = &self.meta.bn_grid else {
            return Ok(None);
        };
        let Member::T(t) = self.check_member(member)? else {
            return Ok(None);
        };
        let mut out = vec![0.0f64; grid.len()];
        fill_hat(grid, t, &mut out)?;
        Ok(Some(out.into_iter().map(|c| c as f32).collect()))
    }

    /// The weights of `member`: control points combined with the curve's coefficients,
    /// batch-norm statistics interpolated on `bn_grid`, or a snapshot's own slices.
    pub fn weights_at(&self, member: Member) -> Result<MemberWeights> {
        let points = self.point_coefficients(member)?;
        let grid = self.grid_coefficients(member)?;
        let mut tensors = Vec::with_capacity(self.tensors.len());
        for entry in &self.tensors {
            let coefficients = match entry.role {
                Role::Points => &points,
                Role::Grid => grid.as_ref().ok_or_else(|| Error::Metadata {
                    key: super::keys::BN_GRID.into(),
                    reason: format!("missing, but `{}` lives on it", entry.name),
                })?,
            };
            let n = entry.slice_len();
            let mut values = vec![0.0f32; n];
            for (k, &c) in coefficients.iter().enumerate() {
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
        let weights = self.weights_at(member)?;
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
