# syntax=docker/dockerfile:1.7-labs
FROM alpine
COPY --parents --exclude=**/node_modules ./packages/*/package.json /app/
COPY --parents=true a/b/c /dst
