# syntax=docker/dockerfile:1
FROM node:20 AS base
run --mount=type=cache,target=/root/.cache \

pip install \
    # indented comment
--no-cache-dir \
	-r requirements.txt
shell ["/bin/bash", \	
    "-c"]

FROM	--platform=$BUILDPLATFORM ubuntu:22.04 AS build
Cmd  app --serve
ADD  --link https://example.com/file.tgz /tmp/
