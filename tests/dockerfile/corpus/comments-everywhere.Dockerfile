# Top comment
# Another one

FROM alpine   
# comment between instructions
RUN echo a
    # indented comment
RUN echo "# not a comment" # also not a comment
#RUN echo disabled

#
CMD ["true"]
