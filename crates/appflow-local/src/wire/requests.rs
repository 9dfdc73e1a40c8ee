//! Request bodies, and AppFlow's input constraints with the service model's wording.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::{FLOW_NAME_MAX, FLOW_NAME_RULE, is_valid_flow_name};
use crate::errors::AppFlowError;

const CLIENT_TOKEN_MAX: usize = 256;
const NEXT_TOKEN_MAX: usize = 2048;
const EXECUTION_ID_MAX: usize = 256;
const EXECUTION_IDS_MAX: usize = 100;
const MAX_RESULTS_RANGE: std::ops::RangeInclusive<i64> = 1..=100;
const DEFAULT_MAX_RESULTS: usize = 20;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartFlowRequest {
    pub flow_name: Option<String>,
    pub client_token: Option<String>,
}

/// DescribeFlow and StopFlow.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowNameRequest {
    pub flow_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeFlowExecutionRecordsRequest {
    pub flow_name: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelFlowExecutionsRequest {
    pub flow_name: Option<String>,
    pub execution_ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListFlowsRequest {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// Unknown members are ignored; an empty body is an empty object.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppFlowError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|err| AppFlowError::validation(format!("Invalid request body: {err}")))
}

/// The flow name and client token as sent, for the request log, even when the body is invalid.
pub fn peek_names(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Names {
        flow_name: Option<serde_json::Value>,
        client_token: Option<serde_json::Value>,
    }
    let text = |value: Option<serde_json::Value>| match value {
        Some(serde_json::Value::String(text)) => Some(text),
        _ => None,
    };
    match serde_json::from_slice::<Names>(body) {
        Ok(names) => (text(names.flow_name), text(names.client_token)),
        Err(_) => (None, None),
    }
}

// The messages copy AWS's "1 validation error detected" wording.
fn constraint_error(member: &str, value: &str, constraint: &str) -> AppFlowError {
    AppFlowError::validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

pub fn required_flow_name(flow_name: Option<String>) -> Result<String, AppFlowError> {
    let name =
        flow_name.ok_or_else(|| constraint_error("flowName", "null", "Member must not be null"))?;
    if name.chars().count() > FLOW_NAME_MAX {
        return Err(constraint_error(
            "flowName",
            &name,
            &format!("Member must have length less than or equal to {FLOW_NAME_MAX}"),
        ));
    }
    if !is_valid_flow_name(&name) {
        return Err(constraint_error(
            "flowName",
            &name,
            &format!("Member must satisfy regular expression pattern: {FLOW_NAME_RULE}"),
        ));
    }
    Ok(name)
}

pub fn check_client_token(token: &str) -> Result<(), AppFlowError> {
    let length = token.chars().count();
    if !(1..=CLIENT_TOKEN_MAX).contains(&length) {
        return Err(constraint_error(
            "clientToken",
            token,
            &format!("Member must have length between 1 and {CLIENT_TOKEN_MAX}"),
        ));
    }
    if !token.chars().all(|c| (' '..='~').contains(&c)) {
        return Err(constraint_error(
            "clientToken",
            token,
            "Member must satisfy regular expression pattern: [ -~]+",
        ));
    }
    Ok(())
}

pub fn page_size(max_results: Option<i64>) -> Result<usize, AppFlowError> {
    match max_results {
        None => Ok(DEFAULT_MAX_RESULTS),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|_| MAX_RESULTS_RANGE.contains(&n))
            .ok_or_else(|| {
                constraint_error(
                    "maxResults",
                    &n.to_string(),
                    "Member must have value between 1 and 100",
                )
            }),
    }
}

/// The shape check only; whether we issued the token is the model's business.
pub fn check_next_token(token: &str) -> Result<(), AppFlowError> {
    if token.is_empty()
        || token.chars().count() > NEXT_TOKEN_MAX
        || token.contains(char::is_whitespace)
    {
        return Err(constraint_error(
            "nextToken",
            token,
            &format!(
                "Member must have length less than or equal to {NEXT_TOKEN_MAX} and satisfy regular expression pattern: \\S+"
            ),
        ));
    }
    Ok(())
}

pub fn check_execution_ids(ids: &[String]) -> Result<(), AppFlowError> {
    if ids.len() > EXECUTION_IDS_MAX {
        return Err(constraint_error(
            "executionIds",
            &format!("{} ids", ids.len()),
            &format!("Member must have length less than or equal to {EXECUTION_IDS_MAX}"),
        ));
    }
    match ids.iter().find(|id| {
        id.is_empty() || id.chars().count() > EXECUTION_ID_MAX || id.contains(char::is_whitespace)
    }) {
        Some(id) => Err(constraint_error(
            "executionIds.member",
            id,
            &format!(
                "Member must have length less than or equal to {EXECUTION_ID_MAX} and satisfy regular expression pattern: \\S+"
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorKind;

    #[test]
    fn input_constraints_match_the_service_model() {
        let long_name = format!("a{}", "b".repeat(256));
        assert!(required_flow_name(Some("ok-name".into())).is_ok());
        for name in [None, Some("a b".into()), Some("a".into()), Some(long_name)] {
            assert!(required_flow_name(name.clone()).is_err(), "{name:?}");
        }
        let cases: [(&str, bool); 5] = [
            ("uid-1234/gen-1", true),
            (" spaces are printable ~", true),
            ("", false),
            ("tab\there", false),
            ("ünicode", false),
        ];
        for (token, ok) in cases {
            assert_eq!(check_client_token(token).is_ok(), ok, "{token:?}");
        }
        assert!(check_client_token(&"t".repeat(256)).is_ok());
        assert!(check_client_token(&"t".repeat(257)).is_err());
        for (max, expected) in [
            (None, Some(20)),
            (Some(1), Some(1)),
            (Some(100), Some(100)),
            (Some(0), None),
            (Some(101), None),
            (Some(-1), None),
        ] {
            assert_eq!(page_size(max).ok(), expected, "{max:?}");
        }
        for (token, ok) in [("abc", true), ("", false), ("a b", false)] {
            assert_eq!(check_next_token(token).is_ok(), ok, "{token:?}");
        }
        assert!(check_next_token(&"t".repeat(2049)).is_err());
        assert!(check_execution_ids(&vec!["id".to_owned(); 100]).is_ok());
        assert!(check_execution_ids(&vec!["id".to_owned(); 101]).is_err());
        assert!(check_execution_ids(&["has space".to_owned()]).is_err());
    }

    #[test]
    fn validation_messages_follow_the_aws_wording() {
        let err = required_flow_name(Some("a b".into())).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation);
        assert_eq!(
            err.message,
            r"1 validation error detected: Value 'a b' at 'flowName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9][\w!@#.-]+"
        );
    }

    #[test]
    fn bodies_tolerate_unknown_members_and_emptiness() {
        let request: StartFlowRequest =
            parse_body(br#"{"flowName":"f","clientToken":"t","extra":{"x":1}}"#).unwrap();
        assert_eq!(
            (
                request.flow_name.as_deref(),
                request.client_token.as_deref()
            ),
            (Some("f"), Some("t"))
        );
        let empty: ListFlowsRequest = parse_body(b"").unwrap();
        assert!(empty.max_results.is_none());
        let wrong: Result<ListFlowsRequest, _> = parse_body(br#"{"maxResults":"ten"}"#);
        assert_eq!(wrong.err().unwrap().kind, ErrorKind::Validation);
        assert_eq!(
            peek_names(br#"{"flowName":"f","clientToken":7}"#),
            (Some("f".into()), None)
        );
        assert_eq!(peek_names(b"not json"), (None, None));
    }
}
