FROM alpine
USER root
USER 0:0
USER app:app
USER ${UID}:${GID}
user nobody
