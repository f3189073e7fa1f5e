FROM alpine
RUN --mount="type=bind,source=dir with space,target=/x" ls /x
RUN --mount=type=cache,"target=/quoted,comma" ls
