FROM alpine
COPY --chown="1000:1000" a b
COPY "--chown=1000" c d
RUN --mount="type=bind,target=/x" echo hi
COPY --from='stage one' x y
ADD --chmod=7\55 e f
COPY -- --notaflag dest
RUN -- echo after double dash
COPY --link --from=base -- src dst
