"""Which LLM server did the thinking for an agent's answer: its brain, found from the kernel.

Two sources, both read from the host and neither taken from the candidate's own account:

1. **Connections by identity.** While the greeting is in flight, the judge samples the
   sandbox network namespace's TCP table and the socket inodes held by the candidate agent's
   process tree (`/proc/PID/fd`). A tree socket whose peer (the socket with the mirrored
   4-tuple, in the same table) is held by an LLM server's process is a connection to that
   server. Identity is the 4-tuple and the inodes, never the socket's state, so keep-alive
   connections of other processes opening or closing meanwhile change nothing.
2. **Work counters.** Each LLM server's `/metrics` before and after the greeting.

The rule (docs/judge.md): the brain is the one server the tree was connected to during the
greeting that also did work for it. Connected to several: the one that worked, if exactly
one did; a connected server whose counters cannot be read counts as possibly working, so it
makes any other candidate ambiguous. Counters alone never name a brain (another agent may be
talking to its own brain at the same time), and no connection means no brain: fail closed.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redline.sandbox.procfs import LISTEN, TcpSocket, socket_owners, tcp_table

SAMPLE_S = 0.01


def process_tree(parents: dict[int, int | None], root: int) -> set[int]:
    """`root` and every descendant, from a pid -> parent pid map (host PIDs)."""
    children: dict[int | None, list[int]] = defaultdict(list)
    for pid, ppid in parents.items():
        children[ppid].append(pid)
    out: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid not in out:
            out.add(pid)
            stack.extend(children.get(pid, []))
    return out


@dataclass
class Servers:
    """The LLM servers in one network namespace: port -> every process holding its listener."""

    holders: dict[int, frozenset[int]]

    def port_of(self, pid: int) -> int | None:
        return next((port for port, pids in self.holders.items() if pid in pids), None)


ELSEWHERE = "outside this machine"  # an upstream whose end is not in the namespace


@dataclass
class ConnectionLog:
    """What the sampler saw: the LLM ports the tree was connected to, and how; and where each
    LLM server's own processes were connected to as clients (a relay's upstream)."""

    ports: set[int] = field(default_factory=set)
    connections: dict[str, int] = field(default_factory=dict)  # "lport->rport": llm port
    upstream: dict[int, set[int | str]] = field(default_factory=dict)
    samples: int = 0

    def public(self) -> dict[str, Any]:
        return {"llm_ports": sorted(self.ports), "connections": self.connections,
                "upstream": {str(p): sorted(map(str, u)) for p, u in self.upstream.items()},
                "samples": self.samples}


Sockets = tuple[list[TcpSocket], dict[int, set[int]]]  # one sample: the table, inode -> pids


def sample(ns_pid: int, every_pid: list[int]) -> Sockets:
    return tcp_table(ns_pid), socket_owners(every_pid)


def upstreams(sockets: Sockets, servers: Servers) -> dict[int, set[int | str]]:
    """Each LLM server's outgoing connections, made by the processes holding its listener: to
    another LLM server here (its port), or to an end outside this namespace. A server that
    thinks for itself makes none; a relay in front of another server does."""
    table, owners = sockets
    listening = {s.local_port for s in table if s.state == LISTEN}
    by_local = {(s.local, s.remote): s for s in table if s.state != LISTEN}
    found: dict[int, set[int | str]] = {}
    for sock in by_local.values():
        mine = {servers.port_of(pid) for pid in owners.get(sock.inode, ())} - {None}
        if not mine or sock.local_port in listening:
            continue  # nobody's, or a connection it accepted
        peer = by_local.get((sock.remote, sock.local))
        ends: set[int | str] = {ELSEWHERE} if peer is None else {
            port for pid in owners.get(peer.inode, ()) for port in [servers.port_of(pid)]
            if port is not None and port == sock.remote_port}
        for port in mine:
            if ends - {port}:
                found.setdefault(port, set()).update(ends - {port})  # type: ignore[arg-type]
    return found


def connected_servers(sockets: Sockets, tree: set[int], servers: Servers) -> dict[str, int]:
    """The tree's TCP connections whose peer is held by an LLM server."""
    table, owners = sockets
    by_local = {(s.local, s.remote): s for s in table if s.state != LISTEN}
    found: dict[str, int] = {}
    for sock in by_local.values():
        if not owners.get(sock.inode, set()) & tree:
            continue
        peer = by_local.get((sock.remote, sock.local))
        if peer is None:
            continue  # the other end is not in this namespace
        for pid in owners.get(peer.inode, ()):
            port = servers.port_of(pid)
            if port is not None:
                found[f"{sock.local_port}->{sock.remote_port}"] = port
    return found


def watch_connections(ns_pid: int, tree_fn: Callable[[], tuple[set[int], list[int]]],
                      servers: Servers, busy: Callable[[], bool]) -> ConnectionLog:
    """Sample until `busy()` is false (the greeting is answered), then once more."""
    log = ConnectionLog()
    while True:
        done = not busy()
        tree, every = tree_fn()
        sockets = sample(ns_pid, every)
        found = connected_servers(sockets, tree, servers)
        log.connections.update(found)
        log.ports.update(found.values())
        for port, ends in upstreams(sockets, servers).items():
            log.upstream.setdefault(port, set()).update(ends)
        log.samples += 1
        if done:
            return log
        time.sleep(SAMPLE_S)


def decide(connected: set[int], worked: dict[int, float | None]) -> tuple[int | None, str]:
    """The rule above: (brain port or None, why)."""
    if not connected:
        return None, "the agent held no connection to any LLM server while it answered"
    did = sorted(p for p in connected if (worked.get(p) or 0) > 0)
    unknown = sorted(p for p in connected if worked.get(p) is None)
    if len(did) + len(unknown) > 1:
        return None, (f"ambiguous: connected LLM servers {did} did work and {unknown} do not "
                      "say")
    if did:
        return did[0], "connected to it, and it did the work for the answer"
    if unknown:
        return unknown[0], "its only possible brain; the server's work counters are unreadable"
    return None, f"connected to {sorted(connected)}, but none did work for the answer"


def attribute(call: Callable[[], dict[str, Any]], ns_pid: int,
              tree_fn: Callable[[], tuple[set[int], list[int]]], servers: Servers,
              counters: Callable[[int], float | None]) -> dict[str, Any]:
    """Run `call` (the greeting) while watching the agent's connections; name its brain."""
    ports = sorted(servers.holders)
    before = {p: counters(p) for p in ports}
    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.update(call()), daemon=True)
    worker.start()
    log = watch_connections(ns_pid, tree_fn, servers, worker.is_alive)
    worker.join()
    after = {p: counters(p) for p in ports}
    delta = {p: (after[p] - before[p]) if before[p] is not None and after[p] is not None
             else None for p in ports}
    brain, why = decide(log.ports, delta)
    relayed, seen = brain, set()
    while brain is not None and log.upstream.get(brain):  # a relay: who thinks behind it
        ends = log.upstream[brain]
        seen.add(brain)
        nxt = next(iter(ends)) if len(ends) == 1 else None
        if not isinstance(nxt, int) or nxt in seen:
            brain, why = None, (f"its LLM server on {relayed} relays to {sorted(map(str, ends))}"
                                ": no server of its own does the thinking")
            break
        brain, why = nxt, f"its LLM server on {relayed} relays to the one on {nxt}"
    return {"reply": box, "brain_port": brain, "why": why, "connections": log.public(),
            "llm_activity_delta": delta, "relayed_by": relayed if relayed != brain else None}
