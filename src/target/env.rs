//! What identifying a target reads besides the value itself: environment variables (`PG*`,
//! `AWS_ENDPOINT_URL*`), the working directory (relative paths), the home directory (`~/`,
//! `~/.pg_service.conf`) and the OS user (libpq's default user and database). Tests build one
//! by hand, so they never depend on the machine's environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// libpq's compiled-in socket directory on Debian and Ubuntu (`DEFAULT_PGSOCKET_DIR`).
const SOCKET_DIR: &str = "/var/run/postgresql";
/// Debian's `--sysconfdir` for libpq, where it looks for `pg_service.conf`.
const SYSCONF_DIR: &str = "/etc/postgresql-common";

/// The surroundings a target value is read in.
#[derive(Clone)]
pub struct Env {
    vars: BTreeMap<String, String>,
    working_dir: PathBuf,
    home: Option<PathBuf>,
    user: String,
    socket_dir: PathBuf,
    sysconf_dir: PathBuf,
}

/// The variables' names only: their values may be secrets (`PGPASSWORD`).
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("variables", &self.vars.keys().collect::<Vec<_>>())
            .field("working_dir", &self.working_dir)
            .field("home", &self.home)
            .field("user", &self.user)
            .field("socket_dir", &self.socket_dir)
            .field("sysconf_dir", &self.sysconf_dir)
            .finish()
    }
}

impl Env {
    /// This process's: its environment (variables that are not UTF-8 are left out), working
    /// directory, home (`HOME`, else the password database, as libpq does) and effective user.
    pub fn current() -> Env {
        let vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        // libpq's default user is the effective user's name, whatever `USER` says.
        let account = crate::account::effective();
        let home = vars
            .get("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .or_else(|| account.as_ref().map(|account| account.home.clone()));
        let user = account
            .map(|account| account.name)
            .or_else(|| vars.get("USER").or_else(|| vars.get("LOGNAME")).cloned())
            .unwrap_or_else(|| "postgres".to_string());
        Env {
            working_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            home,
            user,
            socket_dir: PathBuf::from(SOCKET_DIR),
            sysconf_dir: PathBuf::from(SYSCONF_DIR),
            vars,
        }
    }

    /// An empty environment in `working_dir`, for the OS user `user`, with no home directory:
    /// add what a test needs with the builder methods.
    pub fn new(working_dir: impl Into<PathBuf>, user: &str) -> Env {
        Env {
            vars: BTreeMap::new(),
            working_dir: working_dir.into(),
            home: None,
            user: user.to_string(),
            socket_dir: PathBuf::from(SOCKET_DIR),
            sysconf_dir: PathBuf::from(SYSCONF_DIR),
        }
    }

    /// The same surroundings without environment variables: how a client that applies no
    /// `PG*` defaults (drillbook's own) reads a value.
    pub fn without_vars(&self) -> Env {
        Env {
            vars: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// With the environment variable `name` set to `value`.
    pub fn with_var(mut self, name: &str, value: &str) -> Env {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Env {
        self.home = Some(home.into());
        self
    }

    /// With another compiled-in default for libpq's socket directory and system configuration
    /// directory (another distribution's libpq).
    pub fn with_libpq_defaults(
        mut self,
        socket_dir: impl Into<PathBuf>,
        sysconf_dir: impl Into<PathBuf>,
    ) -> Env {
        self.socket_dir = socket_dir.into();
        self.sysconf_dir = sysconf_dir.into();
        self
    }

    /// A variable's value; an empty one counts as unset.
    pub(crate) fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    pub(crate) fn working_dir(&self) -> &Path {
        &self.working_dir
    }

    pub(crate) fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    pub(crate) fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub(crate) fn sysconf_dir(&self) -> &Path {
        &self.sysconf_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_environment_has_a_user_and_a_working_directory() {
        let env = Env::current();
        assert!(!env.user().is_empty());
        assert!(env.working_dir().is_absolute());
    }

    #[test]
    fn debug_output_names_variables_without_their_values() {
        let env = Env::new("/", "alice").with_var("PGPASSWORD", "s3cret");
        let shown = format!("{env:?}");
        assert!(
            shown.contains("PGPASSWORD") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let env = Env::new("/", "alice").with_var("PGHOST", "");
        assert_eq!(env.var("PGHOST"), None);
        assert_eq!(env.with_var("PGHOST", "db").var("PGHOST"), Some("db"));
    }
}
