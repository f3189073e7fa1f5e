from alpine:3.19
From --platform=$BUILDPLATFORM ubuntu:22.04 \
	AS \
build
RUN	npm \

	ci && npm \ 
run build
   
RUN <<"EOF" sh -e
EOF
RUN	npm ci && npm run build
RUN --mount=type=cache,target=/root/.cache npm ci && npm run build
VOLUME /data
COPY <<'EOT' /etc/generated.conf
pip install --no-cache-dir -r requirements.txt
EOT
add --link https://example.com/file.tgz /tmp/

