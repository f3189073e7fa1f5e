FROM alpine
ONBUILD RUN apk add --no-cache \
    git \
    make
ONBUILD ADD --chown=1:1 . /src
