FROM alpine:3.19
RUN apk add --no-cache tini bash
ENTRYPOINT ["/sbin/tini", "--"]
CMD ["/bin/bash"]
