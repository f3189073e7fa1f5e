FROM alpine
RUN ["/bin/sh", "-c", "echo exec form"]
RUN ["apk", "add", "--no-cache", "curl"]
RUN [ "echo", "spaces" ]
