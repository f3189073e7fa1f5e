from  ubuntu:22.04 as base
RUN  npm ci && npm run build
RUN  --mount=type=cache,target=/root/.cache npm ci && npm run build
WORKDIR /srv/app
Copy	--chown=app:app --chmod=0644 config.yml /etc/app/
VOLUME /data
Expose 8080/tcp 9090
FROM  --platform=$BUILDPLATFORM alpine:3.19 \	
	AS \
    build
From --platform=$BUILDPLATFORM \
    python:3.12-slim \
	AS \ 
	build
