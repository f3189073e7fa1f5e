# escape=`
from python:3.12-slim AS base
RUN  --mount=type=cache,target=/root/.cache go build ` 

	-o /out/app -ldflags="-s -w" ./cmd/app
COPY <<-'EOT' /etc/generated.conf
	pip install --no-cache-dir -r requirements.txt
	apk add --no-cache git openssh-client
	EOT
COPY <<EOT /etc/generated.conf
apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
npm ci && npm run build
useradd -m -u 1000 app && chown -R app /srv
EOT
workdir /srv/app
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates
RUN  go build -o /out/app -ldflags="-s -w" ./cmd/app
ONBUILD  COPY . /src
Copy	--from=build /out/app /usr/local/bin/app
User  app
