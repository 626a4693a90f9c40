"""The harness's channel to a sandbox's init: a sandbox that dies mid-request (a limit killed
it) is one SandboxError naming the cause, never a KeyError on an empty reply."""

from __future__ import annotations

import socket
import threading

import pytest

from redline.sandbox.channel import InitChannel
from redline.sandbox.errors import SandboxError


def test_init_that_closes_its_channel_mid_request_is_a_stated_error() -> None:
    ours, inits = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def init_dies() -> None:  # reads the request, then goes without a reply
        inits.recv(1 << 20)
        inits.close()

    t = threading.Thread(target=init_dies)
    t.start()
    channel = InitChannel(ours, lambda: "disk limit of 5 MiB")
    with pytest.raises(SandboxError, match=r"init is gone .*killed by disk limit of 5 MiB"):
        channel.spawn(["true"], "/", {}, {})
    t.join()
    channel.close()


def test_a_reply_comes_back_as_sent() -> None:
    ours, inits = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def init_answers() -> None:
        inits.recv(1 << 20)
        inits.send(b'{"pid": 7}')

    t = threading.Thread(target=init_answers)
    t.start()
    assert InitChannel(ours, lambda: None).spawn(["true"], "/", {}, {}) == 7
    t.join()
    ours.close()
    inits.close()
