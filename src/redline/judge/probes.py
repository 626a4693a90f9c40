"""HTTP probes into the sandbox's network namespace, by protocol rather than by process name."""

from __future__ import annotations

import ipaddress
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx

from redline.system.engines import METRIC_NAMES  # the engines' work counters

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


# What the short check sends: a plain request any HTTP server answers (404 will do).
_HTTP_CHECK = b"GET /v1/models HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"


def speaks_http(net: NetView, targets: dict[int, str], timeout: float = 3.0
                ) -> dict[int, str]:
    """A short check of many listeners at once, in one call into the namespace: port ->
    `http` (its answer begins as HTTP's does), `no HTTP: ...` (it closed without a byte, or
    answered something else: a torch TCPStore, an NCCL bootstrap socket), or `no answer in
    Ns` (kept: a busy server may answer a longer probe). Only a listener that shows it
    speaks no HTTP is dropped; none waits more than `timeout` in all."""

    def call() -> dict[int, str]:
        out: dict[int, str] = {}
        sel = selectors.DefaultSelector()
        bufs: dict[int, bytes] = {}
        for port, host in targets.items():
            addr = host.strip("[]")
            sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET,
                                 socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((addr, port))
            if err not in (0, 115):  # EINPROGRESS
                out[port] = f"no answer in {timeout:g} s (connect: {os.strerror(err)})"
                sock.close()
                continue
            sel.register(sock, selectors.EVENT_WRITE, (port, host))
        deadline = time.monotonic() + timeout
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                sock, (port, host) = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                done: str | None = None
                try:
                    if port not in bufs:  # connected (or failed): send the request
                        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            done = f"no answer in {timeout:g} s (connect: {os.strerror(err)})"
                        else:
                            sock.sendall(_HTTP_CHECK % host.encode())
                            bufs[port] = b""
                            sel.modify(sock, selectors.EVENT_READ, key.data)
                    else:
                        data = sock.recv(64)
                        bufs[port] += data
                        if not data:
                            done = "no HTTP: it closed the connection without a byte" \
                                if not bufs[port] else "no HTTP: " + repr(bufs[port][:16])
                        elif len(bufs[port]) >= 5:
                            done = "http" if bufs[port].startswith(b"HTTP/") else \
                                "no HTTP: it answered " + repr(bufs[port][:16])
                except OSError as exc:
                    done = f"no answer in {timeout:g} s ({exc.strerror or exc})"
                if done is not None:
                    out[port] = done
                    sel.unregister(sock)
                    sock.close()
        for key in list(sel.get_map().values()):
            out[key.data[0]] = f"no answer in {timeout:g} s"
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()
        return out

    return net.netns_call(call) if targets else {}


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
