FROM	alpine:3.19 as base
RUN npm ci && npm run build
Run \
	--mount=type=cache,target=/root/.cache npm \	
	ci && npm \	
run build
RUN  --mount=type=cache,target=/root/.cache apt-get update \
    && \ 
	apt-get \ 
	install \
	-y --no-install-recommends \
    # indented comment
    curl \ 
ca-certificates
ADD  --link https://example.com/file.tgz /tmp/
WORKDIR	/srv/app
run  --mount=type=cache,target=/root/.cache useradd -m -u 1000 \	
	app && chown -R app /srv
ONBUILD RUN make

RUN	apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
