FROM alpine
RUN <<EOF
# this is part of the script
echo hi # trailing
EOF
