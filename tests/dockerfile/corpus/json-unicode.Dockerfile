FROM alpine
RUN ["echo", "caf\u00e9", "tab\there", "\/slash"]
CMD ["sh", "-c", "echo ü €"]
ENTRYPOINT ["/bin/echo", ""]
