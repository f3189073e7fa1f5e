FROM centos:7
RUN yum -y update && \
    yum -y install epel-release && \
    yum -y install \
      nginx \
      supervisor \
      python3 \
      python3-pip && \
    yum clean all && \
    rm -rf /var/cache/yum
RUN pip3 install --upgrade pip && \
    pip3 install flask==2.0.3 gunicorn==20.1.0
COPY supervisord.conf /etc/supervisord.conf
CMD ["/usr/bin/supervisord", "-c", "/etc/supervisord.conf"]
