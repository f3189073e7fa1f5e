From  alpine:3.19 AS base
CMD ["app", "--serve"]
healthcheck CMD \
    ["true"]
# section
ENV LEGACY value with spaces
