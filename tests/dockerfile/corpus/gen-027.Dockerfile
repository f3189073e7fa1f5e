# syntax=docker/dockerfile:1
FROM	alpine:3.19 AS base
ADD --link \ 
    # indented comment
	https://example.com/file.tgz /tmp/

RUN go \
    build -o /out/app -ldflags="-s -w" ./cmd/app
Run --network=none useradd \	
-m -u 1000 app && chown -R app \ 

/srv
healthcheck  CMD ["true"]

Run  pip install --no-cache-dir -r requirements.txt
