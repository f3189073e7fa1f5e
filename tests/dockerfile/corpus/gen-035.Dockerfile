from  alpine:3.19 as base
user	app
   
RUN --mount=type=cache,target=/root/.cache apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
RUN	go \
build -o /out/app -ldflags="-s -w" ./cmd/app
Onbuild \	
	COPY . \
    /src

RUN <<"SCRIPT"
pip install --no-cache-dir -r requirements.txt
apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
SCRIPT
add	--link https://example.com/file.tgz /tmp/
Run	npm ci && npm run build
Run	apk add --no-cache git \

	openssh-client
Cmd ["app", "--serve"]
