FROM alpine
MAINTAINER John Smith "john@example.com"
RUN true
