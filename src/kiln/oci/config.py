"""The image configuration: runtime defaults (Env, Cmd, ...), the rootfs diff_ids, and the history.

Fields kiln does not model are kept in ``extra`` so a base image's config survives a round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from kiln.errors import ImageFormatError
from kiln.oci.canonical import canonical_json, load_json_object
from kiln.oci.digest import validate_digest
from kiln.oci.platform import Platform


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]  # ("NONE",), ("CMD", ...), ("CMD-SHELL", "...")
    interval: int = 0  # nanoseconds, as the Docker config stores durations
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"Test": list(self.test)}
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("StartInterval", self.start_interval),
            ("Retries", self.retries),
        ):
            if value:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Healthcheck:
        return cls(
            tuple(d.get("Test") or ()),
            int(d.get("Interval") or 0),
            int(d.get("Timeout") or 0),
            int(d.get("StartPeriod") or 0),
            int(d.get("StartInterval") or 0),
            int(d.get("Retries") or 0),
        )


@dataclass(frozen=True)
class ContainerConfig:
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    env: tuple[str, ...] = ()  # "K=V", in order
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None
    shell: tuple[str, ...] | None = None
    on_build: tuple[str, ...] = ()
    args_escaped: bool = False

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def with_env(self, key: str, value: str) -> ContainerConfig:
        """Set one variable, keeping the position of an existing one (as Docker does)."""
        items = list(self.env)
        for i, item in enumerate(items):
            if item.partition("=")[0] == key:
                items[i] = f"{key}={value}"
                break
        else:
            items.append(f"{key}={value}")
        return replace(self, env=tuple(items))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.user:
            d["User"] = self.user
        if self.exposed_ports:
            d["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            d["Env"] = list(self.env)
        if self.entrypoint is not None:
            d["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            d["Cmd"] = list(self.cmd)
        if self.volumes:
            d["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            d["WorkingDir"] = self.working_dir
        if self.labels:
            d["Labels"] = dict(self.labels)
        if self.stop_signal:
            d["StopSignal"] = self.stop_signal
        if self.healthcheck is not None:
            d["Healthcheck"] = self.healthcheck.to_dict()
        if self.shell is not None:
            d["Shell"] = list(self.shell)
        if self.on_build:
            d["OnBuild"] = list(self.on_build)
        if self.args_escaped:
            d["ArgsEscaped"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ContainerConfig:
        d = d or {}
        hc = d.get("Healthcheck")
        ep, cmd, shell = d.get("Entrypoint"), d.get("Cmd"), d.get("Shell")
        return cls(
            user=str(d.get("User") or ""),
            exposed_ports=tuple(sorted((d.get("ExposedPorts") or {}).keys())),
            env=tuple(d.get("Env") or ()),
            entrypoint=tuple(ep) if ep is not None else None,
            cmd=tuple(cmd) if cmd is not None else None,
            volumes=tuple(sorted((d.get("Volumes") or {}).keys())),
            working_dir=str(d.get("WorkingDir") or ""),
            labels=dict(d.get("Labels") or {}),
            stop_signal=str(d.get("StopSignal") or ""),
            healthcheck=Healthcheck.from_dict(hc) if isinstance(hc, dict) else None,
            shell=tuple(shell) if shell is not None else None,
            on_build=tuple(d.get("OnBuild") or ()),
            args_escaped=bool(d.get("ArgsEscaped")),
        )


@dataclass(frozen=True)
class History:
    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.created:
            d["created"] = self.created
        if self.created_by:
            d["created_by"] = self.created_by
        if self.author:
            d["author"] = self.author
        if self.comment:
            d["comment"] = self.comment
        if self.empty_layer:
            d["empty_layer"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(
            d.get("created"),
            str(d.get("created_by") or ""),
            str(d.get("author") or ""),
            str(d.get("comment") or ""),
            bool(d.get("empty_layer")),
        )


_KNOWN_TOP = {"architecture", "os", "variant", "created", "author", "config", "rootfs", "history"}


@dataclass(frozen=True)
class ImageConfig:
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    created: str | None = None
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[str, ...] = ()
    history: tuple[History, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        d["architecture"] = self.architecture
        d["os"] = self.os
        if self.variant:
            d["variant"] = self.variant
        if self.created:
            d["created"] = self.created
        if self.author:
            d["author"] = self.author
        d["config"] = self.config.to_dict()
        d["rootfs"] = {"type": "layers", "diff_ids": list(self.diff_ids)}
        if self.history:
            d["history"] = [h.to_dict() for h in self.history]
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "image config") -> ImageConfig:
        d = load_json_object(data, what)
        rootfs = d.get("rootfs") or {}
        if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
            raise ImageFormatError(f"{what}: bad rootfs")
        history = d.get("history") or []
        if not isinstance(history, list):
            raise ImageFormatError(f"{what}: bad history")
        return cls(
            architecture=str(d.get("architecture") or ""),
            os=str(d.get("os") or ""),
            variant=d.get("variant") or None,
            created=d.get("created"),
            author=str(d.get("author") or ""),
            config=ContainerConfig.from_dict(d.get("config") if isinstance(d.get("config"), dict) else None),
            diff_ids=tuple(str(x) for x in rootfs.get("diff_ids") or ()),
            history=tuple(History.from_dict(h) for h in history if isinstance(h, dict)),
            extra={k: v for k, v in d.items() if k not in _KNOWN_TOP},
        )


def chain_id(parent: str | None, diff_id: str) -> str:
    """The OCI ChainID of a layer with this diff_id on top of the chain ``parent`` (None for the bottom layer)."""
    validate_digest(diff_id)
    if parent is None:
        return diff_id
    validate_digest(parent)
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The ChainID of every layer of an image, bottom first (diff_ids in the image config's order)."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(chain_id(out[-1] if out else None, diff_id))
    return out
