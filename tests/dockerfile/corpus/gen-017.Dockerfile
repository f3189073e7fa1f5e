FROM node:20 AS base
COPY  --from=build \	

	/out/app /usr/local/bin/app
COPY <<EOT /etc/generated.conf
EOT
run npm ci && npm run build

Add --link https://example.com/file.tgz /tmp/
ARG	VERSION=1.0 COMMIT
entrypoint ["/usr/bin/tini", "--"]
