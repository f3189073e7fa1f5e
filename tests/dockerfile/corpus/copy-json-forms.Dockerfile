FROM alpine
COPY ["src/", "/app/src/"]
COPY ["a.txt", "b.txt", "/dest/"]
ADD ["http://example.com/x", "/x"]
COPY --chown=1:1 ["with space", "/dest/with space"]
