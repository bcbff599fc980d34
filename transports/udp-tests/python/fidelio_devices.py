"""Helpers for the device-lifecycle and fault-injection tests: the daemon's devices driven by
the real `fidelio device` CLI and the control API (both on the browser gateway), and a relying
party whose options come from py_webauthn and whose every result py_webauthn verifies.

    daemon = fidelio_daemon(gateway=True)
    gw = Gateway(daemon)
    phone = gw.new("phone", "--profile", "synced-passkey")     # `fidelio device new --json`
    dev = gw.open("phone")                                     # python-fido2 on its UDP lane
    rp = RelyingParty()
    alice = rp.register(client(dev), "alice", resident=True)
    rp.login(client(dev), alice)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.hid import CtapHidDevice
from fido2.webauthn import (
    AuthenticationResponse,
    AuthenticatorData,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
    RegistrationResponse,
)
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from udp_hid import open_device

ORIGIN = "https://example.com"
RP_ID = "example.com"
ES256 = COSEAlgorithmIdentifier.ECDSA_SHA_256  # -7
EDDSA = COSEAlgorithmIdentifier.EDDSA  # -8
SHORT_TIMEOUT = 2.0  # seconds: for requests that are expected to get no answer at all


# ------------------------------------------------------------------------ the daemon's devices
class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class Gateway:
    """`fidelio device --gateway-file F …` and the control API of one daemon."""

    def __init__(self, daemon):
        assert daemon.gateway_file is not None, "start the daemon with gateway=True"
        self.daemon = daemon

    # -- the CLI ------------------------------------------------------------------------------
    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`fidelio device --gateway-file F ARGS…`; with `check`, a non-zero exit fails."""
        command = [
            self.daemon.binary,
            "device",
            "--gateway-file",
            str(self.daemon.gateway_file),
            *[str(a) for a in args],
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command[1:])} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n{self.daemon.log_tail()}"
            )
        return result

    def json(self, *args: str) -> Any:
        """`fidelio device --json ARGS…`: the daemon's answer."""
        return json.loads(self.run("--json", *args).stdout)

    def new(self, device_id: str, *options: str) -> dict:
        info = self.json("new", "--id", device_id, *options)
        assert info["authenticatorId"] == device_id
        assert info["plugged"] is True
        return info

    def show(self, device_id: str) -> dict:
        return self.json("show", device_id)

    def ids(self) -> list[str]:
        return [d["authenticatorId"] for d in self.json("list")]

    # -- the control API ----------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One request to the control API; the `ok` member of the answer, or ApiError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.daemon.gateway_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.daemon.gateway_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())["ok"]
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = raw.decode(errors="replace")
            raise ApiError(error.code, detail) from None

    def credentials(self, device_id: str) -> list[dict]:
        """GET /v1/control/authenticator/ID/credentials: with private keys."""
        answer = self.api("GET", f"/v1/control/authenticator/{device_id}/credentials")
        return answer["credentials"] if isinstance(answer, dict) else answer

    def add_fault(self, device_id: str, fault: dict) -> int:
        [fault_id] = self.api("POST", f"/v1/control/authenticator/{device_id}/faults", fault)[
            "faultIds"
        ]
        return fault_id

    def faults(self, device_id: str) -> list[dict]:
        return self.api("GET", f"/v1/control/authenticator/{device_id}/faults")["faults"]

    def events(self, after: int = 0) -> list[dict]:
        return self.api("GET", f"/v1/control/events?after={after}&timeout=0")["events"]

    # -- the UDP lanes ------------------------------------------------------------------------
    def udp(self, device_id: str) -> tuple[str, int]:
        host, port = self.show(device_id)["udp"].rsplit(":", 1)
        return host, int(port)

    def open(self, device_id: str, timeout: float = 5.0) -> CtapHidDevice:
        """python-fido2 on the device's own UDP lane (CTAPHID INIT included)."""
        return open_device(*self.udp(device_id), timeout=timeout)


# -------------------------------------------------------------------- the client and the RP
def client(dev: CtapHidDevice, interaction: UserInteraction | None = None) -> Fido2Client:
    return Fido2Client(dev, DefaultClientDataCollector(ORIGIN), interaction or UserInteraction())


def as_json(response: RegistrationResponse | AuthenticationResponse) -> str:
    """The WebAuthn JSON serialization, what a browser page posts to its server."""
    return json.dumps(dict(response))


@dataclass
class Registered:
    """What the RP keeps after a verified registration (plus what the test wants to look at)."""

    id: bytes
    public_key: bytes  # COSE, as py_webauthn returned it
    sign_count: int  # what the RP last saw
    user_id: bytes
    verified: VerifiedRegistration
    response: RegistrationResponse

    @property
    def alg(self) -> int:
        from fido2 import cbor

        return cbor.decode(self.public_key)[3]


@dataclass
class Login:
    verified: VerifiedAuthentication
    response: AuthenticationResponse

    @property
    def auth_data(self) -> AuthenticatorData:
        return self.response.response.authenticator_data


class RelyingParty:
    """example.com: options made by py_webauthn, handed to python-fido2's client in their JSON
    form, results verified by py_webauthn (counter tracked as an RP stores it)."""

    def __init__(self, rp_id: str = RP_ID, origin: str = ORIGIN):
        self.rp_id = rp_id
        self.origin = origin

    def creation_options(
        self,
        user_name: str,
        *,
        resident: bool,
        algs: tuple[int, ...],
        uv: UserVerificationRequirement,
    ) -> PublicKeyCredentialCreationOptions:
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name="Example",
            user_name=user_name,
            user_id=os.urandom(16),
            attestation=AttestationConveyancePreference.DIRECT,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=(
                    ResidentKeyRequirement.REQUIRED
                    if resident
                    else ResidentKeyRequirement.DISCOURAGED
                ),
                user_verification=uv,
            ),
            supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in algs],
        )
        return PublicKeyCredentialCreationOptions.from_dict(json.loads(options_to_json(options)))

    def register(
        self,
        fido_client: Fido2Client,
        user_name: str,
        *,
        resident: bool = True,
        algs: tuple[int, ...] = (ES256, EDDSA),
        uv: UserVerificationRequirement = UserVerificationRequirement.DISCOURAGED,
        require_uv: bool = False,
        roots: dict[AttestationFormat, list[bytes]] | None = None,
    ) -> Registered:
        """A registration ceremony; py_webauthn's verify_registration_response must accept it
        (it raises InvalidRegistrationResponse otherwise)."""
        options = self.creation_options(user_name, resident=resident, algs=algs, uv=uv)
        response = fido_client.make_credential(options)
        verified = verify_registration_response(
            credential=as_json(response),
            expected_challenge=options.challenge,
            expected_rp_id=self.rp_id,
            expected_origin=self.origin,
            require_user_verification=require_uv,
            supported_pub_key_algs=[COSEAlgorithmIdentifier(a) for a in algs],
            pem_root_certs_bytes_by_fmt=roots,
        )
        assert verified.credential_id == response.raw_id
        return Registered(
            id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            user_id=options.user.id,
            verified=verified,
            response=response,
        )

    def request_options(
        self, allow: list[Registered] | None, uv: UserVerificationRequirement
    ) -> PublicKeyCredentialRequestOptions:
        options = generate_authentication_options(
            rp_id=self.rp_id,
            allow_credentials=(
                [PublicKeyCredentialDescriptor(id=c.id) for c in allow] if allow else None
            ),
            user_verification=uv,
        )
        return PublicKeyCredentialRequestOptions.from_dict(json.loads(options_to_json(options)))

    def assert_with(
        self,
        fido_client: Fido2Client,
        allow: list[Registered] | None,
        uv: UserVerificationRequirement = UserVerificationRequirement.DISCOURAGED,
    ) -> tuple[PublicKeyCredentialRequestOptions, list[AuthenticationResponse]]:
        """The client half only: every assertion the authenticator returned, unverified."""
        options = self.request_options(allow, uv)
        selection = fido_client.get_assertion(options)
        count = len(selection.get_assertions())
        return options, [selection.get_response(i) for i in range(count)]

    def verify(
        self,
        options: PublicKeyCredentialRequestOptions,
        response: AuthenticationResponse,
        credential: Registered,
        *,
        sign_count: int | None = None,
        require_uv: bool = False,
        update: bool = True,
    ) -> Login:
        """py_webauthn's verify_authentication_response against the credential's registered
        public key and the counter the RP stored (or `sign_count`, a fresh record's)."""
        assert response.raw_id == credential.id
        verified = verify_authentication_response(
            credential=as_json(response),
            expected_challenge=options.challenge,
            expected_rp_id=self.rp_id,
            expected_origin=self.origin,
            credential_public_key=credential.public_key,
            credential_current_sign_count=(
                credential.sign_count if sign_count is None else sign_count
            ),
            require_user_verification=require_uv,
        )
        assert verified.credential_id == credential.id
        if update:
            credential.sign_count = verified.new_sign_count
        return Login(verified, response)

    def login(
        self,
        fido_client: Fido2Client,
        credential: Registered,
        *,
        discoverable: bool = False,
        uv: UserVerificationRequirement = UserVerificationRequirement.DISCOURAGED,
        require_uv: bool = False,
    ) -> Login:
        """A sign-in with `credential` (in allowCredentials, or discovered without a list),
        verified by py_webauthn; the stored counter is updated as an RP does."""
        options, responses = self.assert_with(
            fido_client, None if discoverable else [credential], uv
        )
        assert len(responses) == 1, f"{len(responses)} assertions for one credential"
        [response] = responses
        if discoverable:
            assert response.response.user_handle == credential.user_id
        return self.verify(options, response, credential, require_uv=require_uv)


def signature_verifies(response: AuthenticationResponse, credential: Registered) -> bool:
    """The assertion signature checked alone (py_webauthn's own primitives) over authData and
    the clientDataJSON hash, whatever the flags and the counter say."""
    from cryptography.exceptions import InvalidSignature
    from webauthn.helpers import (
        decode_credential_public_key,
        decoded_public_key_to_cryptography,
        verify_signature,
    )

    decoded = decode_credential_public_key(credential.public_key)
    signed = bytes(response.response.authenticator_data) + hashlib.sha256(
        bytes(response.response.client_data)
    ).digest()
    try:
        verify_signature(
            public_key=decoded_public_key_to_cryptography(decoded),
            signature_alg=decoded.alg,
            signature=response.response.signature,
            data=signed,
        )
    except InvalidSignature:
        return False
    return True
