"""fidelio-webauthn's ceremonies, checked by code we did not write.

The `ceremonies` example runs registrations and authentications through the Rust WebAuthn
client against in-process authenticators and prints RegistrationResponseJSON /
AuthenticationResponseJSON. Here py_webauthn (PyPI `webauthn`) verifies each pair as an RP
would (clientDataJSON type/challenge/origin, RP ID hash, flags, the attestation statement,
the assertion signature), and `cryptography` checks what py_webauthn does not: the
`publicKey` SPKI the client derived, `publicKeyAlgorithm`, `authenticatorData`, and the
exact clientDataJSON bytes of WebAuthn L3 §5.8.1.1 (crossOrigin always, topOrigin last).

Run: FIDELIO_WEBAUTHN_CEREMONIES=<path to the built example> pytest transports/webauthn/tests
(without it, `cargo run --example ceremonies` builds and runs it).
"""

import base64
import hashlib
import json
import os
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key
from webauthn import verify_authentication_response, verify_registration_response


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_ceremonies():
    binary = os.environ.get("FIDELIO_WEBAUTHN_CEREMONIES")
    if binary:
        command = [binary]
    else:
        command = ["cargo", "run", "-q", "-p", "fidelio-webauthn", "--example", "ceremonies"]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


CEREMONIES = load_ceremonies()


def expected_client_data(kind, challenge, origin, top_origin):
    # §5.8.1.1 with plain ASCII values (no escaping needed).
    text = f'{{"type":"{kind}","challenge":"{challenge}","origin":"{origin}","crossOrigin":'
    if top_origin is None:
        text += "false}"
    else:
        text += f'true,"topOrigin":"{top_origin}"}}'
    return text.encode()


def test_every_ceremony_ran():
    names = {c["name"] for c in CEREMONIES}
    assert {"es256-packed-self", "pin-user-verification", "cross-origin-iframe", "extensions"} <= names


@pytest.mark.parametrize("ceremony", CEREMONIES, ids=[c["name"] for c in CEREMONIES])
def test_ceremony_verifies(ceremony):
    rp_id = ceremony["rp_id"]
    origin = ceremony["origin"]
    uv = ceremony["require_user_verification"]
    reg = ceremony["registration"]
    auth = ceremony["authentication"]

    registration = verify_registration_response(
        credential=reg["response"],
        expected_challenge=b64d(reg["challenge"]),
        expected_rp_id=rp_id,
        expected_origin=origin,
        require_user_verification=uv,
    )
    authentication = verify_authentication_response(
        credential=auth["response"],
        expected_challenge=b64d(auth["challenge"]),
        expected_rp_id=rp_id,
        expected_origin=origin,
        credential_public_key=registration.credential_public_key,
        credential_current_sign_count=registration.sign_count,
        require_user_verification=uv,
    )
    assert authentication.credential_id == registration.credential_id

    # The exact clientDataJSON bytes, for both ceremonies.
    top = ceremony["top_origin"]
    assert b64d(reg["response"]["response"]["clientDataJSON"]) == expected_client_data(
        "webauthn.create", reg["challenge"], origin, top
    )
    assert b64d(auth["response"]["response"]["clientDataJSON"]) == expected_client_data(
        "webauthn.get", auth["challenge"], origin, top
    )

    # The client-side conveniences of RegistrationResponseJSON.
    response = reg["response"]["response"]
    assert b64d(response["authenticatorData"]).hex() in b64d(response["attestationObject"]).hex()
    assert response["transports"] == sorted(set(response["transports"]))
    spki = load_der_public_key(b64d(response["publicKey"]))
    message = b64d(auth["response"]["response"]["authenticatorData"]) + hashlib.sha256(
        b64d(auth["response"]["response"]["clientDataJSON"])
    ).digest()
    signature = b64d(auth["response"]["response"]["signature"])
    if response["publicKeyAlgorithm"] == -7:
        assert isinstance(spki, ec.EllipticCurvePublicKey)
        spki.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    elif response["publicKeyAlgorithm"] == -8:
        assert isinstance(spki, ed25519.Ed25519PublicKey)
        spki.verify(signature, message)
    else:
        pytest.fail(f"unexpected algorithm {response['publicKeyAlgorithm']}")
    assert reg["response"]["id"] == reg["response"]["rawId"] == b64e(registration.credential_id)


def by_name(name):
    return next(c for c in CEREMONIES if c["name"] == name)


def test_attestation_conveyance():
    packed = verify_registration_response(
        credential=by_name("es256-packed-self")["registration"]["response"],
        expected_challenge=b64d(by_name("es256-packed-self")["registration"]["challenge"]),
        expected_rp_id="example.com",
        expected_origin="https://example.com",
    )
    assert str(getattr(packed.fmt, "value", packed.fmt)) == "packed"
    none = by_name("eddsa-discoverable-none")
    verified = verify_registration_response(
        credential=none["registration"]["response"],
        expected_challenge=b64d(none["registration"]["challenge"]),
        expected_rp_id="example.com",
        expected_origin="https://example.com",
    )
    assert str(getattr(verified.fmt, "value", verified.fmt)) == "none"


def test_flags_and_extension_results():
    synced = by_name("synced-passkey")
    verified = verify_registration_response(
        credential=synced["registration"]["response"],
        expected_challenge=b64d(synced["registration"]["challenge"]),
        expected_rp_id="example.com",
        expected_origin="https://example.com",
    )
    assert verified.credential_backed_up is True
    assert synced["authentication"]["response"]["response"]["userHandle"] == b64e(b"synced-passkey")

    extensions = by_name("extensions")
    created = extensions["registration"]["response"]["clientExtensionResults"]
    got = extensions["authentication"]["response"]["clientExtensionResults"]
    assert created["credProps"] == {"rk": True}
    assert created["credBlob"] is True
    assert created["largeBlob"] == {"supported": True}
    assert created["prf"]["enabled"] is True
    # The same PRF input gives the same output at registration and at assertion.
    assert created["prf"]["results"]["first"] == got["prf"]["results"]["first"]
    assert got["getCredBlob"] == "YmxvYg"

    platform = by_name("platform-built-in-uv")
    assert platform["registration"]["response"]["authenticatorAttachment"] == "platform"
