"""Flag words and typed flag values. Expected values are worked out by hand from the Dockerfile reference,
Go's time.ParseDuration, docker's RAMInBytes and chmod(1)."""

from __future__ import annotations

import pytest

from kiln.dockerfile.flags import (
    Chmod,
    FlagKind,
    Mount,
    PortSpec,
    parse_chmod,
    parse_duration,
    parse_flags,
    parse_health_interval,
    parse_mem_bytes,
    parse_mount,
    parse_port_spec,
    parse_signal,
)
from kiln.errors import DockerfileError

SPEC = {"from": FlagKind.STRING, "link": FlagKind.BOOL, "exclude": FlagKind.STRINGS}


def test_parse_flags_values() -> None:
    got = parse_flags(["--from=a=b", "--link", "--exclude=x", "--exclude=y"], SPEC)
    assert got == {"from": "a=b", "link": True, "exclude": ("x", "y")}
    assert parse_flags(["--link=false"], SPEC) == {"link": False}
    assert parse_flags(["--link=TRUE"], SPEC) == {"link": True}
    assert parse_flags(["--from="], SPEC) == {"from": ""}


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--nope=1"], "unknown flag: nope"),
        (["--from"], "missing a value on flag: from"),
        (["--exclude"], "missing a value on flag: exclude"),
        (["--link="], "missing a value on flag: link"),
        (["--link=yes"], "expecting boolean value for flag link, not: yes"),
        (["--from=a", "--from=b"], "duplicate flag specified: from"),
        (["--link", "--link"], "duplicate flag specified: link"),
    ],
)
def test_parse_flags_errors(words: list[str], message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse_flags(words, SPEC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("0", 0.0),
        ("2h45m", 9900.0),
        ("10us", 1e-5),
        ("1\u00b5s", 1e-6),
        ("-1s", -1.0),
        (".5s", 0.5),
        ("1.s", 1.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "1x", "s", "1m30", ".s", "--1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(DockerfileError):
        parse_duration(text)


def test_health_interval_minimum_and_zero() -> None:
    assert parse_health_interval("interval", None) is None
    assert parse_health_interval("interval", "0s") is None
    assert parse_health_interval("interval", "1ms") == pytest.approx(0.001)
    with pytest.raises(DockerfileError, match='Interval "timeout" cannot be less than 1ms'):
        parse_health_interval("timeout", "100us")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("64m", 64 << 20),
        ("1g", 1 << 30),
        ("1GiB", 1 << 30),
        ("2k", 2048),
        ("1.5m", 3 << 19),
        ("10MB", 10 << 20),
    ],
)
def test_mem_bytes(text: str, size: int) -> None:
    assert parse_mem_bytes(text) == size


def test_bad_mem_bytes() -> None:
    with pytest.raises(DockerfileError):
        parse_mem_bytes("lots")


def test_chmod_octal() -> None:
    assert parse_chmod("755") == Chmod(octal=0o755, symbolic=None)
    assert parse_chmod("0644").apply(0o100777, False) == 0o644
    assert parse_chmod("4755").octal == 0o4755


@pytest.mark.parametrize(
    ("symbolic", "mode", "is_dir", "want"),
    [
        ("u+x", 0o644, False, 0o744),
        ("go-w", 0o666, False, 0o644),
        ("a=r", 0o777, False, 0o444),
        ("+x", 0o600, False, 0o711),
        ("u=rwx,go=rx", 0o000, False, 0o755),
        ("a+X", 0o644, False, 0o644),  # X: only for directories or already-executable files
        ("a+X", 0o644, True, 0o755),
        ("a+X", 0o744, False, 0o755),
        ("g=u", 0o640, False, 0o660),
        ("u+s", 0o755, False, 0o4755),
        ("+t", 0o777, True, 0o1777),
        ("o-rwx", 0o777, False, 0o770),
    ],
)
def test_chmod_symbolic(symbolic: str, mode: int, is_dir: bool, want: int) -> None:
    chmod = parse_chmod(symbolic)
    assert chmod.symbolic == symbolic
    assert chmod.apply(mode, is_dir) == want


@pytest.mark.parametrize("text", ["", "999", "77777", "u+q", "rwx", "u+x,", "a"])
def test_bad_chmod(text: str) -> None:
    with pytest.raises(DockerfileError, match="invalid chmod"):
        parse_chmod(text)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("80", PortSpec(80, 80, "tcp")),
        ("53/udp", PortSpec(53, 53, "udp")),
        ("132/SCTP", PortSpec(132, 132, "sctp")),
        ("8000-8002", PortSpec(8000, 8002, "tcp")),
        ("80/", PortSpec(80, 80, "tcp")),
    ],
)
def test_port_specs(text: str, spec: PortSpec) -> None:
    assert parse_port_spec(text) == spec


def test_port_range_keys() -> None:
    assert parse_port_spec("7000-7002/udp").keys() == ("7000/udp", "7001/udp", "7002/udp")


@pytest.mark.parametrize("text", ["http", "80/icmp", "70000", "90-80", "-1", "1-", "a-b/tcp", ""])
def test_bad_port_specs(text: str) -> None:
    with pytest.raises(DockerfileError):
        parse_port_spec(text)


@pytest.mark.parametrize("text", ["SIGTERM", "TERM", "sigkill", "9", "SIGRTMIN+3", "RTMAX-1", "SIGWINCH"])
def test_signals(text: str) -> None:
    assert parse_signal(text) == text


@pytest.mark.parametrize("text", ["0", "SIGFOO", "", "RTMIN+16"])
def test_bad_signals(text: str) -> None:
    with pytest.raises(DockerfileError, match="Invalid signal"):
        parse_signal(text)


# ------------------------------------------------------------------------------------------ mounts


def test_mount_defaults_per_type() -> None:
    # bind is the default type and read-only by default; cache and tmpfs are writable.
    assert parse_mount("target=/x") == Mount(type="bind", target="/x", readonly=True)
    assert parse_mount("type=cache,target=/c").readonly is False
    assert parse_mount("type=tmpfs,target=/t").readonly is False
    assert parse_mount("type=secret,id=s").readonly is True


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("type=bind,source=.,target=/src,rw", Mount(type="bind", source=".", target="/src", readonly=False)),
        ("type=bind,src=a,dst=/a,ro", Mount(type="bind", source="a", target="/a", readonly=True)),
        ("type=bind,src=a,destination=/a,readwrite=true", Mount(source="a", target="/a", readonly=False)),
        ("type=bind,target=/a,readonly=false", Mount(target="/a", readonly=False)),
        ("type=bind,target=/a,from=builder,rw=0", Mount(target="/a", from_="builder", readonly=True)),
        (
            "TYPE=CACHE,target=/c,id=apt,sharing=LOCKED,mode=0755,uid=1,gid=2",
            Mount(type="cache", target="/c", id="apt", sharing="locked", mode=0o755, uid=1, gid=2, readonly=False),
        ),
        ("type=cache,target=/c,sharing=private,ro", Mount(type="cache", target="/c", sharing="private")),
        ("type=tmpfs,target=/t,size=64m", Mount(type="tmpfs", target="/t", size=64 << 20, readonly=False)),
        ("type=secret,id=tok,env=TOKEN,required", Mount(type="secret", id="tok", env="TOKEN", required=True)),
        ("type=secret,source=f,target=/run/f,required=false", Mount(type="secret", source="f", target="/run/f")),
        ("type=ssh", Mount(type="ssh")),
        ("type=ssh,id=gitlab,required=true", Mount(type="ssh", id="gitlab", required=True)),
        ('type=bind,"source=a,b",target=/x', Mount(source="a,b", target="/x")),
    ],
)
def test_mounts(spec: str, want: Mount) -> None:
    assert parse_mount(spec) == want


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=volume,target=/x", 'unsupported mount type "volume"'),
        ("type=bind,target=/x,bogus=1", "unexpected key 'bogus'"),
        ("type=bind,target=/x,nokey", "must be a key=value pair"),
        ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
        ("type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'"),
        ("type=bind,target=/x,sharing=locked", "invalid cache sharing set for bind mount"),
        ("type=cache,target=/x,sharing=sometimes", "unsupported sharing value"),
        ("type=bind,target=/x,mode=0755", 'mode not allowed for "bind" type mounts'),
        ("type=tmpfs,target=/x,uid=1", 'uid not allowed for "tmpfs" type mounts'),
        ("type=cache,target=/x,mode=999", "invalid value for mode"),
        ("type=cache,target=/x,uid=-1", "invalid value for uid"),
        ("type=bind,target=/x,ro=maybe", "invalid value for ro"),
        ("type=secret,from=x,id=a", "secret mount should not have a from"),
        ("type=secret", "one of source, target required"),
        ("type=secret,source=a,id=b", "both source and id can't be set"),
        ("type=cache", "requires a target"),
    ],
)
def test_bad_mounts(spec: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse_mount(spec)


def test_mount_values_are_expanded_one_by_one() -> None:
    env = {"$T": "cache", "$DIR": "/root/.cache", "$ID": "a,b"}
    mount = parse_mount("type=$T,target=$DIR,id=$ID", lambda s: env.get(s, s))
    assert mount == Mount(type="cache", target="/root/.cache", id="a,b", readonly=False)


def test_a_huge_mount_value_is_a_dockerfile_error_at_its_line() -> None:
    from kiln.dockerfile.parse import parse_dockerfile
    from kiln.dockerfile.plan import plan_build
    from kiln.oci.platform import Platform

    text = "FROM scratch\nRUN --mount=type=bind,source=" + "x" * 200_000 + " true\n"
    with pytest.raises(DockerfileError) as err:
        plan_build(parse_dockerfile(text, "Dockerfile"), {}, None, Platform.host(), Platform.host())
    assert err.value.line == 2 and len(str(err.value)) < 400
