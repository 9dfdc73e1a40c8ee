//! The leader election flags, checked together into a [`leader::Config`].

use std::time::Duration;

use flowrun_core::shard::{LabelSelector, lease_name};
use jiff::SignedDuration;

use super::parse_duration;
use crate::leader::{self, JITTER_FACTOR};

/// The leader election flags, part of [`super::Settings`].
#[derive(clap::Args, Debug, Clone)]
pub struct LeaderElectionArgs {
    /// Reconcile only while holding a Lease, so that of several replicas one works and the
    /// others stand by (e.g. --leader-election or --leader-election=false)
    #[arg(
        long = "leader-election",
        env = "FLOWRUN_LEADER_ELECTION",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enabled: bool,

    /// Namespace of the Lease [default: the POD_NAMESPACE environment variable]
    #[arg(
        long = "leader-election-namespace",
        env = "FLOWRUN_LEADER_ELECTION_NAMESPACE"
    )]
    pub namespace: Option<String>,

    /// Name of the Lease; with --watch-label-selector, the start of it: `-` and a hash of the
    /// selector follow
    #[arg(
        long = "leader-election-lease-name",
        env = "FLOWRUN_LEADER_ELECTION_LEASE_NAME",
        default_value = "flowrun-operator"
    )]
    pub lease_name: String,

    /// How long a standby waits, after the leader's last renewal, before it takes the Lease
    /// (whole seconds)
    #[arg(long = "leader-election-lease-duration", env = "FLOWRUN_LEADER_ELECTION_LEASE_DURATION",
          default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: SignedDuration,

    /// How long the leader keeps trying to renew the Lease before it gives up and exits
    #[arg(long = "leader-election-renew-deadline", env = "FLOWRUN_LEADER_ELECTION_RENEW_DEADLINE",
          default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: SignedDuration,

    /// How often the leader renews the Lease, and how often a standby tries to take it
    #[arg(long = "leader-election-retry-period", env = "FLOWRUN_LEADER_ELECTION_RETRY_PERIOD",
          default_value = "2s", value_parser = parse_duration)]
    pub retry_period: SignedDuration,
}

impl LeaderElectionArgs {
    /// `None` when leader election is off; an error names the flag to fix. `pod_namespace` and
    /// `pod_name` come from the environment (the chart sets them from the downward API); a
    /// shard's `selector` names its own Lease.
    pub fn config(
        &self,
        pod_namespace: Option<String>,
        pod_name: Option<String>,
        selector: Option<&LabelSelector>,
    ) -> Result<Option<leader::Config>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let namespace = self
            .namespace
            .clone()
            .or(pod_namespace)
            .filter(|namespace| !namespace.is_empty())
            .ok_or("--leader-election needs --leader-election-namespace or POD_NAMESPACE")?;
        let seconds = |duration: SignedDuration| Duration::try_from(duration).unwrap_or_default();
        let (lease_duration, renew_deadline, retry_period) = (
            seconds(self.lease_duration),
            seconds(self.renew_deadline),
            seconds(self.retry_period),
        );
        if lease_duration.subsec_nanos() != 0 {
            return Err(format!(
                "--leader-election-lease-duration must be whole seconds, not {:#}",
                self.lease_duration
            ));
        }
        if renew_deadline >= lease_duration {
            return Err(format!(
                "--leader-election-renew-deadline ({:#}) must be shorter than \
                 --leader-election-lease-duration ({:#})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if renew_deadline.as_secs_f64() <= JITTER_FACTOR * retry_period.as_secs_f64() {
            return Err(format!(
                "--leader-election-renew-deadline ({:#}) must be longer than 1.2 times \
                 --leader-election-retry-period ({:#})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(Some(leader::Config {
            namespace,
            lease_name: lease_name(&self.lease_name, selector)?,
            identity: leader::identity(pod_name.as_deref()),
            lease_duration,
            renew_deadline,
            retry_period,
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::settings::Settings;

    fn args(flags: &[&str]) -> LeaderElectionArgs {
        let mut argv = vec!["flowrun-operator"];
        argv.extend_from_slice(flags);
        Settings::try_parse_from(argv)
            .expect("flags parse")
            .leader_election
    }

    #[test]
    fn leader_election_is_off_unless_asked_for() {
        assert_eq!(args(&[]).config(Some("ns".into()), None, None), Ok(None));
        assert_eq!(
            args(&["--leader-election=false"]).config(Some("ns".into()), None, None),
            Ok(None)
        );
        assert!(args(&["--leader-election"]).enabled);
        assert!(args(&["--leader-election=true"]).enabled);
    }

    #[test]
    fn leader_election_settings_are_checked_together() {
        let config = args(&["--leader-election"])
            .config(
                Some("flowrun-system".into()),
                Some("flowrun-operator-7d9f".into()),
                None,
            )
            .expect("defaults fit")
            .expect("on");
        assert_eq!(config.namespace, "flowrun-system");
        assert_eq!(config.lease_name, "flowrun-operator");
        assert!(
            config.identity.starts_with("flowrun-operator-7d9f_"),
            "{}",
            config.identity
        );
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert_eq!(config.renew_deadline, Duration::from_secs(10));
        assert_eq!(config.retry_period, Duration::from_secs(2));

        let flag_wins = args(&["--leader-election", "--leader-election-namespace=ops"])
            .config(Some("flowrun-system".into()), None, None)
            .expect("fits")
            .expect("on");
        assert_eq!(flag_wins.namespace, "ops");

        // A shard's Lease is its own: the name gets a hash of the selector.
        let selector: LabelSelector = "team=a".parse().expect("a selector");
        let shard = args(&["--leader-election"])
            .config(Some("ns".into()), None, Some(&selector))
            .expect("fits")
            .expect("on");
        assert_eq!(shard.lease_name, "flowrun-operator-289b4946fe");

        let refusals: &[(&[&str], Option<&str>, &str)] = &[
            (
                &["--leader-election"],
                None,
                "--leader-election-namespace or POD_NAMESPACE",
            ),
            (
                &[
                    "--leader-election",
                    "--leader-election-lease-duration=2500ms",
                ],
                Some("ns"),
                "whole seconds",
            ),
            (
                &["--leader-election", "--leader-election-renew-deadline=15s"],
                Some("ns"),
                "must be shorter than --leader-election-lease-duration",
            ),
            (
                &["--leader-election", "--leader-election-retry-period=9s"],
                Some("ns"),
                "longer than 1.2 times --leader-election-retry-period",
            ),
        ];
        for (flags, namespace, message) in refusals {
            let error = args(flags)
                .config(namespace.map(str::to_owned), None, None)
                .expect_err("refused");
            assert!(error.contains(message), "{flags:?}: {error}");
        }
        assert!(
            Settings::try_parse_from(["flowrun-operator", "--leader-election-retry-period=0s"])
                .is_err()
        );
    }
}
