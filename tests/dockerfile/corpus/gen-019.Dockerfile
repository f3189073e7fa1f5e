# syntax=docker/dockerfile:1
from golang:1.22 AS base
COPY --from=build /out/app /usr/local/bin/app
run  go build -o /out/app -ldflags="-s -w" ./cmd/app
SHELL \ 

    ["/bin/bash", "-c"]
Shell	["/bin/bash", "-c"]
