From ubuntu:22.04 as base
STOPSIGNAL  SIGTERM
CMD app --serve
From --platform=$BUILDPLATFORM python:3.12-slim AS build
ENTRYPOINT	["/usr/bin/tini", "--"]
Stopsignal	SIGTERM
RUN  pip install --no-cache-dir -r requirements.txt
run \

    npm ci && npm run \
# a comment inside
	build
Arg \	
    VERSION=1.0 COMMIT
Onbuild  COPY . /src
RUN --mount=type=cache,target=/root/.cache apk add --no-cache git openssh-client
