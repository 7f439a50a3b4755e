//! moto's server (`moto_server`, from PyPI's `moto[server]`) on a free loopback port, for the
//! AWS APIs s3s-fs lacks: Secrets Manager, bucket versioning and lifecycle rules, IAM with its
//! authorization enforced. Set up through boto3 (moto's own dependency), the real AWS client
//! for Python. Each test starts its own server; it is killed on drop.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";
/// Credentials for a server without authorization (moto accepts any).
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";

pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    child: Child,
    /// The administrator's keys, on a server whose authorization is enforced.
    admin: Option<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl Moto {
    /// A server that authorizes every request.
    pub fn start() -> Moto {
        Moto::spawn(None)
    }

    /// A server that enforces IAM from its first request on, with an administrator (all
    /// actions) made in the three requests it lets through before that.
    pub fn with_authorization() -> Moto {
        let mut moto = Moto::spawn(Some(3));
        let keys = moto.python(
            r#"
iam = client("iam")
iam.create_user(UserName="admin")
iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="admin")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#,
        );
        let mut words = keys.split_whitespace();
        let (id, secret) = (words.next().expect("key id"), words.next().expect("secret"));
        moto.admin = Some((id.to_string(), secret.to_string()));
        moto
    }

    fn spawn(no_auth: Option<usize>) -> Moto {
        let port = free_port();
        // moto_server with its signature check fixed for query values holding a `/`.
        let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/moto_server.py");
        let mut command = Command::new("python3");
        command
            .args([launcher, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(count) = no_auth {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", count.to_string());
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start python3 ({error}) for moto's server"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                let _ = child
                    .stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut stderr));
                panic!(
                    "moto's server exited ({status}) — is it installed (`pip install 'moto[server]'`, as .ci/run does)? {stderr}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            admin: None,
        }
    }

    /// The environment a drillbook (or boto3) needs to reach this server with `keys`.
    pub fn env_with(&self, keys: (&str, &str)) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", keys.0),
            ("AWS_SECRET_ACCESS_KEY", keys.1),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
    }

    /// The environment with the administrator's keys (or any, without authorization).
    pub fn env(&self) -> Vec<(String, String)> {
        match &self.admin {
            Some((id, secret)) => self.env_with((id, secret)),
            None => self.env_with((ACCESS_KEY, SECRET_KEY)),
        }
    }

    /// Runs a Python script with boto3 set up for this server: `client(service)` makes a
    /// client with the administrator's keys, `json` is imported. Returns its standard output;
    /// panics with its standard error when it fails.
    pub fn python(&self, script: &str) -> String {
        let prelude = r#"
import json, os, sys, boto3
from botocore.config import Config
def client(service, key=None, secret=None):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"],
        aws_access_key_id=key or os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}))
"#;
        let output = Command::new("python3")
            .args(["-c", &format!("{prelude}\n{script}")])
            .envs(self.env())
            .output()
            .expect("python3");
        assert!(
            output.status.success(),
            "the setup script failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
