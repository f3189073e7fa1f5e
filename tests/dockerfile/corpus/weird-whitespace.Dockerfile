FROM alpine
RUN	echo tab after keyword
CMD	["tab", "json"]
ENV	K=V
