"""The runtime config follows what the namespace kiln runs in allows (rootless builds): checked on the config
here; the builds themselves in tests/rootless."""

from __future__ import annotations

from typing import Any

from kiln.sandbox.ocispec import Confinement, _proc_masked, runtime_config


def _config(confinement: Confinement, network: str = "host") -> dict[str, Any]:
    return runtime_config(rootfs="/r", argv=["true"], env={}, uid=0, gid=0, groups=[], cwd="/", hostname="h",
                          network=network, mounts=[], confinement=confinement)  # type: ignore[arg-type]  # fmt: skip


def _mounts(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in config["mounts"]}


def test_on_the_host_fresh_proc_and_sysfs_and_every_namespace() -> None:
    config = _config(Confinement())
    mounts = _mounts(config)
    assert (mounts["/proc"]["type"], mounts["/sys"]["type"]) == ("proc", "sysfs")
    assert "gid=5" in mounts["/dev/pts"]["options"]
    assert {n["type"] for n in config["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount"}


def test_in_a_user_namespace_sys_is_bound_unless_the_step_has_its_own_network() -> None:
    assert _mounts(_config(Confinement(user_namespace=True)))["/sys"]["source"] == "/sys"
    assert "rbind" in _mounts(_config(Confinement(user_namespace=True)))["/sys"]["options"]
    assert _mounts(_config(Confinement(user_namespace=True), "none"))["/sys"]["type"] == "sysfs"


def test_an_unmapped_tty_group_is_not_asked_for() -> None:
    assert not any(o.startswith("gid=") for o in
                   _mounts(_config(Confinement(True, tty_gid_mapped=False)))["/dev/pts"]["options"])  # fmt: skip


def test_a_masked_proc_is_bound_and_the_pid_namespace_shared() -> None:
    config = _config(Confinement(True, True, proc_masked=True))
    proc = _mounts(config)["/proc"]
    assert (proc["source"], proc["type"]) == ("/proc", "none") and "rbind" in proc["options"]
    assert "pid" not in {n["type"] for n in config["linux"]["namespaces"]}


def test_masked_proc_is_read_from_mountinfo(tmp_path: Any) -> None:
    line = "{id} 1 0:1 / {point} rw - {fs} {fs} rw\n"
    info = tmp_path / "mountinfo"
    info.write_text(line.format(id=1, point="/proc", fs="proc")
                    + line.format(id=2, point="/proc/sys/fs/binfmt_misc", fs="binfmt_misc"))  # fmt: skip
    assert not _proc_masked(str(info))
    info.write_text(info.read_text() + line.format(id=3, point="/proc/kcore", fs="devtmpfs"))
    assert _proc_masked(str(info))
