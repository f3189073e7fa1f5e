#   syntax   =   docker/dockerfile:1.4   
#ESCAPE=`
FROM alpine
RUN echo a `
  b
