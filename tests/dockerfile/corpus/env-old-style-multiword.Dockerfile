FROM alpine
ENV JAVA_OPTS -Xms512m -Xmx1024m -XX:+UseG1GC
ENV MESSAGE   lots   of   spaces
ENV  TABBED	value	with	tabs
