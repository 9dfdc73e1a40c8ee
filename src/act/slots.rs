//! StartFlow calls in flight per flow, up to a limit: a flow whose calls hang until the AWS
//! timeout must not hold every reconcile slot and stall the other flows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use flowrun_core::appflow::FlowKey;

use crate::lock;

pub(super) struct StartSlots {
    per_flow: usize,
    in_flight: Mutex<HashMap<(String, String), usize>>,
}

/// One StartFlow call in flight; dropping it frees the slot.
pub(super) struct StartSlot<'a> {
    slots: &'a StartSlots,
    flow: (String, String),
}

impl StartSlots {
    pub(super) fn new(per_flow: usize) -> Self {
        StartSlots {
            per_flow,
            in_flight: Mutex::default(),
        }
    }

    /// A slot of the flow (region and name), or `None` when its calls already hold them all.
    pub(super) fn take(&self, flow: &FlowKey) -> Option<StartSlot<'_>> {
        let key = (flow.region.clone(), flow.flow_name.clone());
        let mut in_flight = lock(&self.in_flight);
        let count = in_flight.entry(key.clone()).or_insert(0);
        if *count >= self.per_flow {
            return None;
        }
        *count += 1;
        Some(StartSlot {
            slots: self,
            flow: key,
        })
    }
}

impl Drop for StartSlot<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.slots.in_flight);
        if let Some(count) = in_flight.get_mut(&self.flow) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.flow);
            }
        }
    }
}

/// How soon a FlowRun whose flow has no free StartFlow slot tries again.
pub fn start_slot_wait() -> Duration {
    Duration::from_millis(500 + fastrand::u64(..1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(region: &str, name: &str) -> FlowKey {
        FlowKey {
            region: region.into(),
            flow_name: name.into(),
            role: None,
        }
    }

    #[test]
    fn start_slots_cap_each_flow_and_free_on_drop() {
        let slots = StartSlots::new(2);
        let first = slots.take(&flow("eu-west-1", "sales"));
        let second = slots.take(&flow("eu-west-1", "sales"));
        assert!(first.is_some() && second.is_some());
        assert!(slots.take(&flow("eu-west-1", "sales")).is_none(), "full");
        assert!(
            slots.take(&flow("us-east-1", "sales")).is_some(),
            "other region"
        );
        assert!(slots.take(&flow("eu-west-1", "hr")).is_some(), "other flow");

        drop(first);
        let third = slots.take(&flow("eu-west-1", "sales"));
        assert!(third.is_some(), "freed");
        drop((second, third));
        let in_flight = lock(&slots.in_flight);
        assert!(in_flight.is_empty(), "no entry left behind: {in_flight:?}");
    }
}
