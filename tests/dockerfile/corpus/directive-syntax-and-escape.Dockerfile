# syntax=docker/dockerfile:1.6
# escape=`

FROM alpine
RUN echo `
  continued
