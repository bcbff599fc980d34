//! What this crate writes to flash: the superblock at the start of the region, and the records
//! it keeps in sequential-storage's map (blocks and the commit record).
//!
//! All integers are little-endian. Every layout here is part of [`FORMAT_VERSION`]: changing
//! one means a new version, which older builds refuse instead of misreading.

use alloc::vec::Vec;

/// The format version this build writes and understands.
pub const FORMAT_VERSION: u32 = 1;

/// The major version of sequential-storage whose on-flash layout the map sectors use. Recorded
/// in the superblock: a store written by another layout is refused, not reinterpreted.
pub(crate) const SEQUENTIAL_STORAGE_FORMAT: u32 = 8;

/// The first eight bytes of every region this crate formats.
pub(crate) const MAGIC: [u8; 8] = *b"FidelioS";

/// The superblock's length in bytes.
pub(crate) const SUPERBLOCK_LEN: usize = 32;

/// The sequential-storage key of the commit record; blocks use keys 1 and up.
pub(crate) const COMMIT_ID: u16 = 0;

/// The most bytes one block record holds (the map value, without sequential-storage's 2-byte
/// key). Small enough that a 4 KiB sector wastes little at its end, large enough that a
/// discoverable credential's record is one block.
pub const MAX_BLOCK: usize = 512;

/// The longest key a batch may write (the core's longest is `c/` ‖ rpIdHash ‖ credential ID,
/// 98 bytes).
pub const MAX_KEY: usize = 255;

/// The longest value a batch may write (the core's longest is the large-blob array, at most
/// 16 KiB in its roomiest profile).
pub const MAX_VALUE: usize = 32 * 1024;

const TAG_HEAD: u8 = b'H';
const TAG_CONT: u8 = b'C';
const TAG_TOMB: u8 = b'T';
const TAG_FREE: u8 = b'F';
const TAG_COMMIT: u8 = b'M';

/// Head block: tag, txn (4), key length (1), continuation count (1), value length (2).
pub(crate) const HEAD_FIXED: usize = 9;
/// Continuation block: tag, txn (4), owner id (2), sequence number (1).
pub(crate) const CONT_FIXED: usize = 8;

/// What a superblock says about the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Superblock {
    /// Exactly the superblock this build would write for this geometry.
    Valid,
    /// Never programmed.
    Blank,
    /// Part of the superblock this build would write, and nothing else: a format that lost
    /// power while writing it.
    Torn,
    /// A Fidelio store written by a newer format.
    TooNew(u32),
    /// A Fidelio store of this format but another geometry (sector size, region length or word
    /// size).
    OtherGeometry,
    /// Anything else.
    Foreign,
}

/// The geometry a superblock records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub erase_size: u32,
    pub region_len: u32,
    pub word: u32,
}

/// The superblock this build writes for `layout`.
pub(crate) fn superblock(layout: Layout) -> [u8; SUPERBLOCK_LEN] {
    let mut out = [0u8; SUPERBLOCK_LEN];
    let fields: [&[u8]; 6] = [
        &MAGIC,
        &FORMAT_VERSION.to_le_bytes(),
        &layout.erase_size.to_le_bytes(),
        &layout.region_len.to_le_bytes(),
        &layout.word.to_le_bytes(),
        &SEQUENTIAL_STORAGE_FORMAT.to_le_bytes(),
    ];
    let mut at = 0;
    for field in fields {
        if let Some(slot) = out.get_mut(at..at + field.len()) {
            slot.copy_from_slice(field);
        }
        at += field.len();
    }
    let crc = crc32(out.get(..at).unwrap_or_default());
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// Classifies the first [`SUPERBLOCK_LEN`] bytes of a region.
pub(crate) fn classify_superblock(found: &[u8], layout: Layout) -> Superblock {
    let expected = superblock(layout);
    if found == expected.as_slice() {
        return Superblock::Valid;
    }
    if found.iter().all(|b| *b == 0xFF) {
        return Superblock::Blank;
    }
    // Programming only clears bits: a write cut short leaves every bit the finished superblock
    // has set, and some of those it clears.
    if found.len() == expected.len() && found.iter().zip(expected).all(|(f, e)| f & e == e) {
        return Superblock::Torn;
    }
    if found.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Superblock::Foreign;
    }
    let word = |at: usize| -> Option<u32> {
        found
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
    };
    // The magic and the version stay where they are in every future format.
    match word(8) {
        Some(version) if version > FORMAT_VERSION && version != u32::MAX => {
            Superblock::TooNew(version)
        }
        Some(FORMAT_VERSION) => {
            let crc_ok = word(SUPERBLOCK_LEN - 4)
                == Some(crc32(found.get(..SUPERBLOCK_LEN - 4).unwrap_or_default()));
            if crc_ok {
                Superblock::OtherGeometry
            } else {
                Superblock::Foreign
            }
        }
        _ => Superblock::Foreign,
    }
}

/// A block record, decoded (borrowing the bytes it was read from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block<'a> {
    /// The first block of a key's value: the key, the value's length, the ids of the
    /// continuation blocks holding the rest, and the first chunk.
    Head {
        txn: u32,
        /// Continuation ids, 2 bytes each (see [`cont_ids`]).
        conts: &'a [u8],
        value_len: u16,
        key: &'a [u8],
        chunk: &'a [u8],
    },
    /// A later chunk of the value whose head is `owner`, written by the same transaction.
    Cont {
        txn: u32,
        owner: u16,
        seq: u8,
        chunk: &'a [u8],
    },
    /// "`key` was deleted by `txn`": hides older versions until they are freed.
    Tomb { txn: u32, key: &'a [u8] },
    /// An unused block id.
    Free,
}

/// A record that is not one this format writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, Malformed> {
    bytes
        .get(at..at + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_le_bytes)
        .ok_or(Malformed)
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, Malformed> {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or(Malformed)
}

fn u8_at(bytes: &[u8], at: usize) -> Result<u8, Malformed> {
    bytes.get(at).copied().ok_or(Malformed)
}

/// Decodes a block record.
pub(crate) fn decode_block(bytes: &[u8]) -> Result<Block<'_>, Malformed> {
    if bytes.len() > MAX_BLOCK {
        return Err(Malformed);
    }
    match bytes.first() {
        Some(&TAG_HEAD) => {
            let txn = u32_at(bytes, 1)?;
            let key_len = usize::from(u8_at(bytes, 5)?);
            let conts = usize::from(u8_at(bytes, 6)?);
            let value_len = u16_at(bytes, 7)?;
            let conts_end = HEAD_FIXED + 2 * conts;
            let key_end = conts_end + key_len;
            let conts = bytes.get(HEAD_FIXED..conts_end).ok_or(Malformed)?;
            let key = bytes.get(conts_end..key_end).ok_or(Malformed)?;
            let chunk = bytes.get(key_end..).ok_or(Malformed)?;
            if txn == 0 || chunk.len() > usize::from(value_len) {
                return Err(Malformed);
            }
            Ok(Block::Head {
                txn,
                conts,
                value_len,
                key,
                chunk,
            })
        }
        Some(&TAG_CONT) => {
            let txn = u32_at(bytes, 1)?;
            let owner = u16_at(bytes, 5)?;
            let seq = u8_at(bytes, 7)?;
            let chunk = bytes.get(CONT_FIXED..).ok_or(Malformed)?;
            if txn == 0 || owner == COMMIT_ID || chunk.is_empty() {
                return Err(Malformed);
            }
            Ok(Block::Cont {
                txn,
                owner,
                seq,
                chunk,
            })
        }
        Some(&TAG_TOMB) => {
            let txn = u32_at(bytes, 1)?;
            let key_len = usize::from(u8_at(bytes, 5)?);
            let key = bytes.get(6..).ok_or(Malformed)?;
            if txn == 0 || key.len() != key_len {
                return Err(Malformed);
            }
            Ok(Block::Tomb { txn, key })
        }
        Some(&TAG_FREE) if bytes.len() == 1 => Ok(Block::Free),
        _ => Err(Malformed),
    }
}

/// The continuation ids of a head block.
pub(crate) fn cont_ids(conts: &[u8]) -> impl Iterator<Item = u16> + '_ {
    conts
        .chunks_exact(2)
        .filter_map(|pair| <[u8; 2]>::try_from(pair).ok())
        .map(u16::from_le_bytes)
}

/// Encodes a head block into `out` (cleared first). The caller has checked the lengths.
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    txn: u32,
    conts: &[u16],
    value_len: u16,
    key: &[u8],
    chunk: &[u8],
) -> Result<(), Malformed> {
    out.clear();
    out.push(TAG_HEAD);
    out.extend_from_slice(&txn.to_le_bytes());
    out.push(u8::try_from(key.len()).map_err(|_| Malformed)?);
    out.push(u8::try_from(conts.len()).map_err(|_| Malformed)?);
    out.extend_from_slice(&value_len.to_le_bytes());
    for id in conts {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(key);
    out.extend_from_slice(chunk);
    if out.len() > MAX_BLOCK {
        return Err(Malformed);
    }
    Ok(())
}

/// Encodes a continuation block into `out` (cleared first).
pub(crate) fn encode_cont(
    out: &mut Vec<u8>,
    txn: u32,
    owner: u16,
    seq: u8,
    chunk: &[u8],
) -> Result<(), Malformed> {
    out.clear();
    out.push(TAG_CONT);
    out.extend_from_slice(&txn.to_le_bytes());
    out.extend_from_slice(&owner.to_le_bytes());
    out.push(seq);
    out.extend_from_slice(chunk);
    if out.len() > MAX_BLOCK {
        return Err(Malformed);
    }
    Ok(())
}

/// Encodes a tombstone into `out` (cleared first).
pub(crate) fn encode_tomb(out: &mut Vec<u8>, txn: u32, key: &[u8]) -> Result<(), Malformed> {
    out.clear();
    out.push(TAG_TOMB);
    out.extend_from_slice(&txn.to_le_bytes());
    out.push(u8::try_from(key.len()).map_err(|_| Malformed)?);
    out.extend_from_slice(key);
    if out.len() > MAX_BLOCK {
        return Err(Malformed);
    }
    Ok(())
}

/// The free marker.
pub(crate) const FREE_BLOCK: [u8; 1] = [TAG_FREE];

/// The commit record: the last committed transaction and the transaction of the last `Clear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CommitRecord {
    pub committed: u32,
    pub epoch: u32,
}

/// The commit record's encoded length.
pub(crate) const COMMIT_LEN: usize = 9;

impl CommitRecord {
    pub(crate) fn encode(self) -> [u8; COMMIT_LEN] {
        let mut out = [0u8; COMMIT_LEN];
        let (tag, rest) = out.split_at_mut(1);
        let (committed, epoch) = rest.split_at_mut(4);
        tag.copy_from_slice(&[TAG_COMMIT]);
        committed.copy_from_slice(&self.committed.to_le_bytes());
        epoch.copy_from_slice(&self.epoch.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Malformed> {
        if bytes.len() != COMMIT_LEN || bytes.first() != Some(&TAG_COMMIT) {
            return Err(Malformed);
        }
        let record = Self {
            committed: u32_at(bytes, 1)?,
            epoch: u32_at(bytes, 5)?,
        };
        if record.epoch > record.committed {
            return Err(Malformed);
        }
        Ok(record)
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it), bit by bit: it only ever covers the
/// 28 bytes of a superblock.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// FNV-1a, 32 bits: tells keys apart in the RAM index before their bytes are read from flash.
pub(crate) fn key_hash(key: &[u8]) -> u32 {
    key.iter().fold(0x811C_9DC5, |hash: u32, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    const LAYOUT: Layout = Layout {
        erase_size: 4096,
        region_len: 256 * 1024,
        word: 4,
    };

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn superblock_classification() {
        let good = superblock(LAYOUT);
        assert_eq!(&good[..8], b"FidelioS");
        assert_eq!(classify_superblock(&good, LAYOUT), Superblock::Valid);
        assert_eq!(classify_superblock(&[0xFF; 32], LAYOUT), Superblock::Blank);
        // A write cut short: the first 10 bytes programmed, one more half-way.
        let mut torn = [0xFF; 32];
        torn[..10].copy_from_slice(&good[..10]);
        torn[10] = good[10] | 0xF0;
        assert_eq!(classify_superblock(&torn, LAYOUT), Superblock::Torn);
        let other = superblock(Layout {
            region_len: 128 * 1024,
            ..LAYOUT
        });
        assert_eq!(
            classify_superblock(&other, LAYOUT),
            Superblock::OtherGeometry
        );
        let mut newer = good;
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(classify_superblock(&newer, LAYOUT), Superblock::TooNew(2));
        // A bit set that should be clear reads as a write cut short; a bit cleared that should
        // be set cannot come from us.
        let mut unfinished = good;
        unfinished[20] |= 0x01;
        assert_eq!(classify_superblock(&unfinished, LAYOUT), Superblock::Torn);
        let mut damaged = good;
        damaged[20] &= !0x04;
        assert_eq!(classify_superblock(&damaged, LAYOUT), Superblock::Foreign);
        assert_eq!(classify_superblock(&[0u8; 32], LAYOUT), Superblock::Foreign);
    }

    #[test]
    fn blocks_round_trip() {
        let mut out = Vec::new();
        encode_head(&mut out, 7, &[3, 4], 9, b"key", b"valu").unwrap();
        assert_eq!(
            decode_block(&out).unwrap(),
            Block::Head {
                txn: 7,
                conts: &[3, 0, 4, 0],
                value_len: 9,
                key: b"key",
                chunk: b"valu",
            }
        );
        encode_cont(&mut out, 7, 2, 1, b"e").unwrap();
        assert_eq!(
            decode_block(&out).unwrap(),
            Block::Cont {
                txn: 7,
                owner: 2,
                seq: 1,
                chunk: b"e"
            }
        );
        encode_tomb(&mut out, 8, b"gone").unwrap();
        assert_eq!(
            decode_block(&out).unwrap(),
            Block::Tomb {
                txn: 8,
                key: b"gone"
            }
        );
        assert_eq!(decode_block(&FREE_BLOCK).unwrap(), Block::Free);
        let commit = CommitRecord {
            committed: 9,
            epoch: 4,
        };
        assert_eq!(CommitRecord::decode(&commit.encode()).unwrap(), commit);
    }

    #[test]
    fn malformed_blocks_are_refused() {
        for bytes in [
            &[][..],
            &[0x00],
            &[TAG_FREE, 0],
            &[TAG_HEAD, 1, 0, 0, 0, 5, 0, 0, 0, b'a'],
            &[TAG_HEAD, 0, 0, 0, 0, 0, 0, 0, 0],
            &[TAG_TOMB, 1, 0, 0, 0, 2, b'a'],
            &[TAG_CONT, 1, 0, 0, 0, 0, 0, 0, b'x'],
            &[TAG_CONT, 1, 0, 0, 0, 1, 0, 0],
        ] {
            assert_eq!(decode_block(bytes), Err(Malformed), "{bytes:?}");
        }
        // A chunk longer than the value it belongs to.
        let mut out = Vec::new();
        encode_head(&mut out, 1, &[], 1, b"k", b"vv").unwrap();
        assert_eq!(decode_block(&out), Err(Malformed));
        assert!(CommitRecord::decode(&[TAG_COMMIT, 1, 0, 0, 0, 2, 0, 0, 0]).is_err());
    }
}
