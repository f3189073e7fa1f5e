FROM alpine
ENTRYPOINT ["/bin/echo"] # a comment
CMD []random string
RUN ["echo","hi"]junk
RUN ["echo"] trailing text
CMD ["a"] ["b"]
VOLUME ["/a"] /b
COPY ["a", "b"] c
HEALTHCHECK CMD ["true"] || exit 1
ONBUILD RUN ["make"] && echo done
CMD ["spaces", "after"]   	
