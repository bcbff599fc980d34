#!/usr/bin/env python3
"""Writes the checked-in seeds of the `packets` fuzz target (see fuzz_targets/packets.rs for
the record format: one control byte, then one 64-byte CTAPHID report)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds", "packets")

BROADCAST = 0xFFFFFFFF
PING, MSG, LOCK, INIT, WINK, CBOR, CANCEL = 0x01, 0x03, 0x04, 0x06, 0x08, 0x10, 0x11
# Control bits.
POLL, UP_NEEDED, RESPOND, SUB = 0x10, 0x20, 0x40, 0x80
# Clock step indexes (STEPS in the target).
T0, T1, T99, T100, T101, T499, T500, T501, T11S = 0, 1, 6, 7, 8, 10, 11, 12, 15


def message(cid, cmd, payload, control=SUB, bcnt=None):
    """The records of one message; `control` applies to each record."""
    bcnt = len(payload) if bcnt is None else bcnt
    first = struct.pack(">IBH", cid, cmd | 0x80, bcnt) + payload[:57]
    records = [bytes([control]) + first.ljust(64, b"\0")]
    rest, seq = payload[57:], 0
    while rest:
        cont = struct.pack(">IB", cid, seq) + rest[:59]
        records.append(bytes([control]) + cont.ljust(64, b"\0"))
        rest, seq = rest[59:], seq + 1
    return records


def init():
    return message(BROADCAST, INIT, bytes(range(1, 9)), control=T0)


def idle(control):
    """A record whose report is a spurious continuation packet: only time and control act."""
    return bytes([control]) + b"\0" * 64


def data(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))


SEEDS = {
    "init": init(),
    "init_resync": init() + message(0, INIT, bytes(8)),
    "ping_short": init() + message(0, PING, b"hello"),
    "ping_boundaries": init()
    + [r for n in (0, 56, 57, 58, 116, 117) for r in message(0, PING, data(n))],
    "ping_max": init() + message(0, PING, data(7609)),
    "ping_too_long": init() + message(0, PING, data(57), bcnt=7610),
    "cbor_answered": init() + message(0, CBOR, b"\x04", control=SUB | RESPOND),
    "cbor_keepalive_cancel": init()
    + message(0, CBOR, b"\x01\xa0")
    + [idle(T100 | POLL), idle(T100 | POLL | UP_NEEDED), idle(T101 | POLL)]
    + message(0, CANCEL, b"")
    + [idle(T1 | POLL)],
    "cbor_resync_held": init()
    + message(0, CBOR, b"\x01")
    + message(0, INIT, bytes(8))
    + message(0, CBOR, b"\x02")
    + [idle(T100 | POLL), idle(T1 | RESPOND), idle(T1 | RESPOND)],
    "msg": init() + message(0, MSG, bytes([0, 3, 0, 0, 0, 0, 0]), control=SUB | RESPOND),
    "wink": init() + message(0, WINK, b""),
    "lock": init()
    + message(0, LOCK, b"\x02")
    + init()
    + [idle(T11S | POLL)]
    + init()
    + message(0, LOCK, b"\x0b"),
    "timeout": init()
    + message(0, PING, data(200))[:2]
    + [idle(T501 | POLL)]
    + message(0, PING, data(200))[:1]
    + [bytes([SUB | T501]) + message(0, PING, data(200))[1][1:]],
    "bad_sequence": init()
    + [message(0, PING, data(200))[i] for i in (0, 2, 1)],
    "busy": init()
    + message(0, PING, data(200))[:1]
    + message(BROADCAST, INIT, bytes(8), control=T1)
    + message(0x12345678, PING, b"x", control=T1),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, records in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(b"".join(records))
    print(f"wrote {len(SEEDS)} seeds to {OUT}")


if __name__ == "__main__":
    main()
