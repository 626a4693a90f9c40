"""A deterministic stand-in LLM server (OpenAI-compatible), whose "weights" are a YAML file.

The YAML is a list of rules {match: substring of the first user message (optional),
responses: [reply, ...]}, or a mapping {rules: [...], seed: "..."}. The first matching rule
answers with responses[k], k being the number of assistant messages in the request; past the
end, or with no matching rule, it finishes with "Hello! How can I help you today?".

It speaks every protocol the agent does, so every control runs under each: a reply is text
(its action the JSON block after "Action:") or a mapping {content, tool_calls: [{name,
arguments}]}. A request with `tools` (native tool calling) gets the action as a tool call and
the rest as content; one without gets text. A `grammar` (constrained) is accepted and counted.

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
import os
import subprocess
import sys
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


class WeightsError(ValueError):
    """Weights that do not fit the schema; the message names the file, the line and what was
    expected. Weights are checked with this same code before the server is ever started."""


def _line(path: Path, node: yaml.Node) -> str:
    return f"{path}, line {node.start_mark.line + 1}"


def _is_str(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"


def _keys(path: Path, node: yaml.Node, what: str, allowed: tuple[str, ...],
          required: tuple[str, ...] = ()) -> dict[str, yaml.Node]:
    """A mapping's values by key; unknown and missing keys are errors."""
    found: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else "?"
        if name not in allowed:
            raise WeightsError(f"{_line(path, key)}: {what} has an unknown key {name!r}; "
                               f"expected {', '.join(allowed)}")
        found[name] = value
    for name in required:
        if name not in found:
            raise WeightsError(f"{_line(path, node)}: {what} has no {name!r}")
    return found


def _check_tool_call(path: Path, node: yaml.Node, what: str) -> None:
    if not isinstance(node, yaml.MappingNode):
        raise WeightsError(f"{_line(path, node)}: {what}: expected a mapping "
                           "{name: ..., arguments: ...}")
    keys = _keys(path, node, what, ("name", "arguments"), ("name",))
    if not _is_str(keys["name"]):
        raise WeightsError(f"{_line(path, keys['name'])}: {what}.name: expected a string")
    arguments = keys.get("arguments")
    if arguments is not None and not (_is_str(arguments) or isinstance(arguments,
                                                                         yaml.MappingNode)):
        raise WeightsError(f"{_line(path, arguments)}: {what}.arguments: expected a string "
                           "(JSON) or a mapping")


def _check_response(path: Path, node: yaml.Node, what: str) -> None:
    """A reply: a string, or a mapping {content: str, tool_calls: [{name, arguments}]}."""
    if _is_str(node):
        return
    if not isinstance(node, yaml.MappingNode):
        raise WeightsError(f"{_line(path, node)}: {what}: expected a string, or a mapping "
                           "{content: ..., tool_calls: [...]}")
    keys = _keys(path, node, what, ("content", "tool_calls"))
    if not keys:
        raise WeightsError(f"{_line(path, node)}: {what}: expected content or tool_calls")
    content = keys.get("content")
    if content is not None and not _is_str(content):
        raise WeightsError(f"{_line(path, content)}: {what}.content: expected a string")
    calls = keys.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, yaml.SequenceNode):
            raise WeightsError(f"{_line(path, calls)}: {what}.tool_calls: expected a list")
        for j, call in enumerate(calls.value):
            _check_tool_call(path, call, f"{what}.tool_calls[{j}]")


def _check_rule(path: Path, node: yaml.Node, i: int) -> None:
    what = f"rule {i}"
    if not isinstance(node, yaml.MappingNode):
        raise WeightsError(f"{_line(path, node)}: {what}: expected a mapping "
                           "{match: ..., responses: [...]}")
    keys = _keys(path, node, what, ("match", "responses"), ("responses",))
    match = keys.get("match")
    if match is not None and not _is_str(match):
        raise WeightsError(f"{_line(path, match)}: {what}.match: expected a string")
    responses = keys["responses"]
    if not isinstance(responses, yaml.SequenceNode):  # empty: always the default finish
        raise WeightsError(f"{_line(path, responses)}: {what}.responses: expected a list of "
                           "replies")
    for k, reply in enumerate(responses.value):
        _check_response(path, reply, f"{what}.responses[{k}]")


def check_weights(path: Path, text: str) -> None:
    """The one schema of scripted weights: a list of rules, or {rules: [...], seed: ...}; a
    rule is {match: str (optional), responses: [reply, ...]}, a reply a string or
    {content: str, tool_calls: [{name: str, arguments: str or mapping}]}. Raises WeightsError."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        raise WeightsError(f"{where}: not valid YAML: "
                           f"{getattr(exc, 'problem', None) or exc}") from None
    expected = "expected a list of rules, or a mapping {rules: [...], seed: ...}"
    if root is None:
        raise WeightsError(f"{path}: the file is empty; {expected}")
    rules = root
    if isinstance(root, yaml.MappingNode):
        keys = _keys(path, root, "the top level", ("rules", "seed"), ("rules",))
        rules = keys["rules"]
        seed = keys.get("seed")
        if seed is not None and not isinstance(seed, yaml.ScalarNode):
            raise WeightsError(f"{_line(path, seed)}: seed: expected a string or a number")
    if not isinstance(rules, yaml.SequenceNode):
        raise WeightsError(f"{_line(path, rules)}: {expected}")
    if not rules.value:
        raise WeightsError(f"{_line(path, rules)}: holds no rules; {expected}")
    for i, rule in enumerate(rules.value):
        _check_rule(path, rule, i)


def load_rules(path: Path) -> tuple[list[dict], str]:
    """(rules, seed) from the weights file, checked against the schema (check_weights)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: cannot read: {exc}") from None
    check_weights(path, text)
    data = yaml.safe_load(text)
    seed = None
    if isinstance(data, dict):
        seed = data.get("seed")
        data = data["rules"]
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


def split_action(text: str) -> tuple[str, list[dict]]:
    """(content, tool calls) of a text reply: its last JSON block after "Action:" as a call."""
    head, sep, tail = text.rpartition("Action:")
    start = tail.find("{") if sep else -1
    if start < 0:
        return text, []
    try:
        obj, _end = json.JSONDecoder().raw_decode(tail[start:])
    except json.JSONDecodeError:
        return text, []
    if not isinstance(obj, dict) or "action" not in obj:
        return text, []
    return head.rstrip(), [{"name": obj["action"], "arguments": obj.get("action_input") or {}}]


def message_for(reply: object, native: bool) -> dict:
    """The assistant message for a reply (text or mapping), as this request's protocol wants."""
    if isinstance(reply, dict):
        content = str(reply.get("content") or "")
        calls = list(reply.get("tool_calls") or [])
    else:
        content, calls = (split_action(str(reply)) if native else (str(reply), []))
    if not native:
        if calls:
            call = calls[0]
            args = call.get("arguments")
            args = json.loads(args) if isinstance(args, str) else args
            content += "\nAction: " + json.dumps({"action": call.get("name"),
                                                  "action_input": args})
        return {"role": "assistant", "content": content}
    message: dict = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{k}", "type": "function",
             "function": {"name": c.get("name"),
                          "arguments": c["arguments"] if isinstance(c.get("arguments"), str)
                          else json.dumps(c.get("arguments") or {})}}
            for k, c in enumerate(calls)]
    return message


def reply_for(rules: list[dict], messages: list[dict], seed: str = "",
              max_tokens: int = 16) -> object:
    first_user = next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
    k = sum(1 for m in messages if m.get("role") == "assistant")
    plain = not any(m.get("role") == "system" for m in messages)
    for rule in rules:
        match = rule.get("match")
        if match is None and plain:
            continue
        if match is None or str(match) in first_user:
            responses = rule.get("responses") or []
            reply = responses[k] if k < len(responses) else DEFAULT
            return reply if isinstance(reply, dict) else str(reply)
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
            self._send(200, "".join(f"scripted:{name}_total {st[name]}\n" for name in
                                    ("requests", "tools_requests", "grammar_requests")),
                       "text/plain")
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
        native = bool(body.get("tools"))
        with st["lock"]:
            st["requests"] += 1
            st["tools_requests"] += native
            st["grammar_requests"] += bool(body.get("grammar"))
        max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else 16
        message = message_for(reply_for(st["rules"], messages, st["seed"], max_tokens), native)
        prompt_tokens = (sum(len(str(m.get("content", ""))) for m in messages)
                         + len(json.dumps(body.get("tools") or ""))) // 4
        completion_tokens = max(1, len(json.dumps(message)) // 4)
        self._send(200, {
            "id": f"chatcmpl-{st['requests']}", "object": "chat.completion",
            "created": int(time.time()), "model": "local",
            "system_fingerprint": st["fingerprint"],
            "choices": [{"index": 0,
                         "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                         "message": message}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


# ----- the GPU-shaped mode: a stand-in for vLLM at tensor parallelism > 1 -------------------
# Seen from outside, it behaves like such a server. The API process
# binds its port at once but listens only once loaded; it starts an engine-core process, which
# starts one worker per rank. Each worker takes its GPU (the rank-th of CUDA_VISIBLE_DEVICES,
# counted over the /dev/nvidiaN nodes it can see, as CUDA counts them) where there are any,
# and fails as CUDA does when that GPU is missing or another process holds it (a copy on busy
# GPUs fails to start, as vLLM does short of memory; at a memory utilization of one half or
# less two copies share a GPU); it maps the weights beside the rules, makes a shared-memory
# segment, and opens an internal listening socket that speaks no HTTP (rank 0 a second one, a
# TCPStore's), logging every connection it receives as NCCL logs "wrong magic". Each process
# dies with its parent.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def map_weights(folder: Path) -> list[object]:
    """Map every weight file beside the rules, read-only (a sparse file maps as it is)."""
    import mmap  # noqa: PLC0415 - the GPU-shaped mode only

    maps = []
    for path in sorted(folder.glob("*")):
        if path.suffix in WEIGHT_SUFFIXES and path.is_file() and path.stat().st_size:
            with open(path, "rb") as fh:
                maps.append(mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ))
    return maps


def internal_listener(rank: int, what: str, log: Path) -> None:
    """A listening socket that speaks no HTTP: it logs each connection and closes it."""
    import socket  # noqa: PLC0415

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        while True:
            conn, peer = srv.accept()
            with open(log, "a") as fh:
                fh.write(f"rank {rank} {what} on port {port}: a connection from {peer[0]}:"
                         f"{peer[1]}: wrong magic\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()


def _die_with_parent() -> None:
    import ctypes  # noqa: PLC0415
    import signal  # noqa: PLC0415

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def take_gpu(rank: int, utilization: float) -> object | None:
    """The rank-th visible GPU's device node, held open and locked for as long as the worker
    runs (None where the process sees no GPU at all: the CPU-only simulation)."""
    import fcntl  # noqa: PLC0415
    import re  # noqa: PLC0415

    nodes = sorted((p for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)),
                   key=lambda p: int(p.name[6:]))
    if not nodes:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    order = [int(x) for x in visible.split(",") if x.strip().isdigit()] if visible is not None \
        else list(range(len(nodes)))
    if rank >= len(order) or order[rank] >= len(nodes):
        raise SystemExit(f"RuntimeError: CUDA error: invalid device ordinal (rank {rank}; "
                         f"CUDA_VISIBLE_DEVICES={visible!r}; {len(nodes)} GPUs visible)")
    node = open(nodes[order[rank]], "rb")  # noqa: SIM115 - held for ever
    try:
        fcntl.flock(node, (fcntl.LOCK_SH if utilization <= 0.5 else fcntl.LOCK_EX)
                    | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit(f"torch.OutOfMemoryError: CUDA out of memory. GPU {order[rank]} is in "
                         "use by another process; free memory is less than the desired GPU "
                         f"memory utilization ({utilization}).") from None
    return node


def worker(rank: int, weights: Path, utilization: float, log: Path) -> None:
    from multiprocessing import shared_memory  # noqa: PLC0415

    _die_with_parent()
    held = take_gpu(rank, utilization)
    maps = map_weights(weights.parent)
    shm = shared_memory.SharedMemory(create=True, size=1 << 20,
                                     name=f"psm_{os.getpid():x}{rank}")
    internal_listener(rank, "worker", log)
    if rank == 0:
        internal_listener(rank, "store", log)
    _ = (held, maps, shm)
    print("ready", flush=True)
    threading.Event().wait()


def engine_core(args: argparse.Namespace) -> None:
    """Starts the workers, says `ready` once all are, and exits if any fails."""
    _die_with_parent()
    workers = [subprocess.Popen(
        [sys.executable, __file__, "--worker", str(rank), "--weights", str(args.weights),
         "--gpu-memory-utilization", str(args.gpu_memory_utilization), "--log", str(args.log)],
        stdout=subprocess.PIPE, text=True) for rank in range(args.tensor_parallel)]
    for proc in workers:
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"engine core: worker {workers.index(proc)} failed to start "
                             f"(exit {proc.wait()})")
    print("ready", flush=True)
    while all(p.poll() is None for p in workers):  # noqa: ASYNC110
        time.sleep(0.5)
    raise SystemExit("engine core: a worker died")


def load(args: argparse.Namespace) -> subprocess.Popen | None:
    """The load phase (the API port bound, not listening): the engine core and its workers
    up, and at least `--load-s` seconds. Exits as vLLM does if they fail."""
    t0 = time.monotonic()
    core = None
    if args.tensor_parallel > 1 or args.load_s > 0:
        core = subprocess.Popen([sys.executable, __file__, "--engine-core", "--weights",
                                 str(args.weights), "--tensor-parallel", str(args.tensor_parallel),
                                 "--gpu-memory-utilization", str(args.gpu_memory_utilization),
                                 "--log", str(args.log)], stdout=subprocess.PIPE, text=True)
        if core.stdout is None or core.stdout.readline().strip() != "ready":
            raise SystemExit(f"RuntimeError: Engine core initialization failed (exit "
                             f"{core.wait()}). See root cause above.")
    time.sleep(max(0.0, args.load_s - (time.monotonic() - t0)))
    return core


def main() -> None:
    parser = argparse.ArgumentParser(description="Scripted stand-in LLM server.")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8760)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tensor-parallel", type=int, default=1,
                        help="above 1: the GPU-shaped mode, with this many workers")
    parser.add_argument("--load-s", type=float, default=0.0,
                        help="seconds the API port is bound but not listening, weights mapped")
    parser.add_argument("--import-s", type=float, default=0.0,
                        help="seconds before anything is bound or mapped (vLLM's imports)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--log", type=Path, default=Path(os.devnull),
                        help="where the workers log what reaches them")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--engine-core", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.weights, args.gpu_memory_utilization, args.log)
        return
    if args.engine_core:
        engine_core(args)
        return
    time.sleep(args.import_s)
    try:
        rules, seed = load_rules(args.weights)
    except WeightsError as exc:
        raise SystemExit(str(exc)) from None
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]
    shaped = args.tensor_parallel > 1 or args.load_s > 0
    server = ThreadingHTTPServer((args.host, args.port), Handler,
                                 bind_and_activate=not shaped)
    if shaped:  # bound now, listening once loaded
        server.server_bind()
        core = load(args)
        server.server_activate()
        if core is not None:  # the API server goes when its engine does
            threading.Thread(target=lambda: (core.wait(), os._exit(1)), daemon=True).start()
    server.daemon_threads = True
    server.state = {"rules": rules, "seed": seed, "requests": 0,  # type: ignore[attr-defined]
                    "tools_requests": 0, "grammar_requests": 0,
                    "lock": threading.Lock(),
                    "fingerprint": f"scripted-{digest}"}
    print(f"scripted LLM server listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
