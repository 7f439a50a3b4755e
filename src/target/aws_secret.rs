//! A secret in AWS Secrets Manager (or a server speaking its API): the server (the
//! environment's `AWS_ENDPOINT_URL_SECRETS_MANAGER`, else `AWS_ENDPOINT_URL`, else AWS
//! itself), the region (an ARN's, else `AWS_REGION`/`AWS_DEFAULT_REGION`; unknown overlaps any)
//! and the secret's name (an ARN's name without its random suffix). A `#field` is part of the
//! secret: writing one field writes a new version of the whole secret.

use std::fmt;

use super::Env;
use super::store::{Server, server};
use crate::secrets::SecretRef;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AwsSecret {
    server: Server,
    region: Option<String>,
    name: String,
}

impl AwsSecret {
    pub(crate) fn of(value: &str, env: &Env) -> Result<AwsSecret, String> {
        let reference = SecretRef::parse(value)?;
        let endpoint = env
            .var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
            .or_else(|| env.var("AWS_ENDPOINT_URL"));
        let region = reference
            .region()
            .or_else(|| env.var("AWS_REGION"))
            .or_else(|| env.var("AWS_DEFAULT_REGION"))
            .map(str::to_ascii_lowercase);
        Ok(AwsSecret {
            server: match endpoint {
                Some(endpoint) => server(
                    endpoint,
                    "the Secrets Manager endpoint",
                    "a Secrets Manager endpoint",
                )?,
                None => Server::Aws,
            },
            region,
            name: reference.name().to_string(),
        })
    }

    /// The same server, region (or one unknown) and name.
    pub(crate) fn overlaps(&self, other: &AwsSecret) -> bool {
        let same_region = match (&self.region, &other.region) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.server.overlaps(&other.server) && same_region && self.name == other.name
    }

    pub(crate) fn server(&self) -> &Server {
        &self.server
    }
}

/// `secret production/app in eu-west-1 on AWS`.
impl fmt::Display for AwsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret {}", self.name)?;
        if let Some(region) = &self.region {
            write!(f, " in {region}")?;
        }
        self.server.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str, env: &Env) -> AwsSecret {
        AwsSecret::of(value, env).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    #[test]
    fn other_spellings_of_one_secret_overlap() {
        let env = Env::new("/", "a").with_var("AWS_REGION", "eu-west-1");
        let name = secret("production/app", &env);
        for other in [
            "production/app#DATABASE_URL",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:production/app-AbC123",
            " production/app ",
        ] {
            assert!(secret(other, &env).overlaps(&name), "{other}");
        }
        let elsewhere =
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:production/app-AbC123";
        assert!(!secret(elsewhere, &env).overlaps(&name));
        assert!(!secret("staging/app", &env).overlaps(&name));
        // No region known: it may be any, so it overlaps.
        assert!(secret("production/app", &Env::new("/", "a")).overlaps(&name));
    }

    #[test]
    fn the_endpoint_is_part_of_the_identity() {
        let local = Env::new("/", "a").with_var("AWS_ENDPOINT_URL", "http://127.0.0.1:5000");
        let sm_only = Env::new("/", "a")
            .with_var("AWS_ENDPOINT_URL", "http://192.0.2.1:9")
            .with_var("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://localhost:5000");
        assert!(secret("app", &local).overlaps(&secret("app", &sm_only)));
        assert!(!secret("app", &local).overlaps(&secret("app", &Env::new("/", "a"))));
        assert_eq!(
            secret("app", &local).to_string(),
            "secret app at http://127.0.0.1:5000 (this host)"
        );
        assert_eq!(
            secret(
                "arn:aws:secretsmanager:eu-west-1:1:secret:app-AbC123",
                &Env::new("/", "a")
            )
            .to_string(),
            "secret app in eu-west-1 on AWS"
        );
    }
}
