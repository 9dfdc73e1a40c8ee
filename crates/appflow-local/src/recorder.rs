//! What the endpoint was asked: call counts and a bounded request log, served by
//! `/_local/stats` and `/_local/requests`.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::faults::FaultKind;
use crate::wire::{Epoch, Operation};

const LOG_CAPACITY: usize = 100_000;

/// One AppFlow call as it arrived.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub time: Epoch,
    pub request_id: String,
    pub operation: Operation,
    pub flow_name: Option<String>,
    pub client_token: Option<String>,
    /// From the SDK's `amz-sdk-request: attempt=N; max=M` header.
    pub attempt: Option<u32>,
    pub max_attempts: Option<u32>,
    /// From the SigV4 credential scope.
    pub access_key_id: Option<String>,
    pub region: Option<String>,
    pub faults: Vec<FaultKind>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub request: Request,
    /// None until a response is sent; stays None if the client gave up first.
    pub status: Option<u16>,
    pub error_type: Option<&'static str>,
}

pub struct Recorder {
    calls_by_operation: BTreeMap<Operation, u64>,
    start_flow_calls_by_token: BTreeMap<String, u64>,
    log: VecDeque<RequestRecord>,
    last_seq: u64,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            calls_by_operation: Operation::ALL.into_iter().map(|op| (op, 0)).collect(),
            start_flow_calls_by_token: BTreeMap::new(),
            log: VecDeque::new(),
            last_seq: 0,
        }
    }

    /// Counts the call and logs it; the returned seq is for `finish`.
    pub fn begin(&mut self, request: Request) -> u64 {
        *self
            .calls_by_operation
            .entry(request.operation)
            .or_default() += 1;
        if request.operation == Operation::StartFlow
            && let Some(token) = &request.client_token
        {
            *self
                .start_flow_calls_by_token
                .entry(token.clone())
                .or_default() += 1;
        }
        self.last_seq += 1;
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(RequestRecord {
            seq: self.last_seq,
            request,
            status: None,
            error_type: None,
        });
        self.last_seq
    }

    pub fn finish(&mut self, seq: u64, status: u16, error_type: Option<&'static str>) {
        let index = self
            .log
            .front()
            .and_then(|first| seq.checked_sub(first.seq))
            .and_then(|offset| usize::try_from(offset).ok());
        if let Some(record) = index.and_then(|index| self.log.get_mut(index)) {
            record.status = Some(status);
            record.error_type = error_type;
        }
    }

    pub fn calls_by_operation(&self) -> &BTreeMap<Operation, u64> {
        &self.calls_by_operation
    }

    pub fn start_flow_calls_by_token(&self) -> &BTreeMap<String, u64> {
        &self.start_flow_calls_by_token
    }

    pub fn records(&self) -> &VecDeque<RequestRecord> {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(operation: Operation, token: Option<&str>) -> Request {
        Request {
            time: Epoch(jiff::Timestamp::UNIX_EPOCH),
            request_id: "rid".into(),
            operation,
            flow_name: Some("f".into()),
            client_token: token.map(str::to_owned),
            attempt: Some(1),
            max_attempts: Some(3),
            access_key_id: None,
            region: None,
            faults: Vec::new(),
        }
    }

    #[test]
    fn calls_are_counted_per_operation_and_start_flow_token() {
        let mut recorder = Recorder::new();
        recorder.begin(request(Operation::StartFlow, Some("t")));
        recorder.begin(request(Operation::StartFlow, Some("t")));
        recorder.begin(request(Operation::StartFlow, None));
        recorder.begin(request(Operation::DescribeFlow, None));
        assert_eq!(recorder.calls_by_operation()[&Operation::StartFlow], 3);
        assert_eq!(recorder.calls_by_operation()[&Operation::DescribeFlow], 1);
        assert_eq!(recorder.calls_by_operation()[&Operation::StopFlow], 0);
        assert_eq!(recorder.start_flow_calls_by_token()["t"], 2);
    }

    #[test]
    fn finish_fills_in_the_outcome_of_the_right_request() {
        let mut recorder = Recorder::new();
        let first = recorder.begin(request(Operation::StartFlow, None));
        let second = recorder.begin(request(Operation::StartFlow, None));
        recorder.finish(second, 429, Some("ThrottlingException"));
        recorder.finish(99, 200, None);
        let outcomes: Vec<_> = recorder
            .records()
            .iter()
            .map(|record| (record.seq, record.status, record.error_type))
            .collect();
        assert_eq!(
            outcomes,
            [
                (first, None, None),
                (second, Some(429), Some("ThrottlingException"))
            ]
        );
    }
}
