FROM alpine
ADD --chown=app:app https://example.com/a.tgz /tmp/
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/b.tar /b.tar
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.10.1 /buildkit
ADD --link archive.tar.xz /opt/
ADD --unpack=false app.tar.gz /opt/
ADD --chmod=755 --exclude=*.tmp dir/ /opt/dir/
