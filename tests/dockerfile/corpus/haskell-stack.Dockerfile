FROM haskell:9.4 AS build
WORKDIR /opt/build
COPY stack.yaml package.yaml /opt/build/
RUN stack build --only-dependencies --system-ghc
COPY . /opt/build
RUN stack build --system-ghc --copy-bins --local-bin-path /opt/bin

FROM ubuntu:22.04
RUN apt-get update && apt-get install -y libgmp10 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/bin/server /usr/local/bin/server
CMD ["server"]
