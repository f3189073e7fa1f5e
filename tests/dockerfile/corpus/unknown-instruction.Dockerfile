FROM alpine
FOO bar baz
RUN echo still parsed by the AST
