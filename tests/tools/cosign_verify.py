#!/usr/bin/env python3
"""An independent check of a cosign key pair and signature, written from the
published formats and not from Berth's code (tests/signing.rs runs it).

    cosign_verify.py --key NAME.key --pub NAME.pub --registry URL \
        --repo team/app --digest sha256:... [--referrer]

The key password is read from COSIGN_PASSWORD; registry credentials (for
the Docker token flow, if the registry asks) from REGISTRY_USER and
REGISTRY_PASSWORD.

1. NAME.key: a PEM block "ENCRYPTED SIGSTORE PRIVATE KEY" whose body is
   go-securesystemslib's `encrypted` JSON: scrypt (hashlib.scrypt, N/r/p
   from the file, 32-byte salt and key) and NaCl secretbox (PyNaCl's
   SecretBox: the `cryptography` package has no XSalsa20-Poly1305) sealing
   a PKCS#8 ECDSA P-256 key (loaded with `cryptography`).
2. NAME.pub must be that key's public key.
3. The signature manifest (the `sha256-<hex>.sig` tag, or with --referrer
   the referrers of the image with artifactType
   application/vnd.dev.cosign.artifact.sig.v1+json) is fetched over HTTP
   with each simple-signing layer; every layer's bytes must match its
   digest, its payload must name the image digest, and the ECDSA-SHA256
   signature in its `dev.cosignproject.cosign/signature` annotation is
   checked over the exact payload bytes with the public key.

Prints one JSON object: {"manifest": digest, "layers": n, "verified": [i,
...]} (indices of the layers this key signed) and exits 0; exits 1 with a
message on any failure of steps 1-2 or a malformed manifest or layer.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def fail(message):
    print(f"cosign_verify: {message}", file=sys.stderr)
    sys.exit(1)


def pem_body(text, label):
    m = re.search(
        rf"-----BEGIN {label}-----\n(.*?)\n-----END {label}-----", text, re.S
    )
    if not m:
        fail(f"no PEM block {label!r}")
    return base64.b64decode("".join(m.group(1).split()))


def decrypt_key(path, password):
    doc = json.loads(pem_body(open(path).read(), "ENCRYPTED SIGSTORE PRIVATE KEY"))
    kdf, cipher = doc["kdf"], doc["cipher"]
    if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
        fail(f"unexpected kdf/cipher {kdf['name']}/{cipher['name']}")
    params = kdf["params"]
    if (params["r"], params["p"]) != (8, 1) or params["N"] not in (2**15, 2**16, 2**17):
        fail(f"unexpected scrypt parameters {params}")
    salt = base64.b64decode(kdf["salt"])
    nonce = base64.b64decode(cipher["nonce"])
    if len(salt) != 32 or len(nonce) != 24:
        fail(f"salt of {len(salt)} bytes, nonce of {len(nonce)}")
    key = hashlib.scrypt(
        password,
        salt=salt,
        n=params["N"],
        r=params["r"],
        p=params["p"],
        maxmem=512 * 1024 * 1024,
        dklen=32,
    )
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(doc["ciphertext"]), nonce)
    private = serialization.load_der_private_key(der, password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        fail("not an ECDSA P-256 key")
    return private


class Registry:
    def __init__(self, base, repo):
        self.base, self.repo, self.token = base.rstrip("/"), repo, None

    def get(self, path, accept=None):
        url = path if path.startswith("http") else self.base + path
        for attempt in (0, 1):
            req = urllib.request.Request(url)
            if accept:
                req.add_header("Accept", accept)
            if self.token:
                req.add_header("Authorization", f"Bearer {self.token}")
            try:
                with urllib.request.urlopen(req) as r:
                    return r.read(), r.headers
            except urllib.error.HTTPError as e:
                challenge = e.headers.get("WWW-Authenticate", "")
                if e.code == 401 and attempt == 0 and challenge.startswith("Bearer "):
                    self.login(challenge)
                    continue
                if e.code == 404:
                    return None, e.headers
                fail(f"GET {url}: {e.code} {e.read()[:300]!r}")

    def login(self, challenge):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urllib.parse.urlencode(
            {"service": params.get("service", ""), "scope": f"repository:{self.repo}:pull"}
        )
        req = urllib.request.Request(f"{params['realm']}?{query}")
        creds = f"{os.environ.get('REGISTRY_USER', '')}:{os.environ.get('REGISTRY_PASSWORD', '')}"
        req.add_header("Authorization", "Basic " + base64.b64encode(creds.encode()).decode())
        with urllib.request.urlopen(req) as r:
            self.token = json.loads(r.read())["token"]


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--pub", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--digest", required=True)
    ap.add_argument("--referrer", action="store_true")
    a = ap.parse_args()

    private = decrypt_key(a.key, os.environ["COSIGN_PASSWORD"].encode())
    public = serialization.load_der_public_key(pem_body(open(a.pub).read(), "PUBLIC KEY"))
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if public.public_bytes(*spki) != private.public_key().public_bytes(*spki):
        fail("the public key file is not the private key's public key")

    reg = Registry(a.registry, a.repo)
    if a.referrer:
        body, _ = reg.get(f"/v2/{a.repo}/referrers/{a.digest}", "application/vnd.oci.image.index.v1+json")
        found = [m for m in json.loads(body)["manifests"] if m.get("artifactType") == SIG_ARTIFACT]
        if len(found) != 1:
            fail(f"{len(found)} cosign referrers")
        ref = found[0]["digest"]
    else:
        ref = "sha256-" + a.digest.split(":", 1)[1] + ".sig"
    body, _ = reg.get(f"/v2/{a.repo}/manifests/{ref}", OCI_MANIFEST)
    if body is None:
        fail(f"no signature manifest {ref}")
    manifest = json.loads(body)
    if manifest.get("mediaType") != OCI_MANIFEST or manifest["config"]["mediaType"] != OCI_CONFIG:
        fail(f"unexpected media types in {manifest}")
    if a.referrer:
        if manifest.get("artifactType") != SIG_ARTIFACT or manifest["subject"]["digest"] != a.digest:
            fail("the referrer's artifactType or subject is wrong")
    elif "subject" in manifest:
        fail("a tagged signature manifest with a subject")

    verified = []
    for i, layer in enumerate(manifest["layers"]):
        if layer["mediaType"] != SIMPLE_SIGNING:
            fail(f"layer {i}: media type {layer['mediaType']}")
        payload, _ = reg.get(f"/v2/{a.repo}/blobs/{layer['digest']}")
        if payload is None or sha256(payload) != layer["digest"] or len(payload) != layer["size"]:
            fail(f"layer {i}: the blob does not match its descriptor")
        p = json.loads(payload)
        crit = p["critical"]
        if crit["type"] != "cosign container image signature":
            fail(f"layer {i}: payload type {crit['type']!r}")
        if crit["image"]["docker-manifest-digest"] != a.digest:
            fail(f"layer {i}: payload names {crit['image']['docker-manifest-digest']}")
        if not crit["identity"]["docker-reference"].endswith("/" + a.repo):
            fail(f"layer {i}: docker-reference {crit['identity']['docker-reference']}")
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        try:
            public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            verified.append(i)
        except InvalidSignature:
            pass
    print(json.dumps({"manifest": sha256(body), "layers": len(manifest["layers"]), "verified": verified}))


if __name__ == "__main__":
    main()
