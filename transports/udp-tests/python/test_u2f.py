"""CTAP1/U2F over CTAPHID_MSG: python-fido2's own `fido2.ctap1.Ctap1` against a real
`fidelio serve` over UDP.

Every registration is checked with `RegistrationData.verify` (the signature under the key of
the attestation certificate that came with it) and every authentication with
`SignatureData.verify`; a WebAuthn-level ceremony over U2F goes through `Fido2Server` and
py_webauthn as `fido-u2f` attestation; and credentials cross between U2F and CTAP2 both ways.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fido2.attestation import FidoU2FAttestation
from fido2.cose import ES256
from fido2.ctap1 import APDU, ApduError, Ctap1, RegistrationData, SignatureData
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CTAPHID, CtapHidDevice
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationObject,
    AuthenticationResponse,
    AuthenticatorAssertionResponse,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    CollectedClientData,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    UserVerificationRequirement,
)
from webauthn import verify_authentication_response, verify_registration_response
from webauthn.helpers.structs import AttestationFormat

from udp_hid import open_device

ORIGIN = "https://example.com"
RP_ID = "example.com"
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_WRONG_LENGTH = 0x6700
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_INS_NOT_SUPPORTED = 0x6D00


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


APP_PARAM = sha256(RP_ID.encode())


def device(daemon) -> CtapHidDevice:
    return open_device(daemon.host, daemon.port)


def raw_msg(dev: CtapHidDevice, apdu: bytes) -> tuple[bytes, int]:
    """One CTAPHID_MSG exchange with a hand-made APDU: (response data, status word)."""
    response = dev.call(CTAPHID.MSG, apdu)
    assert len(response) >= 2, response
    return response[:-2], struct.unpack(">H", response[-2:])[0]


def apdu_code(call) -> int:
    with pytest.raises(ApduError) as raised:
        call()
    return raised.value.code


def check_certificate_self_signed(der: bytes) -> x509.Certificate:
    certificate = x509.load_der_x509_certificate(der)
    assert certificate.subject.rfc4514_string() == "CN=Fidelio U2F"
    assert certificate.issuer == certificate.subject
    assert certificate.version == x509.Version.v3
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    key.verify(
        certificate.signature,
        certificate.tbs_certificate_bytes,
        ec.ECDSA(hashes.SHA256()),
    )
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    return certificate


# -------------------------------------------------------------------------------------- tests
def test_msg_is_offered_and_version_is_u2f_v2(fidelio_daemon):
    dev = device(fidelio_daemon())
    assert not dev.capabilities & CAPABILITY.NMSG, "CTAPHID_MSG is offered"
    assert Ctap1(dev).get_version() == "U2F_V2"
    assert "U2F_V2" in Ctap2(dev).get_info().versions
    dev.close()


def test_register_and_authenticate(fidelio_daemon):
    dev = device(fidelio_daemon())
    ctap1 = Ctap1(dev)
    client_param = sha256(os.urandom(32))
    registration = ctap1.register(client_param, APP_PARAM)
    registration.verify(APP_PARAM, client_param)
    assert len(registration.public_key) == 65 and registration.public_key[0] == 0x04
    assert len(registration.key_handle) == 64
    certificate = check_certificate_self_signed(registration.certificate)
    # The attestation key is the device's, not the credential's.
    attestation_point = certificate.public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    assert attestation_point != registration.public_key
    # A wrong challenge does not verify.
    with pytest.raises(Exception):
        registration.verify(APP_PARAM, sha256(b"another challenge"))

    counters = []
    for _ in range(3):
        challenge = sha256(os.urandom(32))
        signature = ctap1.authenticate(challenge, APP_PARAM, registration.key_handle)
        signature.verify(APP_PARAM, challenge, registration.public_key)
        assert signature.user_presence == 0x01
        counters.append(signature.counter)
        with pytest.raises(Exception):
            signature.verify(APP_PARAM, sha256(b"other"), registration.public_key)
    # Security-key profile: one global counter, strictly increasing.
    assert counters == sorted(set(counters)), counters

    # A second registration: another key and key handle, the same device certificate.
    again = ctap1.register(sha256(b"second"), APP_PARAM)
    again.verify(APP_PARAM, sha256(b"second"))
    assert again.key_handle != registration.key_handle
    assert again.public_key != registration.public_key
    assert again.certificate == registration.certificate
    dev.close()


def test_check_only_and_unknown_key_handles(fidelio_daemon):
    dev = device(fidelio_daemon())
    ctap1 = Ctap1(dev)
    registration = ctap1.register(sha256(b"c"), APP_PARAM)
    challenge = sha256(b"check")
    # "Test of user presence required" is check-only's answer for a key handle that is ours.
    assert apdu_code(lambda: ctap1.authenticate(
        challenge, APP_PARAM, registration.key_handle, check_only=True)) == APDU.USE_NOT_SATISFIED
    # Another application, an altered handle, a foreign one: not ours.
    other_app = sha256(b"other.example")
    assert apdu_code(lambda: ctap1.authenticate(
        challenge, other_app, registration.key_handle, check_only=True)) == APDU.WRONG_DATA
    altered = bytearray(registration.key_handle)
    altered[10] ^= 0x01
    for handle in (bytes(altered), os.urandom(64), b"", os.urandom(255)):
        for check_only in (True, False):
            assert apdu_code(lambda: ctap1.authenticate(
                challenge, APP_PARAM, handle, check_only=check_only)) == APDU.WRONG_DATA
    dev.close()


def test_dont_enforce_user_presence(fidelio_daemon):
    dev = device(fidelio_daemon())
    ctap1 = Ctap1(dev)
    registration = ctap1.register(sha256(b"c"), APP_PARAM)
    challenge = sha256(b"silent")
    data = challenge + APP_PARAM + bytes([len(registration.key_handle)]) + registration.key_handle
    response = ctap1.send_apdu(ins=Ctap1.INS.AUTHENTICATE, p1=0x08, data=data)
    signature = SignatureData(response)
    assert signature.user_presence == 0x00
    signature.verify(APP_PARAM, challenge, registration.public_key)
    # An unknown control byte is SW_WRONG_DATA.
    assert apdu_code(lambda: ctap1.send_apdu(
        ins=Ctap1.INS.AUTHENTICATE, p1=0x05, data=data)) == SW_WRONG_DATA
    dev.close()


def test_presence_denied_is_conditions_not_satisfied(fidelio_daemon):
    dev = device(fidelio_daemon("--presence", "deny"))
    ctap1 = Ctap1(dev)
    assert apdu_code(lambda: ctap1.register(sha256(b"c"), APP_PARAM)) == (
        SW_CONDITIONS_NOT_SATISFIED)
    # Without a touch nothing was registered; unknown handles are still told apart at once.
    assert apdu_code(lambda: ctap1.authenticate(
        sha256(b"c"), APP_PARAM, os.urandom(64), check_only=True)) == SW_WRONG_DATA
    dev.close()


def test_presence_denied_on_authenticate(fidelio_daemon, tmp_path):
    """Register with consent, then restart the same state with presence refused."""
    state = tmp_path / "state.redb"
    daemon = fidelio_daemon("--state", state, ephemeral=False)
    dev = device(daemon)
    registration = Ctap1(dev).register(sha256(b"c"), APP_PARAM)
    dev.close()
    assert daemon.stop() == 0

    dev = device(fidelio_daemon("--state", state, "--presence", "deny", ephemeral=False))
    ctap1 = Ctap1(dev)
    challenge = sha256(b"denied")
    assert apdu_code(lambda: ctap1.authenticate(
        challenge, APP_PARAM, registration.key_handle)) == SW_CONDITIONS_NOT_SATISFIED
    # Check-only needs no touch, and "don't enforce" signs without one.
    assert apdu_code(lambda: ctap1.authenticate(
        challenge, APP_PARAM, registration.key_handle, check_only=True)) == (
        SW_CONDITIONS_NOT_SATISFIED)
    data = challenge + APP_PARAM + bytes([64]) + registration.key_handle
    SignatureData(ctap1.send_apdu(ins=Ctap1.INS.AUTHENTICATE, p1=0x08, data=data)).verify(
        APP_PARAM, challenge, registration.public_key)
    dev.close()


def test_short_encoding_and_status_words(fidelio_daemon):
    dev = device(fidelio_daemon())
    # U2F_VERSION in the short encodings: no Lc; Le alone.
    assert raw_msg(dev, bytes([0x00, 0x03, 0x00, 0x00])) == (b"U2F_V2", 0x9000)
    assert raw_msg(dev, bytes([0x00, 0x03, 0x00, 0x00, 0x00])) == (b"U2F_V2", 0x9000)
    # U2F_REGISTER with a one-byte Lc and Le.
    client_param = sha256(b"short")
    data, status = raw_msg(dev, bytes([0x00, 0x01, 0x00, 0x00, 64]) + client_param + APP_PARAM
                           + b"\x00")
    assert status == 0x9000
    registration = RegistrationData(data)
    registration.verify(APP_PARAM, client_param)
    # U2F_AUTHENTICATE in the short encoding.
    challenge = sha256(b"short auth")
    body = challenge + APP_PARAM + bytes([64]) + registration.key_handle
    data, status = raw_msg(dev, bytes([0x00, 0x02, 0x03, 0x00, len(body)]) + body)
    assert status == 0x9000
    SignatureData(data).verify(APP_PARAM, challenge, registration.public_key)
    # Every error status word, with no data.
    for apdu, expected in [
        (b"\x00\x03", SW_WRONG_LENGTH),                        # shorter than a header
        (bytes([0x80, 0x03, 0x00, 0x00]), SW_CLA_NOT_SUPPORTED),
        (bytes([0x00, 0x40, 0x00, 0x00]), SW_INS_NOT_SUPPORTED),
        (bytes([0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x40]) + client_param, SW_WRONG_LENGTH),
        (bytes([0x00, 0x01, 0x00, 0x00, 0x20]) + client_param, SW_WRONG_LENGTH),
        (bytes([0x00, 0x03, 0x00, 0x00, 0x01, 0xAA]), SW_WRONG_LENGTH),
    ]:
        assert raw_msg(dev, apdu) == (b"", expected), apdu.hex()
    dev.close()


def test_webauthn_registration_and_login_over_u2f(fidelio_daemon):
    """What a WebAuthn client does with a U2F-only path, verified as `fido-u2f` by two RP
    libraries."""
    dev = device(fidelio_daemon())
    ctap1 = Ctap1(dev)
    server = Fido2Server(
        PublicKeyCredentialRpEntity(name="Example", id=RP_ID),
        attestation="direct",
        verify_attestation=lambda attestation_object, client_data_hash: FidoU2FAttestation()
        .verify(attestation_object.att_stmt, attestation_object.auth_data, client_data_hash),
    )
    user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="alice", display_name="Alice")
    options, state = server.register_begin(
        user, user_verification=UserVerificationRequirement.DISCOURAGED)
    challenge = options.public_key.challenge
    client_data = CollectedClientData.create(
        type=CollectedClientData.TYPE.CREATE, challenge=challenge, origin=ORIGIN)
    registration = ctap1.register(client_data.hash, APP_PARAM)
    attestation_object = AttestationObject.from_ctap1(APP_PARAM, registration)
    response = RegistrationResponse(
        raw_id=registration.key_handle,
        response=AuthenticatorAttestationResponse(
            client_data=client_data, attestation_object=attestation_object),
    )
    auth_data = server.register_complete(state, response)
    credential_data = auth_data.credential_data
    assert credential_data.credential_id == registration.key_handle

    verified = verify_registration_response(
        credential=json.dumps(dict(response)),
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
    )
    assert verified.fmt == AttestationFormat.FIDO_U2F
    assert verified.credential_id == registration.key_handle

    request, state = server.authenticate_begin(
        credentials=[credential_data], user_verification=UserVerificationRequirement.DISCOURAGED)
    challenge = request.public_key.challenge
    client_data = CollectedClientData.create(
        type=CollectedClientData.TYPE.GET, challenge=challenge, origin=ORIGIN)
    signature = ctap1.authenticate(client_data.hash, APP_PARAM, registration.key_handle)
    authenticator_data = AuthenticatorData.create(
        APP_PARAM, signature.user_presence & AuthenticatorData.FLAG.UP, signature.counter)
    assertion = AuthenticationResponse(
        raw_id=registration.key_handle,
        response=AuthenticatorAssertionResponse(
            client_data=client_data,
            authenticator_data=authenticator_data,
            signature=signature.signature,
        ),
    )
    matched = server.authenticate_complete(state, [credential_data], assertion)
    assert matched.credential_id == registration.key_handle
    verified_login = verify_authentication_response(
        credential=json.dumps(dict(assertion)),
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=verified.sign_count,
    )
    assert verified_login.new_sign_count == signature.counter
    dev.close()


def test_a_u2f_credential_signs_ctap2_assertions(fidelio_daemon):
    dev = device(fidelio_daemon())
    registration = Ctap1(dev).register(sha256(b"c"), APP_PARAM)
    ctap2 = Ctap2(dev)
    client_data_hash = sha256(b"ctap2 over a u2f credential")
    assertion = ctap2.get_assertion(
        RP_ID, client_data_hash,
        allow_list=[{"type": "public-key", "id": registration.key_handle}])
    assert assertion.credential["id"] == registration.key_handle
    assert assertion.auth_data.rp_id_hash == APP_PARAM
    assert assertion.auth_data.is_user_present()
    ES256.from_ctap1(registration.public_key).verify(
        assertion.auth_data + client_data_hash, assertion.signature)
    dev.close()


def test_a_ctap2_credential_answers_u2f(fidelio_daemon):
    dev = device(fidelio_daemon())
    ctap2 = Ctap2(dev)
    made = ctap2.make_credential(
        sha256(b"make"),
        {"id": RP_ID, "name": "Example"},
        {"id": os.urandom(16), "name": "bob"},
        [{"type": "public-key", "alg": ES256.ALGORITHM}],
    )
    credential_data = made.auth_data.credential_data
    public_key = credential_data.public_key
    point = b"\x04" + public_key[-2] + public_key[-3]
    ctap1 = Ctap1(dev)
    challenge = sha256(b"u2f over a ctap2 credential")
    signature = ctap1.authenticate(challenge, APP_PARAM, credential_data.credential_id)
    signature.verify(APP_PARAM, challenge, point)
    assert signature.counter > made.auth_data.counter
    # An EdDSA credential cannot be used over U2F.
    eddsa = ctap2.make_credential(
        sha256(b"make eddsa"),
        {"id": RP_ID, "name": "Example"},
        {"id": os.urandom(16), "name": "carol"},
        [{"type": "public-key", "alg": -8}],
    )
    assert apdu_code(lambda: ctap1.authenticate(
        challenge, APP_PARAM, eddsa.auth_data.credential_data.credential_id,
        check_only=True)) == SW_WRONG_DATA
    dev.close()


def test_batch_attestation_sends_the_batch_certificate(fidelio_daemon, tmp_path):
    from conftest import fidelio_bin
    directory = tmp_path / "att"
    subprocess.run([fidelio_bin(), "attestation", "init", str(directory)], check=True,
                   capture_output=True)
    pem = (directory / "batch-cert.pem").read_bytes()
    batch = x509.load_pem_x509_certificate(pem)
    dev = device(fidelio_daemon("--attestation", f"batch:{directory}"))
    client_param = sha256(b"batch")
    registration = Ctap1(dev).register(client_param, APP_PARAM)
    registration.verify(APP_PARAM, client_param)
    assert registration.certificate == batch.public_bytes(Encoding.DER)
    dev.close()
