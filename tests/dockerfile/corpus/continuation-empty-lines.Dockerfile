FROM alpine
RUN apk add --no-cache \

    git \

    openssh
RUN echo done
