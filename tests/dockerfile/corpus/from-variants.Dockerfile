FROM alpine
FROM alpine:3.19@sha256:c5b1261d6d3e43071626931fc004f70149baeba2c8ec672bd4f27761f8e1ad6b
FROM --platform=linux/amd64 ubuntu AS amd
FROM --platform=${TARGETPLATFORM} ubuntu as target
FROM amd
FROM localhost:5000/my/image:tag AS local
