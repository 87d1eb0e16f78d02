#!/usr/bin/env python3
"""A local Hugging Face Hub mirror for one model, speaking the Hub's file
protocol as `huggingface_hub` uses it (what HF_ENDPOINT points mirrors at):

  GET /ORG/NAME/resolve/REV/FILE  200 + ETag + X-Repo-Commit for small files;
                                  302 to /lfs/SHA256 + X-Linked-Etag for
                                  *.safetensors (LFS files: the etag is the
                                  sha256 of the content); 404 + X-Error-Code
                                  EntryNotFound / RepoNotFound otherwise.

  python tests/support/hub_mirror.py MODEL_DIR ORG/NAME

Prints the port it listens on, then serves until killed. The integration
tests point bert-classifier at it to exercise the real download code.
"""
import hashlib
import http.server
import os
import sys

MODEL_DIR, REPO = sys.argv[1], sys.argv[2]
COMMIT = hashlib.sha1(REPO.encode()).hexdigest()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


LFS = {sha256(os.path.join(MODEL_DIR, f)): f for f in os.listdir(MODEL_DIR) if f.endswith(".safetensors")}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_file(self, path, headers):
        body = open(path, "rb").read()
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def not_found(self, code):
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        parts = self.path.lstrip("/").split("/")
        if parts[0] == "lfs" and len(parts) == 2 and parts[1] in LFS:
            return self.send_file(os.path.join(MODEL_DIR, LFS[parts[1]]), {})
        if len(parts) < 5 or "/".join(parts[:2]) != REPO or parts[2] != "resolve":
            return self.not_found("RepoNotFound")
        name = "/".join(parts[4:])
        path = os.path.join(MODEL_DIR, name)
        if not os.path.isfile(path):
            return self.not_found("EntryNotFound")
        if name.endswith(".safetensors"):
            digest = sha256(path)
            self.send_response(302)
            self.send_header("Location", f"/lfs/{digest}")
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = hashlib.sha1(open(path, "rb").read()).hexdigest()
        self.send_file(path, {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT})


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
