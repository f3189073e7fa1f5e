From debian:bookworm-slim
Workdir /srv/app
copy \
    --chown=app:app --chmod=0644 config.yml \	
	/etc/app/
ADD	--link \
https://example.com/file.tgz /tmp/
Arg VERSION=1.0 COMMIT
COPY	--from=build /out/app /usr/local/bin/app
COPY <<-EOF /etc/generated.conf
	EOF
