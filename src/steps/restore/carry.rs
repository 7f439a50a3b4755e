//! What belongs to the target database itself rather than to what is in it, carried over to
//! the scratch database that replaces it: a dump holds the objects inside a database, not the
//! database's encoding and locale, owner, privileges (`GRANT CONNECT`), settings (`ALTER
//! DATABASE … SET`), connection limit or comment. An in-place restore kept them by not
//! replacing the database; the swap copies them, or fails before it swaps.

use crate::connect::pg_tools::Version;
use crate::connect::postgres::quote_ident;

/// The target database's own properties, as the catalog holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Properties {
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `c` (libc), `i` (ICU), `b` (builtin, 17+); none before PostgreSQL 15.
    pub provider: Option<String>,
    pub locale: Option<String>,
    pub icu_rules: Option<String>,
    /// Unless it is `pg_default`.
    pub tablespace: Option<String>,
    pub connection_limit: i32,
    /// `None`: the default privileges. Otherwise each (grantee, privilege, grantable), the
    /// grantee `None` for PUBLIC.
    pub grants: Option<Vec<(Option<String>, String, bool)>>,
    /// `ALTER DATABASE … SET` (role `None`) and `ALTER ROLE … IN DATABASE … SET`, as stored:
    /// `name=value`.
    pub settings: Vec<(Option<String>, Vec<String>)>,
    pub comment: Option<String>,
}

/// Reads them; `None` when the database does not exist.
pub(super) async fn read(
    client: &tokio_postgres::Client,
    version: Version,
    database: &str,
) -> Result<Option<Properties>, tokio_postgres::Error> {
    let (provider, locale, rules) = match version.major {
        0..=14 => ("NULL::text", "NULL::text", "NULL::text"),
        15 => ("d.datlocprovider::text", "d.daticulocale", "NULL::text"),
        16 => ("d.datlocprovider::text", "d.daticulocale", "d.daticurules"),
        _ => ("d.datlocprovider::text", "d.datlocale", "d.daticurules"),
    };
    let sql = format!(
        "SELECT pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text,
                d.datcollate::text, d.datctype::text, {provider}, {locale}, {rules},
                t.spcname::text, d.datconnlimit, d.datacl IS NOT NULL,
                shobj_description(d.oid, 'pg_database')
           FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
          WHERE d.datname = $1"
    );
    let Some(row) = client.query_opt(&sql, &[&database]).await? else {
        return Ok(None);
    };
    let tablespace: String = row.get(7);
    let mut properties = Properties {
        owner: row.get(0),
        encoding: row.get(1),
        collate: row.get(2),
        ctype: row.get(3),
        provider: row.get(4),
        locale: row.get(5),
        icu_rules: row.get(6),
        tablespace: (tablespace != "pg_default").then_some(tablespace),
        connection_limit: row.get(8),
        grants: None,
        settings: Vec::new(),
        comment: super::names::PreviousMark::original(row.get(10)),
    };
    if row.get::<_, bool>(9) {
        let rows = client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                        a.privilege_type::text, a.is_grantable
                   FROM pg_database d, aclexplode(d.datacl) a
                  WHERE d.datname = $1 ORDER BY 1 NULLS FIRST, 2",
                &[&database],
            )
            .await?;
        properties.grants = Some(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        );
    }
    properties.settings = client
        .query(
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole)::text END,
                    s.setconfig
               FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
              WHERE d.datname = $1 ORDER BY 1 NULLS FIRST",
            &[&database],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Some(properties))
}

impl Properties {
    /// `CREATE DATABASE` options making a database with the same encoding, locale and
    /// tablespace, empty (from `template0`, as pg_restore wants).
    pub(super) fn create_options(&self) -> String {
        let mut options = format!(
            " TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            literal(&self.encoding),
            literal(&self.collate),
            literal(&self.ctype)
        );
        match (self.provider.as_deref(), self.locale.as_deref()) {
            (Some("i"), Some(locale)) => {
                options.push_str(&format!(
                    " LOCALE_PROVIDER icu ICU_LOCALE {}",
                    literal(locale)
                ));
                if let Some(rules) = &self.icu_rules {
                    options.push_str(&format!(" ICU_RULES {}", literal(rules)));
                }
            }
            (Some("b"), Some(locale)) => options.push_str(&format!(
                " LOCALE_PROVIDER builtin BUILTIN_LOCALE {}",
                literal(locale)
            )),
            (Some("c"), _) => options.push_str(" LOCALE_PROVIDER libc"),
            _ => {}
        }
        if let Some(tablespace) = &self.tablespace {
            options.push_str(&format!(" TABLESPACE {}", quote_ident(tablespace)));
        }
        options
    }

    /// The statements that give `database` (made by `role`) these properties, but for the
    /// comment, which the swap sets.
    pub(super) fn statements(&self, database: &str, role: &str) -> Vec<String> {
        let name = quote_ident(database);
        let mut statements = Vec::new();
        if self.owner != role {
            statements.push(format!(
                "ALTER DATABASE {name} OWNER TO {}",
                quote_ident(&self.owner)
            ));
        }
        if self.connection_limit != -1 {
            statements.push(format!(
                "ALTER DATABASE {name} CONNECTION LIMIT {}",
                self.connection_limit
            ));
        }
        if let Some(grants) = &self.grants {
            // Whatever the defaults gave, then exactly the target's privileges.
            statements.push(format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"));
            statements.push(format!(
                "REVOKE ALL ON DATABASE {name} FROM {}",
                quote_ident(&self.owner)
            ));
            for (grantee, privilege, grantable) in grants {
                statements.push(format!(
                    "GRANT {privilege} ON DATABASE {name} TO {}{}",
                    grantee.as_deref().map_or("PUBLIC".into(), quote_ident),
                    if *grantable { " WITH GRANT OPTION" } else { "" }
                ));
            }
        }
        for (role, configs) in &self.settings {
            let alter = match role {
                None => format!("ALTER DATABASE {name}"),
                Some(role) => format!("ALTER ROLE {} IN DATABASE {name}", quote_ident(role)),
            };
            for config in configs {
                if let Some((setting, value)) = config.split_once('=') {
                    statements.push(format!(
                        "{alter} SET {} TO {}",
                        setting_name(setting),
                        setting_value(setting, value)
                    ));
                }
            }
        }
        statements
    }

    /// What was carried over, for the evidence.
    pub(super) fn summary(&self) -> String {
        let mut parts = vec![
            format!("owner {}", self.owner),
            format!("encoding {}", self.encoding),
            format!(
                "locale {}",
                self.locale.as_deref().unwrap_or(self.collate.as_str())
            ),
        ];
        if let Some(grants) = &self.grants {
            parts.push(format!("{} privilege(s)", grants.len()));
        }
        let settings: usize = self.settings.iter().map(|(_, c)| c.len()).sum();
        if settings > 0 {
            parts.push(format!("{settings} setting(s)"));
        }
        if self.connection_limit != -1 {
            parts.push(format!("connection limit {}", self.connection_limit));
        }
        if let Some(tablespace) = &self.tablespace {
            parts.push(format!("tablespace {tablespace}"));
        }
        if self.comment.is_some() {
            parts.push("its comment".into());
        }
        parts.join(", ")
    }
}

/// `'text'` with quotes doubled: a string literal (standard_conforming_strings, the default
/// since PostgreSQL 9.1, takes backslashes as they are; `E''` would not).
pub(super) fn literal(text: &str) -> String {
    if text.contains('\\') {
        format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// A setting's name as SET takes it: catalog names are plain (`work_mem`, `app.tenant`).
fn setting_name(name: &str) -> String {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if plain && !name.is_empty() {
        name.to_string()
    } else {
        quote_ident(name)
    }
}

/// The settings PostgreSQL stores as a list of quoted names (pg_dump's
/// `variable_is_guc_list_quote`): stored as `"$user", public`, set as `'$user', 'public'`.
const LIST_SETTINGS: &[&str] = &[
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// A stored value as SET takes it back, as pg_dump writes it.
fn setting_value(name: &str, value: &str) -> String {
    if !LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        return literal(value);
    }
    let items = split_list(value);
    if items.is_empty() {
        return "''".into();
    }
    items
        .iter()
        .map(|item| literal(item))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"$user", public, "a ""b"""` → `$user`, `public`, `a "b"` (PostgreSQL's SplitGUCList).
fn split_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.next_if_eq(&'"').is_some() {
                        item.push('"');
                    } else {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
            while chars.next_if(|c| *c != ',').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                item.push(c);
            }
            item = item.trim_end().to_string();
        }
        if !item.is_empty() {
            items.push(item);
        }
        if chars.next().is_none() {
            return items;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_are_set_item_by_item_as_pg_dump_does() {
        assert_eq!(
            setting_value("search_path", "\"$user\", public"),
            "'$user', 'public'"
        );
        assert_eq!(
            setting_value("search_path", "\"a \"\"b\"\"\", c ,d"),
            "'a \"b\"', 'c', 'd'"
        );
        assert_eq!(setting_value("search_path", ""), "''");
        assert_eq!(setting_value("work_mem", "64MB"), "'64MB'");
        assert_eq!(setting_value("app.motto", "it's"), "'it''s'");
        assert_eq!(setting_value("app.path", "C:\\x"), "E'C:\\\\x'");
        assert_eq!(setting_name("app.tenant"), "app.tenant");
        assert_eq!(setting_name("Odd"), "\"Odd\"");
    }

    #[test]
    fn the_statements_make_a_database_like_the_target() {
        let properties = Properties {
            owner: "app".into(),
            encoding: "UTF8".into(),
            collate: "en_US.UTF-8".into(),
            ctype: "en_US.UTF-8".into(),
            provider: Some("c".into()),
            connection_limit: 20,
            grants: Some(vec![
                (None, "TEMPORARY".into(), false),
                (Some("app".into()), "CONNECT".into(), false),
                (Some("reader".into()), "CONNECT".into(), true),
            ]),
            settings: vec![
                (None, vec!["search_path=\"$user\", app".into()]),
                (Some("reader".into()), vec!["statement_timeout=5s".into()]),
            ],
            ..Properties::default()
        };
        assert_eq!(
            properties.create_options(),
            " TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'en_US.UTF-8' LC_CTYPE 'en_US.UTF-8' LOCALE_PROVIDER libc"
        );
        assert_eq!(
            properties.statements("s", "drillbook"),
            [
                "ALTER DATABASE \"s\" OWNER TO \"app\"",
                "ALTER DATABASE \"s\" CONNECTION LIMIT 20",
                "REVOKE ALL ON DATABASE \"s\" FROM PUBLIC",
                "REVOKE ALL ON DATABASE \"s\" FROM \"app\"",
                "GRANT TEMPORARY ON DATABASE \"s\" TO PUBLIC",
                "GRANT CONNECT ON DATABASE \"s\" TO \"app\"",
                "GRANT CONNECT ON DATABASE \"s\" TO \"reader\" WITH GRANT OPTION",
                "ALTER DATABASE \"s\" SET search_path TO '$user', 'app'",
                "ALTER ROLE \"reader\" IN DATABASE \"s\" SET statement_timeout TO '5s'",
            ]
        );
        // The owner itself makes no statement, nor do defaults.
        let plain = Properties {
            owner: "drillbook".into(),
            connection_limit: -1,
            ..Properties::default()
        };
        assert!(plain.statements("s", "drillbook").is_empty());
    }
}
