"""The seccomp filter of a RUN step: the same system calls Docker's default profile allows, as the
`linux.seccomp` section of an OCI runtime config.

The rules are Docker's (moby's profiles/seccomp/default.json): an allowlist, everything else fails with EPERM;
calls that need a capability kiln does not give (mount, unshare, setns, bpf, keyctl's kin, module loading,
reboot, clock setting, ...) are allowed only when the step holds that capability, which only
`RUN --security=insecure` does. Namespace flags of clone() are refused, and clone3() answers ENOSYS, whose
flags a filter cannot read, so that libc falls back to clone(). The lists below are written out here rather than
read from the host, because the profile that Debian ships (containers-common) is podman's, which allows mount
and unshare to every container.
"""

from __future__ import annotations

import platform
from collections.abc import Collection
from typing import Any


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Always allowed (ptrace and process_vm_* need a kernel >= 4.8, which kiln needs for overlay anyway).
_ALLOWED = _names(
    """
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime
    clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
    clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create
    epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
    execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
    fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
    fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
    futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
    getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
    getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
    getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
    inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
    io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
    io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
    lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
    madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
    mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
    mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
    name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal
    pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
    prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
    readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename
    renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
    rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
    sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
    sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
    setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
    setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
    set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
    signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink
    symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
    timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
    timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask
    uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write
    writev ptrace process_vm_readv process_vm_writev
    """
)

# Allowed only to a step that holds the capability.
_BY_CAPABILITY: dict[str, frozenset[str]] = {
    "CAP_DAC_READ_SEARCH": frozenset({"open_by_handle_at"}),
    "CAP_SYS_ADMIN": _names(
        """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr
        move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount
        umount2 unshare"""
    ),
    "CAP_SYS_BOOT": frozenset({"reboot"}),
    "CAP_SYS_CHROOT": frozenset({"chroot"}),
    "CAP_SYS_MODULE": frozenset({"delete_module", "init_module", "finit_module"}),
    "CAP_SYS_PACCT": frozenset({"acct"}),
    "CAP_SYS_PTRACE": frozenset({"kcmp", "pidfd_getfd", "process_madvise"}),
    "CAP_SYS_RAWIO": frozenset({"iopl", "ioperm"}),
    "CAP_SYS_TIME": frozenset({"settimeofday", "stime", "clock_settime", "clock_settime64"}),
    "CAP_SYS_TTY_CONFIG": frozenset({"vhangup"}),
    "CAP_SYS_NICE": frozenset({"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}),
    "CAP_SYSLOG": frozenset({"syslog"}),
    "CAP_BPF": frozenset({"bpf"}),
    "CAP_PERFMON": frozenset({"perf_event_open"}),
}

# Calls of one architecture family, keyed by `platform.machine()`.
_BY_MACHINE: dict[str, frozenset[str]] = {
    "x86_64": frozenset({"arch_prctl", "modify_ldt"}),
    "aarch64": frozenset({"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                          "cacheflush", "set_tls"}),
    "ppc64le": frozenset({"sync_file_range2", "swapcontext"}),
    "s390x": frozenset({"s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"}),
    "riscv64": frozenset({"riscv_flush_icache"}),
}

# The native architecture and the compat ones its kernel also runs (a 32-bit binary must not escape the filter).
_ARCHITECTURES: dict[str, list[str]] = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}

# personality(2) values a build may need: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

_AF_VSOCK = 40
_EPERM = 1
_ENOSYS = 38
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
_CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000


def _arg(index: int, value: int, op: str) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": 0, "op": op}


def seccomp_profile(capabilities: Collection[str], machine: str | None = None) -> dict[str, Any]:
    """The `linux.seccomp` section for a step holding `capabilities` on `machine` (default: this one)."""
    machine = machine or platform.machine()
    allowed = set(_ALLOWED) | _BY_MACHINE.get(machine, frozenset())
    for cap, names in _BY_CAPABILITY.items():
        if cap in capabilities:
            allowed |= names
    rules: list[dict[str, Any]] = [{"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"}]
    rules.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [_arg(0, _AF_VSOCK, "SCMP_CMP_NE")]})
    rules += [{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [_arg(0, p, "SCMP_CMP_EQ")]}
              for p in _PERSONALITIES]
    if "CAP_SYS_ADMIN" not in capabilities:
        # s390 passes clone's flags second.
        flags_index = 1 if machine == "s390x" else 0
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [_arg(flags_index, _CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")]})
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": _EPERM,
        "architectures": _ARCHITECTURES.get(machine, []),
        "syscalls": rules,
    }
