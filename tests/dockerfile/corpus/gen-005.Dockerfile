# syntax=docker/dockerfile:1
FROM	golang:1.22 AS base
RUN	go build -o /out/app -ldflags="-s -w" ./cmd/app
copy	--chown=app:app --chmod=0644 config.yml /etc/app/
copy	--chown=app:app \	

    --chmod=0644 \
    config.yml \ 
/etc/app/
Shell	["/bin/bash", "-c"]
CMD app --serve
Healthcheck  --interval=30s --timeout=5s CMD curl -f http://localhost:8080/ || exit 1
# section
RUN apt-get \ 
update \
    && \	
    # indented comment
    apt-get \	
    install -y --no-install-recommends \	
	curl \
	ca-certificates
ENTRYPOINT ["/usr/bin/tini", "--"]
Env  APP_HOME=/srv/app LOG_LEVEL=info
VOLUME /data
