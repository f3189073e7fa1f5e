from node:20 AS base
label \
    org.opencontainers.image.title="demo" version=1
COPY <<"SCRIPT" /etc/generated.conf
go build -o /out/app -ldflags="-s -w" ./cmd/app
npm ci && npm run build
npm ci && npm run build
SCRIPT
RUN apk add --no-cache git openssh-client

RUN \ 
 --mount=type=cache,target=/root/.cache npm ci && \
    npm \
	run \	
build
from --platform=$BUILDPLATFORM alpine:3.19 AS build
Run \ 
     apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
   
ARG	VERSION=1.0 COMMIT
Add --link https://example.com/file.tgz /tmp/
run --mount=type=cache,target=/root/.cache npm ci && npm run build
From \ 
--platform=$BUILDPLATFORM golang:1.22 AS \ 
    build

