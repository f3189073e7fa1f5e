from debian:bookworm-slim AS base
Entrypoint ["/usr/bin/tini", "--"]
VOLUME  ["/cache", "/logs"]
# section
label	org.opencontainers.image.title="demo" version=1
shell ["/bin/bash", "-c"]

Cmd ["app", "--serve"]

RUN <<END bash
echo "quoted 'mixed' text" > /etc/motd
apk add --no-cache git openssh-client
pip install --no-cache-dir -r requirements.txt
END
ONBUILD COPY . /src
label org.opencontainers.image.title="demo" version=1

HEALTHCHECK  --interval=30s --timeout=5s CMD curl -f http://localhost:8080/ || exit 1
   
copy	--chown=app:app --chmod=0644 config.yml /etc/app/
