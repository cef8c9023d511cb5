# Sourced by scripts/test: a throwaway PostgreSQL server for the PostgreSQL half of the suite.
# Installs Debian's `postgresql` when missing (as root, with apt), makes a cluster under a temporary
# folder, starts it on 127.0.0.1 at a free port, exports VERIFIER_TEST_POSTGRES (its maintenance
# database's URL) and stops and removes it when the calling script exits. fsync is off: this server
# holds test data only (durability is measured against a real configuration by scripts/bench_scaleout.py).
# Where it cannot be had, the reason is printed and the PostgreSQL tests are skipped with it.
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
postgres_unavailable() {
  echo "PostgreSQL not available ($1): the PostgreSQL half of the suite is skipped." >&2
  unset VERIFIER_TEST_POSTGRES
}
if [ -z "${VERIFIER_TEST_POSTGRES:-}" ] && [ "${VERIFIER_TEST_POSTGRES_OFF:-}" != 1 ]; then
  if [ -z "$(pg_bin)" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages: postgresql" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || true
  fi
  PG_BIN="$(pg_bin)"
  if [ -z "$PG_BIN" ]; then
    postgres_unavailable "no /usr/lib/postgresql/*/bin; needs root and apt-get to install it"
  else
    PG_DIR="$(mktemp -d /tmp/verifier-test-pg.XXXXXX)"
    PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_pg=()
    if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root: the cluster belongs to `postgres`
      chown postgres "$PG_DIR"
      as_pg=(runuser -u postgres --)
    fi
    stop_postgres() {
      "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
      rm -rf "$PG_DIR"
    }
    if "${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U verifier -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
      && "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR -c fsync=off -c synchronous_commit=on -c full_page_writes=off -c max_connections=400" >/dev/null; then
      trap stop_postgres EXIT
      export VERIFIER_TEST_POSTGRES="postgresql://verifier@127.0.0.1:$PG_PORT/postgres"
      export VERIFIER_TEST_POSTGRES_THROWAWAY=1  # the tests need not drop their databases one by one
      echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') for the tests on 127.0.0.1:$PG_PORT" >&2
    else
      tail -5 "$PG_DIR/initdb.log" "$PG_DIR/server.log" 2>/dev/null >&2
      stop_postgres
      postgres_unavailable "the test server did not start"
    fi
  fi
fi
