"""HTTP probes into the sandbox's network namespace, by protocol rather than by process name."""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Callable
from typing import Any, Protocol

import httpx

METRIC_NAMES = re.compile(
    r"^(llamacpp:prompt_tokens_total|llamacpp:tokens_predicted_total|scripted:requests_total|"
    r"vllm:request_success_total|vllm:prompt_tokens_total)(\{[^}]*\})?\s+([0-9.eE+-]+)",
    re.M,
)


_local = threading.local()


def _client() -> httpx.Client:
    """One client per thread: the netns worker thread's sockets live in the sandbox's network,
    and building a client (SSL context) per probe costs tens of milliseconds. No connection is
    kept alive: an idle one would sit in the sandbox's TCP table with no process inside owning
    it, a sign of someone watching from outside."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(
            verify=False, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))
    return client


class NetView(Protocol):
    def netns_call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...


def probe_host(kernel_addr: str | None) -> str:
    """Where a listener is reached from inside its namespace, from the address it is bound to
    (hex, as /proc/net/tcp writes it): the wildcard and loopback via loopback, anything else at
    its own address (a replica bound only to the link to another host is still found)."""
    if not kernel_addr:
        return "127.0.0.1"
    raw = bytes.fromhex(kernel_addr)
    if len(raw) == 4:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(raw[::-1])
    else:  # four host-order 32-bit words
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        if ip.ipv4_mapped:
            ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "[::1]"
    return str(ip) if ip.version == 4 else f"[{ip}]"


def request(net: NetView, method: str, port: int, path: str, *, json: Any = None,
            timeout: float = 5.0, host: str = "127.0.0.1") -> dict[str, Any]:
    """One HTTP exchange inside the sandbox, returned as a transcript (never raises)."""

    def call() -> dict[str, Any]:
        url = f"http://{host}:{port}{path}"
        try:
            resp = _client().request(method, url, json=json, timeout=timeout)
            try:
                body: Any = resp.json()
            except ValueError:
                body = resp.text[:2000]
            return {"method": method, "url": url, "status": resp.status_code, "body": body}
        except httpx.HTTPError as exc:
            return {"method": method, "url": url, "status": None, "error": repr(exc)}

    return net.netns_call(call)


def is_llm_server(net: NetView, port: int, host: str = "127.0.0.1"
                  ) -> tuple[bool, dict[str, Any]]:
    """An OpenAI-compatible server answers /v1/models or a one-token chat completion."""
    r = request(net, "GET", port, "/v1/models", timeout=3, host=host)
    if r.get("status") == 200 and isinstance(r.get("body"), dict) and "data" in r["body"]:
        return True, r
    r = request(net, "POST", port, "/v1/chat/completions", timeout=10, host=host, json={
        "model": "local", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]})
    ok = r.get("status") == 200 and isinstance(r.get("body"), dict) and "choices" in r["body"]
    return ok, r


def activity(net: NetView, port: int, host: str = "127.0.0.1") -> float | None:
    """Request/token counters from /metrics: they rise when the server does real work."""
    r = request(net, "GET", port, "/metrics", timeout=3, host=host)
    if r.get("status") != 200 or not isinstance(r.get("body"), str):
        return None
    values = [float(m.group(3)) for m in METRIC_NAMES.finditer(r["body"])]
    return sum(values) if values else None


def greet(net: NetView, port: int, timeout: float, host: str = "127.0.0.1") -> dict[str, Any]:
    return request(net, "POST", port, "/chat", json={"message": "Hello!"}, timeout=timeout,
                   host=host)
