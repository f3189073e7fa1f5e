"""Writes corpus/gen-*.Dockerfile: variations of realistic instructions (keyword case, spacing, where lines
are continued, comments and blank lines inside continuations, escape token, heredocs).

The hand-written files in corpus/ are the main corpus; these add the combinations nobody writes by hand.
Run: .venv/bin/python tests/dockerfile/gen_corpus.py   (deterministic: a fixed seed)
"""

from __future__ import annotations

import random
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"

BASES = ["alpine:3.19", "debian:bookworm-slim", "ubuntu:22.04", "python:3.12-slim", "node:20", "golang:1.22"]
RUNS = [
    "apt-get update && apt-get install -y --no-install-recommends curl ca-certificates",
    "apk add --no-cache git openssh-client",
    "pip install --no-cache-dir -r requirements.txt",
    "npm ci && npm run build",
    'go build -o /out/app -ldflags="-s -w" ./cmd/app',
    "useradd -m -u 1000 app && chown -R app /srv",
    "echo \"quoted 'mixed' text\" > /etc/motd",
]
FLAGGED = [
    "COPY --from=build /out/app /usr/local/bin/app",
    "COPY --chown=app:app --chmod=0644 config.yml /etc/app/",
    "ADD --link https://example.com/file.tgz /tmp/",
    "RUN --mount=type=cache,target=/root/.cache {run}",
    "RUN --network=none {run}",
    "FROM --platform=$BUILDPLATFORM {base} AS build",
]
SIMPLE = [
    "ENV APP_HOME=/srv/app LOG_LEVEL=info",
    "ENV LEGACY value with spaces",
    'LABEL org.opencontainers.image.title="demo" version=1',
    "ARG VERSION=1.0 COMMIT",
    "WORKDIR /srv/app",
    "USER app",
    "EXPOSE 8080/tcp 9090",
    "VOLUME /data",
    'VOLUME ["/cache", "/logs"]',
    'CMD ["app", "--serve"]',
    "CMD app --serve",
    'ENTRYPOINT ["/usr/bin/tini", "--"]',
    "STOPSIGNAL SIGTERM",
    "HEALTHCHECK --interval=30s --timeout=5s CMD curl -f http://localhost:8080/ || exit 1",
    'HEALTHCHECK CMD ["true"]',
    'SHELL ["/bin/bash", "-c"]',
    "ONBUILD RUN make",
    "ONBUILD COPY . /src",
]


def keyword_case(rng: random.Random, line: str) -> str:
    keyword, _, rest = line.partition(" ")
    style = rng.choice(["upper", "upper", "lower", "title"])
    keyword = {"upper": keyword.upper(), "lower": keyword.lower(), "title": keyword.title()}[style]
    return keyword + rng.choice([" ", " ", "  ", "\t"]) + rest


def continue_lines(rng: random.Random, line: str, escape: str) -> list[str]:
    """Break `line` at some spaces with the escape token, with comments/blank lines in between."""
    words = line.split(" ")
    if len(words) < 3 or rng.random() < 0.4:
        return [line]
    out: list[str] = []
    current = words[0]
    for word in words[1:]:
        if rng.random() < 0.3 and not current.endswith(escape):
            out.append(current + " " + escape + rng.choice(["", "", " ", "\t"]))
            if rng.random() < 0.2:
                out.append(rng.choice(["# a comment inside", "    # indented comment", ""]))
            current = rng.choice(["    ", "\t", ""]) + word
        else:
            current += " " + word
    out.append(current)
    return out


def heredoc(rng: random.Random) -> list[str]:
    name = rng.choice(["EOF", "EOT", "SCRIPT", "END"])
    quoted = rng.choice([name, f"'{name}'", f'"{name}"'])
    chomp = rng.random() < 0.3
    opener = "<<-" if chomp else "<<"
    pad = "\t" if chomp else ""
    if rng.random() < 0.5:
        head = f"RUN {opener}{quoted}" + rng.choice(["", " bash", " sh -e"])
    else:
        head = f"COPY {opener}{quoted} /etc/generated.conf"
    body = [pad + rng.choice(RUNS) for _ in range(rng.randint(0, 3))]
    return [head, *body, pad + name]


def dockerfile(rng: random.Random) -> str:
    escape = "`" if rng.random() < 0.15 else "\\"
    lines: list[str] = []
    if escape == "`":
        lines.append("# escape=`")
    elif rng.random() < 0.3:
        lines.append("# syntax=docker/dockerfile:1")
    base = rng.choice(BASES)
    lines.append(keyword_case(rng, f"FROM {base}" + rng.choice(["", " AS base", " as base"])))
    for _ in range(rng.randint(3, 10)):
        pick = rng.random()
        if pick < 0.15:
            lines += heredoc(rng)
            continue
        if pick < 0.4:
            text = rng.choice(FLAGGED).format(run=rng.choice(RUNS), base=rng.choice(BASES))
        elif pick < 0.6:
            text = "RUN " + rng.choice(RUNS)
        else:
            text = rng.choice(SIMPLE)
        text = keyword_case(rng, text)
        lines += continue_lines(rng, text, escape)
        if rng.random() < 0.15:
            lines.append(rng.choice(["", "# section", "   "]))
    return "\n".join(lines) + "\n"


def main() -> None:
    rng = random.Random(20240601)
    for old in CORPUS.glob("gen-*.Dockerfile"):
        old.unlink()
    for i in range(40):
        (CORPUS / f"gen-{i:03d}.Dockerfile").write_text(dockerfile(rng))


if __name__ == "__main__":
    main()
