"""python-fido2 2.2.1's `CredentialManagement` against a real `fidelio serve` over UDP.

A PIN is set with `ClientPin`; `Fido2Client` makes discoverable credentials for two RPs with
user verification "required" (answering its PIN prompt) and `Fido2Server` checks them; then
`CredentialManagement`, with a pinUvAuthToken that has the `cm` permission, reads the
metadata, enumerates the RPs and their credentials (public keys compared with the
registrations), updates a user's names and deletes a credential — after which getAssertion no
longer finds it.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2, CredentialManagement
from fido2.ctap2.base import args
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from udp_hid import open_device

PIN = "1234"
RP_A = "example.com"
RP_B = "other.example"
CM = ClientPin.PERMISSION.CREDENTIAL_MGMT
RESULT = CredentialManagement.RESULT
PROTOCOLS = pytest.mark.parametrize(
    "protocol", [PinProtocolV1, PinProtocolV2], ids=["protocol-1", "protocol-2"]
)


class PinInteraction(UserInteraction):
    def __init__(self, pin: str):
        self.pin = pin
        self.pin_requests = 0

    def request_pin(self, permissions, rp_id):
        self.pin_requests += 1
        return self.pin

    def request_uv(self, permissions, rp_id):
        return True


def rp_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()


def register(dev, rp_id: str, user_id: bytes, name: str, display_name: str):
    """A discoverable credential made by Fido2Client with UV required (the PIN), checked by
    Fido2Server. Returns its AttestedCredentialData."""
    interaction = PinInteraction(PIN)
    client = Fido2Client(
        dev, DefaultClientDataCollector(f"https://{rp_id}"), user_interaction=interaction
    )
    server = Fido2Server(PublicKeyCredentialRpEntity(name=rp_id, id=rp_id))
    user = PublicKeyCredentialUserEntity(id=user_id, name=name, display_name=display_name)
    options, state = server.register_begin(
        user,
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    registration = client.make_credential(options.public_key)
    auth_data = server.register_complete(state, registration)
    assert auth_data.is_user_verified()
    assert interaction.pin_requests >= 1
    return auth_data.credential_data


def discover(dev, rp_id: str):
    """A discoverable getAssertion through Fido2Client with UV: the assertions' user maps."""
    client = Fido2Client(
        dev, DefaultClientDataCollector(f"https://{rp_id}"), user_interaction=PinInteraction(PIN)
    )
    selection = client.get_assertion(
        {
            "challenge": os.urandom(32),
            "rpId": rp_id,
            "userVerification": "required",
        }
    )
    return [assertion.user for assertion in selection.get_assertions()]


@pytest.fixture
def loaded(fidelio_daemon):
    """A daemon with a PIN and three discoverable credentials: alice and bob at example.com,
    carol at other.example. Yields (ctap, dev, credential data by user name)."""
    daemon = fidelio_daemon()
    dev = open_device(daemon.host, daemon.port)
    ctap = Ctap2(dev)
    ClientPin(ctap, PinProtocolV2()).set_pin(PIN)
    credentials = {
        "alice": register(dev, RP_A, b"alice-id", "alice@example.com", "Alice"),
        "bob": register(dev, RP_A, b"bob-id", "bob@example.com", "Bob"),
        "carol": register(dev, RP_B, b"carol-id", "carol@other.example", "Carol"),
    }
    yield ctap, dev, credentials
    dev.close()


def credman(ctap, protocol, permissions=CM, rp_id=None) -> CredentialManagement:
    pin_protocol = protocol()
    token = ClientPin(ctap, pin_protocol).get_pin_token(PIN, permissions, rp_id)
    return CredentialManagement(ctap, pin_protocol, token)


def descriptor(credential_data) -> PublicKeyCredentialDescriptor:
    return PublicKeyCredentialDescriptor(
        type=PublicKeyCredentialType.PUBLIC_KEY, id=credential_data.credential_id
    )


# ------------------------------------------------------------------------------------ tests
def test_get_info_advertises_credential_management(fidelio_daemon):
    daemon = fidelio_daemon()
    dev = open_device(daemon.host, daemon.port)
    info = Ctap2(dev).get_info()
    assert info.options.get("credMgmt") is True
    assert info.options.get("credentialMgmtPreview") is True
    assert CredentialManagement.is_supported(info)
    assert CredentialManagement.is_update_supported(info)
    dev.close()


@PROTOCOLS
def test_metadata_enumerate_update_delete(loaded, protocol):
    ctap, dev, credentials = loaded
    cm = credman(ctap, protocol)

    metadata = cm.get_metadata()
    assert metadata[RESULT.EXISTING_CRED_COUNT] == 3
    assert metadata[RESULT.MAX_REMAINING_COUNT] == 97

    rps = cm.enumerate_rps()
    assert len(rps) == 2 and rps[0][RESULT.TOTAL_RPS] == 2
    assert sorted(rp[RESULT.RP]["id"] for rp in rps) == [RP_A, RP_B]
    for rp in rps:
        assert rp[RESULT.RP_ID_HASH] == rp_hash(rp[RESULT.RP]["id"])

    listed = cm.enumerate_creds(rp_hash(RP_A))
    assert len(listed) == 2 and listed[0][RESULT.TOTAL_CREDENTIALS] == 2
    by_id = {entry[RESULT.CREDENTIAL_ID]["id"]: entry for entry in listed}
    for name, user_id, display in (("alice", b"alice-id", "Alice"), ("bob", b"bob-id", "Bob")):
        registered = credentials[name]
        entry = by_id[registered.credential_id]
        assert entry[RESULT.CREDENTIAL_ID]["type"] == "public-key"
        assert entry[RESULT.USER] == {
            "id": user_id,
            "name": f"{name}@example.com",
            "displayName": display,
        }
        # The public key recomputed from the credential ID is the registration's.
        assert dict(entry[RESULT.PUBLIC_KEY]) == dict(registered.public_key)
        assert entry[RESULT.CRED_PROTECT] == 1
    (carol,) = cm.enumerate_creds(rp_hash(RP_B))
    assert carol[RESULT.USER]["id"] == b"carol-id"
    assert dict(carol[RESULT.PUBLIC_KEY]) == dict(credentials["carol"].public_key)

    # updateUserInformation: new names, seen by enumeration and by a UV getAssertion.
    cm.update_user_info(
        descriptor(credentials["alice"]),
        PublicKeyCredentialUserEntity(id=b"alice-id", name="alice@new.example",
                                      display_name="Alice N."),
    )
    renamed = {
        e[RESULT.CREDENTIAL_ID]["id"]: e[RESULT.USER] for e in cm.enumerate_creds(rp_hash(RP_A))
    }
    assert renamed[credentials["alice"].credential_id] == {
        "id": b"alice-id",
        "name": "alice@new.example",
        "displayName": "Alice N.",
    }
    users = discover(dev, RP_A)
    assert {"id": b"alice-id", "name": "alice@new.example", "displayName": "Alice N."} in users
    # Another user.id is refused.
    cm = credman(ctap, protocol)
    with pytest.raises(CtapError) as wrong_user:
        cm.update_user_info(
            descriptor(credentials["alice"]),
            PublicKeyCredentialUserEntity(id=b"mallory", name="m", display_name="M"),
        )
    assert wrong_user.value.code == CtapError.ERR.INVALID_PARAMETER

    # deleteCredential: gone from the metadata, the enumeration and getAssertion.
    cm.delete_cred(descriptor(credentials["bob"]))
    assert cm.get_metadata()[RESULT.EXISTING_CRED_COUNT] == 2
    left = cm.enumerate_creds(rp_hash(RP_A))
    assert [e[RESULT.CREDENTIAL_ID]["id"] for e in left] == [credentials["alice"].credential_id]
    with pytest.raises(CtapError) as again:
        cm.delete_cred(descriptor(credentials["bob"]))
    assert again.value.code == CtapError.ERR.NO_CREDENTIALS

    with pytest.raises(CtapError) as by_id_gone:
        ctap.get_assertion(
            RP_A,
            os.urandom(32),
            [{"type": "public-key", "id": credentials["bob"].credential_id}],
        )
    assert by_id_gone.value.code == CtapError.ERR.NO_CREDENTIALS
    assert [user["id"] for user in discover(dev, RP_A)] == [b"alice-id"]

    # Deleting carol leaves one RP.
    cm = credman(ctap, protocol)
    cm.delete_cred(descriptor(credentials["carol"]))
    assert [rp[RESULT.RP]["id"] for rp in cm.enumerate_rps()] == [RP_A]
    assert cm.enumerate_creds(rp_hash(RP_B)) == []


def test_token_bound_to_an_rp(loaded):
    ctap, _, credentials = loaded
    cm = credman(ctap, PinProtocolV2, CM, RP_B)
    # Whole-device subcommands refuse an RP-bound token…
    with pytest.raises(CtapError) as metadata:
        cm.get_metadata()
    assert metadata.value.code == CtapError.ERR.PIN_AUTH_INVALID
    # …per-RP ones take it for its RP only.
    assert len(cm.enumerate_creds(rp_hash(RP_B))) == 1
    with pytest.raises(CtapError) as other_rp:
        cm.enumerate_creds(rp_hash(RP_A))
    assert other_rp.value.code == CtapError.ERR.PIN_AUTH_INVALID
    with pytest.raises(CtapError) as other_delete:
        cm.delete_cred(descriptor(credentials["alice"]))
    assert other_delete.value.code == CtapError.ERR.PIN_AUTH_INVALID
    cm.delete_cred(descriptor(credentials["carol"]))


def test_errors(loaded):
    ctap, _, _ = loaded
    # No pinUvAuthParam.
    with pytest.raises(CtapError) as puat:
        ctap.credential_mgmt(CredentialManagement.CMD.GET_CREDS_METADATA)
    assert puat.value.code == CtapError.ERR.PUAT_REQUIRED
    # A token without cm.
    no_cm = credman(
        ctap, PinProtocolV2,
        ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION, RP_A,
    )
    with pytest.raises(CtapError) as permission:
        no_cm.get_metadata()
    assert permission.value.code == CtapError.ERR.PIN_AUTH_INVALID
    # GetNext without its Begin, or after another command.
    cm = credman(ctap, PinProtocolV2)
    with pytest.raises(CtapError) as next_rp:
        cm.enumerate_rps_next()
    assert next_rp.value.code == CtapError.ERR.NOT_ALLOWED
    cm.enumerate_creds_begin(rp_hash(RP_A))
    ctap.get_info()
    with pytest.raises(CtapError) as interrupted:
        cm.enumerate_creds_next()
    assert interrupted.value.code == CtapError.ERR.NOT_ALLOWED
    # An unknown subcommand.
    with pytest.raises(CtapError) as unknown:
        ctap.credential_mgmt(0x20)
    assert unknown.value.code == CtapError.ERR.INVALID_SUBCOMMAND
    # No credentials for an RP.
    assert cm.enumerate_creds(rp_hash("nobody.example")) == []


def test_preview_command(loaded):
    """0x41, the credentialMgmtPreview command, answers the same."""
    ctap, _, _ = loaded
    protocol = PinProtocolV1()
    token = ClientPin(ctap, protocol).get_pin_token(PIN, CM)
    metadata = ctap.send_cbor(
        Ctap2.CMD.CREDENTIAL_MGMT_PRE,
        args(
            CredentialManagement.CMD.GET_CREDS_METADATA,
            None,
            protocol.VERSION,
            protocol.authenticate(token, bytes([CredentialManagement.CMD.GET_CREDS_METADATA])),
        ),
    )
    assert metadata == {1: 3, 2: 97}
    begin = ctap.send_cbor(
        Ctap2.CMD.CREDENTIAL_MGMT_PRE,
        args(
            CredentialManagement.CMD.ENUMERATE_RPS_BEGIN,
            None,
            protocol.VERSION,
            protocol.authenticate(token, bytes([CredentialManagement.CMD.ENUMERATE_RPS_BEGIN])),
        ),
    )
    assert begin[RESULT.TOTAL_RPS] == 2
    following = ctap.send_cbor(
        Ctap2.CMD.CREDENTIAL_MGMT_PRE, args(CredentialManagement.CMD.ENUMERATE_RPS_NEXT)
    )
    assert {begin[RESULT.RP]["id"], following[RESULT.RP]["id"]} == {RP_A, RP_B}
