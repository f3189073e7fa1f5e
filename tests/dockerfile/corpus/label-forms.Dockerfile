FROM alpine
LABEL org.opencontainers.image.title="My App" \
      org.opencontainers.image.version=1.2.3 \
      "com.example.with space"="value with spaces"
LABEL description This is the legacy format
LABEL multi.label1="value1" multi.label2="value2" other="value3"
LABEL empty=""
