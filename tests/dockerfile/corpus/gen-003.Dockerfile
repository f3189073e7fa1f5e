# syntax=docker/dockerfile:1
from ubuntu:22.04 AS base
RUN <<-"EOT" bash
	EOT
RUN <<-"END" sh -e
	npm ci && npm run build
	apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
	pip install --no-cache-dir -r requirements.txt
	END
RUN	apt-get update && apt-get install -y \
    # indented comment
--no-install-recommends curl ca-certificates
Run  echo "quoted 'mixed' text" > /etc/motd
run pip install --no-cache-dir -r requirements.txt
