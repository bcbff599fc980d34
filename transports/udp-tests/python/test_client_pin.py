"""python-fido2 2.2.1's PIN/UV auth against a real `fidelio serve` over UDP.

`fido2.ctap2.pin.ClientPin` (PIN/UV auth protocols one and two, python-fido2's own ECDH, HKDF,
AES-CBC and HMAC) sets, changes and checks the PIN and gets pinUvAuthTokens; `Fido2Client`
registers and signs in with user verification "required", asking our `UserInteraction` for the
PIN; `fido2.server.Fido2Server` and py_webauthn verify the results, UV flag included.
"""

from __future__ import annotations

import json
import os

import pytest
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn import verify_authentication_response, verify_registration_response

from udp_hid import code_of, ctap2

ORIGIN = "https://example.com"
RP_ID = "example.com"
PIN = "1234"
MC_GA = ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION
REQUIRED = UserVerificationRequirement.REQUIRED
DISCOURAGED = UserVerificationRequirement.DISCOURAGED
PROTOCOLS = pytest.mark.parametrize(
    "protocol", [PinProtocolV1, PinProtocolV2], ids=["protocol-1", "protocol-2"]
)


class PinInteraction(UserInteraction):
    """Answers every PIN request with `pin`, and counts them."""

    def __init__(self, pin: str):
        self.pin = pin
        self.pin_requests: list[tuple[int, str | None]] = []

    def request_pin(self, permissions, rp_id):
        self.pin_requests.append((int(permissions), rp_id))
        return self.pin

    def request_uv(self, permissions, rp_id):
        return True


# ------------------------------------------------------------------------------------ getInfo
def test_get_info_advertises_pin_uv_auth(fidelio_daemon):
    ctap, dev = ctap2(fidelio_daemon())
    info = ctap.get_info()
    assert "FIDO_2_0" in info.versions and "FIDO_2_1" in info.versions
    assert info.options.get("clientPin") is False
    assert info.options.get("pinUvAuthToken") is True
    assert info.options.get("makeCredUvNotRqd") is True
    assert "bioEnroll" not in info.options
    assert "uv" not in info.options
    assert info.pin_uv_protocols == [2, 1]
    assert info.min_pin_length == 4
    assert info.force_pin_change is False
    assert ClientPin.is_supported(info) and ClientPin.is_token_supported(info)
    dev.close()


# ------------------------------------------------------------------------------------ ClientPin
@PROTOCOLS
def test_set_change_pin_and_tokens(fidelio_daemon, protocol):
    ctap, dev = ctap2(fidelio_daemon())
    client_pin = ClientPin(ctap, protocol())
    assert client_pin.get_pin_retries() == (8, False)

    client_pin.set_pin(PIN)
    assert ctap.get_info().options["clientPin"] is True
    with pytest.raises(CtapError) as again:
        client_pin.set_pin("9999")
    assert again.value.code == CtapError.ERR.PIN_AUTH_INVALID

    client_pin.change_pin(PIN, "5678")
    with pytest.raises(CtapError) as old:
        client_pin.get_pin_token(PIN, MC_GA, RP_ID)
    assert old.value.code == CtapError.ERR.PIN_INVALID
    assert client_pin.get_pin_retries() == (7, False)

    # With permissions (0x09) and the legacy getPinToken (0x05).
    token = client_pin.get_pin_token("5678", MC_GA, RP_ID)
    assert len(token) == 32
    assert client_pin.get_pin_retries() == (8, False)
    legacy = ClientPin(ctap, protocol()).get_pin_token("5678")
    assert len(legacy) == 32 and legacy != token

    # A permission this authenticator does not grant: no bioEnroll.
    with pytest.raises(CtapError) as unauthorized:
        client_pin.get_pin_token("5678", ClientPin.PERMISSION.BIO_ENROLL, RP_ID)
    assert unauthorized.value.code == CtapError.ERR.UNAUTHORIZED_PERMISSION

    # The token authorizes a raw makeCredential: UV and UP set.
    token = client_pin.get_pin_token("5678", ClientPin.PERMISSION.MAKE_CREDENTIAL, RP_ID)
    client_data_hash = os.urandom(32)
    attestation = ctap.make_credential(
        client_data_hash,
        {"id": RP_ID, "name": "Example"},
        {"id": b"raw-user", "name": "raw@example.com"},
        [{"type": "public-key", "alg": -7}],
        pin_uv_param=client_pin.protocol.authenticate(token, client_data_hash),
        pin_uv_protocol=client_pin.protocol.VERSION,
    )
    assert attestation.auth_data.is_user_present()
    assert attestation.auth_data.is_user_verified()
    # Used once: its mc permission is gone.
    with pytest.raises(CtapError) as spent:
        ctap.make_credential(
            client_data_hash,
            {"id": RP_ID, "name": "Example"},
            {"id": b"raw-user-2", "name": "raw2@example.com"},
            [{"type": "public-key", "alg": -7}],
            pin_uv_param=client_pin.protocol.authenticate(token, client_data_hash),
            pin_uv_protocol=client_pin.protocol.VERSION,
        )
    assert spent.value.code == CtapError.ERR.PIN_AUTH_INVALID
    dev.close()


@PROTOCOLS
def test_wrong_pins_block_until_power_cycle(fidelio_daemon, protocol):
    daemon = fidelio_daemon()
    ctap, dev = ctap2(daemon)
    client_pin = ClientPin(ctap, protocol())
    client_pin.set_pin(PIN)

    expected = [
        CtapError.ERR.PIN_INVALID,
        CtapError.ERR.PIN_INVALID,
        CtapError.ERR.PIN_AUTH_BLOCKED,
    ]
    for code in expected:
        with pytest.raises(CtapError) as wrong:
            client_pin.get_pin_token("0000", MC_GA, RP_ID)
        assert wrong.value.code == code
    assert client_pin.get_pin_retries() == (5, True)
    # The right PIN waits for the power cycle too.
    with pytest.raises(CtapError) as blocked:
        client_pin.get_pin_token(PIN, MC_GA, RP_ID)
    assert blocked.value.code == CtapError.ERR.PIN_AUTH_BLOCKED
    dev.close()

    assert "power-cycled" in daemon.power_cycle()

    ctap, dev = ctap2(daemon)
    client_pin = ClientPin(ctap, protocol())
    assert client_pin.get_pin_retries() == (5, False)
    assert len(client_pin.get_pin_token(PIN, MC_GA, RP_ID)) == 32
    assert client_pin.get_pin_retries() == (8, False)
    dev.close()


# ------------------------------------------------------------------------------------ Fido2Client
@pytest.fixture
def pin_protocol(request, monkeypatch):
    """Makes Fido2Client negotiate one protocol (it picks the first it shares) and records
    the key agreements it makes with it: returns (version, versions used)."""
    used: list[int] = []

    class Recording(request.param):
        def encapsulate(self, peer_cose_key):
            used.append(self.VERSION)
            return super().encapsulate(peer_cose_key)

    monkeypatch.setattr(ClientPin, "PROTOCOLS", [Recording])
    return request.param.VERSION, used


@pytest.mark.parametrize(
    "pin_protocol", [PinProtocolV1, PinProtocolV2], ids=["protocol-1", "protocol-2"],
    indirect=True,
)
@pytest.mark.parametrize("resident", [False, True], ids=["non-discoverable", "discoverable"])
def test_fido2_client_registers_and_signs_in_with_the_pin(fidelio_daemon, pin_protocol, resident):
    daemon = fidelio_daemon()
    ctap, dev = ctap2(daemon)
    ClientPin(ctap, PinProtocolV2()).set_pin(PIN)

    interaction = PinInteraction(PIN)
    client = Fido2Client(dev, DefaultClientDataCollector(ORIGIN), user_interaction=interaction)
    server = Fido2Server(PublicKeyCredentialRpEntity(name="Example", id=RP_ID))
    user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="alice", display_name="Alice")

    options, state = server.register_begin(
        user,
        resident_key_requirement=(
            ResidentKeyRequirement.REQUIRED if resident else ResidentKeyRequirement.DISCOURAGED
        ),
        user_verification=REQUIRED,
    )
    registration = client.make_credential(options.public_key)
    # Fido2Server refuses a registration without UV when UV was required.
    auth_data = server.register_complete(state, registration)
    assert auth_data.is_user_verified() and auth_data.is_user_present()
    assert interaction.pin_requests, "the client asked for the PIN"
    version, used = pin_protocol
    assert used and set(used) == {version}, used
    assert all(rp == RP_ID for _, rp in interaction.pin_requests)
    verified = verify_registration_response(
        credential=json.dumps(dict(registration)),
        expected_challenge=options.public_key.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=True,
    )
    credential = auth_data.credential_data

    request, state = server.authenticate_begin(
        credentials=None if resident else [credential], user_verification=REQUIRED
    )
    assertion = client.get_assertion(request.public_key).get_response(0)
    server.authenticate_complete(state, [credential], assertion)
    assert assertion.response.authenticator_data.is_user_verified()
    verify_authentication_response(
        credential=json.dumps(dict(assertion)),
        expected_challenge=request.public_key.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=verified.sign_count,
        require_user_verification=True,
    )
    if resident:
        assert assertion.response.user_handle == user.id
    dev.close()


def test_discoverable_registration_without_uv_is_upgraded_by_the_client(fidelio_daemon):
    """With a PIN set, a discoverable credential needs a token (CTAP2_ERR_PUAT_REQUIRED):
    python-fido2 answers that by asking for the PIN and retrying with UV."""
    ctap, dev = ctap2(fidelio_daemon())
    ClientPin(ctap).set_pin(PIN)
    interaction = PinInteraction(PIN)
    client = Fido2Client(dev, DefaultClientDataCollector(ORIGIN), user_interaction=interaction)
    server = Fido2Server(PublicKeyCredentialRpEntity(name="Example", id=RP_ID))
    user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="bob", display_name="Bob")
    options, state = server.register_begin(
        user,
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=DISCOURAGED,
    )
    registration = client.make_credential(options.public_key)
    auth_data = server.register_complete(state, registration)
    assert auth_data.is_user_verified()
    assert len(interaction.pin_requests) == 1

    # Without a PIN prompt answered, the raw request is refused.
    with pytest.raises(CtapError) as raw:
        ctap.make_credential(
            os.urandom(32),
            {"id": RP_ID, "name": "Example"},
            {"id": b"carol", "name": "carol"},
            [{"type": "public-key", "alg": -7}],
            options={"rk": True},
        )
    assert raw.value.code == CtapError.ERR.PUAT_REQUIRED
    dev.close()


def test_wrong_pin_through_the_client(fidelio_daemon):
    ctap, dev = ctap2(fidelio_daemon())
    ClientPin(ctap).set_pin(PIN)
    client = Fido2Client(
        dev, DefaultClientDataCollector(ORIGIN), user_interaction=PinInteraction("0000")
    )
    server = Fido2Server(PublicKeyCredentialRpEntity(name="Example", id=RP_ID))
    user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="dave", display_name="Dave")
    options, _ = server.register_begin(user, user_verification=REQUIRED)
    with pytest.raises(ClientError) as error:
        client.make_credential(options.public_key)
    assert code_of(error.value) == CtapError.ERR.PIN_INVALID
    assert ClientPin(ctap).get_pin_retries() == (7, False)
    dev.close()
