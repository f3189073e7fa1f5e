FROM  ubuntu:22.04 as base
run  pip install --no-cache-dir -r requirements.txt
RUN <<END
pip install --no-cache-dir -r requirements.txt
END
COPY <<END /etc/generated.conf
npm ci && npm run build
echo "quoted 'mixed' text" > /etc/motd
END
Env	LEGACY value with spaces
ENV APP_HOME=/srv/app LOG_LEVEL=info
