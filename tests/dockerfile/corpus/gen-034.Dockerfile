From python:3.12-slim
copy --from=build /out/app /usr/local/bin/app
Healthcheck \
    # indented comment
	 CMD \ 
    # indented comment
    ["true"]
volume  ["/cache", \ 
	"/logs"]
COPY --from=build \ 
    /out/app /usr/local/bin/app
copy --chown=app:app --chmod=0644 config.yml /etc/app/
Add --link https://example.com/file.tgz /tmp/
Run  apk \
add --no-cache git openssh-client
