FROM alpine
ADD <<EOF /etc/motd
Welcome!
EOF
ADD --chmod=644 <<a.txt <<b.txt /srv/
alpha
a.txt
beta
b.txt
