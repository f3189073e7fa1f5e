# escape=`
FROM alpine
RUN <<EOF
echo `backticks` in body
EOF
RUN echo one `
    two
