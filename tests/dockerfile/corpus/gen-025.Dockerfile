FROM	golang:1.22 as base
ONBUILD  \
COPY . \	
	/src
env APP_HOME=/srv/app LOG_LEVEL=info

RUN  --network=none pip install --no-cache-dir -r requirements.txt
CMD  ["app", "--serve"]

Cmd  \
# a comment inside
["app", \
    "--serve"]
