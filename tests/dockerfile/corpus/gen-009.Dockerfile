# syntax=docker/dockerfile:1
from  python:3.12-slim as base
run  apk \ 
    add --no-cache \ 
	git openssh-client
From \
--platform=$BUILDPLATFORM \

	python:3.12-slim AS \
build
run --mount=type=cache,target=/root/.cache \ 
	useradd -m -u 1000 app && chown \	
    -R app \	
/srv
