FROM alpine
ENV A=1
ENV B=2 C=3
ENV D 4
ENV E five six seven
ENV F="quoted value" G='single quoted' H=escaped\ space
ENV I=
ENV J="" K=''
ENV PATH=/usr/local/bin:$PATH \
    LD_LIBRARY_PATH=/usr/local/lib
