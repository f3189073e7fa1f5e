# syntax=docker/dockerfile:1
from  ubuntu:22.04
Run npm ci && npm run build
run	pip install \
    --no-cache-dir -r requirements.txt
EXPOSE  8080/tcp 9090

run	apk add --no-cache git openssh-client

RUN <<'EOF' bash
EOF
ENTRYPOINT  ["/usr/bin/tini", "--"]
