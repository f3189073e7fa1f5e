FROM	node:20 AS base
run --network=none echo \
	"quoted 'mixed' text" \	
	> \	
	/etc/motd
RUN \	
	apk add --no-cache \
	git openssh-client
run  echo "quoted 'mixed' text" > \
# a comment inside
    /etc/motd
run \

    npm \	

    ci \

	&& npm run build
env APP_HOME=/srv/app \
LOG_LEVEL=info
CMD  ["app", "--serve"]
workdir /srv/app
RUN pip \

    install --no-cache-dir -r \ 
    requirements.txt
# section
run pip install --no-cache-dir -r requirements.txt
RUN  \ 
# a comment inside
	useradd \	
    # indented comment
	-m \
    -u \ 

	1000 app && chown -R app /srv
