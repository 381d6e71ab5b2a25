# Roundhouse platform image: one binary plus its static site. PostgreSQL runs elsewhere
# (DATABASE_URL). Build: docker build -t roundhouse .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-unknown-unknown && cargo install wasm-bindgen-cli --version 0.2.130
WORKDIR /src
COPY package.json ./
RUN npm install --no-audit --no-fund --loglevel=error
COPY . .
ENV LEPTOS_OUTPUT_NAME=roundhouse CARGO_TARGET_DIR=/src/target
RUN make site && cargo build -p server --bin roundhouse --release

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app roundhouse
WORKDIR /app
COPY --from=build /src/target/release/roundhouse /app/roundhouse
COPY --from=build /src/target/site /app/site
ENV ROUNDHOUSE_ENV=production \
    ROUNDHOUSE_ADDR=0.0.0.0:3000 \
    ROUNDHOUSE_DATA_DIR=/app/data \
    LEPTOS_OUTPUT_NAME=roundhouse \
    LEPTOS_SITE_ROOT=/app/site \
    LEPTOS_SITE_PKG_DIR=pkg \
    LEPTOS_ENV=PROD
USER roundhouse
EXPOSE 3000
ENTRYPOINT ["/app/roundhouse"]
