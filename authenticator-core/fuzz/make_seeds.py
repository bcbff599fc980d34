#!/usr/bin/env python3
"""Writes the checked-in seed corpus under seeds/<target>/ (run from anywhere; idempotent).

The ctap2_request target splits an input on b"--CTAP--" into requests (command byte followed
by CBOR parameters); these seeds are valid requests and short valid sessions, so the fuzzer
starts from the stateful paths (makeCredential, then getAssertion / getNextAssertion).
Maps are written in CTAP2 canonical key order by hand.
"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DELIMITER = b"--CTAP--"


def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    return bytes([major << 5 | 26]) + struct.pack(">I", n)


def enc(v):
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        items = sorted(((enc(k), enc(x)) for k, x in v.items()), key=lambda kv: (len(kv[0]), kv[0]))
        return head(5, len(items)) + b"".join(k + x for k, x in items)
    raise TypeError(v)


CDH = bytes(range(32))
ES256 = [{"alg": -7, "type": "public-key"}]
EDDSA = [{"alg": -8, "type": "public-key"}]


def make_credential(user_id=b"\x01", rk=True, params=ES256, rp="example.com", extra=None):
    m = {1: CDH, 2: {"id": rp}, 3: {"id": user_id}, 4: params}
    if rk is not None:
        m[7] = {"rk": rk}
    if extra:
        m.update(extra)
    return b"\x01" + enc(m)


def get_assertion(rp="example.com", allow=None, extra=None):
    m = {1: rp, 2: CDH}
    if allow is not None:
        m[3] = [{"id": i, "type": "public-key"} for i in allow]
    if extra:
        m.update(extra)
    return b"\x02" + enc(m)


GET_INFO = b"\x04"


def serialized_large_blob_array(entries):
    """A CBOR array followed by LEFT(SHA-256(array), 16)."""
    data = enc(entries)
    return data + hashlib.sha256(data).digest()[:16]


LARGE_BLOB_ARRAY = serialized_large_blob_array([{1: b"\xc1" * 24, 2: b"\x4e" * 12, 3: 24}])
GET_NEXT = b"\x08"
RESET = b"\x07"
SELECTION = b"\x0b"

CTAP2 = {
    "get_info": GET_INFO,
    "make_credential_rk": make_credential(),
    "make_credential_eddsa": make_credential(rk=False, params=EDDSA),
    "make_credential_named": make_credential(
        user_id=b"\x02" * 16,
        extra={3: {"id": b"\x02" * 16, "name": "alice@example.com", "displayName": "Alice"},
               6: {"credProtect": 2}},
    ),
    "get_assertion": get_assertion(),
    "get_assertion_foreign_allow_list": get_assertion(allow=[b"\x01" + b"\x00" * 63]),
    "session_register_then_login": DELIMITER.join([make_credential(), get_assertion()]),
    "session_two_accounts_then_next": DELIMITER.join([
        make_credential(user_id=b"\x01"),
        make_credential(user_id=b"\x02"),
        get_assertion(),
        GET_NEXT,
        GET_NEXT,
    ]),
    "session_replace_account": DELIMITER.join([
        make_credential(user_id=b"\x01"),
        make_credential(user_id=b"\x01", params=EDDSA),
        get_assertion(),
    ]),
    "session_reset": DELIMITER.join([make_credential(), RESET, get_assertion(), SELECTION]),
    "session_reset_after_window": DELIMITER.join([make_credential(), b"", RESET, GET_INFO]),
    # authenticatorLargeBlobs: read the empty array; write a one-entry array in two fragments
    # (no PIN, so no pinUvAuthParam), read it back; a largeBlobKey credential and its key.
    "large_blobs_read": b"\x0c" + enc({1: 1024, 3: 0}),
    "session_large_blobs_write_read": DELIMITER.join([
        b"\x0c" + enc({2: LARGE_BLOB_ARRAY[:20], 3: 0, 4: len(LARGE_BLOB_ARRAY)}),
        b"\x0c" + enc({2: LARGE_BLOB_ARRAY[20:], 3: 20}),
        b"\x0c" + enc({1: 64, 3: 0}),
        make_credential(extra={6: {"largeBlobKey": True}}),
        get_assertion(extra={4: {"largeBlobKey": True}}),
    ]),
    # authenticatorConfig: toggleAlwaysUv, setMinPINLength with an RP ID list, then a
    # makeCredential asking for minPinLength; vendorPrototype.
    "session_config": DELIMITER.join([
        b"\x0d" + enc({1: 3, 2: {1: 6, 2: ["example.com"]}}),
        make_credential(rk=False, extra={6: {"minPinLength": True}}),
        b"\x0d" + enc({1: 2}),
        b"\x0d" + enc({1: 0xFF, 2: {1: 1}}),
        GET_INFO,
    ]),
}

CBOR = {
    "request_map": CTAP2["make_credential_named"][1:],
    "get_assertion_map": CTAP2["get_assertion"][1:],
    "nested": enc([1, -1, b"", "", [], {}, True, False]),
    "indefinite": bytes.fromhex("9f01820203ff"),
    "tag_float": bytes.fromhex("c11a514b67b0"),
    "half_float": bytes.fromhex("f93c00"),
}


# u2f_apdu: APDUs separated by b"--U2F--"; b"%KH%" stands for the key handle the harness
# registered for application 0x41 * 32 (so the Lc and key-handle length below count 64 bytes
# for it); P2 = 0xD0 makes the harness deny the next presence request.
U2F_DELIMITER = b"--U2F--"
KH = b"%KH%"
KH_LEN = 64
APP = b"\x41" * 32
CHALLENGE = bytes(range(32))


def ext(ins, p1=0, data=b"", p2=0, le=True):
    return bytes([0, ins, p1, p2, 0]) + struct.pack(">H", len(data)) + data + (b"\0\0" if le else b"")


def ext_kh(ins, p1, data, p2=0):
    """Extended APDU whose data holds the token: Lc counts the real key handle."""
    n = len(data) - len(KH) + KH_LEN
    return bytes([0, ins, p1, p2, 0]) + struct.pack(">H", n) + data + b"\0\0"


def short(ins, p1=0, data=b"", le=None, p2=0):
    out = bytes([0, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        out += bytes([le])
    return out


def auth_data(app=APP, handle=KH, handle_len=KH_LEN):
    return CHALLENGE + app + bytes([handle_len]) + handle


U2F = {
    "version_case1": bytes([0, 3, 0, 0]),
    "version_short_le": bytes([0, 3, 0, 0, 0]),
    "version_extended_le": bytes([0, 3, 0, 0, 0, 0, 0]),
    "version_python_fido2": ext(3),
    "register_extended": ext(1, data=CHALLENGE + APP),
    "register_extended_no_le": ext(1, data=CHALLENGE + APP, le=False),
    "register_short": short(1, data=CHALLENGE + APP, le=0),
    "register_denied": ext(1, data=CHALLENGE + APP, p2=0xD0),
    "authenticate_enforce": ext_kh(2, 0x03, auth_data()),
    "authenticate_dont_enforce": ext_kh(2, 0x08, auth_data()),
    "authenticate_check_only": ext_kh(2, 0x07, auth_data()),
    "authenticate_denied": ext_kh(2, 0x03, auth_data(), p2=0xD0),
    "authenticate_short": bytes([0, 2, 0x03, 0, 65 + KH_LEN]) + auth_data() + b"\0",
    "authenticate_other_app": ext_kh(2, 0x03, auth_data(app=b"\x42" * 32)),
    "authenticate_unknown_handle": ext(2, 0x03, auth_data(handle=b"\x01" * 64)),
    "authenticate_bad_control": ext_kh(2, 0x05, auth_data()),
    "bad_cla": bytes([0x80, 3, 0, 0]),
    "bad_ins": bytes([0, 0x40, 0, 0, 0, 0, 0]),
    "session_register_authenticate_reset": U2F_DELIMITER.join([
        ext(1, data=CHALLENGE + APP),
        ext_kh(2, 0x07, auth_data()),
        ext_kh(2, 0x03, auth_data()),
        ext_kh(2, 0x08, auth_data()),
        b"",
        ext_kh(2, 0x03, auth_data()),
    ]),
}


def write(target, seeds):
    directory = os.path.join(HERE, "seeds", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


write("ctap2_request", CTAP2)
write("cbor_decode", CBOR)
write("u2f_apdu", U2F)
