FROM alpine
RUN echo "<<EOF" > /x
RUN cat<<EOF
RUN echo '<<A' <<B
body
B
CMD ["sh", "-c", "cat <<EOF"]
