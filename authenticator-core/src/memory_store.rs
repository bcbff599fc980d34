//! An in-memory [`Store`]: ordered, atomic, and lost at power-off.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::platform::{Store, StoreError, Write};

/// A [`Store`] kept in a `BTreeMap`, for tests, emulators that need no persistence, and as the
/// reference behaviour for other stores. An optional size limit (in bytes of keys plus values)
/// makes it report [`StoreError::Full`] like a small flash would.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    limit_bytes: Option<usize>,
}

impl MemoryStore {
    /// An empty, unlimited store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that refuses batches which would make it hold more than `limit_bytes`.
    pub fn with_limit(limit_bytes: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            limit_bytes: Some(limit_bytes),
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn used_bytes(entries: &BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
        entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.get(key).cloned())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for (key, value) in self.entries.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) || !visit(key, value) {
                break;
            }
        }
        Ok(())
    }

    fn commit(&mut self, batch: &[Write<'_>]) -> Result<(), StoreError> {
        // Apply to a copy only when a limit must be checked; otherwise apply in place (a
        // BTreeMap insert cannot fail half-way).
        if let Some(limit) = self.limit_bytes {
            let mut next = self.entries.clone();
            apply(&mut next, batch);
            if Self::used_bytes(&next) > limit {
                return Err(StoreError::Full);
            }
            self.entries = next;
        } else {
            apply(&mut self.entries, batch);
        }
        Ok(())
    }
}

fn apply(entries: &mut BTreeMap<Vec<u8>, Vec<u8>>, batch: &[Write<'_>]) {
    for write in batch {
        match *write {
            Write::Put(key, value) => {
                entries.insert(key.to_vec(), value.to_vec());
            }
            Write::Delete(key) => {
                entries.remove(key);
            }
            Write::Clear => entries.clear(),
        }
    }
}
