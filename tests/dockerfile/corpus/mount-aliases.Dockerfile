FROM alpine
RUN --mount=type=bind,src=.,dst=/src,ro ls /src
RUN --mount=type=bind,source=a,destination=/a,readonly=true cat /a
RUN --mount=type=bind,target=/b,rw=true,from=alpine ls /b
RUN --mount=type=cache,target=/c,readwrite ls /c
RUN --mount=type=tmpfs,dst=/t,size=1g ls /t
RUN --mount=type=secret,id=s,dst=/run/s,mode=0400,uid=1000,gid=1000 cat /run/s
RUN --mount=type=ssh,id=gitlab,required=false ssh -T git@gitlab.com
