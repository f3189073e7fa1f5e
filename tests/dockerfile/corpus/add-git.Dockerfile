# syntax=docker/dockerfile:1.6
FROM alpine
ADD git@github.com:moby/buildkit.git#v0.12.0 /src
ADD https://github.com/moby/moby.git?ref=v25.0.0&keep-git-dir=1 /moby
ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://x/y.tgz /
