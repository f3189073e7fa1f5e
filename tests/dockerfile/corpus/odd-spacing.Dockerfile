   FROM    alpine:latest     AS    x
    RUN     echo   "spaced    out"   
	ENV	A=1	B=2
  LABEL   maintainer="me"    version="1.0"   
  EXPOSE    80/tcp     443/tcp  
WORKDIR   /a/b/c   
