#!/usr/bin/env python3
"""A small command line over the ORAS Python client (`pip install oras`), for
tests/clients/oras.sh. Debian has no `oras` CLI, and the Python package has
no command line of its own.

  oras_client.py push HOST/REPO:TAG --artifact-type T [--subject DIGEST]
                 [--annotation K=V]... [--chunked SIZE] FILE[:MEDIATYPE]...
      prints {"digest", "size", "mediaType", "status", "oci_subject"} as JSON
  oras_client.py pull HOST/REPO:REF OUTDIR
      prints the pulled files as a JSON list
  oras_client.py tags HOST/REPO
      prints the tags as a JSON list

All over plain HTTP (insecure). With BERTH_REGISTRY_USER and
BERTH_REGISTRY_PASSWORD set, the client authenticates through the registry's
token flow (oras-py's token backend with Basic credentials).
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

import oras.auth.utils
import oras.client
import oras.oci

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


class Client(oras.client.OrasClient):
    """OrasClient whose manifests carry an artifactType.

    oras-py's push() has no artifactType parameter (it does support
    `subject`), so the field is added to the manifest just before upload.
    """

    artifact_type = None

    def upload_manifest(self, manifest, container):
        if self.artifact_type:
            manifest["artifactType"] = self.artifact_type
        return super().upload_manifest(manifest, container)


def client():
    c = Client(insecure=True)
    user = os.environ.get("BERTH_REGISTRY_USER")
    if user:
        c.auth.set_basic_auth(user, os.environ["BERTH_REGISTRY_PASSWORD"])
    return c


def prime_push_token(c, host, repo):
    """Gets a token for pull and push before a push.

    oras-py 0.2.43 keeps the first token it obtains and asks for another only
    after a 403, while registries (Distribution, Berth) answer a token that
    lacks a scope with 401 + error="insufficient_scope", as the token spec
    says. A push starts with a HEAD (pull scope), so its POST would be
    refused. The Go oras CLI asks for pull,push up front; so does this, with
    oras-py's own token request.
    """
    if not os.environ.get("BERTH_REGISTRY_USER"):
        return
    r = c.session.get(f"http://{host}/v2/", timeout=60)
    challenge = oras.auth.utils.parse_auth_header(r.headers["Www-Authenticate"])
    challenge.scope = f"repository:{repo}:pull,push"
    token = c.auth.request_token(challenge)
    if not token:
        sys.exit(f"no push token for {repo}")
    c.auth.token = token


def split_target(target):
    """HOST/REPO[:TAG|@DIGEST] -> (host, repo)."""
    host, _, rest = target.partition("/")
    repo = rest.split("@")[0]
    if ":" in repo:
        repo = repo.rsplit(":", 1)[0]
    return host, repo


def head_manifest(c, host, repo, digest):
    """The subject descriptor: fetched, so size and media type are the registry's."""
    r = c.do_request(
        f"http://{host}/v2/{repo}/manifests/{digest}",
        "GET",
        headers={"Accept": MANIFEST},
    )
    if r.status_code != 200:
        sys.exit(f"GET subject {digest}: HTTP {r.status_code}: {r.text[:300]}")
    got = "sha256:" + hashlib.sha256(r.content).hexdigest()
    if got != digest:
        sys.exit(f"subject {digest}: the registry served content with digest {got}")
    media_type = json.loads(r.content).get("mediaType") or MANIFEST
    return oras.oci.Subject(mediaType=media_type, digest=digest, size=len(r.content))


def cmd_push(args):
    c = client()
    c.artifact_type = args.artifact_type
    host, repo = split_target(args.target)
    prime_push_token(c, host, repo)
    subject = head_manifest(c, host, repo, args.subject) if args.subject else None
    annotations = dict(a.split("=", 1) for a in args.annotation)
    with tempfile.TemporaryDirectory() as tmp:
        # OCI 1.1 artifacts with an artifactType use the empty config `{}`.
        config = os.path.join(tmp, "config.json")
        with open(config, "w") as f:
            f.write("{}")
        kwargs = {}
        if args.chunked:
            kwargs = {"do_chunked": True, "chunk_size": args.chunked}
        r = c.push(
            target=args.target,
            files=args.files,
            disable_path_validation=True,
            manifest_config=f"{config}:{EMPTY}",
            manifest_annotations=annotations or None,
            subject=subject,
            quiet=True,
            **kwargs,
        )
    digest = r.headers.get("Docker-Content-Digest")
    body = r.request.body
    if isinstance(body, str):
        body = body.encode()
    sent = "sha256:" + hashlib.sha256(body).hexdigest()
    if digest and digest != sent:
        sys.exit(f"registry says the manifest is {digest}, but the bytes sent hash to {sent}")
    print(json.dumps({
        "digest": sent,
        "size": len(body),
        "mediaType": MANIFEST,
        "status": r.status_code,
        "location": r.headers.get("Location"),
        "oci_subject": r.headers.get("OCI-Subject"),
    }))


def cmd_pull(args):
    files = client().pull(target=args.target, outdir=args.outdir)
    print(json.dumps(sorted(files)))


def cmd_tags(args):
    print(json.dumps(client().get_tags(args.target)))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    push = sub.add_parser("push")
    push.add_argument("target")
    push.add_argument("files", nargs="+")
    push.add_argument("--artifact-type", required=True)
    push.add_argument("--subject")
    push.add_argument("--annotation", action="append", default=[])
    push.add_argument("--chunked", type=int, default=0, metavar="CHUNK_SIZE")
    push.set_defaults(fn=cmd_push)
    pull = sub.add_parser("pull")
    pull.add_argument("target")
    pull.add_argument("outdir")
    pull.set_defaults(fn=cmd_pull)
    tags = sub.add_parser("tags")
    tags.add_argument("target")
    tags.set_defaults(fn=cmd_tags)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
