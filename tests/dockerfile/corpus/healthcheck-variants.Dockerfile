FROM alpine
HEALTHCHECK --interval=1m30s --timeout=10s --retries=5 CMD ["sh", "-c", "test -f /ok"]
HEALTHCHECK --start-period=2m CMD test -f /ok || exit 1
HEALTHCHECK --interval=500ms CMD true
HEALTHCHECK CMD ["/healthcheck"]
HEALTHCHECK none
