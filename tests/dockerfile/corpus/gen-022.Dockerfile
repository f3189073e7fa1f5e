from golang:1.22 AS base
RUN <<"END" bash
useradd -m -u 1000 app && chown -R app /srv
END
Onbuild RUN make
ADD  --link https://example.com/file.tgz /tmp/
Run --network=none \ 
    apt-get update && apt-get install \
	-y --no-install-recommends curl \ 
    # indented comment
    ca-certificates
copy	--from=build \
/out/app \	
    # indented comment
/usr/local/bin/app
user	app

FROM \	
	--platform=$BUILDPLATFORM debian:bookworm-slim AS \
	build
Shell	["/bin/bash", "-c"]
RUN <<"EOT" sh -e
pip install --no-cache-dir -r requirements.txt
apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
EOT
Cmd	app --serve
