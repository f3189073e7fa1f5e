FROM alpine
ENV A=a\ b\ c
ENV B="double \"quoted\" value"
ENV C='single "mixed" quote'
ENV D=$A:${B}
ENV E=\$notexpanded
ENV F="multi \
line"
ENV G=x\=y
