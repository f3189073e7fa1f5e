FROM alpine
CMD ["echo", "json form"]
CMD [ "echo" , "spaced json" ]
CMD ['echo', 'single quotes are shell form']
CMD ["echo", "trailing comma",]
CMD ["unterminated
CMD [echo, not-json]
CMD echo shell form
ENTRYPOINT []
RUN ["sh", "-c", "echo \"escaped\" \\ backslash"]
