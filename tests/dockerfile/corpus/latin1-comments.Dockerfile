FROM alpine
# café crème brûlée ÿþ
RUN echo ok \
# Kommentar über älles
  && true
LABEL a=b
