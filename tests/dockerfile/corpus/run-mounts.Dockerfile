FROM python:3.11
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked pip install numpy
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required=true npm ci
RUN --mount=type=ssh,id=default git clone git@github.com:org/repo.git
RUN --mount=type=bind,source=.,target=/src,rw make -C /src
RUN --mount=type=tmpfs,target=/tmp,size=64m ls /tmp
RUN --mount=type=cache,id=apt,target=/var/cache/apt,mode=0755,uid=0,gid=0 apt-get update
RUN --mount=from=builder,src=/out,dst=/in,readonly cp -r /in /final
RUN --mount=type=secret,id=token,env=TOKEN ./use-token.sh
RUN --network=none --security=sandbox echo isolated
RUN --network=host curl localhost
