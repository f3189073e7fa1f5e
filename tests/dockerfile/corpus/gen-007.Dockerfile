From  golang:1.22 AS base
ADD --link https://example.com/file.tgz /tmp/
env APP_HOME=/srv/app LOG_LEVEL=info
WORKDIR  /srv/app
STOPSIGNAL  SIGTERM
RUN  echo "quoted 'mixed' text" > /etc/motd
