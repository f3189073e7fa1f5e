FROM alpine AS src
RUN mkdir /out

FROM alpine
COPY --from=src /out /out
COPY --chown=1000:1000 --chmod=0755 entry.sh /entry.sh
COPY --link --chmod=u=rwx,go=rx bin/ /usr/local/bin/
COPY --parents ./a/b/*.txt /dst/
COPY --exclude=*.md --exclude=docs/ . /app
COPY ["file with space.txt", "/dest dir/"]
COPY --from=nginx:latest /etc/nginx/nginx.conf /nginx.conf
