"""OpenAI-compatible chat client for the system's own LLM server (llama-server, vLLM, scripted)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx


class LLMError(Exception):
    """The LLM server could not answer (down, crashed, timed out, or sent garbage)."""


class ContextOverflow(LLMError):
    """The request did not fit the server's context window."""


@dataclass
class Completion:
    text: str
    usage: dict[str, Any] = field(default_factory=dict)
    latency_s: float = 0.0
    # Native tool calls as the server sent them ({id, type, function: {name, arguments}}),
    # each given an id if it had none, so every call can be answered by its own tool message.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    reasoning: str | None = None  # a reasoning model's separate thinking, where sent apart


def _tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for k, call in enumerate(message.get("tool_calls") or []):
        if not isinstance(call, dict):
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        calls.append({"id": str(call.get("id") or f"call_{k}"), "type": "function",
                      "function": {"name": function.get("name"),
                                   "arguments": function.get("arguments")}})
    return calls


class LLMClient:
    def __init__(self, endpoint: str, model: str = "local", timeout_s: float = 600.0,
                 sampling: dict[str, Any] | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.sampling = dict(sampling or {})
        # One persistent connection to the LLM server, reused for every call.
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0))

    def chat(self, messages: list[dict[str, Any]], **overrides: Any) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "cache_prompt": True}
        body.update(self.sampling)
        body.update(overrides)
        start = time.monotonic()
        try:
            resp = self.client.post(f"{self.endpoint}/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise LLMError(f"LLM server at {self.endpoint} unreachable: {exc!r}") from exc
        latency = time.monotonic() - start
        if resp.status_code != 200:
            text = resp.text[:500]
            if resp.status_code == 400 and ("context" in text.lower() or "exceed" in text.lower()):
                raise ContextOverflow(text)
            raise LLMError(f"LLM server returned HTTP {resp.status_code}: {text}")
        try:
            data = resp.json()
            message = data["choices"][0]["message"]
            content = message.get("content") or ""
            calls = _tool_calls(message)
            reasoning = message.get("reasoning_content") or message.get("reasoning")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"malformed LLM response: {resp.text[:300]!r}") from exc
        usage = dict(data.get("usage") or {})
        timings = data.get("timings") or {}
        details = usage.get("prompt_tokens_details") or {}
        cached = timings.get("cache_n", details.get("cached_tokens"))
        processed = timings.get("prompt_n")
        if processed is None and cached is not None and "prompt_tokens" in usage:
            processed = usage["prompt_tokens"] - cached
        return Completion(
            text=content,
            usage={
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": usage.get("completion_tokens"),
                "total_tokens": usage.get("total_tokens"),
                "cached_tokens": cached,
                "processed_prompt_tokens": processed,
            },
            latency_s=latency,
            tool_calls=calls,
            reasoning=str(reasoning) if reasoning else None,
        )
