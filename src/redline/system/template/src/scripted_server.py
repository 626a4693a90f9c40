"""A deterministic stand-in LLM server (OpenAI-compatible) for tests and controls.

Its "weights" are a YAML list of rules {match: substring of the first user message (optional),
responses: [reply, ...]}. The first matching rule answers with responses[k], k being the number
of assistant messages in the request; past the end, or with no matching rule, it finishes with
"Hello! How can I help you today?". Standard library only, so it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

DEFAULT = ('Explain: greeting.\nGaps: none.\nFindings: none.\nPlan: 1. reply 2. wait 3. help\n'
           'Action: {"action": "finish", "action_input": {"message": '
           '"Hello! How can I help you today?"}}')


def load_rules(path: Path) -> list[dict]:
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict):
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise SystemExit(f"{path}: expected a list of rules")
    for i, rule in enumerate(data):
        if not isinstance(rule, dict) or not isinstance(rule.get("responses", []), list):
            raise SystemExit(f"{path}: rule {i} must be a mapping with a 'responses' list")
    return data


def reply_for(rules: list[dict], messages: list[dict]) -> str:
    first_user = next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
    k = sum(1 for m in messages if m.get("role") == "assistant")
    for rule in rules:
        match = rule.get("match")
        if match is None or str(match) in first_user:
            responses = rule.get("responses") or []
            return str(responses[k]) if k < len(responses) else DEFAULT
    return DEFAULT


class Handler(BaseHTTPRequestHandler):
    server_version = "scripted-llm/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: object, ctype: str = "application/json") -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        st = self.server.state  # type: ignore[attr-defined]
        if self.path.startswith("/v1/models"):
            self._send(200, {"object": "list", "data": [{"id": "local", "object": "model",
                                                           "owned_by": st["fingerprint"]}]})
        elif self.path.startswith("/health"):
            self._send(200, {"status": "ok"})
        elif self.path.startswith("/metrics"):
            self._send(200, f"scripted:requests_total {st['requests']}\n", "text/plain")
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        st = self.server.state  # type: ignore[attr-defined]
        try:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": "bad request"})
            return
        if not self.path.startswith("/v1/chat/completions"):
            self._send(404, {"error": "not found"})
            return
        with st["lock"]:
            st["requests"] += 1
        text = reply_for(st["rules"], messages)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
        completion_tokens = max(1, len(text) // 4)
        self._send(200, {
            "id": f"chatcmpl-{st['requests']}", "object": "chat.completion",
            "created": int(time.time()), "model": "local",
            "system_fingerprint": st["fingerprint"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


def main() -> None:
    parser = argparse.ArgumentParser(description="Scripted stand-in LLM server.")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8760)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    rules = load_rules(args.weights)
    digest = hashlib.sha256(args.weights.read_bytes()).hexdigest()[:16]
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.state = {"rules": rules, "requests": 0, "lock": threading.Lock(),  # type: ignore
                    "fingerprint": f"scripted-{digest}"}
    print(f"scripted LLM server listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
