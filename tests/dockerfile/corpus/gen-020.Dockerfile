from	python:3.12-slim AS base
VOLUME \	
# a comment inside
	["/cache", "/logs"]
RUN	npm \	
    ci && \ 

    npm run build
Label org.opencontainers.image.title="demo" version=1
FROM --platform=$BUILDPLATFORM golang:1.22 AS build
COPY  --chown=app:app --chmod=0644 config.yml /etc/app/
VOLUME /data
from	--platform=$BUILDPLATFORM golang:1.22 AS build
