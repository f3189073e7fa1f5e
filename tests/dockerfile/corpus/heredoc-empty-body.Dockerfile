FROM alpine
RUN <<EOF
EOF
COPY <<EOF /empty
EOF
