FROM alpine
RUN echo bom stripped
