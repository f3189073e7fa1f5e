FROM  ubuntu:22.04 AS base
volume /data
copy  --chown=app:app --chmod=0644 config.yml /etc/app/
healthcheck CMD ["true"]
RUN <<"EOF"
EOF
COPY <<'END' /etc/generated.conf
useradd -m -u 1000 app && chown -R app /srv
useradd -m -u 1000 app && chown -R app /srv
END
Copy	--chown=app:app --chmod=0644 \
config.yml /etc/app/
COPY <<-END /etc/generated.conf
	npm ci && npm run build
	END
LABEL  org.opencontainers.image.title="demo" version=1
# section
RUN go build -o /out/app -ldflags="-s -w" ./cmd/app

