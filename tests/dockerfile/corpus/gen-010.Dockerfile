# syntax=docker/dockerfile:1
FROM golang:1.22 AS base
RUN  echo \ 
	"quoted \
	'mixed' text" \
> /etc/motd
Arg \
VERSION=1.0 COMMIT
HEALTHCHECK --interval=30s --timeout=5s CMD curl -f http://localhost:8080/ || exit 1
EXPOSE 8080/tcp 9090
Run --mount=type=cache,target=/root/.cache go build -o /out/app -ldflags="-s -w" ./cmd/app

COPY <<EOF /etc/generated.conf
apk add --no-cache git openssh-client
npm ci && npm run build
EOF
