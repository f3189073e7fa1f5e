FROM alpine
ARG MSG="hello world"
ARG EMPTY=
ARG SINGLE='x y'
ARG ESC=a\ b
ARG "QUOTED_NAME"=v
RUN echo "$MSG"
