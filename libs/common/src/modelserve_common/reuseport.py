"""Round-robin of new connections over the processes that share a port with SO_REUSEPORT.

By default the kernel picks the listening socket of a SO_REUSEPORT group by a hash of the
connection's addresses and ports, so two connections land on one process half the time. This
module attaches a tiny eBPF program to the group (SO_ATTACH_REUSEPORT_EBPF) that hands new
connections to the group's sockets in turn: connection k goes to socket k mod n. With n workers
and n client connections (or more) every worker gets its share, whatever the client's ports.

Loading an eBPF program needs CAP_BPF (or root, or ``kernel.unprivileged_bpf_disabled=0``).
When that is refused the kernel's hash stays in place and :func:`steer_round_robin` says why.
Linux on x86_64/arm64 only; elsewhere it is a no-op that says so.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
import struct
from collections.abc import Iterator

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_MAP_CREATE = 0
_BPF_PROG_LOAD = 5
_BPF_MAP_TYPE_ARRAY = 2
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_SO_ATTACH_REUSEPORT_EBPF = 52
_BPF_FUNC_MAP_LOOKUP_ELEM = 1
_NO_SOCKET = 0xFFFF_FFFF  # an index past the group: the kernel falls back to its hash


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _program(map_fd: int, n: int) -> bytes:
    """r0 = fetch_add(counter, 1) % n: the index of the socket that gets this connection."""
    return b"".join(
        [
            _insn(0x62, dst=10, off=-4, imm=0),  # *(u32 *)(r10 - 4) = 0   (key)
            _insn(0x18, dst=1, src=1, imm=map_fd),  # r1 = map (ld_imm64, pseudo map fd)
            _insn(0x00),
            _insn(0xBF, dst=2, src=10),  # r2 = r10
            _insn(0x07, dst=2, imm=-4),  # r2 += -4
            _insn(0x85, imm=_BPF_FUNC_MAP_LOOKUP_ELEM),  # r0 = &counter or NULL
            _insn(0x15, dst=0, off=5, imm=0),  # if r0 == 0 goto hash
            _insn(0xB7, dst=1, imm=1),  # r1 = 1
            _insn(0xDB, dst=0, src=1, imm=0x01),  # r1 = atomic_fetch_add((u64 *)r0, r1)
            _insn(0x97, dst=1, imm=n),  # r1 %= n
            _insn(0xBF, dst=0, src=1),  # r0 = r1
            _insn(0x95),  # exit
            _insn(0xB7, dst=0, imm=_NO_SOCKET & 0x7FFF_FFFF),  # hash: r0 = past the group
            _insn(0x95),
        ]
    )


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.syscall(_SYS_BPF[platform.machine()], cmd, attr, len(attr)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _load(n: int) -> int:
    """A loaded round-robin program for n sockets (its fd; the map lives as long as it does)."""
    attr = ctypes.create_string_buffer(struct.pack("<IIIII", _BPF_MAP_TYPE_ARRAY, 4, 8, 1, 0), 128)
    map_fd = _bpf(_BPF_MAP_CREATE, attr)
    try:
        code = _program(map_fd, n)
        insns = ctypes.create_string_buffer(code, len(code))
        license_ = ctypes.create_string_buffer(b"GPL")
        attr = ctypes.create_string_buffer(
            struct.pack(
                "<IIQQIIQ",
                _BPF_PROG_TYPE_SOCKET_FILTER,
                len(code) // 8,
                ctypes.addressof(insns),
                ctypes.addressof(license_),
                0,
                0,
                0,
            ),
            128,
        )
        return _bpf(_BPF_PROG_LOAD, attr)
    finally:
        os.close(map_fd)


def _listeners(port: int) -> Iterator[socket.socket]:
    """This process's listening TCP sockets on ``port`` (duplicates of their descriptors)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
            if listening and tcp and sock.getsockname()[1] == port:  # (a unix socket's name is a path)
                yield sock
                continue
        except OSError:
            pass
        sock.close()


def steer_round_robin(port: int, n: int) -> str | None:
    """Makes the SO_REUSEPORT group(s) of this process's listening sockets on ``port`` hand new
    connections to their ``n`` sockets in turn. None when done, else why not (the kernel's hash
    then stays). Any member may call it; the last call wins (its counter starts at 0)."""
    if n < 2:
        return None
    if platform.system() != "Linux" or platform.machine() not in _SYS_BPF:
        return f"round-robin steering needs Linux on {'/'.join(_SYS_BPF)}"
    try:
        prog = _load(n)
    except OSError as exc:
        return f"cannot load the eBPF program ({exc.strerror}; needs CAP_BPF)"
    try:
        found = False
        for sock in _listeners(port):
            with sock:
                sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_EBPF, prog)
                found = True
        return None if found else f"no listening socket on port {port} in this process"
    except OSError as exc:
        return f"cannot attach the eBPF program ({exc.strerror})"
    finally:
        os.close(prog)


def round_robin_available() -> bool:
    """Whether this process may load the steering program (else workers share by the hash)."""
    if platform.system() != "Linux" or platform.machine() not in _SYS_BPF:
        return False
    try:
        os.close(_load(2))
    except OSError:
        return False
    return True
