"""hmac-secret (with hmac-secret-mc), the WebAuthn `prf` extension and credBlob through
python-fido2 2.2.1 against a real `fidelio serve` over UDP.

`Fido2Client` does the platform's side: the key agreement (PIN/UV auth protocol one or two,
python-fido2's own ECDH, HKDF, AES-CBC and HMAC), salt encryption and authentication, the
PRF-to-salt mapping (SHA-256("WebAuthn PRF" ‖ 0x00 ‖ input)) and output decryption.
`fido2.server.Fido2Server` verifies every registration and assertion, whose signatures cover
the extension outputs in authenticator data.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.extensions import CredBlobExtension, CredProtectExtension, HmacSecretExtension
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from udp_hid import open_device

ORIGIN = "https://example.com"
RP_ID = "example.com"
PIN = "1234"
DISCOURAGED = UserVerificationRequirement.DISCOURAGED
REQUIRED = UserVerificationRequirement.REQUIRED
SALT1 = bytes([0xA5] * 32)
SALT2 = bytes([0x96] * 32)
ED = 0x80


class PinInteraction(UserInteraction):
    def request_pin(self, permissions, rp_id):
        return PIN

    def request_uv(self, permissions, rp_id):
        return True


@pytest.fixture(params=[PinProtocolV1, PinProtocolV2], ids=["protocol-1", "protocol-2"])
def pin_protocol(request, monkeypatch):
    """Makes the client negotiate one PIN/UV auth protocol (it takes the first it shares with
    the authenticator) and records the key agreements it makes with it."""
    used: list[int] = []

    class Recording(request.param):
        def encapsulate(self, peer_cose_key):
            used.append(self.VERSION)
            return super().encapsulate(peer_cose_key)

    monkeypatch.setattr(ClientPin, "PROTOCOLS", [Recording])
    return request.param.VERSION, used


class Session:
    """One device, a client that may use hmac-secret directly (not only through prf), and a
    relying party that verifies."""

    def __init__(self, daemon, interaction: UserInteraction | None = None):
        self.dev = open_device(daemon.host, daemon.port)
        self.ctap = Ctap2(self.dev)
        self.client = Fido2Client(
            self.dev,
            DefaultClientDataCollector(ORIGIN),
            user_interaction=interaction or UserInteraction(),
            extensions=[
                HmacSecretExtension(allow_hmac_secret=True),
                CredBlobExtension(),
                CredProtectExtension(),
            ],
        )
        self.server = Fido2Server(PublicKeyCredentialRpEntity(name="Example", id=RP_ID))
        self.credentials = []

    def register(self, extensions, *, resident=False, uv=DISCOURAGED):
        user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="alice", display_name="A")
        options, state = self.server.register_begin(
            user,
            resident_key_requirement=(
                ResidentKeyRequirement.REQUIRED if resident else ResidentKeyRequirement.DISCOURAGED
            ),
            user_verification=uv,
        )
        public_key = options.public_key
        public_key = type(public_key).from_dict({**dict(public_key), "extensions": extensions})
        registration = self.client.make_credential(public_key)
        auth_data = self.server.register_complete(state, registration)
        self.credentials.append(auth_data.credential_data)
        return registration, auth_data

    def authenticate(self, extensions, credential=None, uv=DISCOURAGED):
        request, state = self.server.authenticate_begin(
            credentials=[credential] if credential else None, user_verification=uv
        )
        public_key = type(request.public_key).from_dict(
            {**dict(request.public_key), "extensions": extensions}
        )
        response = self.client.get_assertion(public_key).get_response(0)
        self.server.authenticate_complete(state, self.credentials, response)
        return response

    def hmac_get_secret(self, credential, salt1, salt2=None, uv=DISCOURAGED):
        salts = {"salt1": salt1} if salt2 is None else {"salt1": salt1, "salt2": salt2}
        response = self.authenticate({"hmacGetSecret": salts}, credential, uv)
        assert response.response.authenticator_data.flags & ED
        output = response.client_extension_results.hmac_get_secret
        assert output is not None, response.client_extension_results
        return output

    def close(self):
        self.dev.close()


# ------------------------------------------------------------------------------------ getInfo
def test_get_info_lists_the_extensions(fidelio_daemon):
    session = Session(fidelio_daemon())
    info = session.ctap.get_info()
    assert {"hmac-secret", "hmac-secret-mc", "credBlob", "credProtect"} <= set(info.extensions)
    assert info.max_cred_blob_length == 32
    session.close()


# -------------------------------------------------------------------------------- hmac-secret
@pytest.mark.parametrize("resident", [False, True], ids=["non-discoverable", "discoverable"])
def test_hmac_secret_through_the_client(fidelio_daemon, pin_protocol, resident):
    session = Session(fidelio_daemon())
    registration, auth_data = session.register({"hmacCreateSecret": True}, resident=resident)
    assert registration.client_extension_results.hmac_create_secret is True
    assert auth_data.extensions == {"hmac-secret": True}
    assert auth_data.flags & ED
    credential = auth_data.credential_data

    first = session.hmac_get_secret(credential, SALT1)
    assert len(first.output1) == 32 and not first.output2  # python-fido2 gives b"" for none
    # The same salt, the same output; another salt, another output.
    assert session.hmac_get_secret(credential, SALT1).output1 == first.output1
    other = session.hmac_get_secret(credential, SALT2)
    assert other.output1 != first.output1
    both = session.hmac_get_secret(credential, SALT1, SALT2)
    assert (both.output1, both.output2) == (first.output1, other.output1)
    if resident:
        # Discovery (no allow list) answers the same.
        assert session.hmac_get_secret(None, SALT1).output1 == first.output1

    version, used = pin_protocol
    assert used and set(used) == {version}, used
    session.close()


def test_hmac_secret_is_stable_across_power_cycles_and_protocols(fidelio_daemon, monkeypatch):
    daemon = fidelio_daemon()
    session = Session(daemon)
    _, auth_data = session.register({"hmacCreateSecret": True})
    credential = auth_data.credential_data
    outputs = set()
    for protocol in [PinProtocolV2, PinProtocolV1]:
        monkeypatch.setattr(ClientPin, "PROTOCOLS", [protocol])
        outputs.add(session.hmac_get_secret(credential, SALT1).output1)
    session.close()
    daemon.power_cycle()
    session = Session(daemon)
    session.credentials.append(credential)
    outputs.add(session.hmac_get_secret(credential, SALT1).output1)
    assert len(outputs) == 1
    session.close()


def test_user_verification_gives_other_outputs(fidelio_daemon, pin_protocol):
    daemon = fidelio_daemon()
    session = Session(daemon, PinInteraction())
    ClientPin(session.ctap).set_pin(PIN)
    _, auth_data = session.register({"hmacCreateSecret": True}, uv=REQUIRED)
    assert auth_data.is_user_verified()
    credential = auth_data.credential_data
    without_uv = session.hmac_get_secret(credential, SALT1, uv=DISCOURAGED).output1
    with_uv = session.hmac_get_secret(credential, SALT1, uv=REQUIRED).output1
    assert with_uv != without_uv
    assert session.hmac_get_secret(credential, SALT1, uv=REQUIRED).output1 == with_uv
    assert session.hmac_get_secret(credential, SALT1, uv=DISCOURAGED).output1 == without_uv
    session.close()


def test_wrong_salt_auth_is_refused(fidelio_daemon):
    """Raw CTAP2 with python-fido2's own protocol-two key agreement: a saltAuth off by one bit
    is CTAP2_ERR_PIN_AUTH_INVALID, a 16-byte salt CTAP1_ERR_INVALID_LENGTH."""
    session = Session(fidelio_daemon())
    _, auth_data = session.register({"hmacCreateSecret": True})
    allow = [{"type": "public-key", "id": auth_data.credential_data.credential_id}]
    protocol = PinProtocolV2()
    key_agreement, shared_secret = ClientPin(session.ctap, protocol)._get_shared_secret()

    def extension(salts, tamper=False):
        salt_enc = protocol.encrypt(shared_secret, salts)
        salt_auth = bytearray(protocol.authenticate(shared_secret, salt_enc))
        if tamper:
            salt_auth[0] ^= 0x01
        return {"hmac-secret": {1: key_agreement, 2: salt_enc, 3: bytes(salt_auth), 4: 2}}

    for salts, tamper, code in [
        (SALT1, True, CtapError.ERR.PIN_AUTH_INVALID),
        (SALT1[:16], False, CtapError.ERR.INVALID_LENGTH),
    ]:
        with pytest.raises(CtapError) as error:
            session.ctap.get_assertion(RP_ID, os.urandom(32), allow, extension(salts, tamper))
        assert error.value.code == code
    good = session.ctap.get_assertion(RP_ID, os.urandom(32), allow, extension(SALT1 + SALT2))
    output = protocol.decrypt(shared_secret, good.auth_data.extensions["hmac-secret"])
    assert len(output) == 64
    session.close()


# ---------------------------------------------------------------------------------------- prf
def test_prf_through_the_client(fidelio_daemon, pin_protocol):
    session = Session(fidelio_daemon())
    first_input, second_input = b"first PRF input", b"second PRF input"
    # Registration with an eval: the client sends hmac-secret-mc and gets results right away.
    registration, auth_data = session.register({"prf": {"eval": {"first": first_input}}})
    assert set(auth_data.extensions) == {"hmac-secret", "hmac-secret-mc"}
    prf = registration.client_extension_results.prf
    assert prf.enabled is True
    assert prf.results is not None and len(prf.results.first) == 32
    at_registration = prf.results.first
    credential = auth_data.credential_data

    def evaluate(first, second=None):
        values = {"first": first} if second is None else {"first": first, "second": second}
        response = session.authenticate({"prf": {"eval": values}}, credential)
        return response.client_extension_results.prf.results

    results = evaluate(first_input)
    assert results.first == at_registration
    assert not results.second
    results = evaluate(first_input, second_input)
    assert results.first == at_registration and results.second != at_registration
    assert evaluate(second_input).first == results.second
    # By credential, too.
    response = session.authenticate(
        {"prf": {"evalByCredential": {
            _b64url(credential.credential_id): {"first": second_input}
        }}},
        credential,
    )
    assert response.client_extension_results.prf.results.first == results.second

    # prf is hmac-secret with salt SHA-256("WebAuthn PRF" ‖ 0x00 ‖ input).
    salt = hashlib.sha256(b"WebAuthn PRF\x00" + first_input).digest()
    assert session.hmac_get_secret(credential, salt).output1 == at_registration
    session.close()


def test_prf_enabled_without_eval(fidelio_daemon):
    session = Session(fidelio_daemon())
    registration, auth_data = session.register({"prf": {}})
    assert auth_data.extensions == {"hmac-secret": True}
    assert registration.client_extension_results.prf.enabled is True
    session.close()


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ----------------------------------------------------------------------------------- credBlob
def test_cred_blob_through_the_client(fidelio_daemon):
    session = Session(fidelio_daemon())
    blob = b"a blob of exactly thirty-two by."
    assert len(blob) == 32
    _, auth_data = session.register({"credBlob": blob}, resident=True)
    assert auth_data.extensions == {"credBlob": True}
    credential = auth_data.credential_data

    response = session.authenticate({"getCredBlob": True}, credential)
    assert response.response.authenticator_data.extensions == {"credBlob": blob}
    # By discovery too; and not asked, not given.
    response = session.authenticate({"getCredBlob": True})
    assert response.response.authenticator_data.extensions == {"credBlob": blob}
    response = session.authenticate({}, credential)
    assert not response.response.authenticator_data.flags & ED

    # A non-discoverable credential keeps no blob.
    _, plain = session.register({"credBlob": b"small"})
    assert plain.extensions == {"credBlob": False}
    response = session.authenticate({"getCredBlob": True}, plain.credential_data)
    assert response.response.authenticator_data.extensions == {"credBlob": b""}
    session.close()


def test_cred_blob_too_long_over_raw_ctap2(fidelio_daemon):
    """Fido2Client drops a blob longer than maxCredBlobLength itself; sent raw, it is refused
    with `credBlob: false`."""
    session = Session(fidelio_daemon())
    response = session.ctap.make_credential(
        os.urandom(32),
        {"id": RP_ID, "name": "Example"},
        {"id": b"bob", "name": "bob"},
        [{"type": "public-key", "alg": -7}],
        extensions={"credBlob": b"x" * 33},
        options={"rk": True},
    )
    assert response.auth_data.extensions == {"credBlob": False}
    allow = [{"type": "public-key", "id": response.auth_data.credential_data.credential_id}]
    assertion = session.ctap.get_assertion(
        RP_ID, os.urandom(32), allow, extensions={"credBlob": True}
    )
    assert assertion.auth_data.extensions == {"credBlob": b""}
    session.close()
