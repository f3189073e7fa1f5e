FROM klakegg/hugo:ext-alpine AS builder
COPY . /src
RUN hugo --minify --gc

FROM nginx:alpine
COPY --from=builder /src/public /usr/share/nginx/html
LABEL org.opencontainers.image.source=https://github.com/example/site
