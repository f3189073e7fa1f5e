from alpine:3.18 as base
run apk add --no-cache curl
env FOO=bar
workdir /srv
copy . .
expose 8080
cmd ["./start.sh"]
