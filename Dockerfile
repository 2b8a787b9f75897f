# Builds the coordinator and the hello example host on Debian 12 packages.
FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ cmake ninja-build pkg-config libboost1.81-dev libboost-url1.81-dev libssl-dev \
      nlohmann-json3-dev libpq-dev libsqlite3-dev libgtest-dev libgmock-dev libspdlog-dev \
      libcli11-dev prometheus-cpp-dev nodejs \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo && \
    cmake --build build --target funcky hello

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpq5 libsqlite3-0 libssl3 libspdlog1.10 libfmt9 libboost-url1.81.0 \
      libprometheus-cpp-core1.0 ca-certificates tzdata && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/coordinator/funcky /usr/local/bin/funcky
COPY --from=build /src/build/examples/hello /usr/local/bin/hello
# Not root: the coordinator needs no privilege (its port is above 1024; a SQLite file goes in
# the working folder, which this user owns).
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/funcky funcky
USER funcky
WORKDIR /var/lib/funcky
EXPOSE 8288
ENTRYPOINT ["funcky"]
