FROM debian:12-slim
RUN set -eux; \
# install the basics
    apt-get update; \
    # with an indented comment
    apt-get install -y --no-install-recommends \
        ca-certificates \
#        vim \
        wget; \
    rm -rf /var/lib/apt/lists/*
