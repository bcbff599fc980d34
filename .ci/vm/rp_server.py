#!/usr/bin/env python3
"""A relying party for the vm-test's browser check, verified by py_webauthn (PyPI `webauthn`).

    rp_server.py RESULT_JSON PORT_FILE [--timeout SECONDS] [--attestation none|direct]

Serves http://localhost:PORT/ (a secure context without TLS): the page fetches registration
options, calls navigator.credentials.create(), posts the credential back; then fetches
authentication options for that credential, calls navigator.credentials.get(), posts the
assertion back. The server verifies both with py_webauthn — challenge, origin, RP ID hash,
flags, attestation statement, signature, counter — and writes RESULT_JSON:

    {"create": {"ok": bool, "detail": ...}, "get": {"ok": bool, "detail": ...}, "log": [...]}

It exits once get() is verified, the page reports an error, or the timeout passes. The port
(chosen by the kernel) is written to PORT_FILE once the server listens.
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

RP_ID = "localhost"

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Fidelio vm-test RP</title>
<pre id="out">running</pre>
<script>
const out = document.getElementById("out");
function note(text) { out.textContent += "\\n" + text; console.log("vm-rp: " + text); }
async function post(path, body) {
  const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)});
  const answer = await response.json();
  if (!answer.ok) throw new Error(path + ": " + answer.error);
  return answer;
}
async function run() {
  note("isSecureContext=" + window.isSecureContext);
  const createOptions = await (await fetch("/options/create")).json();
  note("create() ...");
  const made = await navigator.credentials.create(
      {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(createOptions)});
  note("create() returned " + made.id);
  await post("/verify/create", made.toJSON());
  const getOptions = await (await fetch("/options/get")).json();
  note("get() ...");
  const asserted = await navigator.credentials.get(
      {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(getOptions)});
  note("get() returned " + asserted.id);
  await post("/verify/get", asserted.toJSON());
  note("done");
}
run().catch(async (error) => {
  note("error: " + error.name + ": " + error.message);
  await fetch("/error", {method: "POST", headers: {"Content-Type": "application/json"},
                         body: JSON.stringify({name: error.name, message: error.message,
                                               stack: String(error.stack)})});
});
</script>
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class State:
    def __init__(self, args):
        self.args = args
        self.origin = None  # set once the port is known
        self.result = {
            "create": {"ok": False, "detail": "not reached"},
            "get": {"ok": False, "detail": "not reached"},
            "log": [],
        }
        self.create_challenge = None
        self.get_challenge = None
        self.registration = None
        self.done = threading.Event()
        self.lock = threading.Lock()

    def log(self, text):
        stamp = f"{time.monotonic() - STARTED:7.2f}s"
        with self.lock:
            self.result["log"].append(f"{stamp} {text}")
        print(f"rp_server: {stamp} {text}", flush=True)


STARTED = time.monotonic()


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            state.log("http: " + (fmt % args))

        def reply(self, code, body, content_type="application/json"):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            length = int(self.headers.get("Content-Length", "0"))
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self):
            if self.path == "/":
                self.reply(200, PAGE, "text/html; charset=utf-8")
            elif self.path == "/options/create":
                options = generate_registration_options(
                    rp_id=RP_ID,
                    rp_name="Fidelio vm-test",
                    user_name="vm-test@localhost",
                    user_display_name="vm-test",
                    attestation=AttestationConveyancePreference(state.args.attestation),
                    authenticator_selection=AuthenticatorSelectionCriteria(
                        resident_key=ResidentKeyRequirement.DISCOURAGED,
                        user_verification=UserVerificationRequirement.DISCOURAGED,
                    ),
                    timeout=120000,
                )
                state.create_challenge = options.challenge
                state.log("create options sent")
                self.reply(200, options_to_json(options))
            elif self.path == "/options/get":
                if state.registration is None:
                    self.reply(409, json.dumps({"ok": False, "error": "no registration yet"}))
                    return
                options = generate_authentication_options(
                    rp_id=RP_ID,
                    allow_credentials=[
                        PublicKeyCredentialDescriptor(id=state.registration.credential_id)
                    ],
                    user_verification=UserVerificationRequirement.DISCOURAGED,
                    timeout=120000,
                )
                state.get_challenge = options.challenge
                state.log("get options sent")
                self.reply(200, options_to_json(options))
            elif self.path == "/favicon.ico":
                self.reply(404, b"", "text/plain")
            else:
                self.reply(404, json.dumps({"ok": False, "error": "no such page"}))

        def do_POST(self):
            try:
                body = self.body()
            except Exception as error:  # noqa: BLE001 - reported to the page and the result
                self.reply(400, json.dumps({"ok": False, "error": f"bad JSON: {error}"}))
                return
            if self.path == "/verify/create":
                self.verify("create", body)
            elif self.path == "/verify/get":
                self.verify("get", body)
            elif self.path == "/error":
                state.log(f"the page failed: {body}")
                for stage in ("create", "get"):
                    if state.result[stage]["detail"] == "not reached":
                        state.result[stage]["detail"] = f"the page failed before: {body}"
                        break
                self.reply(200, json.dumps({"ok": True}))
                state.done.set()
            else:
                self.reply(404, json.dumps({"ok": False, "error": "no such endpoint"}))

        def verify(self, stage, credential):
            state.log(f"{stage}: credential posted: {json.dumps(credential)}")
            try:
                if stage == "create":
                    verified = verify_registration_response(
                        credential=credential,
                        expected_challenge=state.create_challenge,
                        expected_rp_id=RP_ID,
                        expected_origin=state.origin,
                    )
                    state.registration = verified
                    detail = {
                        "fmt": str(getattr(verified.fmt, "value", verified.fmt)),
                        "aaguid": verified.aaguid,
                        "credential_id": b64url(verified.credential_id),
                        "sign_count": verified.sign_count,
                        "user_verified": verified.user_verified,
                        "device_type": str(
                            getattr(
                                verified.credential_device_type,
                                "value",
                                verified.credential_device_type,
                            )
                        ),
                        "backed_up": verified.credential_backed_up,
                        "transports": credential.get("response", {}).get("transports"),
                        "authenticatorAttachment": credential.get("authenticatorAttachment"),
                    }
                else:
                    verified = verify_authentication_response(
                        credential=credential,
                        expected_challenge=state.get_challenge,
                        expected_rp_id=RP_ID,
                        expected_origin=state.origin,
                        credential_public_key=state.registration.credential_public_key,
                        credential_current_sign_count=state.registration.sign_count,
                    )
                    detail = {
                        "credential_id": b64url(verified.credential_id),
                        "new_sign_count": verified.new_sign_count,
                        "previous_sign_count": state.registration.sign_count,
                        "user_verified": verified.user_verified,
                    }
            except Exception as error:  # noqa: BLE001 - any failure is the check's failure
                state.result[stage] = {
                    "ok": False,
                    "detail": f"py_webauthn rejected it: {type(error).__name__}: {error}",
                    "traceback": traceback.format_exc(),
                }
                state.log(f"{stage}: REJECTED: {error}")
                self.reply(200, json.dumps({"ok": False, "error": str(error)}))
                state.done.set()
                return
            state.result[stage] = {"ok": True, "detail": detail}
            state.log(f"{stage}: verified: {json.dumps(detail)}")
            self.reply(200, json.dumps({"ok": True}))
            if stage == "get":
                state.done.set()

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("result")
    parser.add_argument("port_file")
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--attestation", default="direct", choices=["none", "direct"])
    args = parser.parse_args()

    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    port = server.server_address[1]
    state.origin = f"http://localhost:{port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.replace(args.port_file + ".tmp", args.port_file)
    state.log(f"listening: {state.origin}")

    if not state.done.wait(args.timeout):
        state.log(f"timed out after {args.timeout:.0f}s")
        for stage in ("create", "get"):
            if state.result[stage]["detail"] == "not reached":
                state.result[stage]["detail"] = f"not reached within {args.timeout:.0f}s"
    # Let the page read the last answer before the server goes.
    time.sleep(0.5)
    server.shutdown()
    with open(args.result, "w") as f:
        json.dump(state.result, f, indent=2)
    ok = state.result["create"]["ok"] and state.result["get"]["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
