//! AWS Secrets Manager (or a server speaking its API): reading secrets for a run, and writing
//! a new version of one for `promote`. The client comes from the standard AWS environment
//! (`AWS_REGION`, `AWS_ENDPOINT_URL_SECRETS_MANAGER` or `AWS_ENDPOINT_URL`, credentials);
//! an ARN's region wins over the environment's. Nothing here ever puts a value in a message.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::secrets::{Lookup, SecretRef, pick_field};

/// How long one request may take, retries included: a run must not hang on an unreachable
/// endpoint.
const REQUEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn client(region: Option<&str>) -> Result<Client, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(REQUEST_LIMIT)
            .build(),
    );
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err("no AWS region: set AWS_REGION, or name the secret by its ARN".to_string());
    }
    Ok(Client::new(&shared))
}

/// What went wrong with a request, for people: the service's code and message (which name
/// the action and the secret, e.g. "not authorized to perform: secretsmanager:GetSecretValue
/// on resource: production/app"), or why it could not be sent.
fn why<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => {
            let error = service.err();
            let code = error.code().unwrap_or("error");
            match error.message() {
                Some(message) => format!("{code}: {message}"),
                None => code.to_string(),
            }
        }
        SdkError::TimeoutError(_) => format!("no answer within {} s", REQUEST_LIMIT.as_secs()),
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            "could not reach the Secrets Manager endpoint".to_string()
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

fn not_found<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ResourceNotFoundException")
}

/// The secret's current text and version; `Ok(None)` when there is no such secret.
async fn current(
    client: &Client,
    reference: &SecretRef,
) -> Result<Option<(String, Option<String>)>, String> {
    match client
        .get_secret_value()
        .secret_id(&reference.id)
        .send()
        .await
    {
        Ok(output) => match output.secret_string {
            Some(text) => Ok(Some((text, output.version_id))),
            None => Err(format!(
                "{} holds binary data; drillbook reads text secrets",
                reference.id
            )),
        },
        Err(error) if not_found(&error) => Ok(None),
        Err(error) => Err(why(&error)),
    }
}

/// Reads each reference (one answer per reference, in order), on a thread and runtime of its
/// own so that it can be called from anywhere.
pub fn fetch_all(references: &[SecretRef]) -> Vec<Lookup> {
    let references = references.to_vec();
    let count = references.len();
    let answers = std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let message = format!("cannot start the client: {error}");
                return references
                    .iter()
                    .map(|_| Lookup::Failed(message.clone()))
                    .collect();
            }
        };
        runtime.block_on(async {
            let mut answers = Vec::with_capacity(references.len());
            for reference in &references {
                answers.push(fetch(reference).await);
            }
            answers
        })
    })
    .join();
    answers.unwrap_or_else(|_| {
        (0..count)
            .map(|_| Lookup::Failed("the client stopped".into()))
            .collect()
    })
}

async fn fetch(reference: &SecretRef) -> Lookup {
    let client = match client(reference.region()).await {
        Ok(client) => client,
        Err(message) => return Lookup::Failed(message),
    };
    match current(&client, reference).await {
        Ok(Some((text, _))) => pick_field(text, reference),
        Ok(None) => Lookup::Absent(format!("no secret named {}", reference.id)),
        Err(message) => Lookup::Failed(message),
    }
}

/// What writing a new version did.
pub struct Written {
    /// The version that was current before (now `AWSPREVIOUS`), when there was one.
    pub previous: Option<String>,
    /// The version now current; the previous one when the secret already held the value.
    pub current: Option<String>,
    /// Whether a new version was written (false: it already held the value).
    pub changed: bool,
    /// The value it held before (the field's, for a JSON secret), when it had one.
    pub previous_value: Option<String>,
}

/// Writes `value` as a new version of the secret (into its `#field`, the other fields kept,
/// for a JSON secret). The secret must exist: drillbook writes versions, it does not create
/// secrets. Writing the value it already holds writes nothing.
pub async fn put(reference: &SecretRef, value: &str) -> Result<Written, String> {
    let client = client(reference.region()).await?;
    let Some((text, previous)) = current(&client, reference).await? else {
        return Err(format!(
            "there is no secret named {}: create it first (drillbook writes new versions of existing secrets)",
            reference.id
        ));
    };
    let previous_value = match pick_field(text.clone(), reference) {
        Lookup::Found(value) => Some(value),
        Lookup::Absent(_) | Lookup::Failed(_) => None,
    };
    let new_text = match &reference.field {
        None => value.to_string(),
        Some(field) => {
            let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(&text) else {
                return Err(format!(
                    "{} is not a JSON object, so its field `{field}` cannot be set",
                    reference.id
                ));
            };
            object.insert(field.clone(), serde_json::Value::String(value.to_string()));
            serde_json::Value::Object(object).to_string()
        }
    };
    if new_text == text {
        return Ok(Written {
            current: previous.clone(),
            previous,
            changed: false,
            previous_value,
        });
    }
    let output = client
        .put_secret_value()
        .secret_id(&reference.id)
        .secret_string(new_text)
        .send()
        .await
        .map_err(|error| why(&error))?;
    Ok(Written {
        previous,
        current: output.version_id,
        changed: true,
        previous_value,
    })
}
