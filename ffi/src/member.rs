//! One member of an ensemble as C sees it, and materialising it as a standalone ONNX model.

use std::ffi::c_char;

use ::modeconn_runtime::Member;

use crate::ensemble::{ENSEMBLES, modeconn_ensemble};
use crate::{Failure, c_str, modeconn_status};

/// Whether a modeconn_member is a point of a curve or a member of a snapshot set.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr)]
pub enum modeconn_member_kind {
    /// The point w(t) of a curve (t holds t).
    T = 0,
    /// Member index of a snapshot set.
    Index = 1,
}

/// One network of an ensemble: a point of a curve or a member of a snapshot set.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct modeconn_member {
    /// A modeconn_member_kind value.
    pub kind: u32,
    /// t, for MODECONN_MEMBER_KIND_T.
    pub t: f64,
    /// The index, for MODECONN_MEMBER_KIND_INDEX.
    pub index: usize,
}

impl From<Member> for modeconn_member {
    fn from(m: Member) -> Self {
        match m {
            Member::T(t) => modeconn_member {
                kind: modeconn_member_kind::T as u32,
                t,
                index: 0,
            },
            Member::Index(index) => modeconn_member {
                kind: modeconn_member_kind::Index as u32,
                t: 0.0,
                index,
            },
        }
    }
}

/// The member a C description stands for.
fn member_of(m: modeconn_member) -> Result<Member, Failure> {
    match modeconn_member_kind::from_repr(m.kind) {
        Some(modeconn_member_kind::T) => Ok(Member::T(m.t)),
        Some(modeconn_member_kind::Index) => Ok(Member::Index(m.index)),
        None => Err(Failure::invalid(format!(
            "member.kind {} is not a modeconn_member_kind (MODECONN_MEMBER_KIND_T {}, \
             MODECONN_MEMBER_KIND_INDEX {})",
            m.kind,
            modeconn_member_kind::T as u32,
            modeconn_member_kind::Index as u32
        ))),
    }
}

/// Writes a standalone ONNX model of one member (the bundle's graph with every varying tensor
/// fixed to its value there, runnable by any ONNX Runtime) to the file path, replacing it
/// atomically.
///
/// member: for curves {MODECONN_MEMBER_KIND_T, t, 0}, for snapshot sets
/// {MODECONN_MEMBER_KIND_INDEX, 0, index}. Borrowed.
///
/// path: NUL-terminated UTF-8, borrowed.
///
/// Statuses: OK; NULL_ARGUMENT; INVALID_HANDLE; UTF8; INVALID_ARGUMENT (unknown member kind);
/// T_OUT_OF_RANGE; MEMBER_OUT_OF_RANGE; SAMPLING (t for a snapshot set or an index for a
/// curve); IO; ONNX; PANIC. Thread-safe.
///
/// Pointers: member is NULL or points to a modeconn_member; path is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn modeconn_ensemble_materialize(
    ensemble: *const modeconn_ensemble,
    member: *const modeconn_member,
    path: *const c_char,
) -> modeconn_status {
    ffi_boundary! {
        not_null!(member, "member");
        let h = ENSEMBLES.get(ensemble)?;
        // SAFETY: non-NULL and valid (this function's contract); every field takes any bits.
        let member = member_of(unsafe { member.read() })?;
        // SAFETY: NULL or NUL-terminated (this function's contract).
        let path = unsafe { c_str(path, "path") }?;
        let model = h.ensemble.bundle().materialize(member)?;
        ::modeconn_runtime::write_file_atomic(std::path::Path::new(path), &model)?;
        Ok(())
    }
}
