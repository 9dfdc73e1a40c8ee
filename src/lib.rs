//! flowrun-operator: runs Amazon AppFlow flows from `FlowRun` custom resources.
