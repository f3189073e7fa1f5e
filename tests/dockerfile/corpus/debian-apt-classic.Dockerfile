FROM debian:bookworm
MAINTAINER Jane Doe <jane@example.com>
RUN apt-get update && apt-get install -y \
	curl \
	ca-certificates \
	gnupg \
	&& apt-get clean
ENV LANG C.UTF-8
ENV PATH /opt/bin:$PATH
ADD https://example.com/tool.tar.gz /opt/
VOLUME /data
WORKDIR /data
CMD bash
