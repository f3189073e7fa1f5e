FROM traefik:v2.10
LABEL traefik.enable="true" \
      traefik.http.routers.api.rule="Host(`traefik.localhost`)" \
      traefik.http.routers.api.service="api@internal"
COPY traefik.yml /etc/traefik/traefik.yml
