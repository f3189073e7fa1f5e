from golang:1.22 AS base
CMD app --serve
   
COPY --chown=app:app --chmod=0644 config.yml /etc/app/
onbuild RUN make
COPY	--from=build /out/app /usr/local/bin/app
Run --network=none useradd -m -u 1000 app && chown -R app /srv
run --network=none apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
RUN  go build -o /out/app -ldflags="-s -w" ./cmd/app
Run apk \ 
	add \ 
    # indented comment
	--no-cache git openssh-client
