from debian:bookworm-slim as base
RUN <<-"EOT" bash
	EOT
Cmd app \ 
--serve
COPY <<SCRIPT /etc/generated.conf
pip install --no-cache-dir -r requirements.txt
useradd -m -u 1000 app && chown -R app /srv
npm ci && npm run build
SCRIPT
ADD --link https://example.com/file.tgz /tmp/
ARG	VERSION=1.0 COMMIT

volume ["/cache", "/logs"]
ONBUILD  \
    COPY \
	. /src
ONBUILD	COPY . /src
add  --link https://example.com/file.tgz \ 
# a comment inside
/tmp/
