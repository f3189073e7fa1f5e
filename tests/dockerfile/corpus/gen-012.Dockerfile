FROM  python:3.12-slim
Run  apk add --no-cache git openssh-client
copy	--from=build /out/app /usr/local/bin/app
# section
RUN go build -o /out/app -ldflags="-s -w" ./cmd/app
ENTRYPOINT	["/usr/bin/tini", "--"]
RUN \
 useradd -m -u \

	1000 app && chown -R app \
	/srv
