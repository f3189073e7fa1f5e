FROM alpine
VOLUME /var/lib/data
VOLUME /a /b   /c
VOLUME ["/json/one", "/json/two"]
VOLUME ["/malformed" "/json"]
