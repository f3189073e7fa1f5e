"""An sshd of the test's own on 127.0.0.1 (Debian's openssh-server, its own host key and config, no system
service), and an ssh-agent started by the test holding a key that exists nowhere else.

sshd insists on its privilege-separation directory /run/sshd. Rather than create it in the host's /run, the
daemon runs in a mount namespace of its own (unshare) with a private tmpfs on /run: the host is untouched."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.gitserver import free_port, wait_port
from support.procs import ToolError, require_tool, run, stop

SSHD = "/usr/sbin/sshd"


def require_sshd() -> None:
    """The tools these servers need (Debian: openssh-server, openssh-client, util-linux), or a ToolError saying
    what to install: a test that needs them fails rather than being skipped."""
    if not os.path.exists(SSHD):
        raise ToolError(f"{SSHD} is not installed (Debian: openssh-server); run scripts/install-deps.sh as root")
    for tool in ("ssh", "ssh-agent", "ssh-add", "ssh-keygen", "unshare", "ldd"):
        require_tool(tool)


@dataclass
class Agent:
    socket: Path
    pid: int
    public_key: str
    private_body: str  # the base64 body of the private key, to look for where it must not be


@dataclass
class Sshd:
    port: int
    agent: Agent
    ssh_command: str  # GIT_SSH_COMMAND for kiln's own git: the port, no host-key prompt, no config


def _keygen(path: Path) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kiln-tests", "-f", path])


@contextmanager
def ssh_agent(directory: Path) -> Iterator[Agent]:
    """An ssh-agent with one new key loaded; the key's file is deleted once loaded."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    _keygen(key)
    sock = directory / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.01)
        run(["ssh-add", "-q", key], env={"SSH_AUTH_SOCK": str(sock)})
        body = "".join(line for line in key.read_text().splitlines() if not line.startswith("-----"))
        public = (directory / "id_ed25519.pub").read_text().strip()
        key.unlink()
        (directory / "id_ed25519.pub").unlink()
        yield Agent(sock, proc.pid, public, body)
    finally:
        stop(proc)


@contextmanager
def sshd(directory: Path, agent: Agent) -> Iterator[Sshd]:
    """sshd on 127.0.0.1 accepting root with the agent's key only (and running its commands, git's too)."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "host_key"
    _keygen(host_key)
    authorized = directory / "authorized_keys"
    authorized.write_text(agent.public_key + "\n")
    port = free_port()
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {directory}/sshd.pid",
        f"AuthorizedKeysFile {authorized}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        "PrintMotd no", "LogLevel ERROR", "",
    ]))
    script = (f"mount -t tmpfs -o mode=0755 kiln-test-sshd /run && mkdir -m 0755 /run/sshd && "
              f"exec {SSHD} -D -e -f {config}")
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_port(port, proc)
        command = (f"ssh -F /dev/null -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                   "-o BatchMode=yes -o LogLevel=ERROR")
        yield Sshd(port, agent, command)
    finally:
        stop(proc)
        log.close()
