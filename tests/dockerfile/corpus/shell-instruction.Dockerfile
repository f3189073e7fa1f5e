FROM debian
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN curl -fsSL https://example.com | tee /tmp/x
SHELL ["/bin/sh", "-c"]
