#!/usr/bin/env python3
"""Bytes per pending consent in the example server (issue 18).

Starts the example server binary given as the first argument on a free
port (memory storage, consent page shown, not auto-approved), registers a
public client, then opens N pending consents from many loopback source
addresses (127.0.x.y, at most 30 per source so no per-source cap is hit)
and reports the server's resident set size (VmRSS) before and after, per
entry. Two request shapes: `typical` (one resource, a short state, like
Claude or VS Code) and `largest` (ten 2,000-byte resources and a 2,000-byte
state, the most the server accepts).

    cargo build --release --example server
    python3 benches/consent_memory.py target/release/examples/server typical 3000
    python3 benches/consent_memory.py target/release/examples/server largest 1000
"""
import http.client
import json
import re
import socket
import subprocess
import sys
import time
import urllib.parse

binary, shape, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
server = subprocess.Popen(
    [binary, "--listen", f"127.0.0.1:{port}", "--admin-token", "T", "--database-url", "memory:",
     "--issuer", f"http://127.0.0.1:{port}"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={"RUST_LOG": "warn"})


def request(method, path, body=None, headers=None, source="127.0.0.1"):
    c = http.client.HTTPConnection("127.0.0.1", port, source_address=(source, 0), timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def rss_kb():
    with open(f"/proc/{server.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


try:
    for _ in range(300):
        try:
            request("GET", "/.well-known/oauth-authorization-server")
            break
        except OSError:
            time.sleep(0.1)
    _, iat = request("POST", "/admin/projects/proj_demo/iats", headers={"Authorization": "Bearer T"})
    token = json.loads(iat)["token"]
    body = json.dumps({"redirect_uris": ["http://127.0.0.1:5555/cb"], "client_name": "Bench",
                       "token_endpoint_auth_method": "none"})
    _, reg = request("POST", "/oauth2/register", body=body,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    client_id = json.loads(reg)["client_id"]
    params = [("response_type", "code"), ("client_id", client_id), ("redirect_uri", "http://127.0.0.1:5555/cb"),
              ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), ("code_challenge_method", "S256")]
    if shape == "typical":
        params += [("resource", "https://mcp.example.com/mcp"), ("state", "x" * 43), ("scope", "mcp:read")]
    else:
        params += [("resource", f"https://mcp{i}.example/" + "r" * 1975) for i in range(10)]
        params += [("state", "s" * 2000)]
    path = "/oauth2/authorize?" + urllib.parse.urlencode(params)
    # Warm up allocator and maps with a few entries from one source.
    for _ in range(20):
        request("GET", path, source="127.0.9.1")
    before = rss_kb()
    shown = 0
    for i in range(n):
        source = f"127.0.{1 + i // 30 // 250}.{2 + (i // 30) % 250}"
        status, _ = request("GET", path, source=source)
        shown += status == 200
    time.sleep(0.5)
    after = rss_kb()
    print(f"{shape}: {shown}/{n} consent pages shown, RSS {before} kB -> {after} kB, "
          f"{(after - before) * 1024 / max(shown, 1):.0f} bytes per pending consent")
finally:
    server.kill()
