FROM nginx
HEALTHCHECK CMD curl --fail http://localhost/ || exit 1
HEALTHCHECK --interval=5m --timeout=3s CMD curl -f http://localhost/
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --start-interval=1s --retries=3 \
  CMD ["curl", "-f", "http://localhost/health"]
HEALTHCHECK NONE
healthcheck  cmd   /bin/check
