//! The shell functions a runbook's commands use, defined once at its top: stores (a directory
//! or S3, through the AWS CLI), PostgreSQL and Redis connections whose passwords never go on a
//! command line, the checks drillbook makes. Only those the commands use are written.

/// A helper: its name, the helpers it calls, its definition.
struct Helper {
    name: &'static str,
    needs: &'static [&'static str],
    text: &'static str,
}

const HELPERS: &[Helper] = &[
    Helper {
        name: "fail",
        needs: &[],
        text: r#"# fail MESSAGE: says why to stop here (and stops a script run with `set -e`).
fail() { echo "STOP: $*" >&2; return 1; }"#,
    },
    Helper {
        name: "store_path",
        needs: &[],
        text: r#"# store_path STORE: where a store is without its options: a directory, or s3://bucket/prefix.
store_path() { local place=${1%%\?*}; place=${place#file://}; printf '%s\n' "${place%/}"; }"#,
    },
    Helper {
        name: "store_aws",
        needs: &[],
        text: r#"# store_aws STORE ARGS…: the AWS CLI with the store URL's ?endpoint=…&region=… as its options.
# Credentials as usual: AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
store_aws() {
  local store=$1 pair; shift
  local -a options=() pairs=()
  if [[ $store == *\?* ]]; then
    IFS='&' read -ra pairs <<<"${store#*\?}"
    for pair in ${pairs[@]+"${pairs[@]}"}; do
      case $pair in
        endpoint=*) options+=(--endpoint-url "${pair#endpoint=}") ;;
        region=*) options+=(--region "${pair#region=}") ;;
      esac
    done
  fi
  aws ${options[@]+"${options[@]}"} "$@"
}"#,
    },
    Helper {
        name: "fetch",
        needs: &["store_path", "store_aws"],
        text: r#"# fetch STORE KEY FILE: copies one object of a store (a directory, file:///path or s3://…) into FILE.
fetch() {
  case $1 in
    s3://*) store_aws "$1" s3 cp --only-show-errors "$(store_path "$1")/$2" "$3" ;;
    *) cp -- "$(store_path "$1")/$2" "$3" ;;
  esac
}"#,
    },
    Helper {
        name: "put",
        needs: &["store_path", "store_aws"],
        text: r#"# put STORE KEY FILE: copies FILE into a store under KEY.
put() {
  case $1 in
    s3://*) store_aws "$1" s3 cp --only-show-errors "$3" "$(store_path "$1")/$2" ;;
    *) mkdir -p "$(store_path "$1")" && cp -- "$3" "$(store_path "$1")/$2.tmp" &&
       mv -f -- "$(store_path "$1")/$2.tmp" "$(store_path "$1")/$2" ;;
  esac
}"#,
    },
    Helper {
        name: "keys",
        needs: &["store_path", "store_aws"],
        text: r#"# keys STORE: the names at the top of a store, one a line (a folder ends with /).
keys() {
  case $1 in
    s3://*) store_aws "$1" s3 ls "$(store_path "$1")/" |
              awk '$1 == "PRE" { print $2; next } { print $4 }' ;;
    *) ls -1Ap -- "$(store_path "$1")" ;;
  esac
}"#,
    },
    Helper {
        name: "size_of",
        needs: &["store_path", "store_aws"],
        text: r#"# size_of STORE KEY: the stored object's size in bytes.
size_of() {
  case $1 in
    s3://*) store_aws "$1" s3 ls "$(store_path "$1")/$2" | awk -v name="${2##*/}" '$4 == name { print $3 }' ;;
    *) stat -c %s -- "$(store_path "$1")/$2" ;;
  esac
}"#,
    },
    Helper {
        name: "mirror",
        needs: &["store_path", "store_aws"],
        text: r#"# mirror SOURCE DESTINATION [--delete] [--storage-class CLASS]: copies what is new or different
# (by size and time, not by checksum) and leaves drillbook's own .drillbook/ alone.
mirror() {
  local source=$1 destination=$2; shift 2
  case "$source $destination" in
    *s3://*) store_aws "$(case $source in s3://*) echo "$source" ;; *) echo "$destination" ;; esac)" \
               s3 sync --only-show-errors --exclude '.drillbook/*' "$@" \
               "$(store_path "$source")/" "$(store_path "$destination")/" ;;
    *) mkdir -p "$(store_path "$destination")" &&
       rsync -a --exclude /.drillbook/ $( [[ " $* " == *" --delete "* ]] && echo --delete ) \
         "$(store_path "$source")/" "$(store_path "$destination")/" ;;
  esac
}"#,
    },
    Helper {
        name: "pg_parse",
        needs: &[],
        text: r#"# pg_parse URL: a postgres:// URL's parts into PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
# PGSSLMODE (in the calling shell: use it in a subshell, as `pg` does).
pg_parse() {
  local re='^postgres(ql)?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?(/([^?]*))?([?](.*))?$' pair
  local -a pairs=()
  [[ $1 =~ $re ]] || { echo "not a postgres:// URL (its value is not shown)" >&2; return 2; }
  PGUSER=$(urldecode "${BASH_REMATCH[3]}") PGPASSWORD=$(urldecode "${BASH_REMATCH[5]}")
  PGHOST=$(urldecode "${BASH_REMATCH[6]}") PGPORT=${BASH_REMATCH[8]:-5432}
  PGDATABASE=$(urldecode "${BASH_REMATCH[10]}") PGSSLMODE=prefer
  IFS='&' read -ra pairs <<<"${BASH_REMATCH[12]}"
  for pair in ${pairs[@]+"${pairs[@]}"}; do
    case $pair in
      sslmode=*) PGSSLMODE=${pair#sslmode=} ;;
      host=*) PGHOST=$(urldecode "${pair#host=}") ;;
    esac
  done
  PGUSER=${PGUSER:-$(id -un)} PGHOST=${PGHOST:-/var/run/postgresql}
  PGDATABASE=${PGDATABASE:-$PGUSER}
}
# urldecode TEXT: %XX escapes decoded.
urldecode() { local text=${1//\\/\\\\}; printf '%b' "${text//%/\\x}"; }"#,
    },
    Helper {
        name: "pg",
        needs: &["pg_parse"],
        text: r#"# pg URL PROGRAM ARGS…: runs a PostgreSQL client program with the URL in libpq's environment, never
# on its command line (where every user of the host can read a password).
pg() {
  local url=$1; shift
  (
    pg_parse "$url" || exit 2
    export PGHOST PGPORT PGUSER PGDATABASE PGSSLMODE PGCONNECT_TIMEOUT=10
    if [ -n "$PGPASSWORD" ]; then export PGPASSWORD; else unset PGPASSWORD; fi
    exec "$@"
  )
}
# pg_database URL: the database a URL names.
pg_database() { ( pg_parse "$1" && printf '%s\n' "$PGDATABASE" ); }
# sql URL [psql ARGS…]: psql on the URL, quiet, unaligned, stopping at the first error; SQL from -c
# or standard input, where :'name' and :"name" are -v name=… as a literal and as an identifier.
sql() { local url=$1; shift; pg "$url" psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }"#,
    },
    Helper {
        name: "rows_match",
        needs: &["pg", "fail"],
        text: r#"# rows_match URL DATABASE MANIFEST: every table's row count against the backup's manifest.
rows_match() {
  local url=$1 db=$2 manifest=$3 schema table rows found wrong=0 total=0
  while IFS=$'\t' read -r schema table rows; do
    found=$(sql "$url" -d "$db" -v s="$schema" -v t="$table" <<'SQL'
SELECT count(*) FROM :"s".:"t";
SQL
)
    total=$((total + found))
    if [ "$found" != "$rows" ]; then
      echo "$schema.$table has $found rows, the backup $rows" >&2; wrong=1
    fi
  done < <(jq -r '.tables[] | [.schema, .table, .rows] | @tsv' "$manifest")
  [ "$wrong" = 0 ] || fail "the row counts differ from the backup's manifest"
  echo "$(jq '.tables | length' "$manifest") tables, $total rows, each as in the backup"
}
# objects_match URL DATABASE MANIFEST: the number of large objects against the manifest.
objects_match() {
  local found wanted
  found=$(sql "$1" -d "$2" -c 'SELECT count(*) FROM pg_largeobject_metadata')
  wanted=$(jq -r .large_objects "$3")
  [ "$found" = "$wanted" ] || fail "$found large objects, the backup $wanted"
  echo "$found large objects, $wanted in the backup"
}"#,
    },
    Helper {
        name: "sequences_ok",
        needs: &["pg"],
        text: r#"# sequences_ok URL: fails when a sequence would hand out an id its column already holds.
sequences_ok() {
  sql "$1" <<'SQL'
DO $$
DECLARE r record; last bigint; called boolean; highest bigint; next bigint; behind text := '';
BEGIN
  FOR r IN SELECT s.seqrelid::regclass::text AS seq, a.attrelid::regclass::text AS tab, a.attname AS col
             FROM pg_sequence s
             JOIN pg_depend d ON d.objid = s.seqrelid AND d.classid = 'pg_class'::regclass
                             AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
  LOOP
    EXECUTE format('SELECT last_value, is_called FROM %s', r.seq) INTO last, called;
    EXECUTE format('SELECT max(%I)::bigint FROM %s', r.col, r.tab) INTO highest;
    next := CASE WHEN called THEN last + 1 ELSE last END;
    IF highest IS NOT NULL AND next <= highest THEN
      behind := behind || format('%s would next give %s, %s.%s already holds %s; ', r.seq, next, r.tab, r.col, highest);
    END IF;
  END LOOP;
  IF behind <> '' THEN RAISE EXCEPTION 'sequences behind their columns: %', behind; END IF;
END $$;
SQL
}"#,
    },
    Helper {
        name: "meets",
        needs: &[],
        text: r#"# meets VALUE EXPECTATION: 42, ">= 100", "< 5", "!= 0", "= on" or non-empty, as drillbook compares
# (numbers as numbers).
meets() {
  local value=$1 expectation op wanted number='^-?[0-9]+([.][0-9]+)?$'
  expectation=$(printf '%s' "$2" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
  [ "$expectation" = non-empty ] && { [ -n "$value" ]; return; }
  case $expectation in
    '>='* | '<='* | '!='* | '=='*) op=${expectation:0:2} wanted=${expectation:2} ;;
    '>'* | '<'* | '='*) op=${expectation:0:1} wanted=${expectation:1} ;;
    *) op='==' wanted=$expectation ;;
  esac
  wanted=$(printf '%s' "$wanted" | sed 's/^[[:space:]]*//')
  if [[ $value =~ $number && $wanted =~ $number ]]; then
    awk -v a="$value" -v b="$wanted" -v op="$op" 'BEGIN { exit !((op == ">=" && a >= b) ||
      (op == "<=" && a <= b) || (op == ">" && a > b) || (op == "<" && a < b) ||
      (op == "!=" && a != b) || ((op == "=" || op == "==") && a == b)) }'
  else
    case $op in '=' | '==') [ "$value" = "$wanted" ] ;; '!=') [ "$value" != "$wanted" ] ;; *) return 1 ;; esac
  fi
}"#,
    },
    Helper {
        name: "rcli",
        needs: &[],
        text: r#"# redis_connect URL: redis-cli's connection options for a redis:// or rediss:// URL in RCLI, and its
# password in REDISCLI_AUTH (never on a command line). rcli URL ARGS…: redis-cli on that URL.
redis_connect() {
  local re='^redis(s?)://(([^:@/]*)(:([^@/]*))?@)?([^:/]+)(:([0-9]+))?(/([0-9]+))?$'
  [[ $1 =~ $re ]] || { echo "not a redis:// URL (its value is not shown)" >&2; return 2; }
  RCLI=(-h "${BASH_REMATCH[6]}" -p "${BASH_REMATCH[8]:-6379}" -n "${BASH_REMATCH[10]:-0}")
  [ -n "${BASH_REMATCH[1]}" ] && RCLI+=(--tls)
  [ -n "${BASH_REMATCH[3]}" ] && RCLI+=(--user "${BASH_REMATCH[3]}")
  if [ -n "${BASH_REMATCH[5]}" ]; then export REDISCLI_AUTH="${BASH_REMATCH[5]}"; fi
}
rcli() { ( redis_connect "$1" || exit 2; shift; redis-cli "${RCLI[@]}" "$@" ); }
# redis_host URL: the host a Redis URL points at.
redis_host() { ( redis_connect "$1" >/dev/null && printf '%s\n' "${RCLI[1]}" ); }"#,
    },
    Helper {
        name: "set_env_var",
        needs: &["fail"],
        text: r#"# set_env_var FILE NAME: sets NAME to $NEW_VALUE in an env file, as drillbook does: every line that
# sets it (NAME=… or export NAME=…, its quoting kept) or a line added; the new file written beside
# it and renamed over it (never half a file), the old one kept as FILE.previous.
set_env_var() {
  local file name=$2 temporary
  file=$(readlink -f -- "$1") || fail "no env file $1"
  temporary=$(mktemp "$(dirname -- "$file")/.$(basename -- "$file").XXXXXX")
  awk -v name="$name" '
    BEGIN { value = ENVIRON["NEW_VALUE"] }
    {
      line = $0; cr = ""
      if (sub(/\r$/, "", line)) cr = "\r"
      if (match(line, "^[ \t]*(export[ \t]+)?" name "[ \t]*=[ \t]*")) {
        head = substr(line, 1, RLENGTH); old = substr(line, RLENGTH + 1); sub(/[ \t]+$/, "", old)
        q = substr(old, 1, 1)
        if ((q == "\"" || q == "'\''") && length(old) >= 2 && substr(old, length(old), 1) == q)
          print head q value q cr
        else
          print head value cr
        found = 1; next
      }
      print
    }
    END { if (!found) print name "=" value }' "$file" >"$temporary" || { rm -f "$temporary"; fail "cannot write beside $file"; }
  chmod --reference="$file" "$temporary"
  chown --reference="$file" "$temporary" 2>/dev/null || true
  ln -f -- "$file" "$file.previous" 2>/dev/null || cp -p -- "$file" "$file.previous"
  mv -f -- "$temporary" "$file"
  sync -f "$file" 2>/dev/null || true
}"#,
    },
];

/// The definitions of `used` and of what they call, in a fixed order.
pub(super) fn definitions(used: &std::collections::BTreeSet<&'static str>) -> Vec<&'static str> {
    let mut wanted: std::collections::BTreeSet<&str> = used.iter().copied().collect();
    loop {
        let more: Vec<&str> = HELPERS
            .iter()
            .filter(|h| wanted.contains(h.name))
            .flat_map(|h| h.needs.iter().copied())
            .filter(|n| !wanted.contains(n))
            .collect();
        if more.is_empty() {
            break;
        }
        wanted.extend(more);
    }
    HELPERS
        .iter()
        .filter(|h| wanted.contains(h.name))
        .map(|h| h.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_brings_what_it_calls() {
        let used = ["fetch"].into_iter().collect();
        let text = definitions(&used).join("\n");
        assert!(text.contains("fetch()"));
        assert!(text.contains("store_path()"));
        assert!(text.contains("store_aws()"));
        assert!(!text.contains("rcli()"));
    }
}
