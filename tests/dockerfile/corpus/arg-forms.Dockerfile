ARG BASE=alpine
ARG VERSION
ARG A=1 B C="three four"
FROM ${BASE}:${VERSION:-latest}
ARG BUILD_DATE
ARG VCS_REF=unknown
LABEL build-date=$BUILD_DATE vcs-ref=$VCS_REF
RUN echo $A $B
