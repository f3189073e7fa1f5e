# escape=`
From	ubuntu:22.04 as base
SHELL	["/bin/bash", "-c"]
   
RUN --network=none go build -o /out/app -ldflags="-s -w" ./cmd/app
RUN <<-"SCRIPT" bash
	SCRIPT
onbuild  COPY . /src

