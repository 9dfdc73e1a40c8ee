//! A local AWS STS, only `AssumeRole`, in the real wire format (the query protocol: a form body
//! posted to `/`, XML answers), so the SDK's AssumeRole credentials provider works against it
//! unchanged when `AWS_ENDPOINT_URL_STS` points here.
//!
//! Roles come from the config (`roles:`) or `PUT /_local/roles`; `GET /_local/sts` lists the
//! credentials issued, so a test can tell which role signed an AppFlow call (the request log
//! records each call's access key).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::app::{App, RequestId};

/// A role that may be assumed, and the external ID its trust policy requires.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// Credentials handed out by AssumeRole.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Issued {
    pub access_key_id: String,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub expiration: Timestamp,
}

#[derive(Debug, Default)]
pub struct Sts {
    roles: BTreeMap<String, RoleSpec>,
    issued: Vec<Issued>,
}

impl Sts {
    pub fn new(roles: &[RoleSpec]) -> Self {
        Sts {
            roles: roles
                .iter()
                .map(|role| (role.arn.clone(), role.clone()))
                .collect(),
            issued: Vec::new(),
        }
    }

    pub fn upsert_role(&mut self, role: RoleSpec) {
        self.roles.insert(role.arn.clone(), role);
    }

    pub fn issued(&self) -> &[Issued] {
        &self.issued
    }

    fn assume(
        &mut self,
        request: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Issued, StsError> {
        let field = |name: &str| request.get(name).map(String::as_str);
        if field("Action") != Some("AssumeRole") {
            return Err(StsError::invalid_action(
                field("Action").unwrap_or_default(),
            ));
        }
        let role_arn = field("RoleArn").ok_or_else(|| StsError::missing("RoleArn"))?;
        let session_name =
            field("RoleSessionName").ok_or_else(|| StsError::missing("RoleSessionName"))?;
        let session_ok = (2..=64).contains(&session_name.len())
            && session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !session_ok {
            return Err(StsError::validation(format!(
                "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed \
                 to satisfy constraint: Member must have length 2..64 and match [\\w+=,.@-]*"
            )));
        }
        let role = self
            .roles
            .get(role_arn)
            .ok_or_else(|| StsError::access_denied(role_arn))?;
        let external_id = field("ExternalId").map(str::to_owned);
        if role.external_id.is_some() && role.external_id != external_id {
            return Err(StsError::access_denied(role_arn));
        }
        let seconds: i64 = field("DurationSeconds")
            .map_or(Ok(3600), str::parse)
            .map_err(|_| StsError::validation("DurationSeconds must be a number".into()))?;
        let issued = Issued {
            access_key_id: format!("ASIA{}", random_upper(16)),
            role_arn: role_arn.to_owned(),
            session_name: session_name.to_owned(),
            external_id,
            expiration: now + SignedDuration::from_secs(seconds.clamp(900, 43_200)),
        };
        self.issued.push(issued.clone());
        Ok(issued)
    }
}

fn random_upper(len: usize) -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_uppercase()
        .chars()
        .take(len)
        .collect()
}

/// `POST /` with a form body: the STS query protocol.
pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Form(request): Form<HashMap<String, String>>,
) -> Response {
    let result = app.lock().sts.assume(&request, Timestamp::now());
    tracing::info!(
        role = request.get("RoleArn").map(String::as_str),
        ok = result.is_ok(),
        "Answered STS AssumeRole"
    );
    match result {
        Ok(issued) => xml(
            StatusCode::OK,
            format!(
                "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <AssumeRoleResult><Credentials>\
                 <AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
                 <SessionToken>{}</SessionToken><Expiration>{}</Expiration>\
                 </Credentials><AssumedRoleUser>\
                 <AssumedRoleId>AROA{}:{}</AssumedRoleId><Arn>{}</Arn>\
                 </AssumedRoleUser></AssumeRoleResult>\
                 <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
                 </AssumeRoleResponse>",
                issued.access_key_id,
                random_upper(32),
                random_upper(32),
                issued.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                random_upper(16),
                escape(&issued.session_name),
                escape(&assumed_role_arn(&issued)),
            ),
        ),
        Err(error) => xml(
            error.status,
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code>\
                 <Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                error.code,
                escape(&error.message)
            ),
        ),
    }
}

/// `arn:aws:iam::ACCOUNT:role/NAME` assumed as SESSION is `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`.
fn assumed_role_arn(issued: &Issued) -> String {
    let mut parts = issued.role_arn.splitn(6, ':');
    let account = parts.nth(4).unwrap_or_default();
    let role_name = issued.role_arn.rsplit('/').next().unwrap_or_default();
    format!(
        "arn:aws:sts::{account}:assumed-role/{role_name}/{}",
        issued.session_name
    )
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Debug, PartialEq)]
struct StsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl StsError {
    fn access_denied(role_arn: &str) -> Self {
        StsError {
            status: StatusCode::FORBIDDEN,
            code: "AccessDenied",
            message: format!(
                "User is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ),
        }
    }

    fn missing(parameter: &str) -> Self {
        Self::validation(format!("Missing required parameter {parameter}"))
    }

    fn validation(message: String) -> Self {
        StsError {
            status: StatusCode::BAD_REQUEST,
            code: "ValidationError",
            message,
        }
    }

    fn invalid_action(action: &str) -> Self {
        StsError {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidAction",
            message: format!(
                "Could not find operation {action} (appflow-local serves AssumeRole only)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111111111111:role/tenant-a";

    fn request(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn now() -> Timestamp {
        "2026-11-25T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn known_role_is_assumed_with_fresh_credentials_that_expire() {
        let mut sts = Sts::new(&[RoleSpec {
            arn: ROLE.into(),
            external_id: Some("ext-1".into()),
        }]);
        let issued = sts
            .assume(
                &request(&[
                    ("Action", "AssumeRole"),
                    ("RoleArn", ROLE),
                    ("RoleSessionName", "flowrun-team-a"),
                    ("ExternalId", "ext-1"),
                ]),
                now(),
            )
            .unwrap();
        assert!(issued.access_key_id.starts_with("ASIA"));
        assert_eq!(issued.expiration, now() + SignedDuration::from_hours(1));
        assert_eq!(
            assumed_role_arn(&issued),
            "arn:aws:sts::111111111111:assumed-role/tenant-a/flowrun-team-a"
        );
        assert_eq!(sts.issued().len(), 1);
    }

    #[test]
    fn unknown_roles_wrong_external_ids_and_bad_input_are_refused() {
        let mut sts = Sts::new(&[RoleSpec {
            arn: ROLE.into(),
            external_id: Some("ext-1".into()),
        }]);
        let table = [
            (
                vec![
                    ("Action", "AssumeRole"),
                    ("RoleArn", "arn:aws:iam::1:role/x"),
                    ("RoleSessionName", "s1"),
                    ("ExternalId", "ext-1"),
                ],
                "AccessDenied",
            ),
            (
                vec![
                    ("Action", "AssumeRole"),
                    ("RoleArn", ROLE),
                    ("RoleSessionName", "s1"),
                    ("ExternalId", "wrong"),
                ],
                "AccessDenied",
            ),
            (
                vec![
                    ("Action", "AssumeRole"),
                    ("RoleArn", ROLE),
                    ("RoleSessionName", "s1"),
                ],
                "AccessDenied",
            ),
            (
                vec![
                    ("Action", "AssumeRole"),
                    ("RoleArn", ROLE),
                    ("RoleSessionName", "bad name"),
                    ("ExternalId", "ext-1"),
                ],
                "ValidationError",
            ),
            (
                vec![("Action", "AssumeRole"), ("RoleSessionName", "s1")],
                "ValidationError",
            ),
            (vec![("Action", "GetCallerIdentity")], "InvalidAction"),
        ];
        for (pairs, code) in table {
            let error = sts.assume(&request(&pairs), now()).unwrap_err();
            assert_eq!(error.code, code, "{pairs:?}");
        }
        assert!(sts.issued().is_empty());
    }
}
