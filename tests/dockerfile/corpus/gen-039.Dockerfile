# escape=`
FROM  debian:bookworm-slim AS base
COPY `	
    --from=build /out/app `

	/usr/local/bin/app
env LEGACY value with spaces
EXPOSE 8080/tcp 9090
env	LEGACY value `
    with spaces
Env  `
# a comment inside
    LEGACY value with `	
# a comment inside
spaces
run `
    # indented comment
	--mount=type=cache,target=/root/.cache pip install --no-cache-dir -r requirements.txt

HEALTHCHECK	CMD ["true"]
cmd ["app", "--serve"]
WORKDIR /srv/app
