# syntax=docker/dockerfile:1
from	python:3.12-slim as base
RUN  npm ci \	

    && npm \	
run build
RUN apt-get update \ 
&& apt-get \	
    install -y --no-install-recommends \
	curl ca-certificates
run useradd \
    -m \ 
    -u 1000 app && chown \
	-R app /srv
# section
shell  \	
    ["/bin/bash", \
"-c"]
RUN npm ci && npm run build
From --platform=$BUILDPLATFORM node:20 AS build
run npm ci && npm run build
ARG \
	VERSION=1.0 COMMIT

RUN	apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
# section
