FROM alpine
ENTRYPOINT [["nested"]]
