# syntax=docker/dockerfile:1
from	node:20 AS base
RUN	--network=none echo "quoted 'mixed' text" > /etc/motd
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates

RUN <<"END" sh -e
pip install --no-cache-dir -r requirements.txt
go build -o /out/app -ldflags="-s -w" ./cmd/app
useradd -m -u 1000 app && chown -R app /srv
END
Run \	
--network=none apk \ 
add --no-cache git openssh-client
   
