# syntax=docker/dockerfile:1
FROM nginx:alpine
COPY <<EOF /etc/nginx/conf.d/default.conf
server {
    listen 80;
    location / {
        root /usr/share/nginx/html;
    }
}
EOF
COPY <<-"INDEX" /usr/share/nginx/html/index.html
	<html>
	  <body>$TITLE</body>
	</html>
	INDEX
