# syntax=docker/dockerfile:1
From	node:20 AS base
COPY  \
	--from=build /out/app /usr/local/bin/app
SHELL	["/bin/bash", "-c"]
env \	
	APP_HOME=/srv/app \	
LOG_LEVEL=info
Copy --chown=app:app --chmod=0644 config.yml /etc/app/
user	app
Stopsignal  SIGTERM
# section
ONBUILD  RUN make
RUN npm ci && npm \
    # indented comment
	run build
   
Env	APP_HOME=/srv/app LOG_LEVEL=info
