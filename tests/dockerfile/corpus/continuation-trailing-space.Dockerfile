FROM alpine
RUN echo one \   
    two \	
    three
RUN echo four \\
RUN echo five
