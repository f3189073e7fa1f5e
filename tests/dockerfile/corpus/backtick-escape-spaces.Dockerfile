#escape = `
FROM windows
RUN dir c:\ `
  /s
LABEL a=`"quoted`" b=c`d
