from  debian:bookworm-slim as base
run \ 
	--network=none npm ci \
    && npm \ 
	run build
WORKDIR /srv/app
# section
ENTRYPOINT ["/usr/bin/tini", "--"]
ARG VERSION=1.0 COMMIT
VOLUME	/data
ARG VERSION=1.0 COMMIT
Copy --chown=app:app --chmod=0644 config.yml \	
	/etc/app/
