FROM alpine
RUN --mount=type=cache,target=/x \
    <<EOF bash
echo inside
EOF
COPY --chmod=755 \
  <<EOF /usr/local/bin/hello
#!/bin/sh
echo hello
EOF
