FROM alpine
CMD ["echo", \
# a comment in the middle
     "hello"]
