FROM alpine
RUN <<EOF
 EOF
EOF 
EOFX
EOF
RUN echo after
