# syntax=docker/dockerfile:1
FROM  python:3.12-slim
WORKDIR /srv/app
Copy \ 
	--chown=app:app --chmod=0644 config.yml /etc/app/
ARG	VERSION=1.0 COMMIT
COPY --chown=app:app --chmod=0644 config.yml /etc/app/
Run	useradd -m -u 1000 app && chown -R app /srv
Copy  --from=build /out/app /usr/local/bin/app
RUN <<'SCRIPT'
echo "quoted 'mixed' text" > /etc/motd
npm ci && npm run build
apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
SCRIPT
COPY  --chown=app:app --chmod=0644 config.yml /etc/app/
CMD ["app", "--serve"]
ENTRYPOINT  ["/usr/bin/tini", "--"]
