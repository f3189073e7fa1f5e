# syntax=docker/dockerfile:1.4
FROM ubuntu:22.04
RUN <<EOF
apt-get update
apt-get install -y curl
rm -rf /var/lib/apt/lists/*
EOF
RUN <<EOT bash
set -ex
echo "hello from bash"
EOT
