//! Handles as registered tokens.
//!
//! A handle is a small heap allocation whose address is the key of a process-wide table that
//! holds the object behind an `Arc`. Every call looks the handle up in the table before using
//! it, so a freed handle is answered with `MODECONN_STATUS_INVALID_HANDLE` and never
//! dereferenced; a call in flight keeps its own `Arc`, so freeing a handle while another thread
//! uses it is safe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{ApiStatus, Failure};

/// A table of live handles of one type.
pub(crate) struct Registry<T> {
    map: Mutex<Option<HashMap<usize, Arc<T>>>>,
    what: &'static str,
}

impl<T> Registry<T> {
    pub(crate) const fn new(what: &'static str) -> Self {
        Registry {
            map: Mutex::new(None),
            what,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<HashMap<usize, Arc<T>>>> {
        // Nothing panics while the lock is held; recover from poisoning regardless.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `value` under the address of `token`, a freshly boxed handle.
    pub(crate) fn insert<H>(&self, token: *mut H, value: T) {
        self.lock()
            .get_or_insert_with(HashMap::new)
            .insert(token as usize, Arc::new(value));
    }

    /// The object of a live handle.
    pub(crate) fn get<H>(&self, token: *const H) -> Result<Arc<T>, Failure> {
        if token.is_null() {
            return Err(Failure::new(
                ApiStatus::NullArgument,
                format!("the {} handle is NULL", self.what),
            ));
        }
        self.lock()
            .as_ref()
            .and_then(|m| m.get(&(token as usize)).cloned())
            .ok_or_else(|| self.invalid())
    }

    /// Unregisters a handle, returning whether it was live.
    pub(crate) fn remove<H>(&self, token: *const H) -> Option<Arc<T>> {
        self.lock().as_mut()?.remove(&(token as usize))
    }

    pub(crate) fn invalid(&self) -> Failure {
        Failure::new(
            ApiStatus::InvalidHandle,
            format!(
                "not a live {} handle (already freed, or never returned by this library)",
                self.what
            ),
        )
    }
}
