//! The SDK's errors in words an operator can act on, naming the store and the key.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::S3Store;
use crate::connect::permanent_http_status as status_is_permanent;
use crate::connect::store::StoreError;

impl S3Store {
    pub(super) fn sdk_error<E>(
        &self,
        action: &'static str,
        key: &str,
        error: &SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if error.code() == Some("NoSuchBucket") {
            return self.no_such_bucket();
        }
        let (url, key, mut message) = (self.url.clone(), key.to_owned(), describe(error));
        let denied = error.code() == Some("AccessDenied")
            || error
                .raw_response()
                .is_some_and(|response| response.status().as_u16() == 403);
        if denied && let Some((permission, on_object)) = permission(action) {
            let resource = if on_object {
                format!("arn:aws:s3:::{}/{}", self.bucket, self.full_key(&key))
            } else {
                format!("arn:aws:s3:::{}", self.bucket)
            };
            message.push_str(&format!(
                ": the credentials need {permission} on {resource} (`drillbook policy` prints what a playbook needs)"
            ));
        }
        if is_permanent(error) {
            StoreError::Refused {
                action,
                url,
                key,
                message,
            }
        } else {
            StoreError::Failed {
                action,
                url,
                key,
                message,
            }
        }
    }
}

/// The IAM permission an action of the store needs, and whether it is granted on the object
/// (else on the bucket).
fn permission(action: &str) -> Option<(&'static str, bool)> {
    Some(match action {
        "read" | "inspect" | "read the upload marker under" => ("s3:GetObject", true),
        "write" => ("s3:PutObject", true),
        "copy" => ("s3:GetObject on the source and s3:PutObject", true),
        "delete" => ("s3:DeleteObject", true),
        "abort the upload to" => ("s3:AbortMultipartUpload", true),
        "list" | "open" => ("s3:ListBucket", false),
        "list uploads under" => ("s3:ListBucketMultipartUploads", false),
        "read the versioning of" => ("s3:GetBucketVersioning", false),
        "read the lifecycle rules of" => ("s3:GetLifecycleConfiguration", false),
        _ => return None,
    })
}

/// Error codes S3 sends with a 4xx (or a 200) that mean "slow down" or "try again".
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "InternalError",
    "ServiceUnavailable",
];

/// Whether trying the request again cannot help. The server's answer decides: a 4xx other
/// than 408 (request timeout) and 429 (too many requests) is permanent unless its code says
/// throttling; a request the SDK could not even build (an invalid bucket name, a missing
/// parameter) is permanent; so are missing credentials. Everything else — 5xx, timeouts,
/// connection resets, a body cut short — is transient. The SDK's own retries follow the same
/// line (its standard classifier retries only 5xx, throttling and transport errors).
pub(crate) fn is_permanent<E>(error: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if error
        .code()
        .is_some_and(|code| TRANSIENT_CODES.contains(&code))
    {
        return false;
    }
    match error {
        SdkError::ServiceError(service) => status_is_permanent(service.raw().status().as_u16()),
        SdkError::ConstructionFailure(_) => true,
        SdkError::DispatchFailure(_) => error_chain(error).contains("loading credentials"),
        _ => false,
    }
}

/// A one-line reason for an SDK error, from the server's error code where there is one and
/// from the chain of causes otherwise (connection refused, timeout, no credentials, ...).
/// Neither includes credentials: the SDK never puts them in errors.
pub(super) fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => match (error.code(), error.message()) {
            (Some(code), message) => explain_code(code, message),
            // HEAD answers carry no body, hence no code.
            (None, _) => match service.raw().status().as_u16() {
                403 => "access denied (HTTP 403)".to_owned(),
                404 => "not found (HTTP 404)".to_owned(),
                status => format!("the server answered HTTP {status}"),
            },
        },
        _ => {
            let chain = error_chain(error);
            // The chain alone ("dispatch failure: other: ... IMDS session token ...") does not
            // tell an operator what to do.
            if chain.contains("loading credentials") {
                format!(
                    "no usable AWS credentials (set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): {chain}"
                )
            } else {
                chain
            }
        }
    }
}

fn explain_code(code: &str, message: Option<&str>) -> String {
    let explained = match code {
        "AccessDenied" => "access denied",
        "InvalidAccessKeyId" => "the server does not know the access key",
        "SignatureDoesNotMatch" => "the secret key does not match the access key",
        "NoSuchBucket" => "the bucket does not exist",
        "ExpiredToken" | "TokenRefreshRequired" => "the credentials have expired",
        _ => {
            return match message {
                Some(message) if !message.is_empty() => format!("{code}: {message}"),
                _ => code.to_owned(),
            };
        }
    };
    format!("{explained} ({code})")
}

/// `error: cause: cause ...`, skipping causes whose text the previous one already shows.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !last.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        last = cause_text;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_hundreds_are_permanent_except_timeouts_and_throttling() {
        for status in [400, 401, 403, 404, 409, 412, 416] {
            assert!(status_is_permanent(status), "{status}");
        }
        for status in [200, 408, 429, 500, 502, 503, 504] {
            assert!(!status_is_permanent(status), "{status}");
        }
    }

    #[test]
    fn explains_common_codes() {
        assert_eq!(
            explain_code("AccessDenied", Some("Access Denied")),
            "access denied (AccessDenied)"
        );
        assert_eq!(
            explain_code("SlowDown", Some("Please reduce your request rate.")),
            "SlowDown: Please reduce your request rate."
        );
    }
}
