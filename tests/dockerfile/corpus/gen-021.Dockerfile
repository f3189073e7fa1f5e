FROM	ubuntu:22.04 AS base
RUN	useradd -m -u 1000 app && chown -R app /srv
CMD app --serve
RUN --mount=type=cache,target=/root/.cache apk add --no-cache git openssh-client
RUN --network=none pip \
	install --no-cache-dir -r \
    # indented comment
	requirements.txt
   
RUN <<"END" bash
go build -o /out/app -ldflags="-s -w" ./cmd/app
useradd -m -u 1000 app && chown -R app /srv
END
RUN	--network=none go build -o /out/app -ldflags="-s -w" ./cmd/app
RUN <<END bash
useradd -m -u 1000 app && chown -R app /srv
apk add --no-cache git openssh-client
apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
END
