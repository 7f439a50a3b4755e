# drillbook's image: the binary, the PostgreSQL client programs, the shipped playbooks, run as a
# non-root user. How to schedule it: docs/scheduling.md.
#
#   docker build -t drillbook .
#   docker run --rm drillbook validate playbooks/nightly-backup.yaml
#
# The playbooks that start throwaway PostgreSQL clusters (quickstart, monthly-restore-smoke,
# pitr-restore-drill) and quarterly-failover's pg_rewind need the server programs too:
#
#   docker build --build-arg POSTGRES_SERVER=true -t drillbook:server .

FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The release profile of Cargo.toml (stripped, fat LTO, one codegen unit); the versions of Cargo.lock.
RUN cargo install --locked --path . --root /out

FROM debian:trixie-slim
ARG POSTGRES_SERVER=false
# pg_dump, pg_restore, psql, pg_basebackup, pg_verifybackup (postgresql-client); with
# POSTGRES_SERVER=true also initdb, pg_ctl, postgres, pg_waldump, pg_rewind (postgresql),
# without the cluster its package would create. Debian's package versions are not pinned: the
# base image's tag pins the release, and a pinned version disappears from the archive with the
# next security update, which would break the build.
# hadolint ignore=DL3008
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates postgresql-client; \
    if [ "$POSTGRES_SERVER" = true ]; then \
      mkdir -p /etc/postgresql-common/createcluster.d; \
      echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/drillbook.conf; \
      apt-get install -y --no-install-recommends postgresql; \
    fi; \
    rm -rf /var/lib/apt/lists/*; \
    useradd --system --uid 10001 --user-group --home-dir /var/lib/drillbook --create-home \
      --shell /usr/sbin/nologin drillbook
COPY --from=build /out/bin/drillbook /usr/local/bin/drillbook
COPY LICENSE /usr/share/doc/drillbook/LICENSE
COPY playbooks /drillbook/playbooks
WORKDIR /drillbook
# Runs are kept in /var/lib/drillbook (mount a volume there), or in a bucket with
# DRILLBOOK_STATE=s3://bucket/prefix, worked on in /var/lib/drillbook.
ENV DRILLBOOK_STATE_DIR=/var/lib/drillbook
USER 10001:10001
ENTRYPOINT ["drillbook"]
CMD ["--help"]
