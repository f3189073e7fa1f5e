FROM alpine
RUN <<'A' cat
$NOT_EXPANDED
A
RUN <<"B" cat
$ALSO_NOT
B
RUN <<C cat
$EXPANDED
C
RUN <<\D cat
backslash
D
RUN <<E"F" cat
partly quoted
EF
