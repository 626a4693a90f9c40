"""A deterministic stand-in LLM server (OpenAI-compatible), whose "weights" are a YAML file.

The YAML is a list of rules {match: substring of the first user message (optional),
responses: [reply, ...]}, or a mapping {rules: [...], seed: "..."}. The first matching rule
answers with responses[k], k being the number of assistant messages in the request; past the
end, or with no matching rule, it finishes with "Hello! How can I help you today?".

A conversation without a system message (a plain completion, not the agent's) that no rule
with an explicit `match` claims gets free text instead: words drawn from a hash of the seed and
the prompt, so the same weights always answer the same, and different seeds answer differently
to prompts nobody wrote a rule for, as two different models would. The seed defaults to the
rules themselves. Standard library and PyYAML only, so it starts in milliseconds.
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


VOCABULARY = ("the a of and to in is was it that for on with as by at from this be or an "
              "light stone water river field house tree night morning road hand voice old new "
              "small great long green red blue cold warm quiet bright slowly again under over "
              "after before between while story song window garden city forest door bird "
              "moon sun wind rain fire snow mountain sea word name time day year way").split()


def load_rules(path: Path) -> tuple[list[dict], str]:
    """(rules, seed) from the weights file."""
    data = yaml.safe_load(path.read_text())
    seed = None
    if isinstance(data, dict):
        seed = data.get("seed")
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise SystemExit(f"{path}: expected a list of rules")
    for i, rule in enumerate(data):
        if not isinstance(rule, dict) or not isinstance(rule.get("responses", []), list):
            raise SystemExit(f"{path}: rule {i} must be a mapping with a 'responses' list")
    if seed is None:
        seed = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return data, str(seed)


def free_text(seed: str, prompt: str, max_tokens: int) -> str:
    """The answer of "a model" to a prompt no rule covers: a function of weights and prompt."""
    words: list[str] = []
    block = b""
    while len(words) < max(1, min(max_tokens, 64)):
        block = hashlib.sha256(block + seed.encode() + b"\0" + prompt.encode()).digest()
        words.extend(VOCABULARY[b % len(VOCABULARY)] for b in block[:8])
    return " ".join(words[:max(1, min(max_tokens, 64))]).capitalize() + "."


def reply_for(rules: list[dict], messages: list[dict], seed: str = "",
              max_tokens: int = 16) -> str:
    first_user = next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
    k = sum(1 for m in messages if m.get("role") == "assistant")
    plain = not any(m.get("role") == "system" for m in messages)
    for rule in rules:
        match = rule.get("match")
        if match is None and plain:
            continue
        if match is None or str(match) in first_user:
            responses = rule.get("responses") or []
            return str(responses[k]) if k < len(responses) else DEFAULT
    return free_text(seed, first_user, max_tokens) if plain else DEFAULT


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
        max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else 16
        text = reply_for(st["rules"], messages, st["seed"], max_tokens)
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
    rules, seed = load_rules(args.weights)
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.state = {"rules": rules, "seed": seed, "requests": 0,  # type: ignore[attr-defined]
                    "lock": threading.Lock(),
                    "fingerprint": f"scripted-{digest}"}
    print(f"scripted LLM server listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
