FROM alpine
ONBUILD RUN <<EOF
echo triggered
EOF
ONBUILD COPY <<EOF /greeting
hello
EOF
