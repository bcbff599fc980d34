"""python-fido2 2.2.1's large blobs and authenticatorConfig against a real `fidelio serve`.

`Fido2Client` with the WebAuthn `largeBlob` extension (registration with `support:
"required"`, then `write` and `read` in authentications) does python-fido2's whole job: the
largeBlobKey extension, AES-GCM entries keyed by it, the serialized array with its hash, in
fragments, with a pinUvAuthToken carrying `lbw` once a PIN is set. `fido2.ctap2.LargeBlobs`
and `fido2.ctap2.Config` (with `ClientPin` tokens, `acfg`) drive the commands directly;
`Fido2Server` and py_webauthn verify the ceremonies.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from fido2 import cbor
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import Config, Ctap2, LargeBlobs
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.server import Fido2Server
from fido2.utils import websafe_decode
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn import verify_authentication_response, verify_registration_response

from udp_hid import ctap2

ORIGIN = "https://example.com"
RP_ID = "example.com"
PIN = "1234"
EMPTY_ARRAY = bytes.fromhex("8076be8b528d0075f7aae98d6fa57a6d3c")
PROTOCOLS = pytest.mark.parametrize(
    "protocol", [PinProtocolV1, PinProtocolV2], ids=["protocol-1", "protocol-2"]
)


class PinInteraction(UserInteraction):
    """Answers every PIN request with `pin`, and records the permissions asked for."""

    def __init__(self, pin: str):
        self.pin = pin
        self.requests: list[int] = []

    def request_pin(self, permissions, rp_id):
        self.requests.append(int(permissions))
        return self.pin

    def request_uv(self, permissions, rp_id):
        return True


def serialized(entries: list) -> bytes:
    data = cbor.encode(entries)
    return data + hashlib.sha256(data).digest()[:16]


def read_raw(ctap: Ctap2) -> bytes:
    """The stored serialized array, read raw in maxFragmentLength pieces."""
    fragment = ctap.info.max_msg_size - 64
    out = b""
    while True:
        chunk = ctap.large_blobs(len(out), get=fragment)[1]
        out += chunk
        if len(chunk) < fragment:
            return out


# ------------------------------------------------------------------------------------ getInfo
def test_get_info_advertises_large_blobs_and_config(fidelio_daemon):
    ctap, dev = ctap2(fidelio_daemon())
    info = ctap.get_info()
    assert LargeBlobs.is_supported(info) and Config.is_supported(info)
    assert info.options.get("largeBlobs") is True
    assert info.options.get("authnrCfg") is True
    assert info.options.get("setMinPINLength") is True
    assert info.options.get("alwaysUv") is False
    assert info.options.get("makeCredUvNotRqd") is True
    assert "ep" not in info.options
    assert info.max_large_blob == 4096
    assert info.max_rpids_for_min_pin == 8
    assert {"largeBlobKey", "minPinLength"} <= set(info.extensions)
    dev.close()

    ctap, dev = ctap2(fidelio_daemon("--profile", "synced-passkey"))
    assert ctap.get_info().max_large_blob == 16384
    dev.close()


# ------------------------------------------------------------------------------------ largeBlob
@pytest.mark.parametrize("with_pin", [False, True], ids=["no-pin", "pin"])
def test_large_blob_written_and_read_through_the_client(fidelio_daemon, with_pin):
    ctap, dev = ctap2(fidelio_daemon())
    interaction = PinInteraction(PIN)
    if with_pin:
        ClientPin(ctap).set_pin(PIN)
    client = Fido2Client(dev, DefaultClientDataCollector(ORIGIN), user_interaction=interaction)
    server = Fido2Server(PublicKeyCredentialRpEntity(name="Example", id=RP_ID))
    user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="alice", display_name="Alice")

    options, state = server.register_begin(
        user,
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    registration = client.make_credential(
        {**dict(options.public_key), "extensions": {"largeBlob": {"support": "required"}}}
    )
    assert registration.client_extension_results["largeBlob"]["supported"] is True
    auth_data = server.register_complete(state, registration)
    verified = verify_registration_response(
        credential=json.dumps(dict(registration)),
        expected_challenge=options.public_key.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
    )
    credential = auth_data.credential_data

    def authenticate(extensions):
        request, state = server.authenticate_begin(
            credentials=None, user_verification=UserVerificationRequirement.DISCOURAGED
        )
        assertion = client.get_assertion(
            {**dict(request.public_key), "extensions": extensions}
        ).get_response(0)
        server.authenticate_complete(state, [credential], assertion)
        verify_authentication_response(
            credential=json.dumps(dict(assertion)),
            expected_challenge=request.public_key.challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=verified.credential_public_key,
            credential_current_sign_count=0,
        )
        assert assertion.response.user_handle == user.id
        return assertion.client_extension_results

    data = b"a large blob for alice: " + os.urandom(512)
    assert authenticate({"largeBlob": {"write": data}})["largeBlob"]["written"] is True
    if with_pin:
        # The write needed a token with lbw (0x10) beside ga.
        assert any(p & ClientPin.PERMISSION.LARGE_BLOB_WRITE for p in interaction.requests)
    # The client's JSON-ready results carry the blob base64url-encoded.
    read = authenticate({"largeBlob": {"read": True}})["largeBlob"]["blob"]
    assert websafe_decode(read) == data

    # One entry in the stored array now, encrypted: not the data in clear.
    array = LargeBlobs(ctap).read_blob_array()
    assert len(array) == 1 and set(array[0]) == {1, 2, 3}
    assert data not in read_raw(ctap)
    # A second write replaces it.
    assert authenticate({"largeBlob": {"write": b"second"}})["largeBlob"]["written"] is True
    read = authenticate({"largeBlob": {"read": True}})["largeBlob"]["blob"]
    assert websafe_decode(read) == b"second"
    assert len(LargeBlobs(ctap).read_blob_array()) == 1
    dev.close()


def test_large_blob_without_a_discoverable_credential_is_refused(fidelio_daemon):
    """The largeBlobKey extension needs rk (CTAP2_ERR_INVALID_OPTION otherwise)."""
    ctap, dev = ctap2(fidelio_daemon())
    with pytest.raises(CtapError) as error:
        ctap.make_credential(
            os.urandom(32),
            {"id": RP_ID, "name": "Example"},
            {"id": b"bob", "name": "bob"},
            [{"type": "public-key", "alg": -7}],
            extensions={"largeBlobKey": True},
        )
    assert error.value.code == CtapError.ERR.INVALID_OPTION
    made = ctap.make_credential(
        os.urandom(32),
        {"id": RP_ID, "name": "Example"},
        {"id": b"bob", "name": "bob"},
        [{"type": "public-key", "alg": -7}],
        extensions={"largeBlobKey": True},
        options={"rk": True},
    )
    assert len(made.large_blob_key) == 32
    assertion = ctap.get_assertion(RP_ID, os.urandom(32), extensions={"largeBlobKey": True})
    assert assertion.large_blob_key == made.large_blob_key
    dev.close()


@PROTOCOLS
def test_large_blobs_api_in_fragments(fidelio_daemon, protocol):
    """`LargeBlobs.write_blob_array` of ~12 KB (two fragments of maxMsgSize − 64) with an lbw
    token, read back whole; then the raw command's errors."""
    ctap, dev = ctap2(fidelio_daemon("--profile", "synced-passkey"))
    assert read_raw(ctap) == EMPTY_ARRAY
    assert LargeBlobs(ctap).read_blob_array() == []
    client_pin = ClientPin(ctap, protocol())
    client_pin.set_pin(PIN)

    entries = [{1: os.urandom(6000), 2: os.urandom(12), 3: 6000} for _ in range(2)]
    # Without a token: refused.
    with pytest.raises(CtapError) as no_token:
        LargeBlobs(ctap).write_blob_array(entries)
    assert no_token.value.code == CtapError.ERR.PUAT_REQUIRED
    # A token without lbw: refused.
    mc = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, RP_ID)
    with pytest.raises(CtapError) as no_lbw:
        LargeBlobs(ctap, client_pin.protocol, mc).write_blob_array(entries)
    assert no_lbw.value.code == CtapError.ERR.PIN_AUTH_INVALID

    token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.LARGE_BLOB_WRITE)
    blobs = LargeBlobs(ctap, client_pin.protocol, token)
    blobs.write_blob_array(entries)
    assert blobs.read_blob_array() == entries
    assert read_raw(ctap) == serialized(entries)

    # Too big for this device (16384): CTAP2_ERR_LARGE_BLOB_STORAGE_FULL at the first fragment.
    with pytest.raises(CtapError) as full:
        blobs.write_blob_array([{1: os.urandom(17000), 2: os.urandom(12), 3: 17000}])
    assert full.value.code == CtapError.ERR.LARGE_BLOB_STORAGE_FULL
    # A fragment out of sequence.
    with pytest.raises(CtapError) as seq:
        ctap.large_blobs(5, set=b"x" * 10)
    assert seq.value.code == CtapError.ERR.INVALID_SEQ
    # Neither get nor set; more than maxFragmentLength.
    with pytest.raises(CtapError) as neither:
        ctap.large_blobs(0)
    assert neither.value.code == CtapError.ERR.INVALID_PARAMETER
    with pytest.raises(CtapError) as too_long:
        ctap.large_blobs(0, get=ctap.info.max_msg_size - 63)
    assert too_long.value.code == CtapError.ERR.INVALID_LENGTH
    # A complete array whose hash is wrong changes nothing.
    bad = bytearray(serialized([{1: b"x", 2: b"y", 3: 1}]))
    bad[-1] ^= 1
    message = b"\xff" * 32 + b"\x0c\x00" + (0).to_bytes(4, "little")
    message += hashlib.sha256(bad).digest()
    with pytest.raises(CtapError) as integrity:
        ctap.large_blobs(
            0,
            set=bytes(bad),
            length=len(bad),
            pin_uv_param=client_pin.protocol.authenticate(token, message),
            pin_uv_protocol=client_pin.protocol.VERSION,
        )
    assert integrity.value.code == CtapError.ERR.INTEGRITY_FAILURE
    assert blobs.read_blob_array() == entries
    dev.close()


# ------------------------------------------------------------------------------------ Config
@PROTOCOLS
def test_toggle_always_uv(fidelio_daemon, protocol):
    daemon = fidelio_daemon()
    ctap, dev = ctap2(daemon)
    client_pin = ClientPin(ctap, protocol())
    client_pin.set_pin(PIN)
    with pytest.raises(CtapError) as no_token:
        Config(ctap).toggle_always_uv()
    assert no_token.value.code == CtapError.ERR.PUAT_REQUIRED
    # A token without acfg.
    mc = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, RP_ID)
    with pytest.raises(CtapError) as no_acfg:
        Config(ctap, client_pin.protocol, mc).toggle_always_uv()
    assert no_acfg.value.code == CtapError.ERR.PIN_AUTH_INVALID

    token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    Config(ctap, client_pin.protocol, token).toggle_always_uv()
    info = ctap.get_info()
    assert info.options["alwaysUv"] is True and info.options["makeCredUvNotRqd"] is False

    # A non-discoverable credential without UV is now refused...
    with pytest.raises(CtapError) as raw:
        ctap.make_credential(
            os.urandom(32),
            {"id": RP_ID, "name": "Example"},
            {"id": b"carol", "name": "carol"},
            [{"type": "public-key", "alg": -7}],
        )
    assert raw.value.code == CtapError.ERR.PUAT_REQUIRED
    # ... and the client, seeing alwaysUv, asks for the PIN even though UV is discouraged.
    interaction = PinInteraction(PIN)
    client = Fido2Client(dev, DefaultClientDataCollector(ORIGIN), user_interaction=interaction)
    server = Fido2Server(PublicKeyCredentialRpEntity(name="Example", id=RP_ID))
    user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="carol", display_name="Carol")
    options, state = server.register_begin(
        user, user_verification=UserVerificationRequirement.DISCOURAGED
    )
    auth_data = server.register_complete(state, client.make_credential(options.public_key))
    assert auth_data.is_user_verified() and interaction.requests

    # It survives a power cycle; toggling again turns it off.
    dev.close()
    daemon.power_cycle()
    ctap, dev = ctap2(daemon)
    assert ctap.get_info().options["alwaysUv"] is True
    client_pin = ClientPin(ctap, protocol())
    token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    Config(ctap, client_pin.protocol, token).toggle_always_uv()
    assert ctap.get_info().options["alwaysUv"] is False
    dev.close()


def test_set_min_pin_length_and_the_min_pin_length_extension(fidelio_daemon):
    ctap, dev = ctap2(fidelio_daemon())
    client_pin = ClientPin(ctap, PinProtocolV2())
    client_pin.set_pin(PIN)
    token = client_pin.get_pin_token(PIN, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    config = Config(ctap, client_pin.protocol, token)
    config.set_min_pin_length(min_pin_length=6, rp_ids=[RP_ID])
    info = ctap.get_info()
    assert info.min_pin_length == 6
    assert info.force_pin_change is True, "the four-digit PIN is now too short"
    # Only up.
    with pytest.raises(CtapError) as lower:
        config.set_min_pin_length(min_pin_length=5)
    assert lower.value.code == CtapError.ERR.PIN_POLICY_VIOLATION
    with pytest.raises(CtapError) as too_many:
        config.set_min_pin_length(rp_ids=[f"rp{i}.example" for i in range(9)])
    assert too_many.value.code == CtapError.ERR.PIN_POLICY_VIOLATION

    # The PIN must change, to one of at least six.
    with pytest.raises(CtapError) as forced:
        client_pin.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, RP_ID)
    assert forced.value.code == CtapError.ERR.PIN_POLICY_VIOLATION
    with pytest.raises(CtapError) as short:
        client_pin.change_pin(PIN, "12345")
    assert short.value.code == CtapError.ERR.PIN_POLICY_VIOLATION
    client_pin.change_pin(PIN, "123456")
    assert ctap.get_info().force_pin_change is False

    # example.com is listed: its registrations learn minPINLength; another RP does not.
    for origin, rp_id, expected in [
        (ORIGIN, RP_ID, 6),
        ("https://other.example", "other.example", None),
    ]:
        client = Fido2Client(
            dev, DefaultClientDataCollector(origin), user_interaction=PinInteraction("123456")
        )
        server = Fido2Server(PublicKeyCredentialRpEntity(name="RP", id=rp_id))
        user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="dave", display_name="Dave")
        options, state = server.register_begin(user)
        registration = client.make_credential(
            {**dict(options.public_key), "extensions": {"minPinLength": True}}
        )
        auth_data = server.register_complete(state, registration)
        assert (auth_data.extensions or {}).get("minPinLength") == expected, rp_id
    dev.close()


def test_enterprise_attestation_and_vendor_commands_are_not_offered(fidelio_daemon):
    ctap, dev = ctap2(fidelio_daemon())
    with pytest.raises(CtapError) as ep:
        Config(ctap).enable_enterprise_attestation()
    assert ep.value.code == CtapError.ERR.INVALID_PARAMETER
    with pytest.raises(CtapError) as vendor:
        ctap.config(Config.CMD.VENDOR_PROTOTYPE, {1: 1})
    assert vendor.value.code == CtapError.ERR.INVALID_SUBCOMMAND
    dev.close()
