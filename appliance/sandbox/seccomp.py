"""The sandbox's seccomp filter, compiled by libseccomp (the system's libseccomp.so.2,
through a small ctypes layer: five functions, no variadic calls).

The filter allows by default and refuses, with an errno the caller sees, the system calls
that let code leave or widen a sandbox: namespaces (`setns`, `unshare`, `clone` with a
CLONE_NEW* flag, `clone3`, which glibc then replaces with `clone`), mounts, `ptrace` and
cross-process memory access, `bpf`, the kernel keyring, io_uring (its operations bypass
seccomp), perf events, module and kexec loading, terminal injection (`TIOCSTI`), and
sockets of every family but AF_UNIX, AF_INET/AF_INET6 (only the namespace's loopback
exists) and AF_NETLINK's routing protocol (what `if_nameindex` and `getifaddrs` use).
Calls of a foreign architecture (the 32-bit ABI) are killed, libseccomp's default.
bubblewrap loads the compiled program (`--seccomp FD`) after PR_SET_NO_NEW_PRIVS, just
before it executes the sandboxed program.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import socket

from appliance.errors import IsolationError

ACT_ALLOW = 0x7FFF0000
CMP_MASKED_EQ = 7  # (arg & datum_a) == datum_b
LOW32 = 0xFFFFFFFF

REFUSED = ("setns", "unshare", "ptrace", "process_vm_readv", "process_vm_writev",
           "kcmp", "pidfd_getfd", "mount", "umount2", "pivot_root", "chroot", "fsopen",
           "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
           "bpf", "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter",
           "io_uring_register", "perf_event_open", "userfaultfd", "open_by_handle_at",
           "name_to_handle_at", "init_module", "finit_module", "delete_module",
           "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "syslog",
           "acct", "quotactl", "setdomainname", "sethostname", "personality")
CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
             0x40000000)  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
ALLOWED_FAMILIES = frozenset({int(socket.AF_UNIX), int(socket.AF_INET),
                              int(socket.AF_INET6), int(socket.AF_NETLINK)})
AF_MAX = 46
NETLINK_ROUTE, NETLINK_MAX = 0, 32
TERMINAL_IOCTLS = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def errno_action(code: int) -> int:
    """SCMP_ACT_ERRNO(code): the call fails with `code` and has no effect."""
    return 0x00050000 | (code & 0xFFFF)


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        raise IsolationError("libseccomp is not installed", where="sandbox seccomp filter",
                             hint="install the distribution's libseccomp2 package") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


class _Filter:
    """A libseccomp filter context being built."""

    def __init__(self) -> None:
        self.lib = _lib()
        self.ctx = self.lib.seccomp_init(ACT_ALLOW)
        if not self.ctx:
            raise IsolationError("libseccomp could not create a filter",
                                 where="sandbox seccomp filter")

    def refuse(self, name: str, code: int, *conditions: tuple[int, int, int, int]) -> None:
        number = self.lib.seccomp_syscall_resolve_name(name.encode("ascii"))
        if number < 0:  # not a system call of this architecture (or this libseccomp)
            return
        args = (ArgCmp * max(len(conditions), 1))(*(ArgCmp(*c) for c in conditions))
        rc = self.lib.seccomp_rule_add_array(self.ctx, errno_action(code), number,
                                             len(conditions), args)
        if rc < 0:
            raise IsolationError(f"libseccomp refused the rule for {name}: "
                                 f"{os.strerror(-rc)}", where="sandbox seccomp filter")

    def export(self) -> bytes:
        read_fd, write_fd = os.pipe()
        try:
            rc = self.lib.seccomp_export_bpf(self.ctx, write_fd)
            os.close(write_fd)
            write_fd = -1
            if rc < 0:
                raise IsolationError(f"libseccomp could not compile the filter: "
                                     f"{os.strerror(-rc)}", where="sandbox seccomp filter")
            chunks = []
            while chunk := os.read(read_fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)

    def release(self) -> None:
        self.lib.seccomp_release(self.ctx)


@functools.lru_cache(maxsize=1)
def program() -> bytes:
    """The compiled BPF program (struct sock_filter[]), for bubblewrap's --seccomp."""
    flt = _Filter()
    try:
        for name in REFUSED:
            flt.refuse(name, errno.EPERM)
        flt.refuse("clone3", errno.ENOSYS)
        for flag in CLONE_NEW:
            flt.refuse("clone", errno.EPERM, (0, CMP_MASKED_EQ, flag, flag))
        # int arguments are compared on their low 32 bits, as the kernel reads them (a
        # value with high bits set must not slip past an equality test)
        for family in range(AF_MAX):  # the kernel knows no family from AF_MAX on
            if family not in ALLOWED_FAMILIES:
                flt.refuse("socket", errno.EAFNOSUPPORT, (0, CMP_MASKED_EQ, LOW32, family))
        netlink = (0, CMP_MASKED_EQ, LOW32, int(socket.AF_NETLINK))
        for protocol in range(NETLINK_ROUTE + 1, NETLINK_MAX):
            flt.refuse("socket", errno.EPROTONOSUPPORT, netlink,
                       (2, CMP_MASKED_EQ, LOW32, protocol))
        for request in TERMINAL_IOCTLS:
            flt.refuse("ioctl", errno.EPERM, (1, CMP_MASKED_EQ, LOW32, request))
        return flt.export()
    finally:
        flt.release()


def memfd() -> int:
    """A memory file (close-on-exec) holding the program, positioned at its start (the
    caller passes it to bubblewrap and closes it)."""
    fd = os.memfd_create("appliance-seccomp")
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
