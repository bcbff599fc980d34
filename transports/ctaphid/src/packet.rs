//! The wire format of one CTAPHID report and the fragmentation of a message into reports.
//!
//! Every report is [`PACKET_SIZE`] bytes (the HID report ID, if any, is the lower layer's
//! business). The first four bytes are the channel identifier, big-endian. The fifth byte tells
//! the two packet types apart by its top bit:
//!
//! ```text
//! initialization packet                 continuation packet
//! 0..4   CID                            0..4   CID
//! 4      CMD | 0x80                     4      SEQ (0x00..=0x7F)
//! 5..7   BCNT (big-endian)              5..64  DATA (59 bytes)
//! 7..64  DATA (57 bytes)
//! ```
//!
//! A message of `BCNT` bytes is one initialization packet followed by as many continuation
//! packets as needed, numbered 0, 1, 2, ... With 128 sequence numbers the longest message is
//! 57 + 128 × 59 = [`MAX_MESSAGE_SIZE`] bytes. Unused bytes of the last packet are zero.

/// The size of one CTAPHID report (a full-speed USB interrupt packet).
pub const PACKET_SIZE: usize = 64;

/// Header bytes of an initialization packet: CID, CMD, BCNT.
pub const INIT_HEADER_SIZE: usize = 7;

/// Payload bytes carried by an initialization packet.
pub const INIT_DATA_SIZE: usize = PACKET_SIZE - INIT_HEADER_SIZE;

/// Header bytes of a continuation packet: CID, SEQ.
pub const CONT_HEADER_SIZE: usize = 5;

/// Payload bytes carried by a continuation packet.
pub const CONT_DATA_SIZE: usize = PACKET_SIZE - CONT_HEADER_SIZE;

/// The highest continuation sequence number (the top bit marks initialization packets).
pub const MAX_SEQUENCE: u8 = 0x7F;

/// The longest message 64-byte reports can carry: 57 + 128 × 59 = 7609 bytes.
pub const MAX_MESSAGE_SIZE: usize = INIT_DATA_SIZE + (MAX_SEQUENCE as usize + 1) * CONT_DATA_SIZE;

/// The bit of byte 4 that marks an initialization packet.
pub const TYPE_INIT: u8 = 0x80;

/// One report, split into its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// The first packet of a message.
    Init {
        channel: u32,
        /// The command, without [`TYPE_INIT`].
        command: u8,
        /// BCNT: the length of the whole message.
        length: usize,
        data: &'a [u8; INIT_DATA_SIZE],
    },
    /// A later packet of a message.
    Cont {
        channel: u32,
        sequence: u8,
        data: &'a [u8; CONT_DATA_SIZE],
    },
}

/// Splits a report into its fields. Every 64-byte array is one or the other packet type, so
/// this cannot fail.
pub(crate) fn parse(packet: &[u8; PACKET_SIZE]) -> Parsed<'_> {
    let [c0, c1, c2, c3, kind, rest @ ..] = packet;
    let channel = u32::from_be_bytes([*c0, *c1, *c2, *c3]);
    if kind & TYPE_INIT == 0 {
        return Parsed::Cont {
            channel,
            sequence: *kind,
            data: rest,
        };
    }
    let [high, low, data @ ..] = rest;
    Parsed::Init {
        channel,
        command: kind & !TYPE_INIT,
        length: usize::from(u16::from_be_bytes([*high, *low])),
        data,
    }
}

/// How many reports a message of `length` bytes takes.
pub const fn packet_count(length: usize) -> usize {
    if length <= INIT_DATA_SIZE {
        1
    } else {
        1 + (length - INIT_DATA_SIZE).div_ceil(CONT_DATA_SIZE)
    }
}

/// Builds report number `index` (0 is the initialization packet) of the message `command` with
/// `payload` on `channel`. `None` past the last report, or when the payload is longer than
/// [`MAX_MESSAGE_SIZE`].
pub(crate) fn fragment(
    channel: u32,
    command: u8,
    payload: &[u8],
    index: usize,
) -> Option<[u8; PACKET_SIZE]> {
    if payload.len() > MAX_MESSAGE_SIZE || index >= packet_count(payload.len()) {
        return None;
    }
    let mut out = [0u8; PACKET_SIZE];
    let [c0, c1, c2, c3, kind, rest @ ..] = &mut out;
    let [b0, b1, b2, b3] = channel.to_be_bytes();
    (*c0, *c1, *c2, *c3) = (b0, b1, b2, b3);
    match index.checked_sub(1) {
        None => {
            *kind = command | TYPE_INIT;
            let [high, low, data @ ..] = rest;
            [*high, *low] = u16::try_from(payload.len()).ok()?.to_be_bytes();
            copy_prefix(data, payload);
        }
        Some(sequence_index) => {
            *kind = u8::try_from(sequence_index)
                .ok()
                .filter(|s| *s <= MAX_SEQUENCE)?;
            let start = INIT_DATA_SIZE + sequence_index * CONT_DATA_SIZE;
            copy_prefix(rest, payload.get(start..)?);
        }
    }
    Some(out)
}

/// Copies as much of `source` as fits into `target`.
fn copy_prefix(target: &mut [u8], source: &[u8]) {
    for (to, from) in target.iter_mut().zip(source) {
        *to = *from;
    }
}

/// The reports of one message, in order. Made by [`packets`].
///
/// Useful to host-side clients and tests that speak CTAPHID to a device.
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    channel: u32,
    command: u8,
    payload: &'a [u8],
    index: usize,
}

impl Iterator for Packets<'_> {
    type Item = [u8; PACKET_SIZE];

    fn next(&mut self) -> Option<Self::Item> {
        let packet = fragment(self.channel, self.command, self.payload, self.index)?;
        self.index = self.index.saturating_add(1);
        Some(packet)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = packet_count(self.payload.len()).saturating_sub(self.index);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Packets<'_> {}

/// Fragments a message into reports: `command` is the CTAPHID command without the
/// initialization bit (for example [`command::PING`](crate::command::PING)). `None` when the
/// payload is longer than [`MAX_MESSAGE_SIZE`].
pub fn packets(channel: u32, command: u8, payload: &[u8]) -> Option<Packets<'_>> {
    if payload.len() > MAX_MESSAGE_SIZE {
        return None;
    }
    Some(Packets {
        channel,
        command,
        payload,
        index: 0,
    })
}
