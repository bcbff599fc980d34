//! [`FlashStore`]: the [`Store`] itself (see the crate documentation for the design).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::cmp::Ordering;
use core::ops::Range;

use authenticator_core::block_on;
use authenticator_core::platform::{Store, StoreError, Write};
use embedded_storage_async::nor_flash::NorFlash;
use sequential_storage::cache::Cache;
use sequential_storage::cache::key_pointers::HeapKeyPointers;
use sequential_storage::cache::page_pointers::HeapPagePointers;
use sequential_storage::cache::page_states::HeapPageStates;
use sequential_storage::map::{MapConfig, MapStorage};

use crate::format::{
    self, Block, COMMIT_ID, COMMIT_LEN, CONT_FIXED, CommitRecord, FORMAT_VERSION, FREE_BLOCK,
    HEAD_FIXED, Layout, MAX_BLOCK, MAX_KEY, MAX_VALUE, SUPERBLOCK_LEN, Superblock,
};

type SsCache = Cache<HeapPageStates, HeapPagePointers, HeapKeyPointers<u16>, u16>;
type Map<S> = MapStorage<u16, S, SsCache>;
/// The map, sequential-storage's buffer and the encoding buffer, borrowed together.
type Io<'a, S> = (&'a mut Map<S>, &'a mut [u8], &'a mut Vec<u8>);
/// A key and its value.
type KeyValue = (Vec<u8>, Vec<u8>);
/// Where a scan window ended, and what it found, one sorted list per group.
type Window = (usize, Vec<Vec<KeyValue>>);
/// Where a key is in the index, and its value when asked for.
type Found = (usize, Vec<u8>);

/// How many leading key bytes the RAM index keeps per key.
const HEAD: usize = 16;

/// Values of at most this many bytes under keys of at most [`HEAD`] bytes (the core's
/// counters, sequence, PIN state and master key) are also kept in RAM.
const SMALL: usize = 40;

/// How many bytes of records a scan gathers at a time (and reads in one pass over the map
/// when it needs many blocks that sequential-storage has not located since the store was
/// opened).
const BULK_WINDOW: usize = 8 * 1024;

/// How many such blocks a scan window must need before one pass over the map beats
/// searching for each (a search reads half the map on average, and makes the block cheap to
/// read afterwards).
const BULK_MIN: usize = 8;

/// Why [`FlashStore::open`] or [`FlashStore::format`] refused.
///
/// Except for [`OpenError::Flash`], nothing was written to the region.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError<E> {
    /// The region does not suit the flash or this store (see [`RegionError`]).
    Region(RegionError),
    /// The region holds something that is not a Fidelio store. It was left as it is; erase it
    /// with [`FlashStore::format`] if it may go.
    NotAStore,
    /// The region holds a Fidelio store of a newer format. It was left as it is.
    TooNew {
        /// The format version found.
        found: u32,
        /// The newest format this build understands ([`FORMAT_VERSION`]).
        supported: u32,
    },
    /// The region holds a Fidelio store laid out for another sector size, region length or
    /// flash word size. It was left as it is.
    OtherGeometry,
    /// The region holds a Fidelio store whose records are damaged (a record that does not
    /// decode, a value with a missing part, two versions of a key from one transaction).
    Damaged,
    /// The flash reported an error.
    Flash(E),
}

/// Why a region cannot hold a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegionError {
    /// The region does not start and end on sector boundaries, or is empty.
    NotAligned,
    /// The region ends beyond the flash.
    OutOfFlash,
    /// The region has fewer than four sectors (one superblock, three for the map).
    TooSmall,
    /// Read or write sizes above 32 bytes or not dividing 32, or sectors too small to hold
    /// two of the largest records.
    UnsupportedFlash,
}

/// How full the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of flash the newest version of every record takes, headers and padding included.
    pub used_bytes: usize,
    /// How far batches that grow the store may take `used_bytes` (the rest is kept so that
    /// deletions always fit).
    pub limit_bytes: usize,
    /// Keys held.
    pub keys: usize,
    /// Block ids in use or reserved (free ones included).
    pub block_ids: usize,
}

/// Internal failure, with the flash error when there is one.
#[derive(Debug)]
enum Fault<E> {
    Full,
    Flash(E),
    Damaged,
}

impl<E> Fault<E> {
    fn to_store(&self) -> StoreError {
        match self {
            Self::Full => StoreError::Full,
            Self::Flash(_) | Self::Damaged => StoreError::Failed,
        }
    }
}

fn ss_fault<E>(error: sequential_storage::Error<E>) -> Fault<E> {
    match error {
        sequential_storage::Error::Storage { value, .. } => Fault::Flash(value),
        sequential_storage::Error::FullStorage => Fault::Full,
        _ => Fault::Damaged,
    }
}

/// The flash geometry and the space limits derived from it.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// sequential-storage's word: the larger of the read and write sizes.
    word: usize,
    /// An item header with its padding.
    header: usize,
    /// Sectors given to sequential-storage.
    pages: usize,
    /// No store operation may take the newest versions of all items past this.
    hard_limit: usize,
    /// Batches that grow the store stop here.
    soft_limit: usize,
}

impl Geometry {
    fn new<S: NorFlash>(region: &Range<u32>, capacity: usize) -> Result<Self, RegionError> {
        let erase = S::ERASE_SIZE;
        let erase_u32 = u32::try_from(erase).map_err(|_| RegionError::UnsupportedFlash)?;
        for size in [S::READ_SIZE, S::WRITE_SIZE] {
            if size == 0 || size > 32 || 32 % size != 0 {
                return Err(RegionError::UnsupportedFlash);
            }
        }
        if erase_u32 == 0
            || region.start >= region.end
            || !region.start.is_multiple_of(erase_u32)
            || !region.end.is_multiple_of(erase_u32)
        {
            return Err(RegionError::NotAligned);
        }
        if usize::try_from(region.end).map_or(true, |end| end > capacity) {
            return Err(RegionError::OutOfFlash);
        }
        let sectors = usize::try_from((region.end - region.start) / erase_u32)
            .map_err(|_| RegionError::OutOfFlash)?;
        if sectors < 4 {
            return Err(RegionError::TooSmall);
        }
        let word = S::READ_SIZE.max(S::WRITE_SIZE);
        let header = 8usize.next_multiple_of(word);
        let largest = header + (2 + MAX_BLOCK).next_multiple_of(word);
        let usable = erase.saturating_sub(2 * word);
        if usable < 2 * largest {
            return Err(RegionError::UnsupportedFlash);
        }
        let pages = sectors - 1;
        // sequential-storage keeps one sector erased, and each sector can end with up to one
        // record's worth of unusable space.
        let hard_limit = (pages - 1) * (usable - largest);
        let soft_limit = hard_limit.saturating_sub(4 * largest);
        Ok(Self {
            word,
            header,
            pages,
            hard_limit,
            soft_limit,
        })
    }

    /// Flash bytes an item holding a `block_len`-byte record takes.
    fn item_size(&self, block_len: usize) -> usize {
        self.header + (2 + block_len).next_multiple_of(self.word)
    }

    fn item_size_u16(&self, block_len: usize) -> u16 {
        u16::try_from(self.item_size(block_len)).unwrap_or(u16::MAX)
    }
}

/// What the newest version of a block id holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Never written (or not since it was last seen).
    Blank,
    /// A free marker.
    Free,
    /// Part of a key's current value.
    Live,
    /// A committed tombstone that still hides older versions of its key.
    Tomb,
    /// A block of no use that may be overwritten: a superseded version, a block older than
    /// the last `Clear`, an orphan continuation.
    Dead,
    /// A block of a transaction that never committed: freed before the next commit record.
    Garbage,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Flash bytes of the id's newest item (0 when blank).
    size: u16,
    state: State,
}

const BLANK: Slot = Slot {
    size: 0,
    state: State::Blank,
};

/// One key in the RAM index: its first bytes, a hash, and where its head block is.
#[derive(Debug, Clone, Copy)]
struct Entry {
    head: [u8; HEAD],
    hash: u32,
    id: u16,
    key_len: u8,
    conts: u8,
}

impl Entry {
    fn new(key: &[u8], id: u16, conts: u8) -> Option<Self> {
        let mut head = [0u8; HEAD];
        let take = key.len().min(HEAD);
        head.get_mut(..take)?.copy_from_slice(key.get(..take)?);
        Some(Self {
            head,
            hash: format::key_hash(key),
            id,
            key_len: u8::try_from(key.len()).ok()?,
            conts,
        })
    }

    fn head(&self) -> &[u8] {
        self.head
            .get(..usize::from(self.key_len).min(HEAD))
            .unwrap_or_default()
    }

    fn long(&self) -> bool {
        usize::from(self.key_len) > HEAD
    }
}

/// Orders an entry against a key by what the index knows: `Equal` means "the same key" for
/// short keys and "cannot tell without reading the rest" for long ones.
fn class_cmp(entry: &Entry, key: &[u8]) -> Ordering {
    let key_head = key.get(..key.len().min(HEAD)).unwrap_or_default();
    match entry.head().cmp(key_head) {
        Ordering::Equal => match (entry.long(), key.len() > HEAD) {
            (false, true) => Ordering::Less,
            (true, false) => Ordering::Greater,
            _ => Ordering::Equal,
        },
        other => other,
    }
}

/// The index order: key order where the heads decide it, otherwise hash then id (a scan sorts
/// such groups by their full keys).
fn entry_cmp(a: &Entry, b: &Entry) -> Ordering {
    match a.head().cmp(b.head()) {
        Ordering::Equal => match (a.long(), b.long()) {
            (false, true) => Ordering::Less,
            (true, false) => Ordering::Greater,
            _ => (a.hash, a.id).cmp(&(b.hash, b.id)),
        },
        other => other,
    }
}

/// Two entries the index cannot order (both long, same head).
fn same_group(a: &Entry, b: &Entry) -> bool {
    a.long() && b.long() && a.head == b.head
}

/// A head block, read.
struct HeadRead {
    txn: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    value_len: usize,
    conts: Vec<u16>,
}

/// The newest version of a block id, as the load pass saw it.
#[derive(Debug, Clone, Copy)]
///
/// 32 bytes: the load pass keeps one per block id until the index is built.
struct Summary {
    txn: u32,
    /// Head and tombstone: the key's hash, first bytes and length.
    hash: u32,
    head: [u8; HEAD],
    size: u16,
    /// Continuation: its head and position.
    owner: u16,
    kind: Kind,
    key_len: u8,
    /// Head: its number of continuations.
    conts: u8,
    seq: u8,
}

impl Summary {
    /// What the index can tell about the key without reading it.
    fn class(&self) -> (u32, u8, [u8; HEAD]) {
        (self.hash, self.key_len, self.head)
    }

    fn entry(&self, id: u16) -> Entry {
        Entry {
            head: self.head,
            hash: self.hash,
            id,
            key_len: self.key_len,
            conts: self.conts,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Head,
    Cont,
    Tomb,
    Free,
}

/// A block to write in a commit.
enum Planned<'a> {
    Head {
        key: &'a [u8],
        value: &'a [u8],
        conts: Vec<u16>,
        first_len: usize,
    },
    Cont {
        owner: u16,
        seq: u8,
        chunk: &'a [u8],
    },
    Tomb {
        key: &'a [u8],
    },
}

/// The bytes of one record of `planned`, encoded into `out`.
fn encode_planned(out: &mut Vec<u8>, txn: u32, planned: &Planned<'_>) -> Result<(), ()> {
    match planned {
        Planned::Head {
            key,
            value,
            conts,
            first_len,
        } => {
            let value_len = u16::try_from(value.len()).map_err(|_| ())?;
            let chunk = value.get(..*first_len).ok_or(())?;
            format::encode_head(out, txn, conts, value_len, key, chunk).map_err(|_| ())
        }
        Planned::Cont { owner, seq, chunk } => {
            format::encode_cont(out, txn, *owner, *seq, chunk).map_err(|_| ())
        }
        Planned::Tomb { key } => format::encode_tomb(out, txn, key).map_err(|_| ()),
    }
}

/// The encoded length of `planned`.
fn planned_len(planned: &Planned<'_>) -> usize {
    match planned {
        Planned::Head {
            key,
            conts,
            first_len,
            ..
        } => HEAD_FIXED + 2 * conts.len() + key.len() + first_len,
        Planned::Cont { chunk, .. } => CONT_FIXED + chunk.len(),
        Planned::Tomb { key } => 6 + key.len(),
    }
}

/// How a value of `value_len` bytes under a `key_len`-byte key splits: the number of
/// continuation blocks and the length of the first chunk.
fn split(key_len: usize, value_len: usize) -> Option<(usize, usize)> {
    let cont_capacity = MAX_BLOCK - CONT_FIXED;
    for conts in 0..=usize::from(u8::MAX) {
        let first_capacity = MAX_BLOCK.checked_sub(HEAD_FIXED + 2 * conts + key_len)?;
        let first = value_len.min(first_capacity);
        if (value_len - first).div_ceil(cont_capacity) == conts {
            return Some((conts, first));
        }
    }
    None
}

/// A persistent, atomic [`Store`] in a region of NOR flash.
///
/// `S` is the flash, through the async `embedded-storage-async` traits (wrap a blocking
/// driver in [`BlockingFlash`](crate::BlockingFlash)). See the crate documentation for the
/// layout, the commit protocol and its invariants.
///
/// [`Store::get`] and [`Store::scan_prefix`] take `&self` but read through sequential-storage,
/// which needs `&mut`: the state sits in a [`RefCell`]. A `visit` callback may call `get`;
/// nothing is borrowed while it runs.
pub struct FlashStore<S: NorFlash> {
    inner: RefCell<Inner<S>>,
}

impl<S: NorFlash> core::fmt::Debug for FlashStore<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut out = f.debug_struct("FlashStore");
        if let Ok(inner) = self.inner.try_borrow() {
            out.field("ss_range", &inner.ss_range)
                .field("committed", &inner.record.committed)
                .field("keys", &inner.index.len())
                .field("block_ids", &inner.slots.len())
                .field("broken", &inner.broken);
        }
        out.finish_non_exhaustive()
    }
}

struct Inner<S: NorFlash> {
    map: Option<Map<S>>,
    ss_range: Range<u32>,
    geometry: Geometry,
    /// sequential-storage's work buffer (an aligned window of `scratch_buffer`).
    scratch_buffer: Vec<u8>,
    scratch_at: usize,
    /// Where records are encoded before they are stored.
    encoded: Vec<u8>,
    record: CommitRecord,
    /// Flash bytes of the commit record's item (0 while there is none).
    commit_size: usize,
    /// The next transaction number; 0 once they are used up.
    next_txn: u32,
    /// Per block id (index 0 is the commit record's key and never a block).
    slots: Vec<Slot>,
    /// Live keys, in [`entry_cmp`] order.
    index: Vec<Entry>,
    /// Capacity of sequential-storage's key cache.
    key_cache: usize,
    /// Per block id: sequential-storage's key cache knows where it is (so reading it is one
    /// item read, not a search through the sectors).
    warm: Vec<bool>,
    /// Values of short keys that are small, by head block id.
    small: BTreeMap<u16, Vec<u8>>,
    /// The RAM state may not match the flash (a failure left it unknown): reload first.
    broken: bool,
    /// Bumped whenever the index changes.
    generation: u64,
}

fn new_cache(pages: usize, keys: usize) -> SsCache {
    Cache::new(
        HeapPageStates::new(pages),
        HeapPagePointers::new(pages),
        HeapKeyPointers::new(keys.max(1)),
    )
}

/// Lets sequential-storage repair what a power cut left (a half-erased sector, an interrupted
/// migration) before a pass over all items: in 8.0, `fetch_all_items` returns `Corrupted`
/// without attempting the repair that `fetch_item` does.
fn repair_first<S: NorFlash>(map: &mut Map<S>, scratch: &mut [u8]) -> Result<(), Fault<S::Error>> {
    block_on(map.fetch_item::<&[u8]>(scratch, &COMMIT_ID))
        .map(|_| ())
        .map_err(ss_fault)
}

fn read_flash<S: NorFlash>(flash: &mut S, offset: u32, bytes: &mut [u8]) -> Result<(), S::Error> {
    block_on(flash.read(offset, bytes))
}

/// Whether `range` reads all `0xFF`.
fn is_blank<S: NorFlash>(flash: &mut S, range: Range<u32>) -> Result<bool, S::Error> {
    let mut chunk = [0u8; 256];
    let mut at = range.start;
    while at < range.end {
        let len = (range.end - at).min(256);
        let window = chunk
            .get_mut(..usize::try_from(len).unwrap_or(0))
            .unwrap_or_default();
        read_flash(flash, at, window)?;
        if window.iter().any(|b| *b != 0xFF) {
            return Ok(false);
        }
        at += len;
    }
    Ok(true)
}

impl<S: NorFlash> FlashStore<S> {
    /// Opens the store in `region` (absolute flash addresses, whole sectors): the first sector
    /// holds the superblock, the rest sequential-storage's map.
    ///
    /// A region that is entirely erased becomes an empty store. A region whose superblock
    /// write was cut short (and that holds nothing else) is formatted again. Anything else
    /// that is not a store of this format and geometry is refused and left untouched: see
    /// [`OpenError`]. Opening finishes or discards a commit that a power cut interrupted, so
    /// it may write.
    pub fn open(flash: S, region: Range<u32>) -> Result<Self, OpenError<S::Error>> {
        Self::start(flash, region, false)
    }

    /// Erases `region`, whatever it holds, and opens an empty store there.
    pub fn format(flash: S, region: Range<u32>) -> Result<Self, OpenError<S::Error>> {
        Self::start(flash, region, true)
    }

    fn start(mut flash: S, region: Range<u32>, format: bool) -> Result<Self, OpenError<S::Error>> {
        let geometry = Geometry::new::<S>(&region, flash.capacity()).map_err(OpenError::Region)?;
        let erase = u32::try_from(S::ERASE_SIZE)
            .map_err(|_| OpenError::Region(RegionError::UnsupportedFlash))?;
        let layout = Layout {
            erase_size: erase,
            region_len: region.end - region.start,
            word: u32::try_from(geometry.word)
                .map_err(|_| OpenError::Region(RegionError::UnsupportedFlash))?,
        };
        let superblock = format::superblock(layout);
        let ss_range = region.start + erase..region.end;
        let write_superblock = |flash: &mut S| -> Result<(), OpenError<S::Error>> {
            block_on(flash.write(region.start, &superblock)).map_err(OpenError::Flash)
        };
        let erase_all = |flash: &mut S| -> Result<(), OpenError<S::Error>> {
            // The superblock goes first: a format cut short leaves no valid superblock in
            // front of half-erased data.
            block_on(flash.erase(region.start, region.start + erase)).map_err(OpenError::Flash)?;
            block_on(flash.erase(ss_range.start, ss_range.end)).map_err(OpenError::Flash)
        };
        if format {
            erase_all(&mut flash)?;
            write_superblock(&mut flash)?;
        } else {
            let mut found = [0u8; SUPERBLOCK_LEN];
            read_flash(&mut flash, region.start, &mut found).map_err(OpenError::Flash)?;
            let sb_len = u32::try_from(SUPERBLOCK_LEN).unwrap_or(u32::MAX);
            match format::classify_superblock(&found, layout) {
                Superblock::Valid => {}
                Superblock::Blank => {
                    if !is_blank(&mut flash, region.clone()).map_err(OpenError::Flash)? {
                        return Err(OpenError::NotAStore);
                    }
                    write_superblock(&mut flash)?;
                }
                Superblock::Torn => {
                    let rest_blank = is_blank(&mut flash, region.start + sb_len..region.end)
                        .map_err(OpenError::Flash)?;
                    if !rest_blank {
                        return Err(OpenError::NotAStore);
                    }
                    erase_all(&mut flash)?;
                    write_superblock(&mut flash)?;
                }
                Superblock::TooNew(found) => {
                    return Err(OpenError::TooNew {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                Superblock::OtherGeometry => return Err(OpenError::OtherGeometry),
                Superblock::Foreign => return Err(OpenError::NotAStore),
            }
        }
        let config = MapConfig::try_new(ss_range.clone())
            .map_err(|_| OpenError::Region(RegionError::UnsupportedFlash))?;
        let map = MapStorage::new(flash, config, new_cache(geometry.pages, 64));
        let scratch_len = (2 + MAX_BLOCK).next_multiple_of(geometry.word);
        let mut inner = Inner {
            map: Some(map),
            ss_range,
            geometry,
            scratch_buffer: vec![0u8; scratch_len + 32],
            scratch_at: 0,
            encoded: Vec::with_capacity(MAX_BLOCK),
            record: CommitRecord::default(),
            commit_size: 0,
            next_txn: 1,
            slots: Vec::new(),
            index: Vec::new(),
            key_cache: 64,
            warm: Vec::new(),
            small: BTreeMap::new(),
            broken: true,
            generation: 0,
        };
        // Some flash drivers want word-aligned buffers.
        inner.scratch_at = inner.scratch_buffer.as_ptr().align_offset(32).min(32);
        match inner.load() {
            Ok(()) => {}
            Err(Fault::Flash(error)) => return Err(OpenError::Flash(error)),
            Err(Fault::Damaged | Fault::Full) => return Err(OpenError::Damaged),
        }
        Ok(Self {
            inner: RefCell::new(inner),
        })
    }

    /// Gives the flash back.
    pub fn into_flash(self) -> Option<S> {
        self.inner.into_inner().map.map(|map| map.destroy().0)
    }

    /// Runs `f` on the flash (for diagnostics and tests: it must not change the contents).
    /// `None` while the store is busy (from inside a `scan_prefix` callback).
    pub fn with_flash<R>(&self, f: impl FnOnce(&mut S) -> R) -> Option<R> {
        let mut inner = self.inner.try_borrow_mut().ok()?;
        inner.map.as_mut().map(|map| f(map.flash()))
    }

    /// How full the store is. `None` while the store is busy.
    pub fn usage(&self) -> Option<Usage> {
        let inner = self.inner.try_borrow().ok()?;
        Some(Usage {
            used_bytes: inner.occupancy(),
            limit_bytes: inner.geometry.soft_limit,
            keys: inner.index.len(),
            block_ids: inner.slots.len(),
        })
    }
}

impl<S: NorFlash> Store for FlashStore<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut inner = self
            .inner
            .try_borrow_mut()
            .map_err(|_| StoreError::Failed)?;
        inner.get(key).map_err(|fault| fault.to_store())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let (entries, generation) = {
            let mut inner = self
                .inner
                .try_borrow_mut()
                .map_err(|_| StoreError::Failed)?;
            inner.ensure_loaded().map_err(|fault| fault.to_store())?;
            (inner.prefix_entries(prefix), inner.generation)
        };
        let mut at = 0;
        while at < entries.len() {
            let (end, groups) = {
                let mut inner = self
                    .inner
                    .try_borrow_mut()
                    .map_err(|_| StoreError::Failed)?;
                if inner.generation != generation {
                    return Err(StoreError::Failed);
                }
                inner
                    .read_window(&entries, at, prefix)
                    .map_err(|fault| fault.to_store())?
            };
            for (key, value) in groups.iter().flatten() {
                if !visit(key, value) {
                    return Ok(());
                }
            }
            at = end.max(at + 1);
        }
        Ok(())
    }

    fn commit(&mut self, batch: &[Write<'_>]) -> Result<(), StoreError> {
        self.inner
            .get_mut()
            .commit(batch)
            .map_err(|fault| fault.to_store())
    }
}

impl<S: NorFlash> Inner<S> {
    /// The map, sequential-storage's buffer and the encoding buffer, borrowed together.
    fn io(&mut self) -> Result<Io<'_, S>, Fault<S::Error>> {
        let map = self.map.as_mut().ok_or(Fault::Damaged)?;
        let scratch = self
            .scratch_buffer
            .get_mut(self.scratch_at..)
            .ok_or(Fault::Damaged)?;
        Ok((map, scratch, &mut self.encoded))
    }

    fn occupancy(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| usize::from(slot.size))
            .sum::<usize>()
            + self.commit_size
    }

    fn free_size(&self) -> u16 {
        self.geometry.item_size_u16(FREE_BLOCK.len())
    }

    fn slot_mut(&mut self, id: u16) -> Result<&mut Slot, Fault<S::Error>> {
        self.slots.get_mut(usize::from(id)).ok_or(Fault::Damaged)
    }

    /// Makes sequential-storage's key cache hold at least `ids` keys (a bigger cache means a
    /// new map over the same flash: cheap, and the old cache is only lost speed).
    fn ensure_key_cache(&mut self, ids: usize) -> Result<(), Fault<S::Error>> {
        if ids <= self.key_cache {
            return Ok(());
        }
        let keys = ids.saturating_add(ids / 2).max(64);
        let map = self.map.take().ok_or(Fault::Damaged)?;
        let (flash, _) = map.destroy();
        let config = MapConfig::try_new(self.ss_range.clone()).map_err(|_| Fault::Damaged)?;
        self.map = Some(MapStorage::new(
            flash,
            config,
            new_cache(self.geometry.pages, keys),
        ));
        self.key_cache = keys;
        self.warm.clear();
        Ok(())
    }

    fn set_warm(&mut self, id: u16) {
        let at = usize::from(id);
        if self.warm.len() <= at {
            self.warm.resize(at + 1, false);
        }
        if let Some(flag) = self.warm.get_mut(at) {
            *flag = true;
        }
    }

    fn is_warm(&self, id: u16) -> bool {
        self.warm.get(usize::from(id)).copied().unwrap_or(false)
    }

    // ---------------------------------------------------------------------------------------
    // Reading

    /// The newest record of `id`, copied into the encoding buffer (empty when there is none).
    fn fetch(&mut self, id: u16) -> Result<bool, Fault<S::Error>> {
        let (map, scratch, encoded) = self.io()?;
        encoded.clear();
        let found = match block_on(map.fetch_item::<&[u8]>(scratch, &id)).map_err(ss_fault)? {
            Some(bytes) => {
                encoded.extend_from_slice(bytes);
                true
            }
            None => false,
        };
        self.set_warm(id);
        Ok(found)
    }

    /// Reads the head block `id`: its key, and its whole value when `whole` (else only the
    /// first chunk).
    fn read_head(&mut self, id: u16, whole: bool) -> Result<HeadRead, Fault<S::Error>> {
        if !self.fetch(id)? {
            return Err(Fault::Damaged);
        }
        let mut head = match format::decode_block(&self.encoded) {
            Ok(Block::Head {
                txn,
                conts,
                value_len,
                key,
                chunk,
            }) => HeadRead {
                txn,
                key: key.to_vec(),
                value: chunk.to_vec(),
                value_len: usize::from(value_len),
                conts: format::cont_ids(conts).collect(),
            },
            _ => return Err(Fault::Damaged),
        };
        if whole {
            head.value
                .reserve(head.value_len.saturating_sub(head.value.len()));
            let conts = core::mem::take(&mut head.conts);
            for (seq, &cont) in conts.iter().enumerate() {
                if !self.fetch(cont)? {
                    return Err(Fault::Damaged);
                }
                match format::decode_block(&self.encoded) {
                    Ok(Block::Cont {
                        txn,
                        owner,
                        seq: found_seq,
                        chunk,
                    }) if txn == head.txn && owner == id && usize::from(found_seq) == seq => {
                        head.value.extend_from_slice(chunk);
                    }
                    _ => return Err(Fault::Damaged),
                }
            }
            head.conts = conts;
            if head.value.len() != head.value_len {
                return Err(Fault::Damaged);
            }
        }
        Ok(head)
    }

    /// The continuation ids of the head block `id`.
    fn cont_ids_of(&mut self, entry: &Entry) -> Result<Vec<u16>, Fault<S::Error>> {
        if entry.conts == 0 {
            return Ok(Vec::new());
        }
        let head = self.read_head(entry.id, false)?;
        if head.conts.len() != usize::from(entry.conts) {
            return Err(Fault::Damaged);
        }
        Ok(head.conts)
    }

    /// Where `key` is in the index, with its value when `whole`.
    fn find(&mut self, key: &[u8], whole: bool) -> Result<Option<Found>, Fault<S::Error>> {
        if key.len() <= HEAD {
            // The index holds short keys whole.
            let Ok(at) = self.index.binary_search_by(|entry| class_cmp(entry, key)) else {
                return Ok(None);
            };
            let entry = self.index.get(at).copied().ok_or(Fault::Damaged)?;
            if !whole {
                return Ok(Some((at, Vec::new())));
            }
            if let Some(value) = self.small.get(&entry.id) {
                return Ok(Some((at, value.clone())));
            }
            let head = self.read_head(entry.id, true)?;
            if head.key != key {
                return Err(Fault::Damaged);
            }
            return Ok(Some((at, head.value)));
        }
        let lo = self
            .index
            .partition_point(|entry| class_cmp(entry, key) == Ordering::Less);
        let hi = self
            .index
            .partition_point(|entry| class_cmp(entry, key) != Ordering::Greater);
        let hash = format::key_hash(key);
        for at in lo..hi {
            let Some(entry) = self.index.get(at).copied() else {
                break;
            };
            if entry.hash != hash || usize::from(entry.key_len) != key.len() {
                continue;
            }
            let head = self.read_head(entry.id, whole)?;
            if head.key == key {
                return Ok(Some((at, head.value)));
            }
        }
        Ok(None)
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Fault<S::Error>> {
        self.ensure_loaded()?;
        Ok(self.find(key, true)?.map(|(_, value)| value))
    }

    /// The index entries that may hold keys starting with `prefix`, in index order.
    fn prefix_entries(&self, prefix: &[u8]) -> Vec<Entry> {
        let head = prefix.get(..prefix.len().min(HEAD)).unwrap_or_default();
        let lo = self.index.partition_point(|entry| entry.head() < head);
        let hi = self
            .index
            .partition_point(|entry| entry.head() < head || entry.head().starts_with(head));
        self.index
            .get(lo..hi)
            .unwrap_or_default()
            .iter()
            .filter(|entry| usize::from(entry.key_len) >= prefix.len())
            .copied()
            .collect()
    }

    /// Reads the entries of a scan from `entries[at]` on, whole groups of entries the index
    /// cannot order at a time, until about [`BULK_WINDOW`] bytes: returns where it stopped and
    /// the keys and values that start with `prefix`, in key order, one list per group.
    fn read_window(
        &mut self,
        entries: &[Entry],
        at: usize,
        prefix: &[u8],
    ) -> Result<Window, Fault<S::Error>> {
        let largest = self.geometry.item_size(MAX_BLOCK);
        let mut end = at;
        let mut bytes = 0;
        while let Some(first) = entries.get(end) {
            if end > at && bytes >= BULK_WINDOW {
                break;
            }
            let mut group_end = end + 1;
            while entries
                .get(group_end)
                .is_some_and(|next| same_group(first, next))
            {
                group_end += 1;
            }
            for entry in entries.get(end..group_end).unwrap_or_default() {
                let head = self
                    .slots
                    .get(usize::from(entry.id))
                    .map_or(largest, |slot| usize::from(slot.size));
                bytes += head + usize::from(entry.conts) * largest;
            }
            end = group_end;
        }
        let window = entries.get(at..end).unwrap_or_default();
        // A block sequential-storage has not located yet costs a search through the sectors
        // (and is then cached); many of them are cheaper in one pass over the map (which
        // caches nothing).
        let cold: BTreeSet<u16> = window
            .iter()
            .filter(|entry| !self.is_warm(entry.id) && !self.small.contains_key(&entry.id))
            .map(|entry| entry.id)
            .collect();
        let records = if cold.len() >= BULK_MIN {
            self.bulk_records(&cold)?
        } else {
            BTreeMap::new()
        };
        let mut groups: Vec<Vec<KeyValue>> = Vec::new();
        let mut previous: Option<Entry> = None;
        for entry in window {
            if !previous.is_some_and(|p| same_group(&p, entry)) {
                groups.push(Vec::new());
            }
            previous = Some(*entry);
            let head = match assemble(entry.id, &records) {
                Some(Ok(head)) => head,
                Some(Err(())) => return Err(Fault::Damaged),
                None => self.read_head(entry.id, true)?,
            };
            if usize::from(entry.key_len) != head.key.len() {
                return Err(Fault::Damaged);
            }
            if head.key.starts_with(prefix)
                && let Some(group) = groups.last_mut()
            {
                group.push((head.key, head.value));
            }
        }
        for group in &mut groups {
            group.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok((end, groups))
    }

    /// The newest records of the head blocks `heads` and of the continuations that name one of
    /// them as owner, in one pass over the map.
    fn bulk_records(
        &mut self,
        heads: &BTreeSet<u16>,
    ) -> Result<BTreeMap<u16, Vec<u8>>, Fault<S::Error>> {
        let mut records: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        let (map, scratch, _) = self.io()?;
        repair_first(map, scratch)?;
        let mut items = block_on(map.fetch_all_items(scratch)).map_err(ss_fault)?;
        // Oldest first: a later version of an id replaces the earlier one.
        while let Some((id, bytes)) = block_on(items.next::<&[u8]>(scratch)).map_err(ss_fault)? {
            let wanted = heads.contains(&id)
                || matches!(
                    format::decode_block(bytes),
                    Ok(Block::Cont { owner, .. }) if heads.contains(&owner)
                );
            if wanted {
                records.insert(id, bytes.to_vec());
            } else {
                records.remove(&id);
            }
        }
        Ok(records)
    }

    // ---------------------------------------------------------------------------------------
    // Loading and recovery

    fn ensure_loaded(&mut self) -> Result<(), Fault<S::Error>> {
        if self.broken {
            self.load()?;
        }
        Ok(())
    }

    /// Rebuilds the RAM state from the flash, then frees what the last transaction left:
    /// blocks of an uncommitted transaction, superseded versions, tombstones.
    fn load(&mut self) -> Result<(), Fault<S::Error>> {
        self.broken = true;
        self.generation = self.generation.wrapping_add(1);
        // A fresh cache: after a failure the old one may not match the flash.
        self.key_cache = 0;
        self.ensure_key_cache(64)?;

        let geometry = self.geometry;
        let mut record = CommitRecord::default();
        let mut commit_size = 0;
        let mut seen: BTreeMap<u16, Summary> = BTreeMap::new();
        let mut small: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        {
            let (map, scratch, _) = self.io()?;
            repair_first(map, scratch)?;
            let mut items = block_on(map.fetch_all_items(scratch)).map_err(ss_fault)?;
            // Oldest first: a later version of an id replaces the earlier one.
            while let Some((id, bytes)) =
                block_on(items.next::<&[u8]>(scratch)).map_err(ss_fault)?
            {
                let size = geometry.item_size_u16(bytes.len());
                if id == COMMIT_ID {
                    record = CommitRecord::decode(bytes).map_err(|_| Fault::Damaged)?;
                    commit_size = geometry.item_size(COMMIT_LEN);
                    continue;
                }
                let summary = summarize(bytes, size).ok_or(Fault::Damaged)?;
                seen.insert(id, summary);
                match format::decode_block(bytes) {
                    Ok(Block::Head {
                        conts, key, chunk, ..
                    }) if conts.is_empty() && key.len() <= HEAD && chunk.len() <= SMALL => {
                        small.insert(id, chunk.to_vec());
                    }
                    _ => {
                        small.remove(&id);
                    }
                }
            }
        }

        let top = seen.keys().next_back().map_or(1, |id| usize::from(*id) + 1);
        let mut slots = vec![BLANK; top];
        let mut max_txn = record.committed;
        // Committed heads and tombstones, each possibly its key's current version.
        let mut candidates: Vec<u16> = Vec::new();
        for (&id, summary) in &seen {
            let slot = slots.get_mut(usize::from(id)).ok_or(Fault::Damaged)?;
            slot.size = summary.size;
            max_txn = max_txn.max(summary.txn);
            slot.state = match summary.kind {
                Kind::Free => State::Free,
                _ if summary.txn > record.committed => State::Garbage,
                _ if summary.txn < record.epoch => State::Dead,
                Kind::Cont => State::Dead, // settled below, once heads are
                Kind::Head | Kind::Tomb => {
                    candidates.push(id);
                    State::Dead
                }
            };
        }

        // Versions of one key: the newest committed one wins.
        let class = |id: &u16| seen.get(id).map(Summary::class);
        candidates.sort_by_key(class);
        let mut at = 0;
        while let Some(first) = candidates.get(at) {
            let mut end = at + 1;
            while candidates
                .get(end)
                .is_some_and(|next| class(next) == class(first))
            {
                end += 1;
            }
            let run: Vec<(u16, Summary)> = candidates
                .get(at..end)
                .unwrap_or_default()
                .iter()
                .filter_map(|id| seen.get(id).map(|summary| (*id, *summary)))
                .collect();
            at = end;
            // Same hash, length and head: read the keys to be sure they are one key.
            let mut keyed: Vec<(Vec<u8>, (u16, Summary))> = Vec::with_capacity(run.len());
            if run.len() == 1 {
                keyed.extend(run.into_iter().map(|c| (Vec::new(), c)));
            } else {
                for candidate in run {
                    let key = self.read_key(candidate.0)?;
                    keyed.push((key, candidate));
                }
                keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.1.txn.cmp(&a.1.1.txn)));
            }
            let mut i = 0;
            while let Some((key, winner)) = keyed.get(i) {
                let mut j = i + 1;
                while let Some((other_key, loser)) = keyed.get(j) {
                    if other_key != key {
                        break;
                    }
                    if loser.1.txn == winner.1.txn {
                        // One transaction writes a key once.
                        return Err(Fault::Damaged);
                    }
                    j += 1;
                }
                let slot = slots.get_mut(usize::from(winner.0)).ok_or(Fault::Damaged)?;
                slot.state = if winner.1.kind == Kind::Head {
                    State::Live
                } else {
                    State::Tomb
                };
                i = j;
            }
        }

        // Continuations belong to a live head of their transaction, or to nobody.
        let mut cont_counts: BTreeMap<u16, usize> = BTreeMap::new();
        for (&id, summary) in &seen {
            if summary.kind != Kind::Cont
                || summary.txn > record.committed
                || summary.txn < record.epoch
            {
                continue;
            }
            let belongs = seen.get(&summary.owner).is_some_and(|head| {
                head.kind == Kind::Head
                    && head.txn == summary.txn
                    && summary.seq < head.conts
                    && slots
                        .get(usize::from(summary.owner))
                        .is_some_and(|slot| slot.state == State::Live)
            });
            if belongs {
                *cont_counts.entry(summary.owner).or_insert(0) += 1;
                if let Some(slot) = slots.get_mut(usize::from(id)) {
                    slot.state = State::Live;
                }
            }
        }

        // The index; every live head must have all its continuations (a duplicate or a
        // missing one is damage; which chunk is which is checked when the value is read).
        let mut index = Vec::new();
        for (&id, summary) in &seen {
            let live = slots
                .get(usize::from(id))
                .is_some_and(|slot| slot.state == State::Live);
            if summary.kind != Kind::Head || !live {
                continue;
            }
            let found = cont_counts.get(&id).copied().unwrap_or(0);
            if found != usize::from(summary.conts) {
                return Err(Fault::Damaged);
            }
            index.push(summary.entry(id));
        }
        index.sort_by(entry_cmp);

        self.record = record;
        self.commit_size = commit_size;
        self.next_txn = max_txn.checked_add(1).unwrap_or(0);
        small.retain(|id, _| {
            slots
                .get(usize::from(*id))
                .is_some_and(|slot| slot.state == State::Live)
        });
        self.slots = slots;
        self.index = index;
        self.small = small;
        self.ensure_key_cache(self.slots.len())?;
        self.broken = false;
        match self.cleanup() {
            Ok(()) | Err(Fault::Full) => Ok(()),
            Err(other) => Err(other),
        }
    }

    fn read_key(&mut self, id: u16) -> Result<Vec<u8>, Fault<S::Error>> {
        if !self.fetch(id)? {
            return Err(Fault::Damaged);
        }
        match format::decode_block(&self.encoded) {
            Ok(Block::Head { key, .. } | Block::Tomb { key, .. }) => Ok(key.to_vec()),
            _ => Err(Fault::Damaged),
        }
    }

    /// Writes a free marker over `id`.
    fn free(&mut self, id: u16) -> Result<(), Fault<S::Error>> {
        let (map, scratch, _) = self.io()?;
        block_on(map.store_item(scratch, &id, &FREE_BLOCK.as_slice())).map_err(ss_fault)?;
        self.set_warm(id);
        self.small.remove(&id);
        let size = self.free_size();
        *self.slot_mut(id)? = Slot {
            size,
            state: State::Free,
        };
        Ok(())
    }

    /// Frees uncommitted and dead blocks, then (once no older version can remain) tombstones.
    fn cleanup(&mut self) -> Result<(), Fault<S::Error>> {
        for pass in [State::Garbage, State::Dead, State::Tomb] {
            let ids: Vec<u16> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.state == pass)
                .filter_map(|(id, _)| u16::try_from(id).ok())
                .collect();
            for id in ids {
                self.free(id)?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Committing

    fn commit(&mut self, batch: &[Write<'_>]) -> Result<(), Fault<S::Error>> {
        self.ensure_loaded()?;
        // Leftovers of an earlier commit: dead blocks only cost space, but blocks of an
        // uncommitted transaction must be gone before the next commit record.
        let cleaned = self.cleanup();
        if self.slots.iter().any(|slot| slot.state == State::Garbage) {
            return Err(cleaned.err().unwrap_or(Fault::Damaged));
        }

        // The batch's net effect.
        let mut cleared = false;
        let mut ops: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for write in batch {
            match *write {
                Write::Put(key, value) => {
                    if key.len() > MAX_KEY {
                        return Err(Fault::Damaged);
                    }
                    if value.len() > MAX_VALUE {
                        return Err(Fault::Full);
                    }
                    ops.insert(key, Some(value));
                }
                Write::Delete(key) => {
                    ops.insert(key, None);
                }
                Write::Clear => {
                    ops.clear();
                    cleared = true;
                }
            }
        }

        // What it replaces.
        let mut puts: Vec<(&[u8], &[u8], Option<Entry>)> = Vec::new();
        let mut deletes: Vec<(&[u8], Entry)> = Vec::new();
        for (key, op) in ops {
            let existing = if cleared {
                None
            } else {
                self.find(key, false)?
                    .and_then(|(at, _)| self.index.get(at).copied())
            };
            match (op, existing) {
                (Some(value), _) => puts.push((key, value, existing)),
                (None, Some(entry)) => deletes.push((key, entry)),
                (None, None) => {}
            }
        }
        let clears_something = cleared && !self.index.is_empty();
        if puts.is_empty() && deletes.is_empty() && !clears_something {
            return Ok(());
        }
        let txn = self.next_txn;
        if txn == 0 {
            return Err(Fault::Damaged);
        }
        // The blocks that die with this commit.
        let mut superseded: Vec<u16> = Vec::new();
        if cleared {
            superseded.extend(
                self.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, slot)| matches!(slot.state, State::Live | State::Tomb))
                    .filter_map(|(id, _)| u16::try_from(id).ok()),
            );
        } else {
            let replaced: Vec<Entry> = puts
                .iter()
                .filter_map(|put| put.2)
                .chain(deletes.iter().map(|delete| delete.1))
                .collect();
            for entry in replaced {
                superseded.push(entry.id);
                superseded.extend(self.cont_ids_of(&entry)?);
            }
        }

        // The blocks to write, in writing order (a value's continuations before its head, so
        // that a head never names a block not yet written), each with its id.
        let mut splits = Vec::with_capacity(puts.len());
        for (key, value, _) in &puts {
            splits.push(split(key.len(), value.len()).ok_or(Fault::Full)?);
        }
        let needed = splits.iter().map(|(conts, _)| conts + 1).sum::<usize>() + deletes.len();
        let ids = self.allocate(needed)?;
        let mut next_id = ids.iter().copied();
        let mut blocks: Vec<(u16, Planned<'_>)> = Vec::with_capacity(needed);
        let mut new_entries: Vec<(Entry, Option<u16>)> = Vec::with_capacity(puts.len());
        let mut new_small: Vec<(u16, &[u8])> = Vec::new();
        for ((key, value, existing), &(conts, first_len)) in puts.iter().zip(splits.iter()) {
            let head_id = next_id.next().ok_or(Fault::Full)?;
            let cont_ids: Vec<u16> = next_id.by_ref().take(conts).collect();
            let rest = value.get(first_len..).unwrap_or_default();
            let chunks = rest.chunks(MAX_BLOCK - CONT_FIXED);
            if cont_ids.len() != conts || chunks.len() != conts {
                return Err(Fault::Damaged);
            }
            for (seq, (chunk, &cont_id)) in chunks.zip(cont_ids.iter()).enumerate() {
                let seq = u8::try_from(seq).map_err(|_| Fault::Full)?;
                blocks.push((
                    cont_id,
                    Planned::Cont {
                        owner: head_id,
                        seq,
                        chunk,
                    },
                ));
            }
            if conts == 0 && key.len() <= HEAD && value.len() <= SMALL {
                new_small.push((head_id, value));
            }
            let conts_u8 = u8::try_from(conts).map_err(|_| Fault::Full)?;
            let entry = Entry::new(key, head_id, conts_u8).ok_or(Fault::Damaged)?;
            new_entries.push((entry, existing.map(|e| e.id)));
            blocks.push((
                head_id,
                Planned::Head {
                    key,
                    value,
                    conts: cont_ids,
                    first_len,
                },
            ));
        }
        for (key, _) in &deletes {
            let id = next_id.next().ok_or(Fault::Full)?;
            blocks.push((id, Planned::Tomb { key }));
        }

        // Space: the peak (everything written, nothing freed yet) and the final size.
        let occupancy = self.occupancy();
        let mut peak = occupancy;
        for (id, block) in &blocks {
            let old = self
                .slots
                .get(usize::from(*id))
                .map_or(0, |slot| usize::from(slot.size));
            peak = peak.saturating_sub(old) + self.geometry.item_size(planned_len(block));
        }
        if self.commit_size == 0 {
            peak += self.geometry.item_size(COMMIT_LEN);
        }
        let free_size = usize::from(self.free_size());
        let freed: usize = superseded
            .iter()
            .map(|id| {
                self.slots
                    .get(usize::from(*id))
                    .map_or(0, |slot| usize::from(slot.size).saturating_sub(free_size))
            })
            .sum();
        let tomb_bytes: usize = blocks
            .iter()
            .filter(|(_, block)| matches!(block, Planned::Tomb { .. }))
            .map(|(_, block)| {
                self.geometry
                    .item_size(planned_len(block))
                    .saturating_sub(free_size)
            })
            .sum();
        let after = peak.saturating_sub(freed + tomb_bytes);
        let limit = if after > occupancy {
            self.geometry.soft_limit
        } else {
            self.geometry.hard_limit
        };
        if peak > limit {
            return Err(Fault::Full);
        }
        self.ensure_key_cache(self.slots.len())?;

        // Write the blocks, then the commit record.
        let mut written: Vec<u16> = Vec::with_capacity(blocks.len());
        for (id, block) in &blocks {
            let id = *id;
            let result = self.write_block(id, txn, block);
            if let Err(fault) = result {
                self.abort(&written, id);
                return Err(fault);
            }
            written.push(id);
        }
        let record = CommitRecord {
            committed: txn,
            epoch: if cleared { txn } else { self.record.epoch },
        };
        let stored = {
            let (map, scratch, _) = self.io()?;
            block_on(map.store_item(scratch, &COMMIT_ID, &record.encode().as_slice()))
                .map_err(ss_fault)
        };
        if let Err(fault) = stored {
            // Did it land anyway?
            let landed = match self.fetch(COMMIT_ID) {
                Ok(true) => CommitRecord::decode(&self.encoded).ok() == Some(record),
                Ok(false) => false,
                Err(_) => {
                    self.broken = true;
                    return Err(fault);
                }
            };
            if !landed {
                self.abort(&written, COMMIT_ID);
                return Err(fault);
            }
        }

        // Durable. Bring the RAM state along.
        self.record = record;
        self.commit_size = self.geometry.item_size(COMMIT_LEN);
        self.next_txn = txn.checked_add(1).unwrap_or(0);
        self.generation = self.generation.wrapping_add(1);
        if cleared {
            self.small.clear();
        }
        for &id in &superseded {
            self.slot_mut(id)?.state = State::Dead;
            self.small.remove(&id);
        }
        for (id, value) in new_small {
            self.small.insert(id, value.to_vec());
        }
        for (id, block) in &blocks {
            let id = *id;
            let size = self.geometry.item_size_u16(planned_len(block));
            let state = if matches!(block, Planned::Tomb { .. }) {
                State::Tomb
            } else {
                State::Live
            };
            *self.slot_mut(id)? = Slot { size, state };
        }
        if cleared {
            self.index.clear();
        } else {
            let gone: Vec<u16> = deletes.iter().map(|delete| delete.1.id).collect();
            self.index.retain(|entry| !gone.contains(&entry.id));
        }
        for (entry, replaced) in new_entries {
            match replaced.and_then(|old| self.index.iter_mut().find(|e| e.id == old)) {
                Some(slot) => *slot = entry,
                None => {
                    let at = self
                        .index
                        .partition_point(|other| entry_cmp(other, &entry) == Ordering::Less);
                    self.index.insert(at, entry);
                }
            }
        }
        // Best effort: what is left is freed by the next commit or the next boot.
        let _ = self.cleanup();
        Ok(())
    }

    /// Ids for `count` new blocks: free, blank or dead ones first, then new ones.
    fn allocate(&mut self, count: usize) -> Result<Vec<u16>, Fault<S::Error>> {
        let mut ids: Vec<u16> = self
            .slots
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, slot)| matches!(slot.state, State::Blank | State::Free | State::Dead))
            .filter_map(|(id, _)| u16::try_from(id).ok())
            .take(count)
            .collect();
        while ids.len() < count {
            let id = u16::try_from(self.slots.len().max(1)).map_err(|_| Fault::Full)?;
            if self.slots.is_empty() {
                self.slots.push(BLANK);
            }
            self.slots.push(BLANK);
            ids.push(id);
        }
        Ok(ids)
    }

    fn write_block(
        &mut self,
        id: u16,
        txn: u32,
        block: &Planned<'_>,
    ) -> Result<(), Fault<S::Error>> {
        let (map, scratch, encoded) = self.io()?;
        encode_planned(encoded, txn, block).map_err(|()| Fault::Damaged)?;
        block_on(map.store_item(scratch, &id, &encoded.as_slice())).map_err(ss_fault)?;
        self.set_warm(id);
        Ok(())
    }

    /// Undoes a commit that failed before its commit record: frees what it wrote (and the id
    /// whose write failed, which may hold part of it). If that fails too, the RAM state is
    /// rebuilt from the flash before the next operation.
    fn abort(&mut self, written: &[u16], failed: u16) {
        let ids = written
            .iter()
            .copied()
            .chain((failed != COMMIT_ID).then_some(failed));
        for id in ids {
            if self.free(id).is_err() {
                self.broken = true;
                return;
            }
        }
    }
}

/// What the load pass keeps of one record.
fn summarize(bytes: &[u8], size: u16) -> Option<Summary> {
    let block = format::decode_block(bytes).ok()?;
    let blank = Summary {
        txn: 0,
        hash: 0,
        head: [0; HEAD],
        size,
        owner: 0,
        kind: Kind::Free,
        key_len: 0,
        conts: 0,
        seq: 0,
    };
    let keyed = |key: &[u8]| -> Option<([u8; HEAD], u32, u8)> {
        let entry = Entry::new(key, 0, 0)?;
        Some((entry.head, entry.hash, entry.key_len))
    };
    Some(match block {
        Block::Free => blank,
        Block::Head {
            txn, conts, key, ..
        } => {
            let (head, hash, key_len) = keyed(key)?;
            Summary {
                txn,
                hash,
                head,
                kind: Kind::Head,
                key_len,
                conts: u8::try_from(conts.len() / 2).ok()?,
                ..blank
            }
        }
        Block::Tomb { txn, key } => {
            let (head, hash, key_len) = keyed(key)?;
            Summary {
                txn,
                hash,
                head,
                kind: Kind::Tomb,
                key_len,
                ..blank
            }
        }
        Block::Cont {
            txn, owner, seq, ..
        } => Summary {
            txn,
            owner,
            seq,
            kind: Kind::Cont,
            ..blank
        },
    })
}

/// A head and its continuations from records read in bulk: `None` when some are missing (read
/// them one by one instead), `Some(Err)` when they do not fit together.
fn assemble(id: u16, records: &BTreeMap<u16, Vec<u8>>) -> Option<Result<HeadRead, ()>> {
    let Ok(Block::Head {
        txn,
        conts,
        value_len,
        key,
        chunk,
    }) = format::decode_block(records.get(&id)?)
    else {
        return Some(Err(()));
    };
    let mut value = chunk.to_vec();
    let cont_list: Vec<u16> = format::cont_ids(conts).collect();
    for (seq, cont) in cont_list.iter().enumerate() {
        match format::decode_block(records.get(cont)?) {
            Ok(Block::Cont {
                txn: cont_txn,
                owner,
                seq: found,
                chunk,
            }) if cont_txn == txn && owner == id && usize::from(found) == seq => {
                value.extend_from_slice(chunk);
            }
            _ => return None,
        }
    }
    if value.len() != usize::from(value_len) {
        return Some(Err(()));
    }
    Some(Ok(HeadRead {
        txn,
        key: key.to_vec(),
        value,
        value_len: usize::from(value_len),
        conts: cont_list,
    }))
}
