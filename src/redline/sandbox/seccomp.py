"""The sandbox's seccomp filter: system calls that reach other processes or the kernel's
shared state fail with EPERM, as they do in a default Docker container.

Why a filter besides dropping every capability: a process without capabilities may still
`ptrace` or `pidfd_getfd` a process of its own uid, open a user namespace (where it holds every
capability again and may mount), and use kernel interfaces with a long record of privilege
escalation (bpf, userfaultfd, perf_event_open, keyrings, io_uring). An AI system told to keep
itself alive is the kind of program that tries. The program is classic BPF, assembled here
(no libseccomp needed), and handed to bubblewrap's `--seccomp FD`.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low 32 bits on little-endian).
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 \
    | 0x40000000
X32_BIT = 0x40000000

DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
          "perf_event_open", "bpf", "userfaultfd", "keyctl", "add_key", "request_key",
          "mount", "umount2", "pivot_root", "unshare", "setns", "open_tree", "move_mount",
          "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at",
          "open_by_handle_at", "kexec_load", "kexec_file_load", "init_module", "finit_module",
          "delete_module", "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog",
          "lookup_dcookie", "iopl", "ioperm")
# Answered "not implemented" so that libc falls back (glibc's clone3 -> clone) or programs
# go without (io_uring -> plain reads), as on an older kernel.
NOT_IMPLEMENTED = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")

ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {
        "clone": 56, "ptrace": 101, "syslog": 103, "pivot_root": 155, "acct": 163,
        "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
        "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176,
        "quotactl": 179, "lookup_dcookie": 212, "kexec_load": 246, "add_key": 248,
        "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
        "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308,
        "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
        "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
        "pidfd_getfd": 438, "mount_setattr": 442}),
    "aarch64": (0xC00000B7, {
        "lookup_dcookie": 18, "umount2": 39, "mount": 40, "pivot_root": 41, "quotactl": 60,
        "acct": 89, "unshare": 97, "kexec_load": 104, "init_module": 105,
        "delete_module": 106, "syslog": 116, "ptrace": 117, "reboot": 142, "add_key": 217,
        "request_key": 218, "keyctl": 219, "clone": 220, "swapon": 224, "swapoff": 225,
        "perf_event_open": 241, "name_to_handle_at": 264, "open_by_handle_at": 265,
        "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "finit_module": 273, "bpf": 280, "userfaultfd": 282, "kexec_file_load": 294,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "clone3": 435, "pidfd_getfd": 438, "mount_setattr": 442}),
}


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The filter for this machine's architecture, as bytes of `struct sock_filter`."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise RuntimeError(f"no seccomp filter for architecture {machine}")
    arch, nrs = ARCHES[machine]
    deny = _ERRNO | errno.EPERM
    out = [_ins(_LD_ABS, 4), _ins(_JEQ, arch, 1, 0), _ins(_RET, deny),  # another ABI: deny
           _ins(_LD_ABS, 0)]
    if machine == "x86_64":  # the x32 ABI shares the arch value: its numbers have bit 30
        out += [_ins(_JGE, X32_BIT, 0, 1), _ins(_RET, deny)]
    for names, ret in ((DENIED, deny), (NOT_IMPLEMENTED, _ERRNO | errno.ENOSYS)):
        for name in names:
            if name in nrs:
                out += [_ins(_JEQ, nrs[name], 0, 1), _ins(_RET, ret)]
    # clone(2) itself is every fork and thread; only its namespace flags are refused.
    out += [_ins(_JEQ, nrs["clone"], 0, 3), _ins(_LD_ABS, 16), _ins(_JSET, NS_FLAGS, 0, 1),
            _ins(_RET, deny), _ins(_RET, _ALLOW)]
    return b"".join(out)


def program_fd() -> int:
    """A memfd holding the filter, positioned at its start, for `bwrap --seccomp FD`."""
    fd = os.memfd_create("filter")  # close-on-exec; pass_fds hands it to bubblewrap
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def docker_profile(machine: str | None = None) -> dict[str, object]:
    """The same policy as a Docker seccomp profile (`--security-opt seccomp=FILE`): Docker
    takes rules, not a program, and libseccomp in runc compiles them. clone's namespace flags
    are refused one by one (a profile can only compare `(flags & mask) == value`)."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise RuntimeError(f"no seccomp filter for architecture {machine}")
    arch = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[machine]
    rules: list[dict[str, object]] = [
        {"names": list(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        {"names": list(NOT_IMPLEMENTED), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]
    for bit in range(32):
        flag = 1 << bit
        if NS_FLAGS & flag:
            rules.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": errno.EPERM,
                          "args": [{"index": 0, "value": flag, "valueTwo": flag,
                                    "op": "SCMP_CMP_MASKED_EQ"}]})
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch], "syscalls": rules}
