FROM  python:3.12-slim as base
RUN npm ci && npm run build
onbuild \
COPY . /src

cmd app --serve
RUN  echo \
"quoted 'mixed' \ 
	text" > /etc/motd
Run	--mount=type=cache,target=/root/.cache apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
Run	--mount=type=cache,target=/root/.cache apt-get update && apt-get install -y --no-install-recommends \
curl \

	ca-certificates
HEALTHCHECK --interval=30s \
	--timeout=5s CMD curl -f http://localhost:8080/ \
# a comment inside
    || exit 1
COPY <<"END" /etc/generated.conf
END
COPY <<SCRIPT /etc/generated.conf
SCRIPT
entrypoint ["/usr/bin/tini", "--"]

