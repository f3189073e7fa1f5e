FROM python:3.9
RUN mkdir -p /usr/src/app
WORKDIR /usr/src/app
ONBUILD COPY requirements.txt /usr/src/app/
ONBUILD RUN pip install --no-cache-dir -r requirements.txt
ONBUILD COPY . /usr/src/app
ONBUILD LABEL stage=child
ONBUILD HEALTHCHECK CMD ["true"]
ONBUILD EXPOSE 8080
ONBUILD USER nobody
