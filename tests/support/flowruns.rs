//! A test's own world: a namespace, a local AppFlow endpoint, the CRDs, and helpers to
//! create FlowRuns and wait for what the operator writes.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt, ResourceExt};

use flowrun_api::flowrun::{FlowRun, FlowRunSpec, FlowRunStatus};
use flowrun_api::policy::FlowRunPolicy;
use flowrun_api::schedule::FlowRunSchedule;

use super::appflow_local::LocalAppFlow;
use super::cluster::{client, install_crd, unique_namespace};
use super::operator::Operator;

/// Flows most tests use; each test may add its own through the endpoint's control API.
pub const FLOWS: &str = r#"
flows:
  - name: on-demand
    triggerType: OnDemand
    runSeconds: 600
  - name: scheduled
    triggerType: Scheduled
    status: Suspended
"#;

pub struct World {
    pub client: Client,
    pub namespace: String,
    pub flowruns: Api<FlowRun>,
    pub appflow: LocalAppFlow,
}

impl World {
    pub async fn new(prefix: &str, flows_yaml: &str) -> Self {
        Self::new_in(client().await, prefix, flows_yaml).await
    }

    /// An operator for this world's namespace and endpoint.
    pub fn operator(&self, extra_args: &[&str]) -> Operator {
        Operator::start(&self.namespace, self.appflow.endpoint_url(), extra_args)
    }

    pub async fn create(&self, name: &str, flow_name: &str) -> FlowRun {
        self.create_with(name, FlowRunSpec::new(flow_name)).await
    }

    pub async fn create_with(&self, name: &str, spec: FlowRunSpec) -> FlowRun {
        let flowrun = FlowRun::new(name, spec);
        self.flowruns
            .create(&PostParams::default(), &flowrun)
            .await
            .unwrap_or_else(|error| panic!("failed to create FlowRun {name}: {error}"))
    }

    /// Waits until the FlowRun's status satisfies `done`; on timeout, fails with the last
    /// status seen and where the operator's log is.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        operator: Option<&Operator>,
        done: impl Fn(&FlowRunStatus) -> bool,
    ) -> FlowRun {
        self.wait_until(name, timeout, operator, |flowrun| {
            flowrun.status.as_ref().is_some_and(&done)
        })
        .await
    }

    /// Like [`World::wait_for`], on the whole object.
    pub async fn wait_until(
        &self,
        name: &str,
        timeout: Duration,
        operator: Option<&Operator>,
        done: impl Fn(&FlowRun) -> bool,
    ) -> FlowRun {
        let condition = |flowrun: Option<&FlowRun>| flowrun.is_some_and(&done);
        match tokio::time::timeout(
            timeout,
            await_condition(self.flowruns.clone(), name, condition),
        )
        .await
        {
            Ok(Ok(Some(flowrun))) => flowrun,
            outcome => {
                let last = self.flowruns.get(name).await.ok().and_then(|f| f.status);
                panic!(
                    "FlowRun {}/{name} did not reach the expected status within {timeout:?} \
                     ({outcome:?}); last status: {last:#?}; operator log: {}",
                    self.namespace,
                    operator.map_or_else(|| "-".into(), |o| o.log_path().display().to_string())
                )
            }
        }
    }

    /// Waits (bounded) until the endpoint has received `count` calls of `operation`.
    pub async fn wait_for_calls(&self, operation: &str, count: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.appflow.stats().await.calls(operation);
            if seen >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{seen} {operation} calls within {within:?}, expected {count}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the FlowRun is deleted, finalizers and all.
    pub async fn wait_until_gone(&self, name: &str) {
        let api = self.flowruns.clone();
        let uid = match api.get_opt(name).await.expect("get") {
            Some(flowrun) => flowrun.uid().expect("uid"),
            None => return,
        };
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api, name, conditions::is_deleted(&uid)),
        )
        .await
        .unwrap_or_else(|_| panic!("FlowRun {name} was not deleted within 30 s"))
        .expect("watch");
    }

    /// Events published about the named object, oldest first.
    pub async fn events_for(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut events: Vec<Event> = events
            .list(&ListParams::default())
            .await
            .expect("failed to list events")
            .items
            .into_iter()
            .filter(|event| {
                event
                    .regarding
                    .as_ref()
                    .is_some_and(|regarding| regarding.name.as_deref() == Some(name))
            })
            .collect();
        events.sort_by_key(|event| event.event_time.as_ref().map(|time| time.0));
        events
    }

    /// Waits (bounded) until an event with `reason` was published about `name`.
    pub async fn wait_for_event(&self, name: &str, reason: &str) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(event) = self
                .events_for(name)
                .await
                .into_iter()
                .find(|event| event.reason.as_deref() == Some(reason))
            {
                return event;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {reason} event about {name} within 20 s: {:?}",
                self.events_for(name).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn uid(flowrun: &FlowRun) -> String {
    flowrun.uid().expect("created FlowRuns have a UID")
}

/// `(status, reason)` of a condition type.
pub fn condition(status: &FlowRunStatus, type_: &str) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
        .map(|condition| (condition.status.clone(), condition.reason.clone()))
}

pub fn is(status: &str, reason: &str) -> Option<(String, String)> {
    Some((status.to_owned(), reason.to_owned()))
}

impl World {
    /// A world on another cluster than the shared one (see `cluster::own_cluster`).
    pub async fn new_in(client: Client, prefix: &str, flows_yaml: &str) -> Self {
        install_crd(&client, &FlowRun::crd()).await;
        install_crd(&client, &FlowRunPolicy::crd()).await;
        install_crd(&client, &FlowRunSchedule::crd()).await;
        let namespace = unique_namespace(&client, prefix).await;
        World {
            flowruns: Api::namespaced(client.clone(), &namespace),
            client,
            namespace,
            appflow: LocalAppFlow::start(flows_yaml),
        }
    }

    /// Creates FlowRuns of `flow_name`, `concurrency` requests at a time, each retried (bounded:
    /// 60 s) while the API server cannot be reached; a create that landed although its answer
    /// was lost counts (409 AlreadyExists). Returns them in the order of `names`.
    pub async fn create_many(
        &self,
        names: &[String],
        flow_name: &str,
        concurrency: usize,
    ) -> Vec<FlowRun> {
        use futures::StreamExt;
        let created: Vec<FlowRun> = futures::stream::iter(names)
            .map(|name| self.create_retrying(name, flow_name))
            .buffered(concurrency)
            .collect()
            .await;
        created
    }

    async fn create_retrying(&self, name: &str, flow_name: &str) -> FlowRun {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let flowrun = FlowRun::new(name, FlowRunSpec::new(flow_name));
        loop {
            let error = match self.flowruns.create(&PostParams::default(), &flowrun).await {
                Ok(created) => return created,
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    match self.flowruns.get(name).await {
                        Ok(existing) => return existing,
                        Err(error) => error,
                    }
                }
                Err(error) => error,
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "failed to create FlowRun {name} within 60 s: {error}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Watches the namespace until at least `count` FlowRuns satisfy `done` (the watch resumes
    /// by itself if the API server goes away); on timeout, fails with a count of the phases
    /// seen and where the operator's log is. Returns the FlowRuns that satisfy `done`.
    pub async fn wait_all(
        &self,
        count: usize,
        timeout: Duration,
        operator: Option<&Operator>,
        done: impl Fn(&FlowRun) -> bool,
    ) -> Vec<FlowRun> {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let mut seen: std::collections::BTreeMap<String, FlowRun> = Default::default();
        let mut stream = std::pin::pin!(
            watcher(self.flowruns.clone(), watcher::Config::default()).default_backoff()
        );
        let satisfied = |seen: &std::collections::BTreeMap<String, FlowRun>| {
            seen.values().filter(|flowrun| done(flowrun)).count()
        };
        let outcome = tokio::time::timeout(timeout, async {
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(flowrun) | watcher::Event::InitApply(flowrun)) => {
                        seen.insert(flowrun.name_any(), flowrun);
                    }
                    Ok(watcher::Event::Delete(flowrun)) => {
                        seen.remove(&flowrun.name_any());
                    }
                    Ok(watcher::Event::Init) => seen.clear(),
                    Ok(watcher::Event::InitDone) | Err(_) => {}
                }
                if satisfied(&seen) >= count {
                    return true;
                }
            }
            false
        })
        .await;
        if outcome != Ok(true) {
            let mut phases: std::collections::BTreeMap<String, usize> = Default::default();
            for flowrun in seen.values() {
                *phases.entry(format!("{:?}", flowrun.phase())).or_default() += 1;
            }
            panic!(
                "{} of {count} FlowRuns in {} reached the expected state within {timeout:?}; \
                 phases seen: {phases:?}; operator log: {}",
                satisfied(&seen),
                self.namespace,
                operator.map_or_else(|| "-".into(), |o| o.log_path().display().to_string())
            );
        }
        seen.into_values().filter(|flowrun| done(flowrun)).collect()
    }
}

/// Checks exactly-once for a set of FlowRuns: each has an `executionId`, the ids are distinct,
/// and the endpoint started exactly one run for each FlowRun's UID (its clientToken) and no
/// run for any other token. Returns a description of every violation (empty when none).
pub fn exactly_once_violations(
    flowruns: &[FlowRun],
    stats: &super::appflow_local::Stats,
) -> Vec<String> {
    let mut violations = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let tokens: std::collections::HashSet<String> = flowruns.iter().map(uid).collect();
    for flowrun in flowruns {
        let name = flowrun.name_any();
        match flowrun.status.as_ref().and_then(|s| s.execution_id.clone()) {
            None => violations.push(format!("{name}: no executionId")),
            Some(id) if !ids.insert(id.clone()) => violations.push(format!(
                "{name}: executionId {id} shared with another FlowRun"
            )),
            Some(_) => {}
        }
        let executions = stats.token(&uid(flowrun)).executions;
        if executions != 1 {
            violations.push(format!("{name}: {executions} executions for its token"));
        }
    }
    for (token, token_stats) in &stats.client_tokens {
        if token_stats.executions > 0 && !tokens.contains(token) {
            violations.push(format!(
                "token {token}: {} executions, no such FlowRun",
                token_stats.executions
            ));
        }
    }
    violations
}
