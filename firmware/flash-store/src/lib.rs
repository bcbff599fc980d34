//! Fidelio's persistent [`Store`](authenticator_core::Store) on NOR flash, for the firmware.
//!
//! [`FlashStore`] keeps the core's keys and values in a region of flash (whole sectors, kept
//! out of the firmware image so that updates leave it alone) through
//! [sequential-storage](https://docs.rs/sequential-storage)'s map, and adds what that map does
//! not give: batches that are atomic across a power cut at any flash operation, `Clear`,
//! ordered prefix scans, a format version, and refusal of anything it did not write.
//!
//! # Layout
//!
//! ```text
//! region: [ superblock sector | sequential-storage map (all other sectors) ]
//! ```
//!
//! - **Superblock** (first 32 bytes of the first sector, written once by a format): magic
//!   `FidelioS`, [`FORMAT_VERSION`], sector size, region length, flash word size,
//!   sequential-storage's on-flash format (major version 8), CRC-32. It is read before
//!   sequential-storage touches the region (sequential-storage repairs what it finds, so it must
//!   never see a region that is not ours).
//! - **Map** (sequential-storage, `u16` keys): key 0 holds the *commit record*
//!   `{committed, epoch}`; keys 1.. are *block ids*, each holding one record:
//!   - `Head {txn, key, value_len, continuation ids, first chunk}`: a key's value (up to
//!     [`MAX_BLOCK`] bytes per record; longer values continue in `Cont` records);
//!   - `Cont {txn, owner, seq, chunk}`;
//!   - `Tomb {txn, key}`: the key was deleted by `txn`;
//!   - `Free`: the id is unused.
//!
//! # Commit protocol (copy on write)
//!
//! A transaction `T` (numbers only grow) commits a batch thus:
//!
//! 1. write every new record into a block id that holds nothing of value (free, never
//!    written, or dead), stamped with `T`: continuation chunks, then heads; a tombstone for
//!    each deleted key that exists;
//! 2. write the commit record `{committed: T, epoch}`, where `epoch` becomes `T` if the batch
//!    has a `Clear`: **this single sequential-storage item is the commit point**;
//! 3. write `Free` over what the batch superseded (older versions, and for a `Clear` every
//!    block older than `T`), then over the tombstones.
//!
//! Reading the flash back (at open) decides everything from the records themselves:
//!
//! - a record with `txn > committed` belongs to a transaction that never committed: it is
//!   ignored and freed;
//! - a record with `txn < epoch` predates the last `Clear`: ignored and freed;
//! - among the remaining heads and tombstones of one key, the highest `txn` wins; a winning
//!   tombstone means the key is absent; the losers are freed, then the tombstone;
//! - a continuation counts only for the live head of its own transaction.
//!
//! # Invariants
//!
//! - **I1 — one commit point.** A batch becomes visible exactly when its commit record is in
//!   flash. sequential-storage writes an item atomically (a header and a CRC: an item cut short
//!   is ignored), so a power cut before or during step 2 leaves the previous commit record,
//!   and the batch's records are uncommitted; after step 2, the batch is there whatever
//!   happens to step 3.
//! - **I2 — nothing of value is overwritten before the commit point.** Step 1 writes only ids
//!   whose newest record is free, blank, dead (superseded with its winner still present, or
//!   older than the epoch) — never a live head, continuation or tombstone. So the state before
//!   the batch survives until step 2.
//! - **I3 — no uncommitted record outlives the next commit.** Records of a transaction that
//!   did not commit are freed (at open, or when the failure is seen) before any later commit
//!   record is written; otherwise a later, larger `committed` would adopt them. A store that
//!   cannot free them refuses to commit.
//! - **I4 — deletions stay deleted.** A tombstone is freed only after every older version of
//!   its key; a `Clear` needs no tombstones because the epoch, carried forward by every later
//!   commit record, outlives the blocks it kills.
//! - **I5 — transaction numbers never repeat among visible records.** The next number is one
//!   more than the largest seen in the commit record or any block; a block freed without ever
//!   committing is hidden behind its complete `Free` record.
//! - **I6 — sequential-storage never runs out mid-batch.** Before writing, a commit checks
//!   that the newest versions of all records, with the batch written and nothing freed yet,
//!   stay under `(pages − 1) × (usable page bytes − largest item)`, the size sequential-storage
//!   can always hold with one sector kept erased and one record's worth of waste per sector;
//!   a batch that grows the store must also leave room (four largest items) for later
//!   deletions. Otherwise it is refused with `StoreError::Full` before anything is written.
//!
//! Power-cut recovery is therefore "discard or keep, then tidy": open rebuilds the state from
//! the records (I1–I5) and frees leftovers; a cut during that recovery only repeats it.
//!
//! # RAM
//!
//! No values are kept in RAM. The index holds, per key, its first 16 bytes, a 32-bit hash, its
//! head block id and a few counts (24 bytes), sorted; keys that share their first 16 bytes
//! (the credentials of one relying party) are read from flash and sorted when a scan visits
//! them. A lookup reads the head block through sequential-storage's key cache (8 bytes per
//! block id, sized to the ids in use). Per block id, 4 bytes of bookkeeping. For 256
//! discoverable credentials that is about 20 KiB in all (see the README for measured figures).
//!
//! # Flash requirements
//!
//! `S` implements the async `embedded-storage-async` `NorFlash` (wrap a blocking driver in
//! [`BlockingFlash`]). Read and write sizes must divide 32 (sequential-storage's largest word),
//! so an RP2040 driver over the ROM's 256-byte page program exposes 4-byte writes by
//! programming the page with `0xFF` around them. Each word is written once between erases (no
//! `MultiwriteNorFlash` needed). A power cut during an erase is assumed to leave the sector
//! erased from its start up to some point, as sequential-storage assumes (it detects the
//! half-erased sector by its markers and erases it again).
#![no_std]

extern crate alloc;

mod blocking;
mod format;
#[cfg(feature = "sim")]
pub mod sim;
mod store;

pub use blocking::BlockingFlash;
pub use format::{FORMAT_VERSION, MAX_BLOCK, MAX_KEY, MAX_VALUE};
pub use store::{FlashStore, OpenError, RegionError, Usage};
