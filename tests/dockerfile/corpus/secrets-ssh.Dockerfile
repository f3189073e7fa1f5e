# syntax=docker/dockerfile:1
FROM alpine
RUN apk add --no-cache openssh-client git
RUN mkdir -p -m 0700 ~/.ssh && ssh-keyscan github.com >> ~/.ssh/known_hosts
RUN --mount=type=ssh git clone git@github.com:myorg/private.git /src
RUN --mount=type=secret,id=aws,target=/root/.aws/credentials aws s3 cp s3://bucket/file /file
RUN --mount=type=secret,id=github_token,required \
    GITHUB_TOKEN=$(cat /run/secrets/github_token) ./fetch.sh
