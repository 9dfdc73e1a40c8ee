//! What the plugin shows and decides, as pure functions of FlowRuns and the clock: how a run
//! ended and the exit code for it, the table, durations, names. The commands (`main.rs`) read
//! the API server and the clock, and hand both in here.

use std::time::Duration;

use flowrun_api::conditions::{FINISHED, STALLED};
use flowrun_api::{FlowRun, Phase};
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

/// Exit codes, as CI reads them.
pub mod exit {
    /// Every FlowRun Succeeded or was Activated.
    pub const OK: u8 = 0;
    /// A FlowRun Failed or was Canceled (or was deleted before it finished).
    pub const FAILED: u8 = 1;
    /// The wait timed out, or the command line was wrong (clap's usage errors exit 2 too).
    pub const TIMEOUT_OR_USAGE: u8 = 2;
    /// The plugin could not do what was asked: no API server, no CRD, forbidden, not found.
    pub const ERROR: u8 = 3;
    /// Ctrl-C while waiting (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

/// How a finished FlowRun ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Succeeded or Activated.
    Done { phase: Phase },
    /// Failed or Canceled: the condition reason and the status message (AppFlow's, when the
    /// run itself failed).
    Failed {
        phase: Phase,
        reason: String,
        message: String,
    },
}

impl Ending {
    pub fn exit_code(&self) -> u8 {
        match self {
            Ending::Done { .. } => exit::OK,
            Ending::Failed { .. } => exit::FAILED,
        }
    }
}

/// `None` while the FlowRun is not finished. Decided by the phase, not the `Finished`
/// condition, so that FlowRuns finished under an older operator (without it) end the wait too.
pub fn ending(flowrun: &FlowRun) -> Option<Ending> {
    let phase = flowrun.phase();
    if !phase.is_final() {
        return None;
    }
    if matches!(phase, Phase::Succeeded | Phase::Activated) {
        return Some(Ending::Done { phase });
    }
    let status = flowrun.status.clone().unwrap_or_default();
    // The reason is the same on every condition; Finished first, Stalled for older FlowRuns.
    let reason = [FINISHED, STALLED]
        .iter()
        .find_map(|type_| status.conditions.iter().find(|c| c.type_ == *type_))
        .map_or_else(|| phase.as_str().to_owned(), |c| c.reason.clone());
    Some(Ending::Failed {
        phase,
        reason,
        message: status.message.unwrap_or_default(),
    })
}

/// The exit code of a wait on several FlowRuns, all finished: the worst of their endings.
pub fn exit_code(endings: &[Ending]) -> u8 {
    endings
        .iter()
        .map(Ending::exit_code)
        .max()
        .unwrap_or(exit::OK)
}

/// `flowrun/NAME`, as kubectl names objects in its messages.
pub fn reference(flowrun: &FlowRun) -> String {
    format!("flowrun/{}", flowrun.name_any())
}

/// The line that reports how a FlowRun ended.
pub fn ending_line(flowrun: &FlowRun, ending: &Ending) -> String {
    match ending {
        Ending::Done { phase } => {
            let records = flowrun
                .status
                .as_ref()
                .and_then(|status| status.records_processed)
                .map_or_else(String::new, |n| format!(", {n} records processed"));
            format!("{} {}{records}", reference(flowrun), phase.as_str())
        }
        Ending::Failed {
            phase,
            reason,
            message,
        } => format!(
            "{} {} ({reason}): {message}",
            reference(flowrun),
            phase.as_str()
        ),
    }
}

/// The progress of the FlowRuns waited for: `flowrun/a Running, flowrun/b Succeeded`.
pub fn phases(flowruns: &[FlowRun]) -> String {
    flowruns
        .iter()
        .map(|flowrun| format!("{} {}", reference(flowrun), flowrun.phase().as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `0:07`, `12:30`, `1:02:03`: the elapsed time on the progress line.
pub fn clock(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}:{minutes:02}:{seconds:02}")
    } else {
        format!("{minutes}:{seconds:02}")
    }
}

/// A duration as kubectl's AGE column shows it: `45s`, `3m12s`, `2h5m`, `3d4h`.
pub fn short_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs().max(0);
    let (days, hours, minutes, seconds) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) if seconds > 0 && minutes < 10 => format!("{minutes}m{seconds}s"),
        (0, 0, _) => format!("{minutes}m"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h{minutes}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d{hours}h"),
    }
}

/// A timeout as kubectl's `--timeout` takes it: `90s`, `5m`, `1h30m`, `500ms`; `0` for none.
pub fn parse_timeout(text: &str) -> Result<Option<Duration>, String> {
    if text == "0" {
        return Ok(None);
    }
    let bad = || format!("invalid duration {text:?}: use e.g. 90s, 5m, 1h30m (0 for no timeout)");
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += unit * u32::try_from(number).map_err(|_| bad())?;
    }
    if total.is_zero() {
        return Err(bad());
    }
    Ok(Some(total))
}

/// The `generateName` of a FlowRun run from the command line: the flow's name made a
/// Kubernetes name (AppFlow allows capitals, `_`, `!`, `@`, `#` and `.`), then `-`.
pub fn generate_name_for(flow_name: &str) -> String {
    let mut base: String = flow_name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    // The API server adds 5 characters and allows 63 in a generated name.
    base.truncate(52);
    let base = base.trim_matches('-');
    if base.is_empty() {
        "flowrun-".to_owned()
    } else {
        format!("{base}-")
    }
}

/// The `generateName` of a rerun: the original's own, or its name and `-`.
pub fn rerun_generate_name(original: &FlowRun) -> String {
    original
        .metadata
        .generate_name
        .clone()
        .unwrap_or_else(|| format!("{}-", original.name_any()))
}

pub const TABLE_HEADER: [&str; 8] = [
    "NAME", "FLOW", "PHASE", "DURATION", "RECORDS", "AGE", "REASON", "MESSAGE",
];

/// A row of `kubectl flowrun get`: the run's duration so far (from its start to its end, or to
/// now), its record count and its message.
pub fn row(flowrun: &FlowRun, now: Timestamp) -> [String; 8] {
    let status = flowrun.status.clone().unwrap_or_default();
    let duration = status.start_time.as_ref().map(|start| {
        let end = status.completion_time.as_ref().map_or(now, |end| end.0);
        short_duration(end.duration_since(start.0))
    });
    let age = flowrun
        .creation_timestamp()
        .map(|created| short_duration(now.duration_since(created.0)));
    let reason = [FINISHED, STALLED]
        .iter()
        .find_map(|type_| status.conditions.iter().find(|c| c.type_ == *type_))
        .map(|c| c.reason.clone());
    let dash = || "-".to_owned();
    [
        flowrun.name_any(),
        flowrun.spec.flow_name.clone(),
        flowrun.phase().as_str().to_owned(),
        duration.unwrap_or_else(dash),
        status
            .records_processed
            .map_or_else(dash, |records| records.to_string()),
        age.unwrap_or_else(dash),
        reason.unwrap_or_else(dash),
        status.message.unwrap_or_default(),
    ]
}

/// Rows as kubectl prints them: columns padded to their widest cell, three spaces apart.
pub fn table(rows: &[[String; 8]]) -> String {
    let header = TABLE_HEADER.map(str::to_owned);
    let all: Vec<&[String; 8]> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..8)
        .map(|column| {
            all.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in all {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flowrun(status: &str) -> FlowRun {
        let yaml = format!(
            "apiVersion: appflow.flowrun.dev/v1alpha1\nkind: FlowRun\nmetadata:\n  name: copy\n  \
             creationTimestamp: '2026-11-25T10:00:00Z'\nspec: {{flowName: sales}}\nstatus: {status}"
        );
        serde_yaml_ng::from_str(&yaml).expect("fixture parses")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn finished_phases_end_the_wait_with_their_exit_code_and_the_rest_do_not() {
        // (status, exit code; None: still waiting)
        let table = [
            ("{}", None),
            ("{phase: Pending}", None),
            ("{phase: Starting, message: throttled}", None),
            ("{phase: Running, executionId: e}", None),
            ("{phase: Succeeded}", Some(exit::OK)),
            ("{phase: Activated}", Some(exit::OK)),
            ("{phase: Failed, message: boom}", Some(exit::FAILED)),
            ("{phase: Canceled}", Some(exit::FAILED)),
        ];
        for (status, code) in table {
            let ending = ending(&flowrun(status));
            assert_eq!(ending.map(|e| e.exit_code()), code, "{status}");
        }
    }

    #[test]
    fn a_failure_names_its_reason_and_appflows_message() {
        let failed = flowrun(
            "{phase: Failed, message: 'Execution e of flow sales failed: Connector returned 401', \
             conditions: [{type: Stalled, status: 'True', reason: ExecutionFailed, message: m, \
             lastTransitionTime: '2026-11-25T10:01:00Z'}]}",
        );
        let ending = ending(&failed).expect("finished");
        assert_eq!(
            ending_line(&failed, &ending),
            "flowrun/copy Failed (ExecutionFailed): Execution e of flow sales failed: Connector \
             returned 401"
        );
        let canceled = flowrun("{phase: Canceled}");
        let ending = super::ending(&canceled).expect("finished");
        assert_eq!(
            ending_line(&canceled, &ending),
            "flowrun/copy Canceled (Canceled): "
        );
        let succeeded = flowrun("{phase: Succeeded, recordsProcessed: 12}");
        assert_eq!(
            ending_line(&succeeded, &super::ending(&succeeded).expect("finished")),
            "flowrun/copy Succeeded, 12 records processed"
        );
    }

    #[test]
    fn several_flowruns_exit_with_the_worst_ending() {
        let done = Ending::Done {
            phase: Phase::Succeeded,
        };
        let failed = Ending::Failed {
            phase: Phase::Failed,
            reason: "ExecutionFailed".into(),
            message: String::new(),
        };
        assert_eq!(exit_code(&[done.clone(), done.clone()]), exit::OK);
        assert_eq!(exit_code(&[done, failed]), exit::FAILED);
    }

    #[test]
    fn timeouts_read_like_kubectls() {
        // (text, timeout; None: no timeout)
        let table = [
            ("0", Ok(None)),
            ("90s", Ok(Some(Duration::from_secs(90)))),
            ("5m", Ok(Some(Duration::from_secs(300)))),
            ("1h30m", Ok(Some(Duration::from_secs(5400)))),
            ("500ms", Ok(Some(Duration::from_millis(500)))),
        ];
        for (text, expected) in table {
            assert_eq!(parse_timeout(text), expected, "{text}");
        }
        for bad in ["", "5", "m", "5x", "-5s", "0s", "1.5h"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_and_clocks_are_short() {
        // (seconds, AGE-style, progress clock)
        let table = [
            (0, "0s", "0:00"),
            (45, "45s", "0:45"),
            (192, "3m12s", "3:12"),
            (720, "12m", "12:00"),
            (7500, "2h5m", "2:05:00"),
            (7200, "2h", "2:00:00"),
            (273_600, "3d4h", "76:00:00"),
        ];
        for (seconds, short, clock_text) in table {
            assert_eq!(
                short_duration(SignedDuration::from_secs(seconds)),
                short,
                "{seconds}"
            );
            let unsigned = Duration::from_secs(seconds.unsigned_abs());
            assert_eq!(clock(unsigned), clock_text, "{seconds}");
        }
    }

    #[test]
    fn names_come_from_the_flow_or_the_original() {
        // (flow name, generateName)
        let table = [
            ("salesforce-to-s3", "salesforce-to-s3-"),
            ("Sales_Export.v2", "sales-export-v2-"),
            ("__", "flowrun-"),
            (&"x".repeat(80), &format!("{}-", "x".repeat(52))),
        ];
        for (flow, expected) in table {
            assert_eq!(generate_name_for(flow), *expected, "{flow}");
        }
        let mut original = flowrun("{}");
        assert_eq!(rerun_generate_name(&original), "copy-");
        original.metadata.generate_name = Some("sales-".into());
        assert_eq!(rerun_generate_name(&original), "sales-");
    }

    #[test]
    fn rows_show_duration_records_reason_and_message() {
        let now = at("2026-11-25T10:10:00Z");
        let running = flowrun("{phase: Running, startTime: '2026-11-25T10:00:00Z'}");
        let failed = flowrun(
            "{phase: Failed, startTime: '2026-11-25T10:00:00Z', completionTime: \
             '2026-11-25T10:03:12Z', recordsProcessed: 10, message: boom, conditions: [{type: \
             Finished, status: 'True', reason: ExecutionFailed, message: boom, \
             lastTransitionTime: '2026-11-25T10:03:12Z'}]}",
        );
        let pending = flowrun("{}");
        assert_eq!(
            row(&running, now),
            ["copy", "sales", "Running", "10m", "-", "10m", "-", ""].map(String::from)
        );
        assert_eq!(
            row(&failed, now),
            [
                "copy",
                "sales",
                "Failed",
                "3m12s",
                "10",
                "10m",
                "ExecutionFailed",
                "boom"
            ]
            .map(String::from)
        );
        assert_eq!(row(&pending, now)[3], "-");
        let printed = table(&[row(&failed, now)]);
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME   FLOW    PHASE    DURATION   RECORDS   AGE   REASON            MESSAGE",
                "copy   sales   Failed   3m12s      10        10m   ExecutionFailed   boom",
            ]
        );
    }
}
