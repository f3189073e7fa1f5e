FROM alpine
RUN echo trailing double backslash \\
RUN echo ok
RUN echo triple \\\
    continued
